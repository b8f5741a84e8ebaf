"""``--gene-summary``: per gene and tissue, total predicted expression and each isoform's usage.

Arithmetic, on TPM (never by summing logs):

* ``tpm = expm1(prediction)`` for predictions in log(TPM+1), in float64; a negative prediction
  (a regression head can give one) is clipped to 0 TPM, since expression cannot be negative;
* ``gene_tpm`` = sum of ``tpm`` over the gene's transcripts in that tissue;
* ``usage = tpm / gene_tpm``, the isoform's fraction of its gene; ``NA`` when ``gene_tpm`` is 0
  (no expression: the fraction is undefined, and 0 would wrongly claim the isoform is unused).

Genes are the ``gene_id`` values; a transcript with an empty ``gene_id`` forms a gene of its own,
written under its transcript_id.

Layout: one long ("tidy") TSV, one row per transcript and tissue, because that is what
``pandas.read_csv`` / R ``read.delim`` + dplyr group, filter and pivot without reshaping::

    # isoformer gene summary, format 1
    # tpm = expm1(predicted log(TPM+1)), negatives clipped to 0; gene_tpm = sum of tpm over the gene; ...
    # provenance: {...}
    gene_id  gene_name  tissue  gene_tpm  transcript_id  tpm  usage
    G1       AXIN1      Brain   12.5      T1             10   0.8
    G1       AXIN1      Brain   12.5      T2             2.5  0.2

Rows go gene by gene (in order of first appearance), then tissue (the checkpoint's order), then
transcript (annotation order); numbers are printed with ``%.6g``, undefined usage as ``NA``.
Read it with ``pandas.read_csv(path, sep="\\t", comment="#")``. A ``.gz`` name gives gzip.
"""

import numpy as np

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.atomic import atomic_text_output
from isoformer_cli.formats.predictions import GZIP_LEVEL, VALUE_FORMAT, tsv_header
from isoformer_cli.formats.provenance import PREDICTION_UNITS
from isoformer_cli.formats.sharding import SHARD_KEY, gene_block_entry

COLUMNS = ("gene_id", "gene_name", "tissue", "gene_tpm", "transcript_id", "tpm", "usage")
MISSING = "NA"


def gene_keys(obs_rows):
    """The gene each transcript belongs to: its gene_id, or its transcript_id when that is empty."""
    return [row["gene_id"] or row["transcript_id"] for row in obs_rows]


def isoform_usage(genes, log1p_values):
    """Per-transcript TPM, its gene's total TPM and its usage fraction, in each tissue.

    Args:
        genes: gene key of each transcript, length n.
        log1p_values: predictions in log(TPM+1), shape (n, n_tissues).

    Returns ``(tpm, gene_tpm, usage)``, each float64 (n, n_tissues); ``usage`` is NaN where
    ``gene_tpm`` is 0.
    """
    values = np.asarray(log1p_values, dtype=np.float64)
    tpm = np.maximum(np.expm1(values), 0.0)
    codes = {}
    gene_index = np.array([codes.setdefault(gene, len(codes)) for gene in genes], dtype=np.int64)
    totals = np.zeros((len(codes), values.shape[1]), dtype=np.float64)
    np.add.at(totals, gene_index, tpm)
    gene_tpm = totals[gene_index]
    with np.errstate(divide="ignore", invalid="ignore"):
        usage = np.where(gene_tpm > 0, tpm / np.where(gene_tpm > 0, gene_tpm, 1.0), np.nan)
    return tpm, gene_tpm, usage


def _formatted(array):
    """(n, t) float array -> nested lists of text, ``NA`` for NaN (formatted once, up front)."""
    return [[MISSING if value != value else VALUE_FORMAT % value for value in row] for row in array.tolist()]


def write_gene_summary(target, obs_rows, tissues, values, provenance):
    """Write the gene summary (layout in the module docstring) atomically to ``target``.

    Args:
        target: output path (``.gz`` compresses) or ``-``.
        obs_rows: one dict per transcript with transcript_id, gene_id, gene_name, in output order.
        tissues: tissue names, the columns of ``values``.
        values: predictions in log(TPM+1), float (n_transcripts, n_tissues).
        provenance: the predictions' provenance; its ``units`` must be log(TPM+1).

    To give a resumed run the same summary as an uninterrupted one, pass what
    :func:`isoformer_cli.formats.predictions.read_predictions` reads back from the finished
    predictions file.
    """
    units = provenance.get("units")
    if units != PREDICTION_UNITS:
        raise OutputError(
            f"{target}: a gene summary needs predictions in {PREDICTION_UNITS}, but this checkpoint "
            f"predicts {units!r}; drop --gene-summary"
        )
    values = np.asarray(values)
    if values.shape != (len(obs_rows), len(tissues)):
        raise ValueError(f"values have shape {values.shape}; expected ({len(obs_rows)}, {len(tissues)})")
    genes = gene_keys(obs_rows)
    if SHARD_KEY in provenance:
        # A shard's summary orders gene blocks, not rows: record each block's first ordinal for isoformer merge.
        provenance = dict(provenance, **{SHARD_KEY: gene_block_entry(provenance[SHARD_KEY], genes, target)})
    tpm, gene_tpm, usage = isoform_usage(genes, values)
    members = {}
    for index, gene in enumerate(genes):
        members.setdefault(gene, []).append(index)
    notes = [
        f"tpm = expm1(predicted {PREDICTION_UNITS}), negatives clipped to 0; gene_tpm = sum of tpm over "
        f"the gene's transcripts; usage = tpm / gene_tpm, {MISSING} when gene_tpm is 0; "
        f"numbers printed with {VALUE_FORMAT}",
    ]
    tpm_text, gene_tpm_text, usage_text = _formatted(tpm), _formatted(gene_tpm), _formatted(usage)
    with atomic_text_output(target, compresslevel=GZIP_LEVEL) as stream:
        stream.write(tsv_header(provenance, title="isoformer gene summary", notes=notes))
        stream.write("\t".join(COLUMNS) + "\n")
        for gene, indices in members.items():
            gene_name = obs_rows[indices[0]]["gene_name"]
            for column, tissue in enumerate(tissues):
                prefix = f"{gene}\t{gene_name}\t{tissue}\t{gene_tpm_text[indices[0]][column]}\t"
                stream.write("".join([
                    f"{prefix}{obs_rows[index]['transcript_id']}\t"
                    f"{tpm_text[index][column]}\t{usage_text[index][column]}\n"
                    for index in indices
                ]))
