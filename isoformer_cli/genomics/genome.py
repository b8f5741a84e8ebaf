"""Indexed genome FASTA access (plain or BGZF) through ``pysam.FastaFile``.

    with Genome(path) as genome:
        genome.contigs                    # tuple of contig names, FASTA order
        genome.length("chr1")             # int
        genome.fetch("chr1", 100, 200)    # upper-cased str, 0-based half-open, within bounds

Only the ``.fai`` index (and the ``.gzi`` one for BGZF) is read at open; sequence is read per
call, so memory does not grow with the genome. The index is created beside the FASTA when
absent (what ``samtools faidx`` does).

Fork safety: pysam handles must not be shared across ``fork``. The handle is opened lazily and
reopened whenever the process id changed, and pickling drops it, so a Genome can be handed to
DataLoader workers (each worker opens its own handle on first use).
"""

import contextlib
import logging
import os
import secrets
import tempfile
from typing import Dict, Optional, Tuple

import pysam

from isoformer_cli.errors import GenomeError
from isoformer_cli.genomics.compressed import COMPRESSED_STREAM_ERRORS, GZIP_MAGIC, open_binary
from isoformer_cli.genomics.sniff import ANNOTATION_KINDS, GENOME_KINDS, sniff, wrong_kind_message

log = logging.getLogger(__name__)

_MAX_HEADER_BYTES = 1 << 16  # a longer gap between two indexed records cannot be one header line
_SCAN_BLOCK = 1 << 22


def _sequence_bytes(length, line_bases, line_width):
    """Bytes a record's sequence takes in the file, from its .fai fields (newlines included)."""
    if not line_bases:
        return 0
    full_lines, rest = divmod(length, line_bases)
    return full_lines * line_width + (rest + line_width - line_bases if rest else 0)


def find_duplicate_record(path):
    """``(name, first line, second line)`` of the first sequence name two records share, or None.

    Reads the whole file (plain or BGZF) in large blocks; only header lines are decoded. A
    record's name is the first word of its header line, as samtools reads it.
    """
    seen = {}
    line_number = 1  # number of the first line of the current block
    with open_binary(path, "genome FASTA", error=GenomeError) as stream:
        while True:
            block = stream.read(_SCAN_BLOCK)
            if not block:
                return None
            if not block.endswith(b"\n"):
                block += stream.readline()  # blocks end at line ends, so headers are never split
            starts = [0] if block.startswith(b">") else []
            index = block.find(b"\n>")
            while index != -1:
                starts.append(index + 1)
                index = block.find(b"\n>", index + 1)
            cursor, number = 0, line_number
            for start in starts:
                number += block.count(b"\n", cursor, start)
                cursor = start
                end = block.find(b"\n", start)
                words = block[start + 1:end if end != -1 else len(block)].split(None, 1)
                name = words[0].decode("utf-8", "replace") if words else ""
                if name in seen:
                    return name, seen[name], number
                seen[name] = number
            line_number = number + block.count(b"\n", cursor)


def _is_bgzf(header: bytes) -> bool:
    """BGZF = gzip with the FEXTRA flag and a 'BC' extra subfield (SAM/BAM specification 4.1)."""
    return (len(header) >= 16 and header[:2] == GZIP_MAGIC and header[3] & 4
            and header[12:14] == b"BC")


def _folder_writable(folder) -> bool:
    return os.access(folder or ".", os.W_OK)


class Genome:
    """A genome FASTA, indexed on open when no index exists.

    Args:
        path: FASTA file, plain text or BGZF-compressed (``bgzip``).

    Raises GenomeError (one line naming the file and the fix) for: a missing, unreadable or
    empty file, content that is not FASTA, plain gzip compression, an index that cannot be
    written (read-only folder), a corrupt or outdated index.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._handle: Optional[pysam.FastaFile] = None
        self._pid: Optional[int] = None
        self.compressed = self._check_file()
        created = self._check_or_build_index()
        try:
            handle = self._open()
            self._contigs: Tuple[str, ...] = tuple(handle.references)
            self._lengths: Dict[str, int] = dict(zip(handle.references, handle.lengths))
            if not self._contigs:
                # The file starts with '>' (checked above), so an empty index is a broken one.
                raise GenomeError(f"{self.path}: its index lists no sequence records (corrupt index?): "
                                  f"{self._reindex_hint()}")
            if not self.compressed:
                self._check_index_matches_plain_fasta()
        except BaseException:
            # An index this run started to write is of no use (htslib leaves a .gzi behind when
            # indexing a truncated file fails): remove it, so the next run does not trust it.
            self.close()
            for index_path in created:
                with contextlib.suppress(OSError):
                    os.remove(index_path)
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def contigs(self) -> Tuple[str, ...]:
        """Contig names in FASTA order."""
        return self._contigs

    @property
    def lengths(self) -> Dict[str, int]:
        """Contig name -> length in bases."""
        return dict(self._lengths)

    def __contains__(self, contig) -> bool:
        return contig in self._lengths

    def length(self, contig) -> int:
        """Length of ``contig``; GenomeError when the FASTA has no such contig."""
        try:
            return self._lengths[contig]
        except KeyError:
            raise GenomeError(f"{self.path}: no contig named {contig!r} in the FASTA") from None

    def fetch(self, contig, start, end) -> str:
        """Upper-cased sequence of ``contig[start:end]``, 0-based half-open, with
        ``0 <= start <= end <= length(contig)`` (the caller pads beyond contig ends). Letters other
        than ACGT are kept as they are (only upper-cased)."""
        return self.fetch_as_stored(contig, start, end).upper()

    def fetch_as_stored(self, contig, start, end) -> str:
        """:meth:`fetch` without the upper-casing: soft-masked bases stay lower-case. For callers that
        map the letters themselves (the triples builder), so as not to pay for upper-casing a genome."""
        length = self.length(contig)
        if not 0 <= start <= end <= length:
            raise GenomeError(
                f"{self.path}: {contig}:{start}-{end} (0-based half-open) is outside the contig (length {length})"
            )
        if start == end:
            return ""
        try:
            sequence = self._fasta().fetch(contig, start, end)
        except (ValueError, OSError) as exc:
            raise GenomeError(
                f"{self.path}: cannot read {contig}:{start}-{end} ({exc}); the index may be outdated: "
                f"{self._reindex_hint()}"
            ) from None
        if len(sequence) != end - start:
            raise GenomeError(
                f"{self.path}: read {len(sequence)} bases for {contig}:{start}-{end} instead of {end - start}; "
                f"the index is outdated or the file truncated: {self._reindex_hint()}"
            )
        return sequence

    def close(self):
        """Close the pysam handle of this process (a later fetch reopens it)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def __repr__(self):
        return f"Genome({self.path!r}, {len(self._contigs)} contigs)"

    # -- opening and checks ------------------------------------------------------------------

    def _fasta(self) -> pysam.FastaFile:
        if self._handle is None or self._pid != os.getpid():
            # After fork the inherited handle belongs to the parent: drop it without closing.
            self._handle = None
            self._open()
        return self._handle

    def _open(self) -> pysam.FastaFile:
        previous = pysam.set_verbosity(0)  # htslib's own stderr lines would repeat our message
        try:
            self._handle = pysam.FastaFile(self.path)
        except (OSError, ValueError) as exc:
            raise GenomeError(self._explain_open_failure(exc)) from None
        finally:
            pysam.set_verbosity(previous)
        self._pid = os.getpid()
        return self._handle

    def _index_paths(self):
        paths = [self.path + ".fai"]
        if self.compressed:
            paths.append(self.path + ".gzi")
        return paths

    def _reindex_hint(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        if not _folder_writable(folder):
            # Neither deleting the index nor `samtools faidx` (which writes beside the FASTA) works there.
            return f"its folder {folder} is not writable, so {self._link_hint()}"
        names = " and ".join(os.path.basename(p) for p in self._index_paths())
        return f"delete {names} (it is rebuilt on the next run) or run `samtools faidx {self.path}`"

    def _link_hint(self):
        """How to index a FASTA whose folder is read-only: the reader looks for ``PATH.fai`` (and ``PATH.gzi``)
        beside the path it is given, so a symbolic link in a writable folder gets its own index there."""
        name = os.path.basename(self.path)
        here = os.path.dirname(os.path.abspath(self.path))
        target = None
        for candidate in (os.getcwd(), os.path.expanduser("~"), tempfile.gettempdir()):
            candidate = os.path.abspath(candidate)
            if (candidate != here and _folder_writable(candidate)
                    and not os.path.lexists(os.path.join(candidate, name))):
                target = os.path.join(candidate, name)
                break
        if target is None:
            target = os.path.join("WRITABLE_FOLDER", name)
        elif os.path.dirname(target) == os.path.abspath(os.getcwd()):
            target = os.path.join(".", name)
        return (f"link the FASTA into a writable folder and give that path, where the index is then written: "
                f"`ln -s {os.path.abspath(self.path)} {target}` and --genome {target}")

    def _check_file(self) -> bool:
        """Existence, readability and content sniffing; returns True for BGZF."""
        path = self.path
        if not os.path.exists(path):
            raise GenomeError(f"{path}: genome FASTA not found")
        if os.path.isdir(path):
            raise GenomeError(f"{path}: is a folder, not a genome FASTA file")
        try:
            with open(path, "rb") as raw:
                header = raw.read(18)
        except PermissionError:
            raise GenomeError(f"{path}: permission denied; make the FASTA readable (chmod +r)") from None
        except OSError as exc:
            raise GenomeError(f"{path}: cannot read the genome FASTA: {exc.strerror or exc}") from None
        if not header:
            raise GenomeError(f"{path}: the FASTA file is empty (no sequence records)")
        compressed = header[:2] == GZIP_MAGIC
        if not header.startswith(b">"):
            self._refuse_other_kind()
        if compressed and not _is_bgzf(header):
            stem = path[:-3] if path.endswith(".gz") else path + ".bgz"
            command = (f"gzip -d {path} && bgzip {stem}" if path.endswith(".gz")
                       else f"gzip -dc {path} | bgzip -c > {stem}")
            raise GenomeError(
                f"{path}: compressed with plain gzip, which cannot be indexed for random access; "
                f"recompress it with bgzip (from htslib/samtools): `{command}`"
            )
        first = self._first_text_bytes()
        if not first.lstrip():
            raise GenomeError(f"{path}: the FASTA file is empty (no sequence records)")
        if not first.lstrip().startswith(b">"):
            line = first.lstrip().split(b"\n", 1)[0][:60].decode("utf-8", "replace")
            raise GenomeError(
                f"{path}: not a FASTA file (it should start with a '>name' line, found {line!r}); "
                "did you swap --genome and --annotation?"
            )
        return compressed

    def _refuse_other_kind(self):
        """GenomeError when the file is recognisably something else (a BAM, a GTF, a .fai index...)."""
        wrong = wrong_kind_message(self.path, GENOME_KINDS, "a genome FASTA")
        if wrong is None:
            return
        kind = sniff(self.path)
        if kind is not None and kind.code in ANNOTATION_KINDS:
            fix = "did you swap --genome and --annotation?"
        elif kind is not None and kind.code == "fai":
            fix = "give the FASTA itself, not its index"
        else:
            fix = "--genome takes a FASTA file (plain or bgzip)"
        raise GenomeError(f"{wrong}; {fix}")

    def _first_text_bytes(self) -> bytes:
        try:
            with open_binary(self.path, "genome FASTA", error=GenomeError) as handle:
                return handle.read(4096)
        except (OSError, EOFError) as exc:
            raise GenomeError(f"{self.path}: cannot read the compressed FASTA: {exc}") from None

    def _check_or_build_index(self):
        """Prepare indexing when an index file is missing; returns the index files this run creates.

        A FASTA is indexed once, so this is when every record name is checked for uniqueness
        (htslib would silently keep the first of two records of one name).
        """
        missing = [p for p in self._index_paths() if not os.path.exists(p)]
        if not missing:
            return []
        folder = os.path.dirname(os.path.abspath(self.path))
        if not _folder_writable(folder):
            raise GenomeError(self._read_only_message(folder))
        log.info("indexing %s (first use; writes %s)", self.path, ", ".join(missing))
        self._refuse_duplicate_names()
        self._build_index(folder)
        return missing

    def _build_index(self, folder):
        """Index under a temporary name beside the FASTA, then rename into place (the ``.gzi`` before the
        ``.fai``): jobs of a pipeline starting together on an unindexed genome each build their own copy,
        and none reads an index another is still writing. When this fails, opening the FASTA indexes it in
        place and explains the failure."""
        stem = os.path.join(folder, f".{os.path.basename(self.path)}.{os.getpid()}-{secrets.token_hex(4)}"
                                    ".isoformer-index")
        try:
            os.symlink(os.path.abspath(self.path), stem)
        except OSError:  # a file system without symbolic links: index in place
            return
        previous = pysam.set_verbosity(0)
        try:
            pysam.faidx(stem)  # writes stem.fai, and stem.gzi for a BGZF file
            if self.compressed:
                os.replace(stem + ".gzi", self.path + ".gzi")
            os.replace(stem + ".fai", self.path + ".fai")
        except (OSError, pysam.SamtoolsError):
            pass
        finally:
            pysam.set_verbosity(previous)
            for leftover in (stem, stem + ".fai", stem + ".gzi"):
                with contextlib.suppress(OSError):
                    os.remove(leftover)

    def _refuse_duplicate_names(self):
        """GenomeError naming the first sequence name used by two records, with both line numbers."""
        try:
            duplicate = find_duplicate_record(self.path)
        except COMPRESSED_STREAM_ERRORS as exc:
            raise GenomeError(f"{self.path}: the compressed FASTA is truncated or corrupt ({exc}); download or "
                              "compress it again") from None
        except OSError as exc:
            raise GenomeError(f"{self.path}: cannot read the genome FASTA: {exc.strerror or exc}") from None
        if duplicate is not None:
            name, first, second = duplicate
            raise GenomeError(
                f"{self.path}: sequence name {name!r} is used by two records, on lines {first} and {second}; "
                "rename or remove one (every record needs its own name)"
            )

    def _read_only_message(self, folder):
        return f"{self.path}: the FASTA has no index and its folder {folder} is not writable; {self._link_hint()}"

    def _explain_open_failure(self, exc) -> str:
        text = str(exc)
        if "not found" in text:
            return f"{self.path}: genome FASTA not found"
        folder = os.path.dirname(os.path.abspath(self.path))
        missing = [p for p in self._index_paths() if not os.path.exists(p)]
        if missing and not _folder_writable(folder):
            return self._read_only_message(folder)
        if not missing:
            return f"{self.path}: cannot open the FASTA with its index (corrupt index?): {self._reindex_hint()}"
        return (
            f"{self.path}: cannot index the FASTA ({text}); check that it is a valid FASTA "
            "(each record a '>name' line followed by sequence lines of equal width)"
        )

    def _check_gaps_between_records(self, entries):
        """Between one record's sequence and the next record's, the file must hold exactly that
        record's header line (and blank lines): anything more is a record the index leaves out."""
        ordered = sorted(entries, key=lambda entry: entry[2])
        with open(self.path, "rb") as fasta:
            for previous, entry in zip(ordered, ordered[1:]):
                end = previous[2] + _sequence_bytes(previous[1], previous[3], previous[4])
                gap = entry[2] - end
                if 0 < gap <= _MAX_HEADER_BYTES:
                    fasta.seek(end)
                    lines = fasta.read(gap).split(b"\n")
                    headers = [line for line in lines if line.startswith(b">")]
                    others = [line for line in lines if line.strip() and not line.startswith(b">")]
                    if len(headers) == 1 and not others and headers[0][1:].split()[:1] == [entry[0].encode()]:
                        continue
                raise GenomeError(
                    f"{self.path}.fai: the index does not match {self.path} (record {entry[0]!r} is not where the "
                    f"index says; was the FASTA changed after indexing?): {self._reindex_hint()}"
                )

    def _check_index_matches_plain_fasta(self):
        """A stale ``.fai`` (FASTA edited after indexing) gives wrong sequence silently; check
        that the first and last records start right after their header lines and that nothing
        but whitespace follows the last record's sequence."""
        fai = self.path + ".fai"
        try:
            with open(fai) as handle:
                rows = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
            entries = [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
        except (OSError, ValueError, IndexError):
            raise GenomeError(f"{fai}: unreadable or corrupt FASTA index: {self._reindex_hint()}") from None
        if not entries:
            raise GenomeError(f"{self.path}: the FASTA has no sequence records")
        try:
            self._check_gaps_between_records(entries)
        except GenomeError:
            # A record the index does not list: a duplicate name, which samtools faidx skips
            # silently, says more than "outdated index".
            self._refuse_duplicate_names()
            raise
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as fasta:
            for name, length, offset, line_bases, line_width in {entries[0], entries[-1]}:
                before = max(0, offset - len(name) - 4096)
                fasta.seek(before)
                chunk = fasta.read(offset - before)
                header = chunk.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
                if not chunk.endswith(b"\n") or header[1:].split()[:1] != [name.encode()] or header[:1] != b">":
                    raise GenomeError(
                        f"{fai}: the index does not match {self.path} (record {name!r} is not where the "
                        f"index says; was the FASTA changed after indexing?): {self._reindex_hint()}"
                    )
            name, length, offset, line_bases, line_width = entries[-1]
            if length and line_bases:
                last_base = offset + (length - 1) // line_bases * line_width + (length - 1) % line_bases
                fasta.seek(last_base + 1)
                tail = fasta.read(4097)
                if size - last_base - 1 > 4096 or tail.strip():
                    self._refuse_duplicate_names()
                    raise GenomeError(
                        f"{fai}: the index does not cover the end of {self.path} (was the FASTA changed "
                        f"after indexing?): {self._reindex_hint()}"
                    )
