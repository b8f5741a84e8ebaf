"""A sample sheet of per-sample quantifications, aggregated into a transcripts x conditions table.

The sheet is a TSV or CSV file (the delimiter is the header line's: a tab, else a comma), plain or gzip,
with a header naming at least these columns (any order, any case; more columns are ignored)::

    sample   path                       tissue
    liver_1  salmon/liver_1/quant.sf    Liver
    liver_2  salmon/liver_2/quant.sf    Liver
    brain_1  kallisto/brain_1/abundance.h5  Brain

* ``sample``: a unique name per sample (it also picks the sample's column in a multi-sample IsoQuant table);
* ``path``: the sample's quantification file, relative to the sheet's folder (or absolute), in any format of
  :mod:`isoformer_cli.genomics.quantifications` (recognised from its content);
* the condition: the column named by ``condition_column`` (``--condition-column``), else ``tissue``, else
  ``condition``. Conditions become the table's columns, in order of first appearance.

Per transcript and condition the value is ``log(mean TPM over the condition's samples + 1)`` (natural log):
the log of the mean, as for a GTEx GCT file (:mod:`isoformer_cli.genomics.expression`), not the mean of the
logs. A transcript absent from a sample's file counts as 0 TPM in that sample (quantifiers that list only
expressed transcripts, StringTie without ``-e`` or IsoQuant, leave them out); such entries are counted.

Refused, each with one line naming the sheet line or the sample's file and line: a missing column, an empty
cell, a sample listed twice or in two conditions, a missing or unreadable path, one file given for two samples
(except a multi-sample IsoQuant table, one column per sample), and every error of the file readers. With
``keep`` (the annotation's or prediction's transcript ids), a sample none of whose ids match is reported with
the kind of ids it holds (gene ids, RefSeq ids, StringTie's own MSTRG ids, ...): an error when no sample
matches, a warning note otherwise; StringTie novel transcripts (``MSTRG.*``) are counted among the unmatched.

This module never imports torch.
"""

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.compressed import compressed_read_errors, open_text
from isoformer_cli.genomics.id_kinds import describe_id_kind, is_stringtie_novel
from isoformer_cli.genomics.quantifications import ISOQUANT, read_quantification

SAMPLE_COLUMN = "sample"
PATH_COLUMN = "path"
DEFAULT_CONDITION_COLUMNS = ("tissue", "condition")


@dataclass(frozen=True)
class SheetSample:
    """One row of the sheet: the sample, its condition, its file (resolved and as written) and the sheet line."""

    sample: str
    condition: str
    path: str
    written_path: str
    line: int


@dataclass
class SheetExpression:
    """The aggregated table of a sample sheet.

    Attributes:
        sheet: the sheet's path.
        ids: transcript ids (n,), in order of first appearance over the samples in sheet order.
        conditions: condition names (C,), in order of first appearance in the sheet.
        mean_tpm: float64 (n, C), mean TPM over each condition's samples (absent = 0).
        samples: the sheet's rows, in sheet order.
        formats: sample -> the format its file was recognised as.
        skipped_rows / skipped_examples: with ``keep``, rows matching no kept id (count, first few ids).
        notes: one-line remarks for the log.
    """

    sheet: str
    ids: List[str]
    conditions: List[str]
    mean_tpm: np.ndarray
    samples: List[SheetSample]
    formats: Dict[str, str]
    skipped_rows: int = 0
    skipped_examples: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def log1p_values(self) -> np.ndarray:
        """float32 (n, C) ``log(mean TPM + 1)``, the model's units."""
        return np.log1p(self.mean_tpm).astype(np.float32)


def _open_text(path):
    return open_text(path, "sample sheet", errors="replace")


def _header_line(path):
    """The first line that is neither blank nor a ``#`` comment, and its number; None when there is none."""
    with _open_text(path) as stream, compressed_read_errors(path, "sample sheet"):
        for number, line in enumerate(stream, start=1):
            if line.strip() and not line.startswith("#"):
                return number, line.rstrip("\r\n")
    return None


def _split_header(line):
    delimiter = "\t" if "\t" in line else ","
    return delimiter, [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]


def is_sample_sheet(path) -> bool:
    """True when the file's header line names a ``sample`` and a ``path`` column (a sample sheet)."""
    try:
        found = _header_line(path)
    except (OSError, InputError):
        return False  # the table reader reports what is wrong with the file
    if found is None:
        return False
    names = {name.lower() for name in _split_header(found[1])[1]}
    return SAMPLE_COLUMN in names and PATH_COLUMN in names


def read_sample_sheet(path, condition_column: Optional[str] = None) -> List[SheetSample]:
    """The rows of a sample sheet (layout in the module docstring); InputError naming the line when one is bad."""
    path = os.fspath(path)
    found = _header_line(path)
    if found is None:
        raise InputError(f"{path}: the sample sheet is empty; expected a header with sample, path and tissue "
                         "(or condition) columns")
    header_line, line = found
    delimiter, header = _split_header(line)
    lowered = [name.lower() for name in header]
    sample_index = _column(path, header_line, header, lowered, SAMPLE_COLUMN)
    path_index = _column(path, header_line, header, lowered, PATH_COLUMN)
    if condition_column is not None:
        if condition_column not in header:
            raise InputError(f"{path}:{header_line}: no column {condition_column!r} (--condition-column); the "
                             f"header has: {', '.join(header)}")
        condition_index = header.index(condition_column)
    else:
        condition_index = next((lowered.index(name) for name in DEFAULT_CONDITION_COLUMNS if name in lowered), None)
        if condition_index is None:
            raise InputError(f"{path}:{header_line}: no tissue or condition column (header: {', '.join(header)}); "
                             "add one, or name yours with --condition-column")
    folder = os.path.dirname(os.path.abspath(path))
    samples: List[SheetSample] = []
    seen: Dict[str, SheetSample] = {}
    needed = max(sample_index, path_index, condition_index) + 1
    with _open_text(path) as stream, compressed_read_errors(path, "sample sheet"):
        reader = csv.reader(stream, delimiter=delimiter)
        for row in reader:
            number = reader.line_num
            if number <= header_line or not row or not "".join(row).strip() or row[0].startswith("#"):
                continue
            if len(row) < needed:
                raise InputError(f"{path}:{number}: expected at least {needed} fields like the header, found "
                                 f"{len(row)}" + (" (is it comma-separated?)" if delimiter == "\t" and "," in row[0]
                                                  else ""))
            sample, written, condition = (row[index].strip() for index in (sample_index, path_index, condition_index))
            for value, column in ((sample, header[sample_index]), (written, header[path_index]),
                                  (condition, header[condition_index])):
                if not value:
                    raise InputError(f"{path}:{number}: empty {column} cell" + (f" for sample {sample}" if sample
                                                                                 else ""))
            if sample in seen:
                earlier = seen[sample]
                if earlier.condition != condition:
                    raise InputError(f"{path}:{number}: sample {sample} is in two conditions: {condition!r} here "
                                     f"and {earlier.condition!r} on line {earlier.line}")
                raise InputError(f"{path}:{number}: sample {sample} is listed twice (also on line {earlier.line}); "
                                 "give each sample once, or name replicates apart")
            resolved = os.path.join(folder, os.path.expanduser(written))
            entry = SheetSample(sample=sample, condition=condition, path=resolved, written_path=written, line=number)
            seen[sample] = entry
            samples.append(entry)
    if not samples:
        raise InputError(f"{path}: the sample sheet has no samples below its header")
    return samples


def _column(path, line, header, lowered, name):
    if name not in lowered:
        raise InputError(f"{path}:{line}: no {name!r} column in the sample sheet header ({', '.join(header)}); "
                         "expected sample, path and tissue (or condition) columns")
    return lowered.index(name)


def read_sheet_expression(path, condition_column: Optional[str] = None, keep=None) -> SheetExpression:
    """Read every sample of the sheet and aggregate them per condition (see the module docstring).

    Args:
        path: the sample sheet.
        condition_column: the condition column (default ``tissue``, else ``condition``).
        keep: optional object with ``matches(id) -> bool`` (the ids to keep, e.g. the annotation's); rows it
            rejects are left out of the table and counted.
    """
    path = os.fspath(path)
    samples = read_sample_sheet(path, condition_column)
    conditions = list(dict.fromkeys(sample.condition for sample in samples))
    column_of = {condition: k for k, condition in enumerate(conditions)}
    samples_per_condition = np.array([sum(s.condition == c for s in samples) for c in conditions], dtype=np.float64)
    table = _Accumulator(len(conditions))
    formats: Dict[str, str] = {}
    file_of: Dict[str, SheetSample] = {}
    remarks: Dict[str, List[str]] = {}
    unmatched_samples = []
    for sample in samples:
        _check_path(path, sample)
        quantification = read_quantification(sample.path, sample.sample)
        _check_shared_file(path, sample, quantification.format, file_of, formats)
        formats[sample.sample] = quantification.format
        for note in quantification.notes:
            if not note.startswith("column "):
                remarks.setdefault(note, []).append(sample.sample)
        if keep is not None and not any(keep.matches(identifier) for identifier in quantification.ids):
            unmatched_samples.append((sample, quantification))
        table.add(quantification.ids, quantification.tpm, column_of[sample.condition])
    if keep is not None and len(unmatched_samples) == len(samples):
        sample, quantification = unmatched_samples[0]
        raise InputError(
            f"{sample.path}:{quantification.first_data_line or 1}: sample {sample.sample}: none of its "
            f"{len(quantification.ids):,} ids matches a transcript of the annotation: found "
            f"{describe_id_kind(quantification.ids)}; quantify against the annotation's transcripts (e.g. salmon/"
            "kallisto with its transcript FASTA, stringtie -e -G with it), or give the annotation they came from"
        )
    ids, mean_tpm = table.result(samples_per_condition)
    notes = [
        f"{len(ids):,} transcripts x {len(conditions)} conditions from the sample sheet {path}: log(mean TPM + 1) "
        f"over {len(samples)} samples ({int(samples_per_condition.min())}-{int(samples_per_condition.max())} per "
        f"condition; {_format_counts(formats)})"
    ]
    absent = int(samples_per_condition.sum() * len(ids) - table.present)
    if absent:
        notes.append(f"{absent:,} transcript x sample entries absent from their sample's file were counted as 0 TPM")
    notes += [f"{note} (sample{'s' if len(names) > 1 else ''} {_few(names)})" for note, names in remarks.items()]
    for sample, quantification in unmatched_samples:
        notes.append(f"WARNING: sample {sample.sample} ({sample.path}): none of its ids matches a transcript of the "
                     f"annotation (found {describe_id_kind(quantification.ids)})")
    skipped_rows, skipped_examples = 0, []
    if keep is not None:
        kept = np.array([keep.matches(identifier) for identifier in ids], dtype=bool)
        dropped = [identifier for identifier, flag in zip(ids, kept) if not flag]
        skipped_rows, skipped_examples = len(dropped), dropped[:3]
        novel = sum(is_stringtie_novel(identifier) for identifier in dropped)
        if novel:
            notes.append(f"{novel:,} StringTie novel transcripts (MSTRG.*) match no annotated transcript and are "
                         "counted as unmatched")
        if dropped:
            notes.append(f"{len(dropped):,} transcripts of the samples match no selected transcript and were left "
                         "out")
        ids = [identifier for identifier, flag in zip(ids, kept) if flag]
        mean_tpm = mean_tpm[kept]
    return SheetExpression(sheet=path, ids=ids, conditions=conditions, mean_tpm=mean_tpm, samples=samples,
                           formats=formats, skipped_rows=skipped_rows, skipped_examples=skipped_examples, notes=notes)


def _check_path(sheet, sample):
    if not os.path.exists(sample.path):
        raise InputError(f"{sheet}:{sample.line}: sample {sample.sample}: {sample.written_path} not found "
                         f"(looked for {sample.path}; paths are relative to the sheet's folder)")
    if os.path.isdir(sample.path):
        raise InputError(f"{sheet}:{sample.line}: sample {sample.sample}: {sample.written_path} is a folder; name "
                         "the quantification file inside it (quant.sf, abundance.h5, ...)")
    if not os.access(sample.path, os.R_OK):
        raise InputError(f"{sheet}:{sample.line}: sample {sample.sample}: {sample.written_path} is not readable "
                         "(check its permissions)")


def _check_shared_file(sheet, sample, format_name, file_of, formats):
    """One file for two samples only as the columns of one multi-sample IsoQuant table."""
    key = os.path.realpath(sample.path)
    earlier = file_of.setdefault(key, sample)
    if earlier is sample:
        return
    if format_name == ISOQUANT and formats.get(earlier.sample) == ISOQUANT:
        return  # two columns of one multi-sample table
    raise InputError(f"{sheet}:{sample.line}: sample {sample.sample}: {sample.written_path} is also the file of "
                     f"sample {earlier.sample} (line {earlier.line}); each sample needs its own quantification")


def _format_counts(formats):
    return ", ".join(f"{name} x{count}" for name, count in Counter(formats.values()).items())


def _few(names):
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class _Accumulator:
    """Sums of TPM per transcript and condition, growing as samples bring new transcripts.

    Memory is one float64 per transcript and condition (plus the id index), whatever the number of samples.
    """

    def __init__(self, conditions):
        self.index: Dict[str, int] = {}
        self.sums = np.zeros((1024, conditions), dtype=np.float64)
        self.present = 0

    def add(self, ids, tpm, column):
        index = self.index
        rows = np.fromiter((index.setdefault(identifier, len(index)) for identifier in ids), dtype=np.int64,
                           count=len(ids))
        if len(index) > len(self.sums):
            grown = np.zeros((max(len(index), 2 * len(self.sums)), self.sums.shape[1]), dtype=np.float64)
            grown[:len(self.sums)] = self.sums
            self.sums = grown
        self.sums[rows, column] += tpm  # ids are unique within a sample, so no row repeats here
        self.present += len(ids)

    def result(self, samples_per_condition):
        """``(ids, mean TPM (n, C))``."""
        return list(self.index), self.sums[:len(self.index)] / samples_per_condition
