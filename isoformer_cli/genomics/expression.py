"""Observed expression tables (transcripts x tissues) for ``isoformer finetune`` and ``isoformer evaluate``.

Two layouts are read, plain or gzip-compressed:

* **Matrix** (TSV, or CSV when the name ends in ``.csv`` / ``.csv.gz``): a header line, then one row per
  transcript. The first column holds transcript ids (any header name); columns named ``gene_id``,
  ``gene_name`` or ``description`` (any case) are annotation; every other column is a tissue. Lines
  starting with ``#`` before the header are comments. Values are TPM (``values="tpm"``, the default),
  turned into ``log(TPM + 1)`` (natural log, the model's units); with ``values="log1p"`` they are taken
  as already transformed and used as they are.
* **GCT v1.2** (GTEx, e.g. ``GTEx_Analysis_2017-06-05_v8_RSEMv1.3.0_transcript_tpm.gct.gz``): line 1
  ``#1.2``, line 2 ``<rows> <samples>``, line 3 ``Name Description <sample ids...>``, then one row per
  transcript of TPM per *sample*. A sample -> tissue table (``samples``; GTEx's
  ``SampleAttributesDS.txt``: columns ``SAMPID`` and ``SMTS``, the 30 tissue types the official model
  predicts) says which tissue each sample belongs to. Per transcript and tissue the value is
  ``log(mean TPM over the tissue's samples + 1)``: the log of the donor mean, as the IsoFormer paper
  averaged GTEx v8 (not the mean of the logs, which would be smaller for skewed expression). Samples
  missing from the table are left out and counted.
* **Sample sheet** (a header naming ``sample``, ``path`` and ``tissue``/``condition`` columns): one
  quantification file per sample (salmon, kallisto, RSEM, StringTie, IsoQuant), aggregated the same way
  per condition by :mod:`isoformer_cli.genomics.sample_sheet`.

Values are checked while reading: an empty, ``NA``/``NaN`` or non-numeric cell, a negative TPM, a
duplicated transcript id or tissue name is an :class:`~isoformer_cli.errors.InputError` naming the file,
line and column. A GCT file is streamed row by row (the GTEx file holds ~200k transcripts x ~17k
samples); with ``keep`` only the rows whose id matches are parsed.

Matching to annotation ids (:func:`match_transcripts`): an exact id match first; otherwise ids are
compared without a numeric version suffix (``ENST00000456328.2`` ~ ``ENST00000456328``,
``NM_001284497.1`` ~ ``NM_001284497``), provided that the unversioned id is unique on both sides.

This module never imports torch.
"""

import csv
import logging
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.genomics.compressed import COMPRESSED_STREAM_ERRORS, compressed_read_errors, open_text
from isoformer_cli.genomics.sample_sheet import is_sample_sheet, read_sample_sheet, read_sheet_expression
from isoformer_cli.genomics.selection import strip_version
from isoformer_cli.genomics.sniff import EXPRESSION_KINDS, wrong_kind_message

log = logging.getLogger(__name__)

VALUE_KINDS = ("tpm", "log1p")
ANNOTATION_COLUMNS = ("gene_id", "gene_name", "description")
GCT_MAGIC = "#1.2"
MISSING_TEXT = frozenset({"", "na", "nan", "n/a", "null", "none", "-"})
DEFAULT_SAMPLE_COLUMNS = ("SAMPID", "sample_id", "sample")
DEFAULT_TISSUE_COLUMNS = ("SMTS", "tissue")


@dataclass
class ExpressionTable:
    """Observed expression of transcripts in tissues.

    Attributes:
        ids: transcript ids as written in the file, in file order (n,).
        tissues: tissue names, in column order (T,).
        values: float32 (n, T), log(TPM + 1) (or the file's own values with ``values="log1p"``).
        gene_ids: per transcript, the ``gene_id`` column (GCT: ``Description``), or None without one.
        source: the file, for messages.
        skipped_rows: rows not kept because their id matched nothing in ``keep``.
        skipped_examples: the first few ids of those rows (for messages).
        notes: one-line remarks on how the table was built (logged by the caller).
    """

    ids: List[str]
    tissues: List[str]
    values: np.ndarray
    source: str
    gene_ids: Optional[List[str]] = None
    skipped_rows: int = 0
    skipped_examples: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __len__(self):
        return len(self.ids)


@dataclass(frozen=True)
class ExpressionInput:
    """The options that name an expression table (what the CLI collects; picklable)."""

    path: str
    values: str = "tpm"
    samples: Optional[str] = None
    sample_column: Optional[str] = None
    tissue_column: Optional[str] = None
    condition_column: Optional[str] = None

    def read(self, keep=None):
        """:func:`read_expression` with these options."""
        return read_expression(self.path, values=self.values, samples=self.samples,
                               sample_column=self.sample_column, tissue_column=self.tissue_column, keep=keep,
                               condition_column=self.condition_column)

    def input_files(self):
        """``(role, path)`` of every file read: the table, ``--samples``, and a sample sheet's quantifications."""
        files = [("--expression", self.path), ("--samples", self.samples)]
        if is_sample_sheet(self.path):
            files += [(f"--expression sample {entry.sample}", entry.path)
                      for entry in read_sample_sheet(self.path, self.condition_column)]
        return [(role, path) for role, path in files if path]


def read_expression(path, values="tpm", samples=None, sample_column=None, tissue_column=None, keep=None,
                    condition_column=None):
    """Read an expression matrix, a GCT file plus its sample table, or a sample sheet (see the module docstring).

    Args:
        path: TSV/CSV matrix or GCT v1.2 file (plain or gzip).
        values: ``"tpm"`` (transform with log1p) or ``"log1p"`` (use as given); matrices only.
        samples: sample -> tissue table, required for GCT and refused otherwise.
        sample_column / tissue_column: column names in ``samples`` (default: ``SAMPID`` / ``SMTS`` when
            present, else the first / second column).
        keep: optional iterable of transcript ids; rows matching none of them (exactly or without
            version) are skipped and counted (saves parsing most of a GTEx-sized GCT file).
        condition_column: the condition column of a sample sheet (default ``tissue``, else ``condition``).

    Returns:
        An :class:`ExpressionTable`.
    """
    check_choice("--values", values, VALUE_KINDS)
    path = os.fspath(path)
    wanted = _IdKeys(keep) if keep is not None else None
    if is_sample_sheet(path):
        return _read_sheet(path, values, samples, condition_column, wanted)
    if condition_column is not None:
        raise InputError(f"{path}: --condition-column is for a sample sheet (a header with sample, path and a "
                         "condition column); this file is not one")
    try:
        return _read_expression(path, values, samples, sample_column, tissue_column, wanted)
    except COMPRESSED_STREAM_ERRORS as exc:
        raise InputError(f"{path}: the compressed file is damaged ({exc}); download it again") from None
    except InputError:
        # Another kind of file altogether (a BAM, a FASTA, an Excel workbook...): say which. Any text we
        # cannot name may be a table, and then the reader's own message stands.
        wrong = wrong_kind_message(path, EXPRESSION_KINDS, "an expression table")
        if wrong:
            raise InputError(f"{wrong}; --expression takes a TSV/CSV table (transcript id, then one column per "
                             "tissue) or a GCT file, plain or gzip") from None
        raise


def _read_sheet(path, values, samples, condition_column, wanted):
    if samples is not None:
        raise InputError(f"{path}: a sample sheet names each sample's condition itself; leave out --samples")
    if values != "tpm":
        raise InputError(f"{path}: a sample sheet's quantifications hold TPM; leave out --values {values}")
    sheet = read_sheet_expression(path, condition_column=condition_column, keep=wanted)
    return ExpressionTable(ids=sheet.ids, tissues=sheet.conditions, values=sheet.log1p_values(), source=path,
                           skipped_rows=sheet.skipped_rows, skipped_examples=sheet.skipped_examples, notes=sheet.notes)


def _read_expression(path, values, samples, sample_column, tissue_column, wanted):
    with open_text(path, "expression table", errors="replace") as stream:
        first = stream.readline()
        if first.rstrip("\r\n").strip() == GCT_MAGIC:
            if samples is None:
                raise InputError(
                    f"{path}: a GCT file holds TPM per sample; give the sample -> tissue table with --samples "
                    "(GTEx: SampleAttributesDS.txt)"
                )
            if values != "tpm":
                raise InputError(f"{path}: GCT files hold TPM; leave out --values {values}")
            sample_tissues = read_sample_tissues(samples, sample_column, tissue_column)
            return _read_gct(path, stream, sample_tissues, wanted)
        if samples is not None:
            raise InputError(
                f"{path}: not a GCT v1.2 file (its first line is not '{GCT_MAGIC}'); --samples only goes with "
                "a GCT file of TPM per sample"
            )
        return _read_matrix(path, first, stream, values, wanted)


# ---------------------------------------------------------------------------------------------
# Matrix
# ---------------------------------------------------------------------------------------------


def _delimiter_for(path):
    name = path[:-3] if path.endswith(".gz") else path
    return "," if name.lower().endswith(".csv") else "\t"


def _read_matrix(path, first, stream, values, wanted):
    delimiter = _delimiter_for(path)
    reader = csv.reader(_chain_first(first, stream), delimiter=delimiter)
    line_number, header = 0, None
    for row in reader:
        line_number = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
            continue
        header = [cell.strip() for cell in row]
        break
    if header is None:
        raise InputError(f"{path}: no header line; the expression table is empty")
    header_line = line_number
    annotation = {index: name.lower() for index, name in enumerate(header) if index and
                  name.lower() in ANNOTATION_COLUMNS}
    tissue_columns = [index for index in range(1, len(header)) if index not in annotation]
    tissues = [header[index] for index in tissue_columns]
    if not tissues:
        separator = "commas" if delimiter == "," else "tabs"
        raise InputError(
            f"{path}:{header_line}: no tissue columns in the header (fields separated by {separator}; "
            "expected: transcript id, then one column per tissue)"
        )
    _check_unique_names(path, header_line, tissues)
    gene_column = next((index for index, name in annotation.items() if name == "gene_id"), None)

    ids, gene_ids, rows, first_line_of = [], [], [], {}
    skipped, skipped_examples = 0, []
    for row in reader:
        line_number = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise InputError(
                f"{path}:{line_number}: expected {len(header)} fields like the header, found {len(row)}"
                + (" (is it comma-separated? name it .csv)" if delimiter == "\t" and "," in row[0] else "")
            )
        transcript_id = row[0].strip()
        if not transcript_id:
            raise InputError(f"{path}:{line_number}: empty transcript id in the first column")
        if transcript_id in first_line_of:
            raise InputError(
                f"{path}:{line_number}: transcript {transcript_id} already appears on line "
                f"{first_line_of[transcript_id]}; give one row per transcript"
            )
        first_line_of[transcript_id] = line_number
        if wanted is not None and not wanted.matches(transcript_id):
            skipped += 1
            if len(skipped_examples) < 3:
                skipped_examples.append(transcript_id)
            continue
        numbers = [_number(path, line_number, transcript_id, tissues[k], row[index])
                   for k, index in enumerate(tissue_columns)]
        if values == "tpm":
            for k, number in enumerate(numbers):
                if number < 0:
                    raise InputError(
                        f"{path}:{line_number}: negative TPM {row[tissue_columns[k]].strip()} for transcript "
                        f"{transcript_id} in tissue {tissues[k]!r}; TPM cannot be negative (if the table is "
                        "already log-transformed, use --values log1p)"
                    )
        ids.append(transcript_id)
        gene_ids.append(row[gene_column].strip() if gene_column is not None else "")
        rows.append(numbers)
    if not ids and not skipped:
        raise InputError(f"{path}: the header has no data rows below it; the expression table is empty")
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(tissues))
    warn_about_value_scale(path, matrix, values, ids, tissues)
    if values == "tpm":
        matrix = np.log1p(matrix)
    notes = [f"{len(ids):,} transcripts x {len(tissues)} tissues from {path} "
             f"({'log(TPM+1) of the TPM values' if values == 'tpm' else 'values used as given (--values log1p)'})"
             + _skipped_note(skipped)]
    return ExpressionTable(ids=ids, tissues=tissues, values=matrix.astype(np.float32), source=path,
                           gene_ids=gene_ids if gene_column is not None else None, skipped_rows=skipped,
                           skipped_examples=skipped_examples, notes=notes)


# TPM are parts per million, so no TPM exceeds 10^6: a log(TPM + 1) is at most ln(10^6 + 1) = 13.8, and
# log2(TPM + 1) at most 19.9. A "log1p" value above the larger ceiling cannot be a log of a TPM at all.
LOG1P_CEILING = math.log2(1e6 + 1)
# A TPM table whose every value stays below ln(10^6 + 1) looks like logs; only said for tables of at least this
# many values (a few rows of lowly expressed transcripts may truly be all small TPM).
LOG_LOOKING_MIN_VALUES = 1000


def warn_about_value_scale(path, matrix, values, ids, tissues):
    """Warn when the values of a matrix (n, T), as read, do not look like what ``values`` says they are:
    ``log1p`` values above :data:`LOG1P_CEILING` (those are TPM), or ``tpm`` values of a table of at least
    :data:`LOG_LOOKING_MIN_VALUES` values that all stay within ``[0, ln(10^6 + 1)]`` (those look like logs)."""
    if matrix.size == 0:
        return
    row, column = np.unravel_index(int(np.argmax(matrix)), matrix.shape)
    largest = float(matrix[row, column])
    if values == "log1p" and largest > LOG1P_CEILING:
        log.warning("%s: --values log1p, but values go up to %.6g (transcript %s, tissue %s), more than any "
                    "log(TPM+1) can be (%.1f; %.1f in log2, since TPM never exceed 10^6): the table looks like TPM; "
                    "if so, rerun with --values tpm", path, largest, ids[row], tissues[column],
                    math.log1p(1e6), LOG1P_CEILING)
    elif values == "tpm" and matrix.size >= LOG_LOOKING_MIN_VALUES and largest <= math.log1p(1e6):
        log.warning("%s: every one of its %s values is at most %.6g: they look like log(TPM+1), not TPM; if so, "
                    "rerun with --values log1p", path, f"{matrix.size:,}", largest)


def _skipped_note(skipped):
    return f"; {skipped:,} more rows match no selected transcript and were not read" if skipped else ""


def _number(path, line_number, transcript_id, tissue, text):
    """The float in ``text``; InputError for an empty/NA/non-numeric/infinite cell."""
    cell = text.strip()
    if cell.lower() in MISSING_TEXT:
        raise InputError(
            f"{path}:{line_number}: missing value ({cell or 'empty'!r}) for transcript {transcript_id} in tissue "
            f"{tissue!r}; fill it in (0 for unexpressed) or leave the transcript out"
        )
    try:
        number = float(cell)
    except ValueError:
        raise InputError(
            f"{path}:{line_number}: value {cell!r} for transcript {transcript_id} in tissue {tissue!r} is not a "
            "number"
        ) from None
    if not math.isfinite(number):
        raise InputError(
            f"{path}:{line_number}: value {cell!r} for transcript {transcript_id} in tissue {tissue!r} is not a "
            "finite number"
        )
    return number


def _check_unique_names(path, line_number, names, what="tissue"):
    seen = set()
    for name in names:
        if not name:
            raise InputError(f"{path}:{line_number}: a {what} column has an empty name")
        if name in seen:
            raise InputError(f"{path}:{line_number}: {what} column {name!r} appears twice")
        seen.add(name)


# ---------------------------------------------------------------------------------------------
# GCT v1.2 + sample table
# ---------------------------------------------------------------------------------------------


def read_sample_tissues(path, sample_column=None, tissue_column=None):
    """``{sample id: tissue}`` from a sample annotation table (TSV, or CSV by name).

    Samples whose tissue cell is empty are left out. A sample listed twice with different tissues is
    an InputError.
    """
    path = os.fspath(path)
    delimiter = _delimiter_for(path)
    with open_text(path, "sample table", errors="replace") as stream, compressed_read_errors(path, "sample table"):
        reader = csv.reader(stream, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise InputError(f"{path}: the sample table is empty; expected a header with sample and tissue columns")
        header = [cell.strip() for cell in header]
        sample_index = _column_index(path, header, sample_column, DEFAULT_SAMPLE_COLUMNS, 0, "--sample-column")
        tissue_index = _column_index(path, header, tissue_column, DEFAULT_TISSUE_COLUMNS, 1, "--tissue-column")
        if sample_index == tissue_index:
            raise InputError(f"{path}: the sample and tissue columns are the same column ({header[sample_index]!r})")
        tissues, lines = {}, {}
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) <= max(sample_index, tissue_index):
                raise InputError(f"{path}:{reader.line_num}: expected at least "
                                 f"{max(sample_index, tissue_index) + 1} fields, found {len(row)}")
            sample, tissue = row[sample_index].strip(), row[tissue_index].strip()
            if not sample or not tissue:
                continue
            if sample in tissues and tissues[sample] != tissue:
                raise InputError(
                    f"{path}:{reader.line_num}: sample {sample} is {tissue!r} here but {tissues[sample]!r} on line "
                    f"{lines[sample]}"
                )
            tissues[sample] = tissue
            lines.setdefault(sample, reader.line_num)
    if not tissues:
        raise InputError(f"{path}: no sample has a tissue in column {header[tissue_index]!r}")
    return tissues


def _column_index(path, header, requested, defaults, fallback, option):
    if requested is not None:
        if requested not in header:
            raise InputError(f"{path}: no column {requested!r} ({option}); the header has: {', '.join(header)}")
        return header.index(requested)
    for name in defaults:
        if name in header:
            return header.index(name)
    if fallback >= len(header):
        raise InputError(f"{path}: the sample table needs a sample and a tissue column; the header has "
                         f"{len(header)} field(s)")
    return fallback


def _read_gct(path, stream, sample_tissues, wanted):
    dims_line = stream.readline()
    try:
        declared_rows, declared_samples = (int(part) for part in dims_line.split()[:2])
    except ValueError:
        raise InputError(f"{path}:2: a GCT v1.2 file has '<rows> <columns>' on line 2, found {dims_line.strip()!r}") \
            from None
    header = stream.readline().rstrip("\r\n").split("\t")
    if len(header) < 3:
        raise InputError(f"{path}:3: the GCT header needs Name, Description and sample columns")
    sample_ids = header[2:]
    if len(sample_ids) != declared_samples:
        raise InputError(f"{path}:3: line 2 declares {declared_samples} samples but the header names {len(sample_ids)}")
    _check_unique_names(path, 3, sample_ids, what="sample")
    tissues = sorted({sample_tissues[sample] for sample in sample_ids if sample in sample_tissues})
    if not tissues:
        raise InputError(
            f"{path}: none of its {len(sample_ids):,} samples is in the sample table (e.g. {sample_ids[0]}); "
            "check --samples and --sample-column"
        )
    tissue_number = {tissue: k for k, tissue in enumerate(tissues)}
    # Column positions (within the sample columns) that have a tissue, and that tissue's number.
    used = np.array([k for k, sample in enumerate(sample_ids) if sample in sample_tissues], dtype=np.int64)
    tissue_of_used = np.array([tissue_number[sample_tissues[sample_ids[k]]] for k in used], dtype=np.int64)
    samples_per_tissue = np.bincount(tissue_of_used, minlength=len(tissues)).astype(np.float64)
    unassigned = len(sample_ids) - len(used)

    ids, gene_ids, rows, first_line_of = [], [], [], {}
    line_number, data_rows, skipped, skipped_examples = 3, 0, 0, []
    for line in stream:
        line_number += 1
        if not line.strip():
            continue
        data_rows += 1
        name, description, rest = (line.rstrip("\r\n").split("\t", 2) + ["", ""])[:3]
        if name in first_line_of:
            raise InputError(f"{path}:{line_number}: transcript {name} already appears on line {first_line_of[name]}")
        first_line_of[name] = line_number
        if wanted is not None and not wanted.matches(name):
            skipped += 1
            if len(skipped_examples) < 3:
                skipped_examples.append(name)
            continue
        cells = rest.split("\t")
        if len(cells) != len(sample_ids):
            raise InputError(f"{path}:{line_number}: expected {len(sample_ids) + 2} fields, found {len(cells) + 2}")
        try:
            tpm = np.array(cells, dtype=np.float64)
        except ValueError:
            bad = next(cell for cell in cells if not _is_float(cell))
            raise InputError(f"{path}:{line_number}: value {bad!r} of transcript {name} is not a number") from None
        _check_gct_values(path, line_number, name, tpm, sample_ids)
        sums = np.bincount(tissue_of_used, weights=tpm[used], minlength=len(tissues))
        ids.append(name)
        gene_ids.append(description)
        rows.append(np.log1p(sums / samples_per_tissue))
    if data_rows != declared_rows:
        raise InputError(f"{path}: line 2 declares {declared_rows:,} rows but the file has {data_rows:,} "
                         "(truncated download?)")
    if not data_rows:
        raise InputError(f"{path}: the GCT file has no data rows")
    values = np.array(rows, dtype=np.float32).reshape(len(rows), len(tissues))
    notes = [
        f"{len(ids):,} transcripts x {len(tissues)} tissues from {path}: log(mean TPM + 1) over "
        f"{len(used):,} samples ({int(samples_per_tissue.min())}-{int(samples_per_tissue.max())} per tissue)"
        + _skipped_note(skipped)
    ]
    if unassigned:
        notes.append(f"{unassigned:,} of {len(sample_ids):,} samples of {path} have no tissue in the sample table "
                     "and were left out")
    return ExpressionTable(ids=ids, tissues=tissues, values=values, source=path, gene_ids=gene_ids,
                           skipped_rows=skipped, skipped_examples=skipped_examples, notes=notes)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_gct_values(path, line_number, name, tpm, sample_ids):
    bad = ~np.isfinite(tpm)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}:{line_number}: missing or non-finite TPM for transcript {name} in sample "
                         f"{sample_ids[k]}; GCT values must all be numbers")
    negative = tpm < 0
    if negative.any():
        k = int(np.flatnonzero(negative)[0])
        raise InputError(f"{path}:{line_number}: negative TPM {tpm[k]:g} for transcript {name} in sample "
                         f"{sample_ids[k]}; TPM cannot be negative")


# ---------------------------------------------------------------------------------------------
# Matching transcript ids
# ---------------------------------------------------------------------------------------------


class _IdKeys:
    """Fast test "does this expression id match one of these transcript ids (exactly or unversioned)"."""

    def __init__(self, ids):
        self.keys = set()
        for identifier in ids:
            self.keys.add(identifier)
            self.keys.add(strip_version(identifier))

    def matches(self, identifier):
        return identifier in self.keys or strip_version(identifier) in self.keys




def _chain_first(first, stream):
    yield first
    yield from stream
