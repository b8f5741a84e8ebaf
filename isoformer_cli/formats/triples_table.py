"""The triples table (TSV) and FASTA side files: writer and reader.

Table layout (format version 1): a header line, then one row per transcript, tab-separated,
columns in this order::

    transcript_id gene_id gene_name biotype chrom strand tss window_start window_end
    cds_start cds_end rna protein flags [dna]

* ``chrom`` is the contig as the genome FASTA names it (after the alias layer), because ``tss``
  and the window are positions on that FASTA.
* ``tss``, ``window_start``, ``window_end``: 0-based genomic, the window half-open; the window
  may extend below 0 or past the contig end (those bases are N, flag ``window_padded``).
* ``cds_start``, ``cds_end``: 0-based half-open on the RNA (stop codon included when
  annotated); empty for a transcript without CDS.
* ``rna``: spliced RNA 5'->3', upper-case A/C/G/T/N. ``protein``: without the terminal stop,
  empty when there is none. ``flags``: comma-separated, sorted (``isoformer_cli.genomics.flags``).
* ``dna``: the strand-oriented DNA window, only written with ``--with-dna``.

The table starts with one more line, ``# provenance: {...}`` (JSON, :mod:`isoformer_cli.formats.provenance`;
a shard run's (``--shard K/N``) also holds the ``shard`` entry of :mod:`isoformer_cli.formats.sharding`),
before the column header; readers skip leading ``#`` lines, and ``isoformer merge`` writes the merged
provenance in its place. (Tables of earlier
versions had the line only when sharded; readers need none.)

FASTA side files for a prefix ``P``: ``P.rna.fa``, ``P.protein.fa`` (coding transcripts only) and,
with ``--with-dna``, ``P.dna.fa``; sequences wrapped at 60 letters. Every file is written
atomically (see :mod:`isoformer_cli.formats.atomic`): after an error none of them exists.
"""

import codecs
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.genomics.compressed import compressed_read_errors, open_text
from isoformer_cli.formats.atomic import STDOUT, atomic_text_output, check_writable
from isoformer_cli.formats.streaming import canonical_json
from isoformer_cli.genomics.flags import format_flags, parse_flags

COLUMNS = (
    "transcript_id", "gene_id", "gene_name", "biotype", "chrom", "strand", "tss",
    "window_start", "window_end", "cds_start", "cds_end", "rna", "protein", "flags",
)
DNA_COLUMN = "dna"
PROVENANCE_PREFIX = "# provenance: "
FASTA_WIDTH = 60

_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def fasta_paths(prefix, with_dna=False):
    """``{"rna": P.rna.fa, "protein": P.protein.fa[, "dna": P.dna.fa]}`` for prefix ``P``."""
    paths = {"rna": f"{prefix}.rna.fa", "protein": f"{prefix}.protein.fa"}
    if with_dna:
        paths["dna"] = f"{prefix}.dna.fa"
    return paths


def _text(value):
    # Attribute values cannot hold tabs or newlines in a valid GTF, but one stray character must
    # not shift the columns of the table. (The membership tests are the fast path.)
    if "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_CLEAN)
    return value


def _optional_int(value):
    return "" if value is None else str(value)


def format_row(triple, with_dna=False):
    """One table line (with its newline) for ``triple``."""
    transcript = triple.transcript
    fields = [
        _text(transcript.transcript_id), _text(transcript.gene_id), _text(transcript.gene_name),
        _text(transcript.biotype), triple.genome_chrom, transcript.strand, str(triple.tss),
        str(triple.window_start), str(triple.window_end), _optional_int(triple.cds_start),
        _optional_int(triple.cds_end), triple.rna, triple.protein, format_flags(triple.flags),
    ]
    if with_dna:
        fields.append(triple.dna or "")
    return "\t".join(fields) + "\n"


def header(with_dna=False):
    """The header line (with its newline)."""
    return "\t".join(COLUMNS + ((DNA_COLUMN,) if with_dna else ())) + "\n"


def _fasta_record(name, description, sequence):
    """One FASTA record, its sequence wrapped at FASTA_WIDTH letters."""
    lines = [f">{name} {description}" if description else f">{name}"]
    lines += [sequence[offset:offset + FASTA_WIDTH] for offset in range(0, len(sequence), FASTA_WIDTH)]
    lines.append("")
    return "\n".join(lines)


class TriplesWriter:
    """Writes the table and the optional FASTA side files, all atomically.

    Use as a context manager; on an exception inside the block every output is discarded.

    Args:
        output: table path (``.tsv``, ``.tsv.gz``) or ``-`` for stdout.
        fasta_prefix: prefix ``P`` of the FASTA side files, or None for none.
        with_dna: add the ``dna`` column (and ``P.dna.fa``).
        provenance: written as a ``# provenance:`` line before the header, or None (no line).
    """

    def __init__(self, output=STDOUT, fasta_prefix=None, with_dna=False, provenance=None):
        self.output = output
        self.provenance = provenance
        self.with_dna = with_dna
        self.fasta_targets = fasta_paths(fasta_prefix, with_dna) if fasta_prefix else {}
        self.rows = 0
        self._stack = None
        self._table = None
        self._fasta = {}

    def targets(self):
        """Every file this writer creates (stdout excluded)."""
        files = [] if self.output == STDOUT else [self.output]
        return files + list(self.fasta_targets.values())

    def check_targets(self):
        """Fail early (OutputError) when an output folder is missing or unwritable."""
        for target in self.targets():
            check_writable(target)
        if len(set(self.targets())) != len(self.targets()):
            raise OutputError(f"two outputs would be the same file: {', '.join(self.targets())}")

    def __enter__(self):
        self.check_targets()
        stack = contextlib.ExitStack()
        try:
            # Level 6: a GENCODE-wide table is ~400 MB of text; level 9 is several times slower for
            # a few per cent smaller output.
            self._table = stack.enter_context(atomic_text_output(self.output, compresslevel=6))
            for kind, path in self.fasta_targets.items():
                self._fasta[kind] = stack.enter_context(atomic_text_output(path))
            if self.provenance is not None:
                self._table.write(f"{PROVENANCE_PREFIX}{canonical_json(self.provenance)}\n")
            self._table.write(header(self.with_dna))
        except BaseException:
            stack.__exit__(*sys.exc_info())
            raise
        self._stack = stack
        return self

    def __exit__(self, *exc_info):
        stack, self._stack = self._stack, None
        return stack.__exit__(*exc_info)

    def write(self, triple):
        """Write one triple to the table and the FASTA files."""
        self._table.write(format_row(triple, self.with_dna))
        self.rows += 1
        if not self._fasta:
            return
        for kind, text in fasta_records(triple, self._fasta).items():
            self._fasta[kind].write(text)

    def write_text(self, table, fasta, rows):
        """Write ``rows`` rows already formatted: ``table`` (lines of :func:`format_row`) and ``fasta``
        (kind -> records of :func:`fasta_records`, for the kinds this writer writes)."""
        self._table.write(table)
        self.rows += rows
        for kind, stream in self._fasta.items():
            stream.write(fasta.get(kind, ""))


    def write_encoded(self, kind, data):
        """Append UTF-8 bytes of text made by :func:`format_row` (``kind`` "table") or :func:`fasta_records`
        (``kind`` "rna", "protein", "dna") to that output, without decoding them again where the output
        is UTF-8 without newline translation (all but an unusual standard output)."""
        stream = self._table if kind == "table" else self._fasta[kind]
        buffer = getattr(stream, "buffer", None)
        if buffer is not None and os.linesep == "\n" and codecs.lookup(stream.encoding).name == "utf-8":
            stream.flush()
            buffer.write(data)
        else:
            stream.write(data.decode("utf-8"))


def fasta_records(triple, kinds=("rna", "protein")):
    """``kind -> FASTA text`` of ``triple`` for each of ``kinds`` ("rna", "protein", "dna") it has a
    record in (no protein record for a transcript without protein)."""
    transcript = triple.transcript
    name = _text(transcript.transcript_id).replace(" ", "_")
    description = f"gene_id={_text(transcript.gene_id).replace(' ', '_')}" if transcript.gene_id else ""
    records = {}
    if "rna" in kinds:
        records["rna"] = _fasta_record(name, description, triple.rna)
    if "protein" in kinds and triple.protein:
        records["protein"] = _fasta_record(name, description, triple.protein)
    if "dna" in kinds:
        window = f"window={triple.genome_chrom}:{triple.window_start}-{triple.window_end}({transcript.strand})"
        records["dna"] = _fasta_record(name, f"{description} {window}".strip(), triple.dna or "")
    return records


@dataclass(frozen=True)
class TripleRow:
    """One row of a triples table read back (types as documented in the module docstring)."""

    transcript_id: str
    gene_id: str
    gene_name: str
    biotype: str
    chrom: str
    strand: str
    tss: int
    window_start: int
    window_end: int
    cds_start: Optional[int]
    cds_end: Optional[int]
    rna: str
    protein: str
    flags: Tuple[str, ...]
    dna: Optional[str] = None
    line: int = 0


def _open_text(path):
    """Standard input for ``-``, else the table, plain or gzip (universal newlines)."""
    if path == STDOUT:
        return contextlib.nullcontext(sys.stdin)
    return open_text(path, "triples table", newline=None)


def read_triples_table(path) -> Iterator[TripleRow]:
    """Yield the rows of a triples table written by :class:`TriplesWriter` (``.gz`` or ``-`` too).

    Raises:
        InputError: the header is not a triples header, or a row has the wrong number of
            columns or a non-integer coordinate (the message names the file and line).
    """
    with _open_text(path) as stream, compressed_read_errors(path, "triples table"):
        first, number = stream.readline().rstrip("\n"), 1
        while first.startswith("#"):
            first, number = stream.readline().rstrip("\n"), number + 1
        names = tuple(first.split("\t"))
        with_dna = names == COLUMNS + (DNA_COLUMN,)
        if names != COLUMNS and not with_dna:
            raise InputError(
                f"{path}:{number}: not a triples table: the header must be the columns "
                f"{' '.join(COLUMNS)} [dna] (write one with `isoformer triples`)"
            )
        width = len(names)
        for number, line in enumerate(stream, start=number + 1):
            line = line.rstrip("\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != width:
                raise InputError(f"{path}:{number}: expected {width} tab-separated columns, found {len(fields)}")
            yield _parse_row(path, number, fields, with_dna)


def read_triples_provenance(path: str) -> dict:
    """The provenance dict of a triples table (``{}`` when it has none: a table of an older version)."""
    with _open_text(path) as stream, compressed_read_errors(path, "triples table"):
        for number, line in enumerate(stream, start=1):
            if not line.startswith("#"):
                return {}
            if line.startswith(PROVENANCE_PREFIX):
                try:
                    return json.loads(line[len(PROVENANCE_PREFIX):])
                except ValueError as exc:
                    raise InputError(f"{path}:{number}: the provenance line is not valid JSON ({exc})") from None
    return {}


def _parse_row(path, number, fields, with_dna):
    def integer(index, optional=False):
        value = fields[index]
        if optional and value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise InputError(
                f"{path}:{number}: column {COLUMNS[index]} must be an integer, not {value!r}"
            ) from None

    if fields[5] not in ("+", "-"):
        raise InputError(f"{path}:{number}: strand must be '+' or '-', not {fields[5]!r}")
    return TripleRow(
        transcript_id=fields[0],
        gene_id=fields[1],
        gene_name=fields[2],
        biotype=fields[3],
        chrom=fields[4],
        strand=fields[5],
        tss=integer(6),
        window_start=integer(7),
        window_end=integer(8),
        cds_start=integer(9, optional=True),
        cds_end=integer(10, optional=True),
        rna=fields[11],
        protein=fields[12],
        flags=parse_flags(fields[13]),
        dna=fields[14] if with_dna else None,
        line=number,
    )
