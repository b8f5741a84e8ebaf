"""One sample's transcript quantification, read from the file its quantifier wrote.

The format is recognised from the file's content (its header line, its columns, the HDF5 signature),
never from its name, plain or gzip-compressed:

=====================  ===========================================================  ========================
format                 recognised by (first line / layout)                          TPM
=====================  ===========================================================  ========================
salmon ``quant.sf``    ``Name Length EffectiveLength TPM NumReads``                 ``TPM`` column
kallisto TSV           ``target_id length eff_length est_counts tpm``               ``tpm`` column
kallisto HDF5          HDF5 file with ``/est_counts``, ``/aux/ids``,                computed, as kallisto
                       ``/aux/eff_lengths``, ``/aux/lengths``                       does (below)
RSEM isoforms          ``transcript_id gene_id length effective_length              ``TPM`` column
                       expected_count TPM FPKM IsoPct``
StringTie GTF          GTF lines (9 tab-separated fields); ``transcript`` lines     ``TPM "..."`` attribute
                       carry ``cov``, ``FPKM``, ``TPM`` attributes (``-e``)
StringTie ctab         ``t_id chr strand start end t_name num_exons length          computed from ``FPKM``
                       gene_id gene_name cov FPKM`` (``t_data.ctab``, ``-B``)
IsoQuant               ``#feature_id`` then ``TPM`` (one sample) or one column      that column
                       per read group / sample (grouped or combined tables)
=====================  ===========================================================  ========================

Computed TPM:

* kallisto HDF5 keeps counts, not TPM: ``rate = est_counts / eff_length``, ``TPM = rate / sum(rate) * 1e6``
  (kallisto's ``counts_to_tpm``; a target with an effective length <= 0 gets rate 0, as sleuth does).
* StringTie's ``t_data.ctab`` has FPKM but no TPM: ``TPM = FPKM / sum(FPKM) * 1e6`` (FPKM and TPM differ only by
  the per-sample normalisation, so this is exact up to the rounding of the printed FPKM).

A file with several TPM columns (IsoQuant grouped or ``combined_transcript_tpm.tsv``) gives the column named
like the sample (the ``sample`` of the sheet); one without such a column is refused, naming the columns.

Ids: GENCODE FASTA names (``ENST00000456328.2|ENSG00000290825.1|...|lncRNA|``, what salmon and kallisto
report without ``--gencode``) reduce to their first field, the transcript id. An id given twice (after that
reduction) is an error. Values must be finite numbers >= 0.

Errors are :class:`~isoformer_cli.errors.InputError` whose message starts ``FILE:LINE: sample NAME:``.

This module never imports torch; h5py is imported only for HDF5 files.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.compressed import COMPRESSED_STREAM_ERRORS, open_text

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MILLION = 1e6

SALMON = "salmon quant.sf"
KALLISTO_TSV = "kallisto abundance.tsv"
KALLISTO_H5 = "kallisto abundance.h5"
RSEM = "RSEM isoforms.results"
STRINGTIE_GTF = "StringTie GTF"
STRINGTIE_CTAB = "StringTie t_data.ctab"
ISOQUANT = "IsoQuant TPM table"


@dataclass(frozen=True)
class _Layout:
    """A tab-separated layout: its id column, columns that identify it, and where TPM comes from."""

    name: str
    id_column: str
    signature: Tuple[str, ...]
    value_column: str
    value_is_fpkm: bool = False


_TABULAR = (
    _Layout(SALMON, "Name", ("Length", "EffectiveLength", "NumReads"), "TPM"),
    _Layout(KALLISTO_TSV, "target_id", ("length", "eff_length", "est_counts"), "tpm"),
    _Layout(RSEM, "transcript_id", ("gene_id", "effective_length", "expected_count"), "TPM"),
    _Layout(STRINGTIE_CTAB, "t_id", ("t_name", "num_exons", "gene_id"), "FPKM", value_is_fpkm=True),
)
KNOWN_LAYOUTS = ("salmon quant.sf (Name Length EffectiveLength TPM NumReads), kallisto abundance.tsv (target_id "
                 "length eff_length est_counts tpm) or abundance.h5, RSEM *.isoforms.results (transcript_id gene_id "
                 "... TPM ...), StringTie -e GTF (TPM attributes) or t_data.ctab (t_id ... t_name ... FPKM), IsoQuant "
                 "*transcript_tpm.tsv (#feature_id TPM)")
_ATTRIBUTE = re.compile(r'\s*([^\s";]+)\s+"([^"]*)"\s*;?')


@dataclass
class Quantification:
    """TPM of the transcripts of one sample.

    Attributes:
        ids: transcript ids, GENCODE names reduced, in file order (n,).
        tpm: float64 (n,) TPM.
        format: the recognised format (one of the names above).
        first_data_line: line of the first value (for messages; 0 for HDF5).
        notes: one-line remarks (names reduced, TPM computed).
    """

    ids: List[str]
    tpm: np.ndarray
    format: str
    first_data_line: int
    notes: List[str] = field(default_factory=list)


class _Where:
    """Builds the one-line messages of one sample's file."""

    def __init__(self, path: str, sample: str):
        self.path, self.sample = path, sample

    def error(self, line, text) -> InputError:
        place = f"{self.path}:{line}" if line else self.path
        return InputError(f"{place}: sample {self.sample}: {text}")


def read_quantification(path: str, sample: str, column: Optional[str] = None) -> Quantification:
    """Read one sample's quantification file, whatever its format (see the module docstring).

    Args:
        path: the file (plain, gzip, or kallisto HDF5).
        sample: the sample's name, for messages and to pick its column in a multi-sample IsoQuant table.
        column: the TPM column to use in a multi-sample table (default: the one named ``sample``).
    """
    where = _Where(path, sample)
    magic = _magic(path, where)
    if magic.startswith(HDF5_SIGNATURE):
        return _read_kallisto_h5(path, where)
    try:
        with open_text(path, "quantification file", errors="replace") as stream:
            return _read_text(stream, where, column or sample)
    except COMPRESSED_STREAM_ERRORS as exc:
        raise where.error(None, f"the file is truncated or corrupt ({exc or type(exc).__name__}); write it "
                                "again") from None


def _magic(path, where):
    try:
        with open(path, "rb") as probe:
            return probe.read(len(HDF5_SIGNATURE))
    except FileNotFoundError:
        raise where.error(None, "file not found (paths in the sample sheet are relative to the sheet's "
                                "folder)") from None
    except IsADirectoryError:
        raise where.error(None, "is a folder; name the quantification file inside it (quant.sf, abundance.tsv, "
                                "...)") from None
    except OSError as exc:
        raise where.error(None, f"cannot read the file: {exc.strerror}") from None


def reduce_name(name: str) -> str:
    """A GENCODE FASTA name (``ENST...|ENSG...|...|``) reduced to its transcript id; other names unchanged."""
    return name.split("|", 1)[0] if "|" in name else name


# ---------------------------------------------------------------------------------------------
# Text formats
# ---------------------------------------------------------------------------------------------


def _read_text(stream, where, column):
    first = stream.readline()
    if not first.strip():
        raise where.error(1, "the file is empty (or its first line is blank); expected a quantifier's header "
                             f"line: {KNOWN_LAYOUTS}")
    if first.startswith("#feature_id"):
        return _read_isoquant(stream, where, first, column)
    line_number, line = 1, first
    while line.startswith("#"):  # StringTie GTF header comments (# stringtie ..., # StringTie version ...)
        line = stream.readline()
        line_number += 1
        if not line:
            raise where.error(line_number - 1, "only comment lines; expected a quantifier's output")
    fields = line.rstrip("\r\n").split("\t")
    if _looks_like_gtf(fields):
        return _read_stringtie_gtf(stream, where, line, line_number)
    header = [cell.strip() for cell in fields]
    if header[:2] == ["gene_id", "transcript_id(s)"]:
        raise where.error(line_number, "RSEM gene-level results (*.genes.results); give the transcript-level "
                                       "*.isoforms.results of the same run")
    for layout in _TABULAR:
        if header and header[0] == layout.id_column and sum(name in header for name in layout.signature) >= 2:
            return _read_tabular(stream, where, header, line_number, layout)
    shown = "\t".join(header[:8])[:120].replace("\t", " ")
    raise where.error(line_number, f"unrecognised format: its header ({shown!r}) is none of the known "
                                   f"layouts: {KNOWN_LAYOUTS}")


def _looks_like_gtf(fields):
    return (len(fields) == 9 and fields[3].strip().isdigit() and fields[4].strip().isdigit()
            and ('transcript_id "' in fields[8] or 'gene_id "' in fields[8]))


def _parse_value(where, line_number, identifier, text, what="TPM"):
    cell = text.strip()
    try:
        value = float(cell)
    except ValueError:
        raise where.error(line_number, f"{what} {cell or 'empty'!r} of transcript {identifier} is not a "
                                       "number") from None
    if not math.isfinite(value):
        raise where.error(line_number, f"{what} {cell!r} of transcript {identifier} is not a finite number")
    if value < 0:
        raise where.error(line_number, f"negative {what} {cell} for transcript {identifier}; {what} cannot be "
                                       "negative (is this the right column or file?)")
    return value


class _Rows:
    """Collects (id, value) rows, reducing GENCODE names and refusing an id given twice."""

    def __init__(self, where):
        self.where = where
        self.ids: List[str] = []
        self.values: List[float] = []
        self.line_of: Dict[str, int] = {}
        self.reduced = 0
        self.first_line = 0

    def add(self, line_number, name, value_text, what="TPM"):
        name = name.strip()
        if not name:
            raise self.where.error(line_number, "empty transcript id")
        identifier = reduce_name(name)
        if identifier != name:
            self.reduced += 1
        if identifier in self.line_of:
            raise self.where.error(line_number, f"transcript {identifier} already appears on line "
                                                f"{self.line_of[identifier]}; give one row per transcript")
        self.line_of[identifier] = line_number
        self.first_line = self.first_line or line_number
        self.values.append(_parse_value(self.where, line_number, identifier, value_text, what))
        self.ids.append(identifier)

    def result(self, format_name, notes=()):
        if not self.ids:
            raise self.where.error(None, f"no transcripts below the header of this {format_name} file")
        notes = list(notes)
        if self.reduced:
            notes.append(f"{self.reduced:,} GENCODE names (ENST...|ENSG...|...) reduced to their transcript id")
        return Quantification(ids=self.ids, tpm=np.array(self.values, dtype=np.float64), format=format_name,
                              first_data_line=self.first_line, notes=notes)


def _read_tabular(stream, where, header, header_line, layout):
    if layout.value_column not in header:
        raise where.error(header_line, f"{layout.name} without a {layout.value_column} column (header: "
                                       f"{' '.join(header)}); give the quantifier's unmodified output")
    id_index = 0 if layout.name != STRINGTIE_CTAB else _index(where, header_line, header, "t_name")
    value_index = header.index(layout.value_column)
    width = len(header)
    rows = _Rows(where)
    for line_number, line in enumerate(stream, start=header_line + 1):
        if not line.strip():
            continue
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) != width:
            raise where.error(line_number, f"expected {width} tab-separated fields like the header, found "
                                           f"{len(cells)}")
        rows.add(line_number, cells[id_index], cells[value_index],
                 what="FPKM" if layout.value_is_fpkm else "TPM")
    if not layout.value_is_fpkm:
        return rows.result(layout.name)
    quantification = rows.result(layout.name, ["TPM computed from FPKM (TPM = FPKM / sum(FPKM) * 1e6): "
                                               "t_data.ctab has no TPM column"])
    quantification.tpm = _normalise(quantification.tpm)
    return quantification


def _index(where, line_number, header, name):
    if name not in header:
        raise where.error(line_number, f"no {name} column in the header ({' '.join(header)})")
    return header.index(name)


def _normalise(rates):
    """``rates / sum(rates) * 1e6``; all zeros stay zeros (a sample without reads)."""
    total = float(rates.sum())
    return rates / total * MILLION if total > 0 else np.zeros_like(rates)


def _read_isoquant(stream, where, first, column):
    header = [cell.strip() for cell in first.rstrip("\r\n").split("\t")]
    columns = header[1:]
    if not columns:
        raise where.error(1, "IsoQuant table without value columns after #feature_id")
    if columns == ["TPM"]:
        value_index = 1
    elif len(columns) == 1 and columns[0].lower() in ("count", "counts"):
        raise where.error(1, "IsoQuant read counts, not TPM (no TPM column); give the *transcript_tpm.tsv "
                             "(or *transcript_model_tpm.tsv) of the same run")
    elif "group_id" in columns:
        raise where.error(1, "IsoQuant grouped counts in linear format (no TPM column); give the grouped "
                             "*_tpm.tsv matrix")
    elif column in columns:
        value_index = header.index(column)
    else:
        shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
        raise where.error(1, f"IsoQuant table with {len(columns)} TPM columns ({shown}) and none named "
                             f"{column!r}; name the sample after its column in the sample sheet")
    rows = _Rows(where)
    for line_number, line in enumerate(stream, start=2):
        if not line.strip() or line.startswith("__"):  # older IsoQuant: __ambiguous, __no_feature ... lines
            continue
        cells = line.rstrip("\r\n").split("\t")
        if len(cells) != len(header):
            raise where.error(line_number, f"expected {len(header)} tab-separated fields like the header, found "
                                           f"{len(cells)}")
        rows.add(line_number, cells[0], cells[value_index])
    note = [] if columns == ["TPM"] else [f"column {column!r} of {len(columns)}"]
    return rows.result(ISOQUANT, note)


def _read_stringtie_gtf(stream, where, first_line, first_number):
    rows = _Rows(where)
    transcripts_without_tpm = 0
    for line_number, line in _numbered(first_line, first_number, stream):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 9:
            raise where.error(line_number, f"a GTF line has 9 tab-separated fields, this one {len(fields)}")
        if fields[2] != "transcript":
            continue
        attributes = dict(_ATTRIBUTE.findall(fields[8]))
        identifier = attributes.get("transcript_id")
        if not identifier:
            raise where.error(line_number, "transcript line without a transcript_id attribute")
        if "TPM" not in attributes:
            transcripts_without_tpm += 1
            if not rows.ids:
                raise where.error(line_number, "GTF transcript line without a TPM attribute: this is not "
                                               "StringTie output (stringtie -e -G ref.gtf writes cov, FPKM and "
                                               "TPM on every transcript line); is it the annotation itself?")
            raise where.error(line_number, f"transcript {identifier} has no TPM attribute, unlike those above it")
        rows.add(line_number, identifier, attributes["TPM"])
    if not rows.ids:
        raise where.error(None, "GTF without transcript lines carrying TPM; give the GTF that stringtie -e writes "
                                "(-o), or its t_data.ctab")
    return rows.result(STRINGTIE_GTF)


def _numbered(first_line, first_number, stream):
    yield first_number, first_line
    yield from enumerate(stream, start=first_number + 1)


# ---------------------------------------------------------------------------------------------
# kallisto HDF5
# ---------------------------------------------------------------------------------------------

KALLISTO_DATASETS = ("aux/ids", "est_counts", "aux/eff_lengths", "aux/lengths")


def _read_kallisto_h5(path, where):
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise where.error(None, f"cannot open the HDF5 file ({exc}); is it complete?") from None
    with handle:
        missing = [name for name in KALLISTO_DATASETS if name not in handle]
        if missing:
            raise where.error(None, f"unrecognised format: an HDF5 file without kallisto's /{', /'.join(missing)} "
                                    "(kallisto quant writes /est_counts, /aux/ids, /aux/eff_lengths, "
                                    "/aux/lengths in abundance.h5)")
        names = [_text(name) for name in handle["aux/ids"][()]]
        counts = np.asarray(handle["est_counts"][()], dtype=np.float64).reshape(-1)
        eff_lengths = np.asarray(handle["aux/eff_lengths"][()], dtype=np.float64).reshape(-1)
    if not (len(names) == len(counts) == len(eff_lengths)):
        raise where.error(None, f"/aux/ids has {len(names)} entries, /est_counts {len(counts)} and "
                                f"/aux/eff_lengths {len(eff_lengths)}; the file is damaged")
    bad = ~np.isfinite(counts) | (counts < 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise where.error(None, f"/est_counts[{k}] = {counts[k]:g} for transcript {reduce_name(names[k])}; "
                                "estimated counts must be finite and >= 0")
    valid = np.isfinite(eff_lengths) & (eff_lengths > 0)
    rates = np.where(valid, counts / np.where(valid, eff_lengths, 1.0), 0.0)
    ids, entry_of, reduced = [], {}, 0
    for position, name in enumerate(names):
        identifier = reduce_name(name.strip())
        reduced += identifier != name
        if identifier in entry_of:
            raise where.error(None, f"/aux/ids entries {entry_of[identifier]} and {position} are both transcript "
                                    f"{identifier}; give one entry per transcript")
        entry_of[identifier] = position
        ids.append(identifier)
    if not ids:
        raise where.error(None, "kallisto HDF5 file without targets (/aux/ids is empty)")
    notes = ["TPM computed from /est_counts and /aux/eff_lengths as kallisto does (rate = counts / eff_length, "
             "TPM = rate / sum(rate) * 1e6)"]
    if reduced:
        notes.append(f"{reduced:,} GENCODE names (ENST...|ENSG...|...) reduced to their transcript id")
    return Quantification(ids=ids, tpm=_normalise(rates), format=KALLISTO_H5, first_data_line=0, notes=notes)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def format_names() -> Sequence[str]:
    """The formats this module recognises, for help texts."""
    return (SALMON, KALLISTO_TSV, KALLISTO_H5, RSEM, STRINGTIE_GTF, STRINGTIE_CTAB, ISOQUANT)
