"""``isoformer triples``: DNA/RNA/protein triples from a genome FASTA and a GTF/GFF3 annotation."""

import click

from isoformer_cli.errors import InputError
from isoformer_cli.cli.options import record_options, selection_options, split_biotypes
from isoformer_cli.app.triples import TriplesConfig, run_triples
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH


def _even_positive(ctx, param, value):
    if value <= 0 or value % 2:
        raise click.BadParameter(f"must be a positive even number of bases, not {value}")
    return value


@click.command("triples")
@click.option("--genome", required=True, metavar="FASTA",
              help="Genome FASTA, plain or bgzip-compressed (indexed on first use).")
@click.option("--annotation", required=True, metavar="GTF|GFF3",
              help="Transcript annotation: GTF or GFF3, plain or gzip.")
@click.option("-o", "--output", default="-", show_default=True, metavar="TSV",
              help="Triples table: .tsv, .tsv.gz, or - for stdout.")
@click.option("--dna-length", type=int, default=DEFAULT_DNA_LENGTH, show_default=True, callback=_even_positive,
              help="DNA window length in bases, centred on the TSS (even).")
@click.option("--with-dna", is_flag=True,
              help="Also write the DNA window sequence (dna column; ~196 kb per transcript).")
@click.option("--fasta-prefix", metavar="P",
              help="Also write P.rna.fa and P.protein.fa (and P.dna.fa with --with-dna).")
@record_options
@selection_options
def triples_command(genome, annotation, output, dna_length, with_dna, fasta_prefix, on_invalid, orf,
                    min_orf_length, transcripts, genes, region, biotypes, coding_only, contig_alias):
    """Build the DNA window, spliced RNA and protein of every transcript.

    Writes a TSV with one row per transcript: transcript_id gene_id gene_name biotype chrom
    strand tss window_start window_end cds_start cds_end rna protein flags (and dna with
    --with-dna). chrom is the genome FASTA's contig name; tss and the window [window_start,
    window_end) are 0-based genomic, and the window reads 5'->3' on the transcript's strand with
    the TSS at index dna-length/2. cds_start/cds_end are 0-based half-open on the RNA, from the
    first complete codon through the stop codon. A summary goes to stderr.
    """
    try:
        config = TriplesConfig(
            genome=genome, annotation=annotation, output=output, dna_length=dna_length, with_dna=with_dna,
            fasta_prefix=fasta_prefix, on_invalid=on_invalid, orf=orf, min_orf_length=min_orf_length,
            transcripts=transcripts, genes=genes, region=region, biotypes=split_biotypes(biotypes),
            coding_only=coding_only, contig_alias=contig_alias,
        )
        config.selection()
    except InputError as exc:
        # Bad option values are usage errors (exit 2), caught before any input is read.
        raise click.UsageError(str(exc)) from None
    run_triples(config)
