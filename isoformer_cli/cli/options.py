"""Options shared by several commands, declared once per group so their names, defaults and help never drift.

Groups (click decorators) and the builders that turn a group's values into one validated value object:

* input — ``--genome``, ``--annotation``, ``--triples``;
* selection and records — which transcripts, how invalid records and missing CDSs are handled;
  with the input group they build a :class:`~isoformer_cli.triples.source.TripleSource` (:func:`triple_source`);
* model — ``--checkpoint``, ``--model-dir`` and how long RNAs and proteins are truncated;
* runtime — ``--device``, ``--precision``, ``--deterministic``, ``--num-workers``
  (:func:`runtime_options` builds :class:`~isoformer_cli.runtime.options.RuntimeOptions`);
* chunks — ``--max-tokens``, ``--chunk-size``, ``--resume`` of the inference runner;
* expression — an observed expression table or sample sheet (:func:`expression_input`).

Each builder pops its group's values out of the command's keyword arguments, so what remains is the
command's own options. Click parses each value's type; the value objects check the values themselves, once,
and a bad value becomes a usage error (exit 2) before any input is read.
"""

import click

from isoformer_cli.app.options import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_DNA_LENGTH,
    DEFAULT_MIN_ORF_LENGTH,
    ON_INVALID_CHOICES,
    ORF_CHOICES,
    PRECISION_CHOICES,
    TRUNCATION_POLICIES,
    VALUE_KINDS,
    ExpressionInput,
    RuntimeOptions,
    TripleSource,
)
from isoformer_cli.errors import InputError


def stack(decorators):
    """One decorator applying ``decorators`` in order (the first one ends up outermost)."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def usage_errors(build, *args, **kwargs):
    """``build(*args, **kwargs)``, with an InputError (a bad option value) turned into a usage error."""
    try:
        return build(*args, **kwargs)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None


def _pop(options, names):
    return {name: options.pop(name) for name in names if name in options}


# ------------------------------------------------------------------------------------------ input


def input_options(annotation_required=False, with_triples=True):
    """``--genome``, ``--annotation`` and (unless ``with_triples`` is False) ``--triples``."""
    decorators = [
        click.option("--genome", required=True, metavar="FASTA",
                     help="Genome FASTA, plain or bgzip-compressed (indexed on first use)."),
        click.option("--annotation", required=annotation_required, metavar="GTF|GFF3",
                     help="Transcript annotation: GTF or GFF3, plain or gzip"
                          + ("." if not with_triples else "; triples are built on the fly.")),
    ]
    if with_triples:
        decorators.append(click.option(
            "--triples", "triples_table", metavar="TSV",
            help="A table from `isoformer triples`, instead of --annotation (DNA windows still come from --genome).",
        ))
    return stack(decorators)


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
    click.option("--min-orf-length", type=int, default=DEFAULT_MIN_ORF_LENGTH, show_default=True, metavar="AA",
                 help="Minimum length of a predicted ORF, in amino acids (stop excluded)."),
])

shard_option = click.option(
    "--shard", metavar="K/N",
    help="Only the genes of shard K of N (a stable split by gene id; a gene's isoforms stay together). "
         "Run every K from 1 to N, then join the outputs with `isoformer merge`.",
)

dna_length_option = click.option(
    "--dna-length", type=int, default=DEFAULT_DNA_LENGTH, show_default=True,
    help="DNA window length in bases, centred on the TSS (even).",
)

_SOURCE_FIELDS = ("genome", "annotation", "triples_table", "transcripts", "genes", "region", "biotypes",
                  "coding_only", "contig_alias", "on_invalid", "orf", "min_orf_length", "dna_length", "with_dna",
                  "shard")


def triple_source(options):
    """The :class:`~isoformer_cli.triples.source.TripleSource` of the input, selection and record options
    (popped from ``options``); a bad value or combination is a usage error, raised before any input is read."""
    values = _pop(options, _SOURCE_FIELDS)
    values["triples"] = values.pop("triples_table", None)
    values["biotypes"] = split_list(values.get("biotypes", ()))
    return usage_errors(TripleSource, **values)


def split_list(values):
    """Values of a repeatable option, each possibly comma-separated, as one tuple (``--biotype a,b --biotype c``)."""
    if isinstance(values, str):
        values = (values,)
    return tuple(part.strip() for value in values or () for part in value.split(",") if part.strip())


# ------------------------------------------------------------------------------------------ model


#: ``--model-dir``: where ``--checkpoint NAME`` (and every command that takes a checkpoint name) looks.
model_dir_option = click.option(
    "--model-dir", type=click.Path(file_okay=False), envvar="ISOFORMER_MODEL_DIR", metavar="DIR",
    help="Folder of named checkpoints [env: ISOFORMER_MODEL_DIR; default: the per-user data folder, "
         "~/.local/share/isoformer/models on Linux].")

model_options = stack([
    click.option("--checkpoint", metavar="DIR|NAME",
                 help="Model: a checkpoint folder (isoformer init/convert/finetune), a name in the model folder "
                      "(isoformer models pull official, then --checkpoint official), or 'demo' for the bundled demo "
                      "(random weights, not biological predictions)."),
    model_dir_option,
    click.option("--rna-truncation", type=click.Choice(TRUNCATION_POLICIES), default="keep_start", show_default=True,
                 help="RNA longer than the model maximum: which tokens to keep (flag rna_truncated)."),
    click.option("--protein-truncation", type=click.Choice(TRUNCATION_POLICIES), default="keep_start",
                 show_default=True,
                 help="Protein longer than the model maximum: which residues to keep (flag protein_truncated)."),
])

MODEL_FIELDS = ("checkpoint", "model_dir", "rna_truncation", "protein_truncation")


def model_choice(options):
    """The model options (popped from ``options``) as keyword arguments of a run configuration."""
    return _pop(options, MODEL_FIELDS)


# ---------------------------------------------------------------------------------------- runtime


runtime_options = stack([
    click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                 help="Where the model runs; naming CUDA when none is present is an error (under torchrun, each "
                      "process takes the GPU of its local rank)."),
    click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
                 help="Numeric precision of the model: bf16 autocast, or fp32; auto is bf16 on CUDA, fp32 on CPU."),
    click.option("--deterministic", is_flag=True, help="Deterministic kernels (slower on GPU)."),
    click.option("--num-workers", type=int, default=0, show_default=True,
                 help="Worker processes fetching DNA windows and tokenising (0: in the main process)."),
    click.option("--max-memory", metavar="SIZE",
                 help="Cap on the memory of the run on its device (4G, 512M); batches and chunks are sized to fit "
                      "[default: what the device, container or job allocation has free]."),
])


def runtime_options_from(options):
    """The :class:`~isoformer_cli.runtime.options.RuntimeOptions` of the runtime group (popped from ``options``)."""
    return usage_errors(RuntimeOptions, **_pop(options, ("device", "precision", "deterministic", "num_workers",
                                                         "max_memory")))


# ----------------------------------------------------------------------------------------- chunks


chunk_options = stack([
    click.option("--max-tokens", type=int,
                 help="Expert override: padded input positions per batch (DNA bases, RNA tokens, protein residues) "
                      "instead of batches sized from --max-memory and the device; halved on out-of-memory."),
    click.option("--chunk-size", type=int,
                 help="Transcripts per chunk: the unit of input sharing, writing and resuming; made smaller when a "
                      f"chunk's encoder outputs would not fit in memory [default: {DEFAULT_CHUNK_ROWS}]."),
    click.option("--resume", is_flag=True,
                 help="Continue the partial output of an interrupted run of the same command."),
])


#: Every option group of a model run over triples (``predict``, ``embed``), in the order their help lists them.
model_run_options = stack([input_options(), model_options, runtime_options, chunk_options, selection_options,
                           shard_option, record_options])


def chunk_settings(options):
    """The chunk options (popped from ``options``) as keyword arguments of a run configuration."""
    return _pop(options, ("max_tokens", "chunk_size", "resume"))


# ------------------------------------------------------------------------------------- expression


condition_column_option = click.option(
    "--condition-column", metavar="NAME",
    help="Condition column of a sample sheet [default: tissue, else condition].",
)

def expression_options_group(required=True):
    """The expression options; ``required=False`` where another option can name the labels instead."""
    return stack([
    click.option("--expression", required=required, metavar="FILE",
                 help="Observed expression: a TSV/CSV matrix (transcript id, then one column per tissue), a "
                      "GTEx GCT v1.2 file of TPM per sample with --samples, or a sample sheet (columns sample, "
                      "path, tissue) of salmon, kallisto, RSEM, StringTie or IsoQuant outputs, one per sample. "
                      "Plain or gzip."),
    click.option("--values", "expression_values", type=click.Choice(VALUE_KINDS), default="tpm", show_default=True,
                 help="Matrix values are TPM (turned into log(TPM+1)) or already log1p-transformed (used as given)."),
    click.option("--samples", metavar="FILE",
                 help="Sample -> tissue table for a GCT file (GTEx SampleAttributesDS.txt); each tissue's value is "
                      "log(mean TPM over its samples + 1)."),
    click.option("--sample-column", metavar="NAME",
                 help="Sample id column of --samples [default: SAMPID, else the first]."),
    click.option("--tissue-column", metavar="NAME",
                 help="Tissue column of --samples [default: SMTS, else the second]."),
    condition_column_option,
    ])


expression_options = expression_options_group()


def expression_input(options):
    """The :class:`~isoformer_cli.genomics.expression.ExpressionInput` of the expression options (popped)."""
    values = _pop(options, ("expression", "expression_values", "samples", "sample_column", "tissue_column",
                            "condition_column"))
    return ExpressionInput(path=values["expression"], values=values["expression_values"], samples=values["samples"],
                           sample_column=values["sample_column"], tissue_column=values["tissue_column"],
                           condition_column=values["condition_column"])
