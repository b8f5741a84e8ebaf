"""The official IsoFormer dataset (``InstaDeepAI/multi_omics_transcript_expression``) in this tool's formats.

Input: the transcript-expression table ``transcript_expression/GTEx_final.csv`` (and, for a standardised
revision, ``transcript_expression/normalization_values.csv``). Its column semantics are partly unknown (the
builder that reads it is not public; ``research/isoformer-official.md`` section 5), so the reader checks what it
can and refuses a layout it does not understand:

* columns (by name; others are ignored): ``transcript_id_gtex``, ``gene_id_gtex``, ``split``, ``chr``,
  ``strand``, ``start``, ``end``, ``RNA``, ``Protein`` and the 30 GTEx tissues of the official model; optional
  ``5UTR``, ``CDS``, ``3UTR``. A missing one is an error naming it.
* coordinates: ``start`` / ``end`` 1-based inclusive (GTEx, GENCODE); the TSS is ``start - 1`` on '+' and
  ``end - 1`` on '-' (0-based), as a third-party reader of the builder states, which is this tool's convention
  (first base of the first exon on '+', last base of the last exon on '-'). The DNA window is the tool's own
  (``window_span``) around that TSS, fetched from ``--genome`` at run time.
* RNA and protein are taken from the dataset as they are (RNA in DNA letters); ``5UTR`` + ``CDS`` + ``3UTR``,
  when present, must spell the RNA (that gives the CDS span in RNA coordinates); rows where they do not are
  counted and get no CDS span.
* labels: log(TPM + 1) averaged over donors per tissue. The default revision standardises each tissue; its
  values are then negative for about half the transcripts, which log(TPM + 1) never is. A table with any
  negative label is therefore read as standardised and needs ``normalization_values.csv`` to undo it
  (``x * sigma + m`` per tissue, with the transcript statistics ``m_t`` / ``sigma_t``); without the file it is
  an error. The ``un-standardized-values`` revision needs nothing.
* splits: ``train``, ``validation`` (also written ``valid``, ``val``, ``evaluation``, ``eval``), ``test``.

Outputs of :func:`convert_dataset` in one folder: ``triples.tsv`` (every transcript) and ``triples.SPLIT.tsv``
per split, ``expression.tsv`` (log(TPM + 1), read with ``--values log1p``), ``split.tsv`` (transcript_id,
gene_id, split) and ``dataset.json`` (sources with SHA-256, counts, checks). Never imports torch.
"""

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.formats.atomic import atomic_text_output
from isoformer_cli.formats.provenance import sha256_file
from isoformer_cli.formats.triples_table import TriplesWriter
from isoformer_cli.genomics.compressed import open_text
from isoformer_cli.genomics.records import Transcript, Triple
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH, check_dna_length, window_span

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("transcript_id_gtex", "gene_id_gtex", "split", "chr", "strand", "start", "end", "RNA", "Protein")
REGION_COLUMNS = ("5UTR", "CDS", "3UTR")
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "evaluation": "validation", "eval": "validation", "test": "test"}
SPLITS = ("train", "validation", "test")
_RNA_LETTERS = frozenset("ACGTN")


@dataclass
class DatasetRow:
    """One transcript of the dataset: ids, split, 0-based TSS, strand, RNA, protein, CDS span, labels (T,)."""

    transcript_id: str
    gene_id: str
    split: str
    chrom: str
    strand: str
    tss: int
    rna: str
    protein: str
    cds: Optional[tuple]
    labels: np.ndarray


@dataclass
class DatasetChecks:
    """What could be validated: rows read, rows whose 5'UTR + CDS + 3'UTR spell the RNA (of those with the
    columns), and (with an annotation) rows whose RNA equals the one built from it."""

    rows: int = 0
    regions_checked: int = 0
    regions_agree: int = 0
    annotation_checked: int = 0
    annotation_agree: int = 0
    standardised: bool = False
    per_split: Dict[str, int] = field(default_factory=dict)

    def describe(self) -> List[str]:
        lines = [f"{self.rows:,} transcripts: " + ", ".join(f"{self.per_split.get(name, 0):,} {name}"
                                                             for name in SPLITS)]
        if self.regions_checked:
            lines.append(f"5'UTR + CDS + 3'UTR spell the RNA for {_share(self.regions_agree, self.regions_checked)}")
        if self.annotation_checked:
            lines.append(f"the dataset's RNA equals the RNA built from the annotation for "
                         f"{_share(self.annotation_agree, self.annotation_checked)} of the transcripts found in it")
        lines.append("labels were standardised (undone with normalization_values.csv)" if self.standardised
                     else "labels are log(TPM+1) as given")
        return lines

    def record(self) -> dict:
        return {"rows": self.rows, "per_split": self.per_split, "standardised": self.standardised,
                "regions_spell_rna": [self.regions_agree, self.regions_checked],
                "rna_equals_annotation": [self.annotation_agree, self.annotation_checked]}


def _share(part, whole):
    return f"{part:,} of {whole:,} ({100.0 * part / whole:.1f}%)"


def read_normalization(path, tissues) -> tuple:
    """``(m, sigma)`` float64 (T,) of the transcript statistics in ``normalization_values.csv``, in ``tissues``
    order. Accepted layouts: one row per tissue (a first column naming it, columns ``m_t`` and ``sigma_t``), or
    one column per tissue (a first column naming the rows ``m_t`` and ``sigma_t``). InputError otherwise."""
    with open_text(path, "normalisation table") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise InputError(f"{path}: empty normalisation table; expected per-tissue m_t and sigma_t")
    header = [cell.strip() for cell in rows[0]]
    table = {row[0].strip(): row[1:] for row in rows[1:]}
    lower = [cell.lower() for cell in header]

    def number(text, where):
        try:
            return float(text)
        except ValueError:
            raise InputError(f"{path}: {where} is {text!r}, not a number") from None

    if "m_t" in lower and "sigma_t" in lower:  # one row per tissue
        m_column, s_column = lower.index("m_t") - 1, lower.index("sigma_t") - 1
        missing = [name for name in tissues if name not in table]
        if missing:
            raise InputError(f"{path}: no row for tissue {missing[0]!r}; the file does not cover the dataset's tissues")
        return (np.array([number(table[name][m_column], f"m_t of {name}") for name in tissues]),
                np.array([number(table[name][s_column], f"sigma_t of {name}") for name in tissues]))
    keys = {key.lower(): key for key in table}
    if "m_t" in keys and "sigma_t" in keys:  # one column per tissue
        missing = [name for name in tissues if name not in header[1:]]
        if missing:
            raise InputError(f"{path}: no column for tissue {missing[0]!r}; the file does not cover the dataset's "
                             "tissues")
        columns = [header.index(name) - 1 for name in tissues]
        return (np.array([number(table[keys["m_t"]][c], f"m_t of {header[c + 1]}") for c in columns]),
                np.array([number(table[keys["sigma_t"]][c], f"sigma_t of {header[c + 1]}") for c in columns]))
    raise InputError(f"{path}: unknown layout of the normalisation table (header {', '.join(header[:6])}); expected "
                     "m_t and sigma_t per tissue, as rows or as columns")


def read_dataset(path, tissues) -> List[DatasetRow]:
    """Every row of ``GTEx_final.csv`` (layout in the module docstring), labels in ``tissues`` order, as stored
    (possibly standardised). InputError naming the file and line for anything it does not understand."""
    rows = []
    csv.field_size_limit(1 << 30)  # an RNA field holds up to ~100 kb (the default limit is 128 kB)
    with open_text(path, "dataset table") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file; expected the official GTEx_final.csv")
        header = [cell.strip() for cell in header]
        missing = [name for name in (*REQUIRED_COLUMNS, *tissues) if name not in header]
        if missing:
            raise InputError(
                f"{path}: unknown layout: no column {', '.join(repr(name) for name in missing[:4])}"
                f"{' ...' if len(missing) > 4 else ''}; this reader knows the official "
                "transcript_expression/GTEx_final.csv (transcript_id_gtex, gene_id_gtex, split, chr, strand, start, "
                "end, RNA, Protein and the 30 GTEx tissues)")
        at = {name: header.index(name) for name in header}
        regions = all(name in at for name in REGION_COLUMNS)
        tissue_columns = [at[name] for name in tissues]
        seen = set()
        for number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(header):
                raise InputError(f"{path}:{number}: {len(fields)} fields, the header has {len(header)}")
            rows.append(_row(path, number, fields, at, tissue_columns, regions, seen))
    if not rows:
        raise InputError(f"{path}: no transcript rows")
    return rows


def _row(path, number, fields, at, tissue_columns, regions, seen):
    where = f"{path}:{number}"
    transcript_id = fields[at["transcript_id_gtex"]].strip()
    if not transcript_id:
        raise InputError(f"{where}: empty transcript_id_gtex")
    if transcript_id in seen:
        raise InputError(f"{where}: transcript {transcript_id} appears twice")
    seen.add(transcript_id)
    split = SPLIT_NAMES.get(fields[at["split"]].strip().lower())
    if split is None:
        raise InputError(f"{where}: unknown split {fields[at['split']]!r}; expected train, validation or test")
    strand = fields[at["strand"]].strip()
    if strand not in ("+", "-"):
        raise InputError(f"{where}: strand must be '+' or '-', not {strand!r}")
    try:
        start, end = int(float(fields[at["start"]])), int(float(fields[at["end"]]))
    except ValueError:
        raise InputError(f"{where}: start/end must be integers, not {fields[at['start']]!r}/{fields[at['end']]!r}") \
            from None
    if start < 1 or end < start:
        raise InputError(f"{where}: start {start} and end {end} are not a 1-based inclusive span")
    rna = fields[at["RNA"]].strip().upper().replace("U", "T")
    if not rna or set(rna) - _RNA_LETTERS:
        raise InputError(f"{where}: RNA of {transcript_id} is empty or holds letters other than A, C, G, T, N")
    protein = fields[at["Protein"]].strip().upper().rstrip("*")
    cds = None
    if regions:
        utr5, coding, utr3 = (fields[at[name]].strip().upper().replace("U", "T") for name in REGION_COLUMNS)
        if coding and utr5 + coding + utr3 == rna:
            cds = (len(utr5), len(utr5) + len(coding))
    labels = []
    for column in tissue_columns:
        try:
            value = float(fields[column])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"{where}: label {fields[column]!r} of {transcript_id} is not a finite number")
        labels.append(value)
    tss = start - 1 if strand == "+" else end - 1
    return DatasetRow(transcript_id, fields[at["gene_id_gtex"]].strip(), split, fields[at["chr"]].strip(), strand,
                      tss, rna, protein, cds, np.array(labels, dtype=np.float64))


def _regions_checked(rows, path):
    """``(checked, agree)`` of the 5'UTR + CDS + 3'UTR check (0, 0 without those columns)."""
    with open_text(path, "dataset table") as handle:
        header = next(csv.reader(handle), [])
    if not all(name in header for name in REGION_COLUMNS):
        return 0, 0
    return len(rows), sum(row.cds is not None for row in rows)


def convert_dataset(table, output, tissues, normalization=None, dna_length=DEFAULT_DNA_LENGTH,
                    annotation_rna=None, provenance=None) -> DatasetChecks:
    """Write the dataset ``table`` (GTEx_final.csv) in this tool's formats into the folder ``output`` (created;
    files are written atomically one by one). See the module docstring for the files.

    Args:
        tissues: the label columns, in output order (the official model's 30 tissues).
        normalization: ``normalization_values.csv``, needed when the labels are standardised.
        annotation_rna: ``{transcript_id without version: RNA}`` built from an annotation, to compare.
        provenance: extra entries for ``dataset.json``.

    Returns the :class:`DatasetChecks`.
    """
    check_dna_length(dna_length)
    rows = read_dataset(table, tissues)
    checks = DatasetChecks(rows=len(rows))
    for row in rows:
        checks.per_split[row.split] = checks.per_split.get(row.split, 0) + 1
    labels = np.stack([row.labels for row in rows])
    if (labels < 0).any():
        checks.standardised = True
        if not normalization:
            raise InputError(f"{table}: labels are standardised (negative values, which log(TPM+1) never is) and "
                             "no normalization_values.csv was found to undo it; give the dataset folder with "
                             "transcript_expression/normalization_values.csv, or pull --revision un-standardized-values")
        mean, sigma = read_normalization(normalization, tissues)
        labels = labels * sigma + mean
        if (labels < -1e-6).any():
            raise InputError(f"{normalization}: undoing the standardisation leaves negative log(TPM+1) values; the "
                             "file does not belong to this table (or it uses other statistics than m_t/sigma_t)")
        labels = np.maximum(labels, 0.0)
    checks.regions_checked, checks.regions_agree = _regions_checked(rows, table)
    if annotation_rna:
        for row in rows:
            built = annotation_rna.get(row.transcript_id.split(".")[0])
            if built is not None:
                checks.annotation_checked += 1
                checks.annotation_agree += built == row.rna
    os.makedirs(output, exist_ok=True)
    _write_triples(os.path.join(output, "triples.tsv"), rows, dna_length, provenance)
    for split in SPLITS:
        _write_triples(os.path.join(output, f"triples.{split}.tsv"), [r for r in rows if r.split == split],
                       dna_length, provenance)
    with atomic_text_output(os.path.join(output, "expression.tsv")) as stream:
        stream.write("# log(TPM+1) averaged over donors (read with --values log1p)\n")
        stream.write("\t".join(["transcript_id", *tissues]) + "\n")
        for row, values in zip(rows, labels.tolist()):
            stream.write(row.transcript_id + "\t" + "\t".join(repr(value) for value in values) + "\n")
    with atomic_text_output(os.path.join(output, "split.tsv")) as stream:
        stream.write("transcript_id\tgene_id\tsplit\n")
        for row in rows:
            stream.write(f"{row.transcript_id}\t{row.gene_id}\t{row.split}\n")
    record = dict(provenance or {}, source=os.path.abspath(table), source_sha256=sha256_file(table),
                  normalization=os.path.abspath(normalization) if normalization else None, dna_length=dna_length,
                  checks=checks.record(), tissues=list(tissues))
    with atomic_text_output(os.path.join(output, "dataset.json")) as stream:
        json.dump(record, stream, indent=2)
        stream.write("\n")
    return checks


def _write_triples(path, rows, dna_length, provenance):
    with TriplesWriter(path, provenance=provenance or {}) as writer:
        for row in rows:
            start, end = window_span(row.tss, row.strand, dna_length)
            # The dataset gives the transcript's span and its sequences, not its exons: the table stores no exons.
            transcript = Transcript(transcript_id=row.transcript_id, gene_id=row.gene_id, gene_name="",
                                    biotype="protein_coding" if row.protein else "", chrom=row.chrom,
                                    strand=row.strand, exons=[(row.tss, row.tss + 1)])
            writer.write(Triple(transcript=transcript, genome_chrom=row.chrom, tss=row.tss, window_start=start,
                                window_end=end, cds_start=row.cds[0] if row.cds else None,
                                cds_end=row.cds[1] if row.cds else None, rna=row.rna, protein=row.protein))
