"""Options shared by several commands, declared once so their names and help never drift."""

import click

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.expression import VALUE_KINDS
from isoformer_cli.genomics.flags import ON_INVALID_CHOICES
from isoformer_cli.triples.orf import DEFAULT_MIN_ORF_LENGTH, ORF_CHOICES


def stack(decorators):
    """One decorator applying ``decorators`` in order (the first one ends up outermost)."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def split_biotypes(values):
    """``--biotype`` values, repeated or comma-separated, as one tuple."""
    return tuple(part for value in values for part in value.split(",") if part)


def triple_source(genome, annotation, triples_table, biotypes, on_invalid, orf, min_orf_length, transcripts,
                  genes, region, coding_only, contig_alias):
    """The :class:`~isoformer_cli.triples.source.TripleSource` of the input, selection and record
    options; bad values and combinations are usage errors (exit 2), raised before any input is read."""
    from isoformer_cli.triples.source import TripleSource

    if (annotation is None) == (triples_table is None):
        raise click.UsageError("give exactly one of --annotation and --triples")
    try:
        source = TripleSource(
            genome=genome, annotation=annotation, triples=triples_table, on_invalid=on_invalid, orf=orf,
            min_orf_length=min_orf_length, transcripts=transcripts, genes=genes, region=region,
            biotypes=split_biotypes(biotypes), coding_only=coding_only, contig_alias=contig_alias,
        )
        source.selection()
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    return source


selection_options = stack([
    click.option("--transcripts", metavar="IDS|@FILE", help="Only these transcript ids (comma-separated, or @file)."),
    click.option("--genes", metavar="IDS|@FILE",
                 help="Only transcripts of these gene ids or names (comma-separated, or @file)."),
    click.option("--region", metavar="CHR:START-END",
                 help="Only transcripts overlapping this region (1-based, inclusive)."),
    click.option("--biotype", "biotypes", multiple=True, metavar="TYPE",
                 help="Only transcripts of this biotype (repeat or comma-separate for several)."),
    click.option("--coding-only", is_flag=True, help="Only transcripts with an annotated CDS."),
    click.option("--contig-alias", type=click.Path(dir_okay=False), metavar="FILE",
                 help="Tab-separated contig alias file (UCSC chromAlias style) for names chr1<->1 rules miss."),
])

record_options = stack([
    click.option("--on-invalid", type=click.Choice(ON_INVALID_CHOICES), default="flag", show_default=True,
                 help="Records with an invalid flag (internal_stop, cds_discontinuous): keep flagged, skip, or fail."),
    click.option("--orf", type=click.Choice(ORF_CHOICES), default="none", show_default=True,
                 help="For transcripts without CDS: 'longest' calls the longest ATG-initiated ORF "
                      "(flag orf_predicted)."),
    click.option("--min-orf-length", type=click.IntRange(min=1), default=DEFAULT_MIN_ORF_LENGTH,
                 show_default=True, metavar="AA",
                 help="Minimum length of a predicted ORF, in amino acids (stop excluded)."),
])

model_run_options = stack([
    click.option("--genome", required=True, metavar="FASTA",
                 help="Genome FASTA, plain or bgzip-compressed (indexed on first use)."),
    click.option("--annotation", metavar="GTF|GFF3",
                 help="Transcript annotation (GTF or GFF3, plain or gzip); triples are built on the fly."),
    click.option("--triples", "triples_table", metavar="TSV",
                 help="A table from `isoformer triples`, instead of --annotation (DNA windows still come from --genome)."),
    click.option("--checkpoint", metavar="DIR|NAME",
                 help="Model: a checkpoint folder, a name inside --model-dir, or 'demo' for the bundled demo "
                      "(random weights, not biological predictions)."),
    click.option("--model-dir", type=click.Path(file_okay=False), envvar="ISOFORMER_MODEL_DIR", metavar="DIR",
                 help="Folder holding named checkpoints [env: ISOFORMER_MODEL_DIR]."),
    click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                 help="Where the model runs; naming CUDA when none is present is an error."),
    click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                 help="Numeric precision of the forward pass (bf16 autocast)."),
    click.option("--deterministic", is_flag=True, help="Deterministic kernels (slower on GPU)."),
    click.option("--max-tokens", type=click.IntRange(min=1), default=1 << 20, show_default=True,
                 help="Padded input positions per batch (DNA bases, RNA tokens, protein residues); "
                      "halved automatically on out-of-memory."),
    click.option("--chunk-size", type=click.IntRange(min=1), default=256, show_default=True,
                 help="Transcripts per chunk: the unit of input sharing, writing and resuming."),
    click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Worker processes fetching DNA windows and tokenising (0: in the main process)."),
    click.option("--rna-truncation", type=click.Choice(["keep_start", "keep_end", "keep_center", "error"]),
                 default="keep_start", show_default=True,
                 help="RNA longer than the model maximum: which tokens to keep (flag rna_truncated)."),
    click.option("--protein-truncation", type=click.Choice(["keep_start", "keep_end", "keep_center", "error"]),
                 default="keep_start", show_default=True,
                 help="Protein longer than the model maximum: which residues to keep (flag protein_truncated)."),
    click.option("--resume", is_flag=True,
                 help="Continue the partial output of an interrupted run of the same command."),
])


expression_options = stack([
    click.option("--expression", required=True, metavar="FILE",
                 help="Observed expression: a TSV/CSV matrix (transcript id, then one column per tissue), or a "
                      "GTEx GCT v1.2 file of TPM per sample with --samples. Plain or gzip."),
    click.option("--values", "expression_values", type=click.Choice(VALUE_KINDS), default="tpm", show_default=True,
                 help="Matrix values are TPM (turned into log(TPM+1)) or already log1p-transformed (used as given)."),
    click.option("--samples", metavar="FILE",
                 help="Sample -> tissue table for a GCT file (GTEx SampleAttributesDS.txt); each tissue's value is "
                      "log(mean TPM over its samples + 1)."),
    click.option("--sample-column", metavar="NAME",
                 help="Sample id column of --samples [default: SAMPID, else the first]."),
    click.option("--tissue-column", metavar="NAME",
                 help="Tissue column of --samples [default: SMTS, else the second]."),
])


def expression_input(expression, expression_values, samples, sample_column, tissue_column):
    """The plain :class:`~isoformer_cli.genomics.expression.ExpressionInput` of these options."""
    from isoformer_cli.genomics.expression import ExpressionInput

    return ExpressionInput(path=expression, values=expression_values, samples=samples, sample_column=sample_column,
                           tissue_column=tissue_column)
