"""``isoformer triples``: DNA/RNA/protein triples from a genome FASTA and a GTF/GFF3 annotation."""

import click

from isoformer_cli.cli.options import (
    dna_length_option,
    input_options,
    record_options,
    selection_options,
    shard_option,
    triple_source,
    usage_errors,
)


@click.command("triples")
@input_options(annotation_required=True, with_triples=False)
@click.option("-o", "--output", default="-", show_default=True, metavar="TSV",
              help="Triples table: .tsv, .tsv.gz, or - for stdout.")
@dna_length_option
@click.option("--with-dna", is_flag=True,
              help="Also write the DNA window sequence (dna column; ~196 kb per transcript).")
@click.option("--fasta-prefix", metavar="P",
              help="Also write P.rna.fa and P.protein.fa (and P.dna.fa with --with-dna).")
@record_options
@selection_options
@shard_option
def triples_command(output, fasta_prefix, **options):
    """Build the DNA window, spliced RNA and protein of every transcript.

    Writes a TSV with one row per transcript: transcript_id gene_id gene_name biotype chrom
    strand tss window_start window_end cds_start cds_end rna protein flags (and dna with
    --with-dna). chrom is the genome FASTA's contig name; tss and the window [window_start,
    window_end) are 0-based genomic, and the window reads 5'->3' on the transcript's strand with
    the TSS at index dna-length/2. cds_start/cds_end are 0-based half-open on the RNA, from the
    first complete codon through the stop codon. A summary goes to stderr.

    With --shard K/N only the genes of shard K are written, and the table starts with a
    '# provenance:' line that `isoformer merge` uses to rebuild the whole table.
    """
    # Imported here, not at the top (start-up cost): `isoformer --help` need not load the readers.
    from isoformer_cli.app.triples import TriplesConfig, run_triples

    config = usage_errors(TriplesConfig, source=triple_source(options), output=output, fasta_prefix=fasta_prefix)
    run_triples(config)
