"""VCF/BCF input for ``isoformer variants``: records streamed in file order, checked, alleles split.

    reader = VcfReader("in.vcf.gz")        # or "-" for standard input; VCF plain, gzip or bgzip, or BCF
    reader.header_lines                     # the '##' lines and the '#CHROM' line, as text
    for record in reader: ...               # VcfRecord objects, in file order

Coordinates: VCF ``POS`` is 1-based and stays so on :class:`VcfRecord` (``pos``); ``start`` is the
0-based position of the first REF base, which is what every other module uses.

Text VCF (plain, gzip or bgzip, from a file or standard input) is read as a stream with Python's gzip
reader: no index is needed, a plain-gzip file works (htslib cannot fetch regions from one), and a
truncated or corrupt file is reported as such. BCF is read through pysam (a file, not standard input).
Each record keeps its text line, so the output VCF carries every column exactly as it came in.

The reader checks what a streaming scorer needs: records of one contig together and in position order
(an unsorted file is an error naming both records, with the ``bcftools sort`` command that fixes it),
and eight tab-separated columns at least. Which alleles can be scored is decided per allele by
:func:`allele_status`; multi-allelic records are split into alleles (``VcfRecord.alts``) and written
back as one record.
"""

import contextlib
import gzip
import io
import logging
import re
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from isoformer_cli.errors import ContigError, InputError
from isoformer_cli.genomics.compressed import GZIP_MAGIC, compressed_read_errors
from isoformer_cli.genomics.sniff import VCF_KINDS, wrong_kind_message

log = logging.getLogger(__name__)

STDIN = "-"
_BCF_MAGIC = b"BCF\x02"
_ACGTN = re.compile(r"^[ACGTN]+$")

# Why an allele (or a whole record) is not scored; written in the output's ISOFORMER_STATUS field.
REF_MISMATCH = "ref_mismatch"
SYMBOLIC = "symbolic"
BREAKEND = "breakend"
STAR = "star"
MISSING_ALT = "missing_alt"
NON_ACGTN = "non_acgtn"
INDEL_TOO_LONG = "indel_too_long"
CONTIG_END = "contig_end"
CONTIG_MISSING = "contig_missing"
TSS_DELETED = "tss_deleted"
NOT_VISIBLE = "not_visible"

#: Every status with its meaning (README and the VCF header use the same words).
STATUS_DESCRIPTIONS = {
    REF_MISMATCH: "REF differs from the genome",
    SYMBOLIC: "symbolic allele (<DEL>, <INS>, ...)",
    BREAKEND: "breakend allele",
    STAR: "'*' allele (a deletion upstream)",
    MISSING_ALT: "no ALT allele ('.')",
    NON_ACGTN: "a letter other than A, C, G, T, N in REF or ALT",
    INDEL_TOO_LONG: "REF or ALT (minimal form) longer than --max-indel",
    CONTIG_END: "REF runs past the contig end",
    CONTIG_MISSING: "the contig is not in the genome FASTA (after the alias layer)",
    TSS_DELETED: "the allele deletes the transcript's TSS (per transcript)",
    NOT_VISIBLE: ("the allele changes the transcript only where the model does not read it (past the RNA tokens "
                  "or protein residues kept, see FLAGS, or a modality the checkpoint lacks): its ISOFORMER entry "
                  "has no scores (per transcript)"),
}


@dataclass
class VcfRecord:
    """One VCF record as read.

    Attributes:
        number: 1-based record number in the file (data lines only).
        line: 1-based line number in a text VCF (None for BCF).
        chrom: CHROM as written.
        pos: POS, 1-based.
        ref: REF, upper-cased.
        alts: ALT alleles, upper-cased (``()`` when ALT is ``.``).
        fields: the record's tab-separated columns as text (CHROM ... INFO [FORMAT samples]).
    """

    number: int
    line: Optional[int]
    chrom: str
    pos: int
    ref: str
    alts: Tuple[str, ...]
    fields: List[str]

    @property
    def start(self):
        """0-based position of the first REF base."""
        return self.pos - 1

    @property
    def where(self):
        """How messages name the record: ``line N`` or ``record N``, and ``CHROM:POS``."""
        place = f"line {self.line}" if self.line is not None else f"record {self.number}"
        return f"{place} ({self.chrom}:{self.pos})"


def allele_status(ref, alt, max_indel):
    """The status code of an allele that cannot be scored from its letters alone, or None.

    REF mismatch, contig end and missing contig need the genome and are decided by the caller.
    """
    if alt in (".", ""):
        return MISSING_ALT
    if alt == "*":
        return STAR
    if alt.startswith("<") and alt.endswith(">"):
        return SYMBOLIC
    if "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
        return BREAKEND
    if not _ACGTN.match(ref) or not _ACGTN.match(alt):
        return NON_ACGTN
    ref_core, alt_core = ref, alt
    while ref_core and alt_core and ref_core[-1] == alt_core[-1]:
        ref_core, alt_core = ref_core[:-1], alt_core[:-1]
    while ref_core and alt_core and ref_core[0] == alt_core[0]:
        ref_core, alt_core = ref_core[1:], alt_core[1:]
    if max(len(ref_core), len(alt_core)) > max_indel and len(ref_core) != len(alt_core):
        return INDEL_TOO_LONG
    return None


class VcfReader:
    """Streams the records of a VCF or BCF file (see the module docstring).

    Args:
        path: file path, or ``-`` for standard input (text VCF, plain or compressed).

    Raises InputError naming the file (and line) for: a missing or unreadable file, no ``#CHROM``
    line, a record with fewer than eight columns or a bad POS, a truncated or corrupt compressed
    stream, and records out of order.
    """

    def __init__(self, path):
        self.path = path
        self.header_lines: List[str] = []
        self._bcf = None
        self._stream = None
        self._lineno = 0
        try:
            self._open()
        except InputError:
            # Another kind of file altogether (a BAM, a GTF...): say which instead of what is missing.
            wrong = wrong_kind_message(path, VCF_KINDS, "a VCF") if path != STDIN else None
            if wrong:
                raise InputError(f"{wrong}; give a VCF (plain, gzip or bgzip) or BCF file") from None
            raise

    # -- opening

    def _open(self):
        if self.path == STDIN:
            raw = sys.stdin.buffer
        else:
            try:
                raw = open(self.path, "rb")
            except FileNotFoundError:
                raise InputError(f"{self.path}: VCF file not found") from None
            except IsADirectoryError:
                raise InputError(f"{self.path}: is a folder, not a VCF file") from None
            except PermissionError:
                raise InputError(f"{self.path}: permission denied reading the VCF") from None
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
        magic = buffered.peek(4)[:4]
        if magic.startswith(GZIP_MAGIC):
            binary = gzip.GzipFile(fileobj=buffered, mode="rb")
            with compressed_read_errors(self.label, "VCF"):
                inner = binary.peek(4)[:4]
        else:
            binary, inner = buffered, magic
        if inner.startswith(_BCF_MAGIC):
            binary.close()
            self._open_bcf()
            return
        self._stream = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        self._read_text_header()

    @property
    def label(self):
        return "standard input" if self.path == STDIN else self.path

    def _open_bcf(self):
        if self.path == STDIN:
            raise InputError("standard input holds BCF, which is read from a file only; give the BCF file "
                             "or convert it: bcftools view -Ov")
        # The records are streamed, so a missing .csi index does not matter; htslib would say so on stderr
        # ("[E::idx_find_and_load] Could not retrieve index file") at every open, even under -q.
        with _htslib_silenced():
            try:
                self._bcf = _pysam().VariantFile(self.path, "r")
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.path}: cannot read the BCF file ({exc}); check it with bcftools view") from None
        self.header_lines = str(self._bcf.header).rstrip("\n").split("\n")

    def _read_text_header(self):
        with compressed_read_errors(self.label, "VCF"):
            for line in self._stream:
                self._lineno += 1
                text = line.rstrip("\r\n")
                if text.startswith("##"):
                    self.header_lines.append(text)
                    continue
                if text.startswith("#CHROM"):
                    self.header_lines.append(text)
                    return
                break
        if self._lineno == 0:
            raise InputError(f"{self.label}: the VCF is empty; it needs a header ending in a #CHROM line")
        raise InputError(f"{self.label}:{self._lineno}: expected the '#CHROM POS ID REF ALT ...' header line "
                         "before the records; is this a VCF file?")

    # -- reading

    @property
    def header_contigs(self):
        """Contig names declared in ``##contig=<ID=...>`` lines, in order."""
        names = []
        for line in self.header_lines:
            match = re.match(r"^##contig=<.*?ID=([^,>]+)", line)
            if match:
                names.append(match.group(1))
        return names

    def __iter__(self):
        done_contigs, current, last_pos = set(), None, 0
        number = 0
        for line_number, fields in self._rows():
            number += 1
            record = self._record(number, line_number, fields)
            if record.chrom != current:
                if record.chrom in done_contigs:
                    self._unsorted(record, f"contig {record.chrom} appeared before, then another contig")
                if current is not None:
                    done_contigs.add(current)
                current, last_pos = record.chrom, 0
            elif record.pos < last_pos:
                self._unsorted(record, f"POS {record.pos} comes after POS {last_pos}")
            last_pos = record.pos
            yield record

    def _unsorted(self, record, reason):
        source = "-" if self.path == STDIN else self.path
        raise InputError(f"{self.label}: {record.where}: the VCF is not sorted ({reason}); records of a contig "
                         f"must be together and in position order: bcftools sort -Oz -o sorted.vcf.gz {source}")

    def _rows(self):
        if self._bcf is not None:
            records = iter(self._bcf)
            try:
                while True:
                    # htslib reports a damaged record on stderr before pysam raises; our message says it.
                    with _htslib_silenced():
                        record = next(records, None)
                    if record is None:
                        return
                    yield None, str(record).rstrip("\n").split("\t")
            except (OSError, ValueError) as exc:
                raise InputError(f"{self.path}: the BCF file is truncated or corrupt ({exc}); "
                                 "check it with bcftools view") from None
            return
        with compressed_read_errors(self.label, "VCF"):
            for line in self._stream:
                self._lineno += 1
                text = line.rstrip("\r\n")
                if not text or text.startswith("#"):
                    continue
                yield self._lineno, text.split("\t")

    def _record(self, number, line_number, fields):
        place = f"{self.label}:{line_number}" if line_number is not None else f"{self.label}: record {number}"
        if len(fields) < 8:
            raise InputError(f"{place}: a VCF record needs at least 8 tab-separated columns, found {len(fields)} "
                             "(spaces instead of tabs?)")
        try:
            pos = int(fields[1])
        except ValueError:
            raise InputError(f"{place}: POS {fields[1]!r} is not a whole number") from None
        if pos < 1:
            raise InputError(f"{place}: POS {pos} must be at least 1 (VCF positions are 1-based)")
        alts = tuple(alt.upper() if not alt.startswith("<") else alt for alt in fields[4].split(",")) \
            if fields[4] != "." else ()
        return VcfRecord(number=number, line=line_number, chrom=fields[0], pos=pos, ref=fields[3].upper(),
                         alts=alts, fields=fields)

    def close(self):
        if self._stream is not None and self.path != STDIN:
            self._stream.close()
        if self._bcf is not None:
            self._bcf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _pysam():
    import pysam  # only for BCF: text VCF never needs it

    return pysam


@contextlib.contextmanager
def _htslib_silenced():
    """htslib writes nothing on stderr inside the block (its messages would bypass our logging and -q)."""
    pysam = _pysam()
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def check_vcf(path, aliases):
    """Read the whole VCF once, before any work: the number of records.

    Raises what reading raises (truncated or corrupt file, bad columns, unsorted records), and ContigError
    when the VCF has records and none of their contigs is in the genome (``aliases``: a ContigAliases of
    the genome), so a run fails before it loads a model or writes anything.
    """
    records = resolved = 0
    with VcfReader(path) as reader:
        for record in reader:
            records += 1
            if aliases.resolve(record.chrom) is not None:
                resolved += 1
        label = reader.label
    if records and not resolved:
        raise ContigError(
            f"{label}: no contig of the VCF is in the genome FASTA ({', '.join(aliases.target_contigs[:5])}), even "
            "through the chr1<->1 / chrM<->MT rules; check that both are from the same assembly or give "
            "--contig-alias FILE")
    return records
