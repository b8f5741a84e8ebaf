"""``isoformer merge``: the outputs of ``--shard K/N`` runs joined into the file one run writes."""

import click

from isoformer_cli.cli.options import usage_errors


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, metavar="SHARD...")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="The merged file: .tsv, .tsv.gz or - for tables; .h5/.h5ad for HDF5 predictions and variant "
                   "tables; .h5 for embeddings; .vcf, .vcf.gz (bgzip) or - for variant VCFs.")
def merge_command(shards, output):
    """Join the outputs of the N runs of a --shard K/N split into one file.

    SHARD... are the outputs of `isoformer triples`, `predict` (-o or --gene-summary), `embed` or
    `variants` (-O, --table or --alt-triples) run with --shard 1/N ... N/N, in any order, all of
    one kind. The merged file holds the rows in annotation order (for variants: every VCF record
    with the entries of all shards), exactly as one run without --shard writes them; its
    provenance is the shards' without the shard, with merged_shards. Refused, with one line
    naming the file: a file that is not a shard output, shards of different kinds, splits or
    runs (other inputs, checkpoint or options), a shard missing or given twice, a shard file
    that is incomplete.
    """
    # Imported here, not at the top (start-up cost): `isoformer --help` need not load the readers.
    from isoformer_cli.app.merge import MergeConfig, run_merge

    run_merge(usage_errors(MergeConfig, shards=tuple(shards), output=output))
