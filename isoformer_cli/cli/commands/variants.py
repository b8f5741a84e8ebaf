"""``isoformer variants``: isoform-resolved variant effects through DNA, RNA and protein, VCF in and VCF out."""

import sys

import click

from isoformer_cli.cli.options import (
    chunk_settings,
    input_options,
    model_choice,
    model_options,
    record_options,
    runtime_options,
    runtime_options_from,
    selection_options,
    shard_option,
    triple_source,
    usage_errors,
)

# Defaults of the command (kept here so --help works without importing the model stack).
DEFAULT_MAX_INDEL = 50
DEFAULT_CHUNK_SIZE = 64


@click.command("variants")
@click.option("-I", "--input", "vcf", required=True, metavar="VCF",
              help="Variants: VCF (plain, gzip or bgzip) or BCF, sorted by position; - for standard input.")
@click.option("-O", "--output", default="-", show_default=True, metavar="VCF",
              help="The input VCF with ISOFORMER and ISOFORMER_STATUS INFO fields: .vcf, .vcf.gz (bgzip), or -.")
@click.option("--table", metavar="FILE",
              help="Every tissue per (allele, transcript): .tsv, .tsv.gz, or .h5/.h5ad (AnnData with ref, alt, "
                   "delta layers).")
@click.option("--alt-triples", metavar="TSV",
              help="Write every alternative triple scored (consequence, amino-acid change, RNA, protein) "
                   "to audit what the model saw.")
@click.option("--max-indel", type=int, default=DEFAULT_MAX_INDEL, show_default=True, metavar="BASES",
              help="Longest REF or ALT scored (after trimming the bases they share); longer alleles get the "
                   "status indel_too_long.")
@input_options(annotation_required=True, with_triples=False)
@model_options
@runtime_options
@click.option("--max-tokens", type=int,
              help="Expert override: padded input positions per batch (DNA bases, RNA tokens, protein residues) "
                   "instead of batches sized from --max-memory and the device; halved on out-of-memory.")
@click.option("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, show_default=True,
              help="VCF records per chunk: the unit of input sharing, writing and resuming (the model runs a "
                   "chunk's isoforms in pieces sized from memory).")
@click.option("--resume", is_flag=True, help="Continue the partial outputs of an interrupted run of the same command.")
@selection_options
@shard_option
@record_options
def variants_command(**options):
    """Score variants on every transcript isoform they affect, through DNA, RNA and protein.

    For each allele of the VCF (multi-allelic records are split) and each transcript whose DNA window
    holds it or whose exons it changes, IsoFormer predicts the reference and the alternative triple:
    the TSS-centred window with the allele applied, the alternative RNA when the allele is exonic,
    and the alternative protein when the translation changes (missense, stop gained or lost,
    frameshift, in-frame indels; no protein when the start is lost). Splice-site and splice-region
    alleles are flagged, not modelled. Written per (allele, transcript): alt - ref per tissue, the
    largest change and its tissue, its split into DNA, RNA and protein, and the change of the
    isoform's share of its gene. Records that cannot be scored are kept, unannotated, with
    ISOFORMER_STATUS. Consequences are named as bcftools csq names them.

    With --shard K/N only the transcripts of shard K's genes are scored; every record is still
    written. `isoformer merge` joins the N shards' VCFs, tables or alternative triples into the
    files one run writes.
    """
    # Imported here, not at the top (start-up cost): the app module loads torch and transformers, which
    # `isoformer --help` and the commands without a model never need.
    from isoformer_cli.app.variants import VariantsConfig, run_variants

    options["triples_table"] = None
    source = triple_source(options)
    model = model_choice(options)
    runtime = runtime_options_from(options)
    chunks = chunk_settings(options)
    config = usage_errors(VariantsConfig, source=source, runtime=runtime, command_args=tuple(sys.argv[1:]),
                          **model, **chunks, **options)
    run_variants(config)
