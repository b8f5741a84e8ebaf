"""GTF/GFF3 reader: every supported dialect, both example datasets, every error branch.

Fixtures are small hand-written excerpts in the style of each producer (GENCODE, Ensembl,
UCSC refGene, StringTie, IsoQuant, NCBI RefSeq GFF3, Ensembl GFF3). Expected intervals are written
out by hand as 0-based half-open pairs (1-based start - 1, end), so they never come from the code
under test; gffutils serves as an independent oracle on the example files.
"""

import gzip
import logging
import os
import re
import sys

import pytest

from isoformer_cli.errors import AnnotationError
from isoformer_cli.genomics import compressed
from isoformer_cli.genomics.annotation import detect_format, load_transcripts, read_annotation

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_data")
REFGENE = os.path.join(EXAMPLE, "hg38_chr16_186964-397118.refGene.gtf")
MOUSE_GTF = os.path.join(EXAMPLE, "chr9.4M.gtf.gz")


def rows(*records):
    """Tab-join records given as 9-item sequences (strings kept as written)."""
    return "".join("\t".join(str(field) for field in record) + "\n" for record in records)


def write(tmp_path, name, text, newline="\n", compress=False):
    path = tmp_path / name
    data = text.replace("\n", newline).encode()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return str(path)


def by_id(transcripts):
    return {t.transcript_id: t for t in transcripts}


# -- fixtures in the style of each producer ------------------------------------------------------

GENCODE_COMMON_1 = ('gene_id "ENSG00000001.5"; transcript_id "ENST00000001.2"; gene_type "protein_coding"; '
                    'gene_name "SELX"; transcript_type "protein_coding"; transcript_name "SELX-201"; level 2; '
                    'protein_id "ENSP00000001.1"; tag "basic"; tag "CCDS"; tag "MANE_Select"; '
                    'tag "selenoprotein";')
GENCODE_COMMON_2 = ('gene_id "ENSG00000002.1"; transcript_id "ENST00000002.1"; gene_type "protein_coding"; '
                    'gene_name "PART"; transcript_type "protein_coding"; level 3; tag "cds_start_NF"; '
                    'tag "mRNA_start_NF";')
GENCODE_COMMON_3 = ('gene_id "ENSG00000003.1"; transcript_id "ENST00000003.1"; gene_type "lncRNA"; '
                    'gene_name "LINC3"; transcript_type "lncRNA"; level 2; tag "basic";')
GENCODE_GTF = (
    "##description: evidence-based annotation of the human genome (GRCh38), version 44 (Ensembl 110)\n"
    "##provider: GENCODE\n##format: gtf\n"
    + rows(
        ("chr1", "HAVANA", "gene", 1000, 2000, ".", "-", ".", 'gene_id "ENSG00000001.5"; gene_type "protein_coding"; gene_name "SELX"; level 2;'),
        ("chr1", "HAVANA", "transcript", 1000, 2000, ".", "-", ".", GENCODE_COMMON_1),
        ("chr1", "HAVANA", "exon", 1801, 2000, ".", "-", ".", GENCODE_COMMON_1 + ' exon_number 1; exon_id "ENSE1.1";'),
        ("chr1", "HAVANA", "CDS", 1801, 1900, ".", "-", "0", GENCODE_COMMON_1 + " exon_number 1;"),
        ("chr1", "HAVANA", "start_codon", 1898, 1900, ".", "-", "0", GENCODE_COMMON_1),
        ("chr1", "HAVANA", "exon", 1401, 1500, ".", "-", ".", GENCODE_COMMON_1 + " exon_number 2;"),
        ("chr1", "HAVANA", "CDS", 1401, 1500, ".", "-", "2", GENCODE_COMMON_1 + " exon_number 2;"),
        ("chr1", "HAVANA", "exon", 1000, 1200, ".", "-", ".", GENCODE_COMMON_1 + " exon_number 3;"),
        ("chr1", "HAVANA", "CDS", 1003, 1200, ".", "-", "1", GENCODE_COMMON_1 + " exon_number 3;"),
        ("chr1", "HAVANA", "stop_codon", 1000, 1002, ".", "-", "0", GENCODE_COMMON_1),
        ("chr1", "HAVANA", "UTR", 1901, 2000, ".", "-", ".", GENCODE_COMMON_1),
        ("chr1", "HAVANA", "Selenocysteine", 1450, 1452, ".", "-", ".", GENCODE_COMMON_1),
        ("chr1", "HAVANA", "gene", 101, 400, ".", "+", ".", 'gene_id "ENSG00000002.1"; gene_type "protein_coding"; gene_name "PART";'),
        ("chr1", "HAVANA", "transcript", 101, 400, ".", "+", ".", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "exon", 101, 200, ".", "+", ".", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "CDS", 101, 199, ".", "+", "2", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "exon", 301, 400, ".", "+", ".", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "CDS", 303, 350, ".", "+", "0", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "stop_codon", 200, 200, ".", "+", "0", GENCODE_COMMON_2),
        ("chr1", "HAVANA", "stop_codon", 301, 302, ".", "+", "2", GENCODE_COMMON_2),
    )
    + "# a comment between records\n\n"
    + rows(
        ("chr2", "HAVANA", "gene", 5000, 5600, ".", "+", ".", 'gene_id "ENSG00000003.1"; gene_type "lncRNA"; gene_name "LINC3";'),
        ("chr2", "HAVANA", "transcript", 5000, 5600, ".", "+", ".", GENCODE_COMMON_3),
        ("chr2", "HAVANA", "exon", 5000, 5100, ".", "+", ".", GENCODE_COMMON_3),
        ("chr2", "HAVANA", "exon", 5501, 5600, ".", "+", ".", GENCODE_COMMON_3),
    )
)


def check_gencode(transcripts, source_name):
    assert [t.transcript_id for t in transcripts] == ["ENST00000001.2", "ENST00000002.1", "ENST00000003.1"]
    first, second, third = transcripts
    assert first.gene_id == "ENSG00000001.5" and first.gene_name == "SELX"
    assert first.biotype == "protein_coding" and first.chrom == "chr1" and first.strand == "-"
    assert first.exons == [(999, 1200), (1400, 1500), (1800, 2000)]
    assert first.cds == [(1002, 1200), (1400, 1500), (1800, 1900)]
    assert first.cds_phase == 0  # the 5'-most CDS on '-' is the highest one (phase 0), not 1002-1200 (phase 1)
    assert first.stop_codons == [(999, 1002)]
    assert first.selenocysteines == [(1449, 1452)]
    assert first.tags == ("basic", "CCDS", "MANE_Select", "selenoprotein")
    assert first.annotation_format == "gtf"
    assert first.source.endswith(f"{source_name}:5")
    assert second.cds_phase == 2 and second.tags == ("cds_start_NF", "mRNA_start_NF")
    assert second.stop_codons == [(199, 200), (300, 302)]  # split by the intron
    assert second.exons == [(100, 200), (300, 400)]
    assert third.biotype == "lncRNA" and third.cds == [] and third.cds_phase is None and not third.is_coding
    assert third.exons == [(4999, 5100), (5500, 5600)] and third.chrom == "chr2"


def test_gencode_gtf(tmp_path):
    path = write(tmp_path, "gencode.gtf", GENCODE_GTF)
    reader = read_annotation(path)
    assert reader.format == "gtf"
    transcripts = list(reader)
    check_gencode(transcripts, "gencode.gtf")
    summary = reader.summary
    assert summary.complete and summary.transcripts == 3 and summary.coding_transcripts == 2
    assert summary.contig_transcripts == {"chr1": 2, "chr2": 1}
    assert summary.lines == GENCODE_GTF.count("\n")


def test_gencode_gtf_crlf_and_gzip_give_the_same_transcripts(tmp_path):
    expected = load_transcripts(write(tmp_path, "plain.gtf", GENCODE_GTF))
    crlf = load_transcripts(write(tmp_path, "crlf.gtf", GENCODE_GTF, newline="\r\n"))
    gzipped = load_transcripts(write(tmp_path, "gencode.gtf.gz", GENCODE_GTF, compress=True))
    gzipped_crlf = load_transcripts(write(tmp_path, "no_suffix", GENCODE_GTF, newline="\r\n", compress=True))
    for other in (crlf, gzipped, gzipped_crlf):
        assert [(t.transcript_id, t.exons, t.cds, t.cds_phase, t.stop_codons, t.tags, t.gene_name, t.biotype)
                for t in other] == [(t.transcript_id, t.exons, t.cds, t.cds_phase, t.stop_codons, t.tags,
                                     t.gene_name, t.biotype) for t in expected]


ENSEMBL_GTF = (
    "#!genome-build GRCh38.p14\n#!genome-version GRCh38\n"
    + rows(
        ("1", "ensembl_havana", "gene", 11869, 14409, ".", "+", ".",
         'gene_id "ENSG00000290825"; gene_version "1"; gene_name "DDX11L2"; gene_source "havana"; gene_biotype "lncRNA";'),
        ("1", "havana", "transcript", 11869, 14409, ".", "+", ".",
         'gene_id "ENSG00000290825"; gene_version "1"; transcript_id "ENST00000456328"; transcript_version "2"; '
         'gene_name "DDX11L2"; gene_source "havana"; gene_biotype "lncRNA"; transcript_name "DDX11L2-202"; '
         'transcript_source "havana"; transcript_biotype "lncRNA"; tag "basic"; tag "Ensembl_canonical";'),
        ("1", "havana", "exon", 11869, 12227, ".", "+", ".",
         'gene_id "ENSG00000290825"; transcript_id "ENST00000456328"; exon_number "1"; gene_name "DDX11L2"; '
         'transcript_biotype "lncRNA"; exon_id "ENSE00002234944";'),
        ("1", "havana", "exon", 12613, 12721, ".", "+", ".",
         'gene_id "ENSG00000290825"; transcript_id "ENST00000456328"; exon_number "2";'),
        ("1", "ensembl", "transcript", 65419, 71585, ".", "+", ".",
         'gene_id "ENSG00000186092"; transcript_id "ENST00000641515"; gene_name "OR4F5"; gene_biotype "protein_coding"; '
         'transcript_biotype "protein_coding"; tag "basic";'),
        ("1", "ensembl", "exon", 65419, 65433, ".", "+", ".", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "five_prime_utr", 65419, 65433, ".", "+", ".", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "exon", 65520, 65573, ".", "+", ".", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "CDS", 65565, 65573, ".", "+", "0", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "start_codon", 65565, 65567, ".", "+", "0", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "exon", 69037, 71585, ".", "+", ".", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "CDS", 69037, 70005, ".", "+", "0", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "stop_codon", 70006, 70008, ".", "+", "0", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
        ("1", "ensembl", "three_prime_utr", 70009, 71585, ".", "+", ".", 'gene_id "ENSG00000186092"; transcript_id "ENST00000641515";'),
    )
)


def test_ensembl_gtf(tmp_path):
    transcripts = by_id(read_annotation(write(tmp_path, "Homo_sapiens.GRCh38.110.gtf", ENSEMBL_GTF)))
    lnc = transcripts["ENST00000456328"]
    assert (lnc.gene_id, lnc.gene_name, lnc.biotype, lnc.chrom) == ("ENSG00000290825", "DDX11L2", "lncRNA", "1")
    assert lnc.exons == [(11868, 12227), (12612, 12721)] and lnc.tags == ("basic", "Ensembl_canonical")
    coding = transcripts["ENST00000641515"]
    assert coding.biotype == "protein_coding" and coding.gene_name == "OR4F5"
    assert coding.cds == [(65564, 65573), (69036, 70005)] and coding.stop_codons == [(70005, 70008)]
    assert coding.cds_phase == 0


def test_refgene_example_file():
    reader = read_annotation(REFGENE)
    transcripts = list(reader)
    assert reader.format == "gtf"
    assert len(transcripts) == 17 and sum(t.is_coding for t in transcripts) == 14
    # No gene/transcript lines: gene_id equals transcript_id, no name or biotype to be had.
    assert all(t.gene_id == t.transcript_id and t.gene_name == "" and t.biotype == "" for t in transcripts)
    first, second = transcripts[0], transcripts[1]
    assert first.transcript_id == "NR_104317" and not first.is_coding and first.source.endswith(":1")
    assert first.exons[:2] == [(47582, 47894), (62585, 62691)] and len(first.exons) == 14
    assert second.transcript_id == "NM_001284497" and second.source.endswith(":15")
    assert second.cds[0] == (67450, 67718) and second.stop_codons == [(78056, 78059)]
    assert {t.strand for t in transcripts} == {"+", "-"}
    for t in transcripts:
        assert t.exons == sorted(t.exons) and t.cds == sorted(t.cds)


def test_gencode_style_example_file():
    reader = read_annotation(MOUSE_GTF)
    transcripts = list(reader)
    assert len(transcripts) == 54 and reader.summary.coding_transcripts == 33
    assert transcripts[0].transcript_id == "ENSMUST00000181242.1" and transcripts[0].gene_name == "Gm26870"
    incomplete = [t for t in transcripts if "cds_start_NF" in t.tags or "cds_end_NF" in t.tags]
    assert incomplete, "the mouse example holds incomplete CDS tags"
    for t in transcripts:
        assert t.annotation_format == "gtf" and t.exons == sorted(t.exons)
        if t.cds:
            assert t.cds_phase in (0, 1, 2)


STRINGTIE_GTF = (
    "# stringtie -p 8 -G ref.gtf -o out.gtf sample.bam\n# StringTie version 2.2.1\n"
    + rows(
        ("chr1", "StringTie", "transcript", 100, 500, "1000", "+", ".",
         'gene_id "STRG.1"; transcript_id "STRG.1.1"; cov "12.5"; FPKM "3.2"; TPM "5.1";'),
        ("chr1", "StringTie", "exon", 100, 200, "1000", "+", ".", 'gene_id "STRG.1"; transcript_id "STRG.1.1"; exon_number "1"; cov "10.0";'),
        ("chr1", "StringTie", "exon", 301, 500, "1000", "+", ".", 'gene_id "STRG.1"; transcript_id "STRG.1.1"; exon_number "2"; cov "15.0";'),
        ("chr1", "StringTie", "transcript", 1000, 1500, "1000", "-", ".",
         'gene_id "STRG.2"; transcript_id "ENST00000123.1"; reference_id "ENST00000123.1"; ref_gene_id "ENSG00000099.1"; '
         'ref_gene_name "ABC"; cov "3.0"; FPKM "1.0"; TPM "1.5";'),
        ("chr1", "StringTie", "exon", 1000, 1500, "1000", "-", ".", 'gene_id "STRG.2"; transcript_id "ENST00000123.1"; exon_number "1";'),
    )
)

ISOQUANT_GTF = rows(
    ("chr1", "IsoQuant", "gene", 100, 900, ".", "+", ".", 'gene_id "novel_gene_chr1_1"; gene_biotype "novel";'),
    ("chr1", "IsoQuant", "transcript", 100, 900, ".", "+", ".",
     'gene_id "novel_gene_chr1_1"; transcript_id "transcript1.chr1.nic"; canonical "True";'),
    ("chr1", "IsoQuant", "exon", 100, 300, ".", "+", ".", 'gene_id "novel_gene_chr1_1"; transcript_id "transcript1.chr1.nic"; exon_number "1";'),
    ("chr1", "IsoQuant", "exon", 700, 900, ".", "+", ".", 'gene_id "novel_gene_chr1_1"; transcript_id "transcript1.chr1.nic"; exon_number "2";'),
)


def test_stringtie_and_isoquant_assemblies(tmp_path):
    stringtie = load_transcripts(write(tmp_path, "stringtie.gtf", STRINGTIE_GTF))
    assert [t.transcript_id for t in stringtie] == ["STRG.1.1", "ENST00000123.1"]
    assert stringtie[0].exons == [(99, 200), (300, 500)] and stringtie[0].cds == [] and stringtie[0].gene_id == "STRG.1"
    assert stringtie[1].gene_name == "ABC" and stringtie[1].strand == "-"
    isoquant = load_transcripts(write(tmp_path, "isoquant.gtf", ISOQUANT_GTF))
    assert len(isoquant) == 1 and isoquant[0].exons == [(99, 300), (699, 900)]
    assert isoquant[0].gene_id == "novel_gene_chr1_1"


NCBI_GFF3 = """##gff-version 3
#!gff-spec-version 1.21
#!processor NCBI annotwriter
##sequence-region NC_000001.11 1 248956422
##species https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id=9606
""" + rows(
    ("NC_000001.11", "RefSeq", "region", 1, 248956422, ".", "+", ".",
     "ID=NC_000001.11:1..248956422;Dbxref=taxon:9606;Name=1;chromosome=1;gbkey=Src;genome=chromosome;mol_type=genomic DNA"),
    ("NC_000001.11", "BestRefSeq", "gene", 1000, 3000, ".", "+", ".",
     "ID=gene-SELP1;Dbxref=GeneID:123,HGNC:HGNC:1;Name=SELP1;description=selenoprotein P1%3B test;gbkey=Gene;gene=SELP1;gene_biotype=protein_coding"),
    ("NC_000001.11", "BestRefSeq", "mRNA", 1000, 3000, ".", "+", ".",
     "ID=rna-NM_000001.2;Parent=gene-SELP1;Dbxref=GeneID:123,GenBank:NM_000001.2;Name=NM_000001.2;gbkey=mRNA;gene=SELP1;"
     "product=selenoprotein P1;tag=MANE Select;transcript_id=NM_000001.2"),
    ("NC_000001.11", "BestRefSeq", "exon", 1000, 1200, ".", "+", ".",
     "ID=exon-NM_000001.2-1;Parent=rna-NM_000001.2;gbkey=mRNA;gene=SELP1;transcript_id=NM_000001.2"),
    ("NC_000001.11", "BestRefSeq", "exon", 2001, 3000, ".", "+", ".",
     "ID=exon-NM_000001.2-2;Parent=rna-NM_000001.2;gbkey=mRNA;gene=SELP1;transcript_id=NM_000001.2"),
    ("NC_000001.11", "BestRefSeq", "CDS", 1101, 1200, ".", "+", "0",
     "ID=cds-NP_000001.1;Parent=rna-NM_000001.2;Name=NP_000001.1;gbkey=CDS;gene=SELP1;product=selenoprotein P1;"
     "protein_id=NP_000001.1;transl_except=(pos:2101..2103%2Caa:Sec)"),
    ("NC_000001.11", "BestRefSeq", "CDS", 2001, 2503, ".", "+", "2",
     "ID=cds-NP_000001.1;Parent=rna-NM_000001.2;Name=NP_000001.1;gbkey=CDS;gene=SELP1;"
     "protein_id=NP_000001.1;transl_except=(pos:2101..2103%2Caa:Sec)"),
    ("NC_000001.11", "BestRefSeq", "gene", 5000, 7000, ".", "-", ".",
     "ID=gene-LINC1;Dbxref=GeneID:456;Name=LINC1;gbkey=Gene;gene=LINC1;gene_biotype=lncRNA"),
    ("NC_000001.11", "BestRefSeq", "lnc_RNA", 5000, 7000, ".", "-", ".",
     "ID=rna-NR_000002.1;Parent=gene-LINC1;Name=NR_000002.1;gbkey=ncRNA;gene=LINC1;transcript_id=NR_000002.1"),
    ("NC_000001.11", "BestRefSeq", "exon", 6501, 7000, ".", "-", ".", "ID=exon-NR_000002.1-1;Parent=rna-NR_000002.1;gene=LINC1"),
    ("NC_000001.11", "BestRefSeq", "exon", 5000, 5300, ".", "-", ".", "ID=exon-NR_000002.1-2;Parent=rna-NR_000002.1;gene=LINC1"),
    ("NC_000001.11", "Gnomon", "gene", 8000, 9000, ".", "-", ".",
     "ID=gene-PART1;Name=PART1;gbkey=Gene;gene=PART1;gene_biotype=protein_coding;partial=true;start_range=.,8000"),
    ("NC_000001.11", "Gnomon", "mRNA", 8000, 9000, ".", "-", ".",
     "ID=rna-XM_000003.1;Parent=gene-PART1;gbkey=mRNA;gene=PART1;partial=true;start_range=.,8000;transcript_id=XM_000003.1"),
    ("NC_000001.11", "Gnomon", "exon", 8000, 9000, ".", "-", ".", "ID=exon-XM_000003.1-1;Parent=rna-XM_000003.1;partial=true;start_range=.,8000"),
    ("NC_000001.11", "Gnomon", "CDS", 8000, 8800, ".", "-", "0", "ID=cds-XP_000003.1;Parent=rna-XM_000003.1;partial=true;start_range=.,8000"),
    ("NC_000001.11", "Curated Genomic", "pseudogene", 10000, 10500, ".", "+", ".",
     "ID=gene-PSG1;Name=PSG1;gbkey=Gene;gene=PSG1;gene_biotype=transcribed_pseudogene;pseudo=true"),
    ("NC_000001.11", "Curated Genomic", "exon", 10000, 10500, ".", "+", ".", "ID=id-PSG1;Parent=gene-PSG1;gbkey=exon;gene=PSG1;pseudo=true"),
) + "###\n##sequence-region NC_012920.1 1 16569\n" + rows(
    ("NC_012920.1", "RefSeq", "region", 1, 16569, ".", "+", ".", "ID=NC_012920.1:1..16569;Is_circular=true;genome=mitochondrion"),
    ("NC_012920.1", "RefSeq", "gene", 3307, 4262, ".", "+", ".", "ID=gene-ND1;Name=ND1;gbkey=Gene;gene=ND1;gene_biotype=protein_coding"),
    ("NC_012920.1", "RefSeq", "CDS", 3307, 4262, ".", "+", "0",
     "ID=cds-YP_003024026.1;Parent=gene-ND1;Name=YP_003024026.1;gbkey=CDS;gene=ND1;transl_table=2"),
)


def test_ncbi_gff3(tmp_path):
    reader = read_annotation(write(tmp_path, "GCF_000001405.40_GRCh38.p14_genomic.gff", NCBI_GFF3))
    assert reader.format == "gff3"
    transcripts = list(reader)
    assert [t.transcript_id for t in transcripts] == [
        "rna-NM_000001.2", "rna-NR_000002.1", "rna-XM_000003.1", "gene-PSG1", "gene-ND1"]
    sel, lnc, partial, pseudo, mito = transcripts
    assert (sel.gene_id, sel.gene_name, sel.biotype) == ("gene-SELP1", "SELP1", "protein_coding")
    assert sel.exons == [(999, 1200), (2000, 3000)] and sel.cds == [(1100, 1200), (2000, 2503)]
    assert sel.cds_phase == 0 and sel.annotation_format == "gff3" and sel.stop_codons == []
    assert sel.selenocysteines == [(2100, 2103)] and "MANE Select" in sel.tags
    assert sel.source.endswith(".gff:8")
    assert (lnc.biotype, lnc.strand, lnc.exons) == ("lncRNA", "-", [(4999, 5300), (6500, 7000)])
    # start_range = the left end is incomplete: on '-' that is the 3' end.
    assert set(partial.tags) == {"mRNA_end_NF", "cds_end_NF"}
    assert (pseudo.gene_id, pseudo.gene_name, pseudo.biotype, pseudo.exons) == (
        "gene-PSG1", "PSG1", "transcribed_pseudogene", [(9999, 10500)])
    # A CDS hanging directly from a gene, without exon lines: exons from the CDS, as gffread does.
    assert mito.chrom == "NC_012920.1" and mito.exons == [(3306, 4262)] and mito.cds == [(3306, 4262)]
    assert reader.summary.exons_from_cds == 1


ENSEMBL_GFF3 = """##gff-version 3
##sequence-region   1 1 248956422
#!genome-build  GRCh38.p14
#!genome-version GRCh38
""" + rows(
    ("1", "ensembl_havana", "gene", 1000, 3000, ".", "-", ".",
     "ID=gene:ENSG00000000001;Name=XYZ;biotype=protein_coding;description=xyz protein [Source:HGNC Symbol%3BAcc:HGNC:9];"
     "gene_id=ENSG00000000001;logic_name=ensembl_havana_gene_homo_sapiens;version=5"),
    ("1", "ensembl_havana", "mRNA", 1000, 3000, ".", "-", ".",
     "ID=transcript:ENST00000000001;Parent=gene:ENSG00000000001;Name=XYZ-201;biotype=protein_coding;"
     "tag=basic,Ensembl_canonical;transcript_id=ENST00000000001;version=3"),
    ("1", "ensembl_havana", "five_prime_UTR", 2901, 3000, ".", "-", ".", "Parent=transcript:ENST00000000001"),
    ("1", "ensembl_havana", "exon", 2801, 3000, ".", "-", ".",
     "Parent=transcript:ENST00000000001;Name=ENSE00000000001;constitutive=1;ensembl_end_phase=2;ensembl_phase=-1;"
     "exon_id=ENSE00000000001;rank=1;version=1"),
    ("1", "ensembl_havana", "CDS", 2801, 2900, ".", "-", "0",
     "ID=CDS:ENSP00000000001;Parent=transcript:ENST00000000001;protein_id=ENSP00000000001"),
    ("1", "ensembl_havana", "exon", 1000, 1500, ".", "-", ".", "Parent=transcript:ENST00000000001;Name=ENSE00000000002;rank=2"),
    ("1", "ensembl_havana", "CDS", 1200, 1500, ".", "-", "2",
     "ID=CDS:ENSP00000000001;Parent=transcript:ENST00000000001;protein_id=ENSP00000000001"),
    ("1", "ensembl_havana", "three_prime_UTR", 1000, 1199, ".", "-", ".", "Parent=transcript:ENST00000000001"),
) + "###\n" + rows(
    ("1", "havana", "ncRNA_gene", 5000, 6000, ".", "+", ".",
     "ID=gene:ENSG00000000002;Name=LNC;biotype=lncRNA;gene_id=ENSG00000000002;version=1"),
    ("1", "havana", "lnc_RNA", 5000, 6000, ".", "+", ".",
     "ID=transcript:ENST00000000002;Parent=gene:ENSG00000000002;Name=LNC-201;biotype=lncRNA;tag=basic;"
     "transcript_id=ENST00000000002;version=1"),
    ("1", "havana", "exon", 5000, 5100, ".", "+", ".", "Parent=transcript:ENST00000000002;rank=1"),
    ("1", "havana", "exon", 5901, 6000, ".", "+", ".", "Parent=transcript:ENST00000000002;rank=2"),
) + "###\n##FASTA\n>1\nACGTACGTAC\n>2 not parsed\nNNNN\n"


def test_ensembl_gff3(tmp_path):
    reader = read_annotation(write(tmp_path, "Homo_sapiens.GRCh38.110.gff3.gz", ENSEMBL_GFF3, compress=True))
    transcripts = list(reader)
    assert [t.transcript_id for t in transcripts] == ["ENST00000000001", "ENST00000000002"]
    coding, lnc = transcripts
    assert (coding.gene_id, coding.gene_name, coding.biotype) == ("ENSG00000000001", "XYZ", "protein_coding")
    assert coding.exons == [(999, 1500), (2800, 3000)] and coding.cds == [(1199, 1500), (2800, 2900)]
    assert coding.cds_phase == 0 and coding.tags == ("basic", "Ensembl_canonical")
    assert (lnc.gene_id, lnc.gene_name, lnc.biotype, lnc.tags) == ("ENSG00000000002", "LNC", "lncRNA", ("basic",))
    assert reader.summary.transcripts == 2  # the ##FASTA section is not read as records


def test_gencode_gff3_crlf(tmp_path):
    text = "##gff-version 3\n" + rows(
        ("chr1", "HAVANA", "gene", 11869, 14409, ".", "+", ".",
         "ID=ENSG00000290825.1;gene_id=ENSG00000290825.1;gene_type=lncRNA;gene_name=DDX11L2;level=2"),
        ("chr1", "HAVANA", "transcript", 11869, 14409, ".", "+", ".",
         "ID=ENST00000456328.2;Parent=ENSG00000290825.1;gene_id=ENSG00000290825.1;transcript_id=ENST00000456328.2;"
         "gene_type=lncRNA;gene_name=DDX11L2;transcript_type=lncRNA;transcript_name=DDX11L2-202;level=2;tag=basic,Ensembl_canonical"),
        ("chr1", "HAVANA", "exon", 11869, 12227, ".", "+", ".",
         "ID=exon:ENST00000456328.2:1;Parent=ENST00000456328.2;gene_id=ENSG00000290825.1"),
        ("chr1", "HAVANA", "exon", 12613, 12721, ".", "+", ".",
         "ID=exon:ENST00000456328.2:2;Parent=ENST00000456328.2;gene_id=ENSG00000290825.1"),
    )
    (transcript,) = load_transcripts(write(tmp_path, "gencode.gff3", text, newline="\r\n"))
    assert transcript.transcript_id == "ENST00000456328.2" and transcript.gene_id == "ENSG00000290825.1"
    assert transcript.gene_name == "DDX11L2" and transcript.biotype == "lncRNA"
    assert transcript.exons == [(11868, 12227), (12612, 12721)]
    assert transcript.tags == ("basic", "Ensembl_canonical")


def test_gff3_exon_with_several_parents_belongs_to_each(tmp_path):
    text = "##gff-version 3\n" + rows(
        ("ctg", "src", "gene", 1, 1000, ".", "+", ".", "ID=g1;Name=GENE1"),
        ("ctg", "src", "mRNA", 1, 1000, ".", "+", ".", "ID=t1;Parent=g1"),
        ("ctg", "src", "mRNA", 1, 800, ".", "+", ".", "ID=t2;Parent=g1"),
        ("ctg", "src", "exon", 1, 100, ".", "+", ".", "ID=e1;Parent=t1,t2"),
        ("ctg", "src", "exon", 501, 800, ".", "+", ".", "Parent=t2"),
        ("ctg", "src", "exon", 901, 1000, ".", "+", ".", "Parent=t1"),
    )
    t1, t2 = load_transcripts(write(tmp_path, "multi.gff3", text))
    assert (t1.transcript_id, t1.exons, t1.gene_name) == ("t1", [(0, 100), (900, 1000)], "GENE1")
    assert (t2.transcript_id, t2.exons, t2.gene_id) == ("t2", [(0, 100), (500, 800)], "g1")


def test_exons_from_cds_utr_and_stop_like_gffread(tmp_path):
    # gffread 0.12.7 builds the exons of exon-less transcripts from CDS + UTR + stop codon
    # segments, merging touching ones, and uses a bare transcript line as one exon.
    text = rows(
        ("c1", "t", "CDS", 101, 130, ".", "+", "0", 'gene_id "g1"; transcript_id "t1";'),
        ("c1", "t", "CDS", 201, 230, ".", "+", "0", 'gene_id "g1"; transcript_id "t1";'),
        ("c1", "t", "stop_codon", 231, 233, ".", "+", "0", 'gene_id "g1"; transcript_id "t1";'),
        ("c1", "t", "5UTR", 51, 100, ".", "+", ".", 'gene_id "g2"; transcript_id "t2";'),
        ("c1", "t", "CDS", 101, 130, ".", "+", "0", 'gene_id "g2"; transcript_id "t2";'),
        ("c1", "t", "CDS", 201, 230, ".", "+", "0", 'gene_id "g2"; transcript_id "t2";'),
        ("c1", "t", "stop_codon", 231, 233, ".", "+", "0", 'gene_id "g2"; transcript_id "t2";'),
        ("c1", "t", "3UTR", 231, 300, ".", "+", ".", 'gene_id "g2"; transcript_id "t2";'),
        ("c1", "t", "transcript", 101, 300, ".", "+", ".", 'gene_id "g3"; transcript_id "t3";'),
    )
    reader = read_annotation(write(tmp_path, "noexons.gtf", text))
    t1, t2, t3 = list(reader)
    assert t1.exons == [(100, 130), (200, 233)] and t1.cds == [(100, 130), (200, 230)]
    assert t2.exons == [(50, 130), (200, 300)]
    assert t3.exons == [(100, 300)] and t3.cds == []
    assert reader.summary.exons_from_cds == 2 and reader.summary.span_as_exon == 1


def test_gtf_attribute_spellings(tmp_path):
    text = rows(
        # a quoted value holding ';' and spaces before the ids; a look-alike key must not match
        ("c1", "x", "exon", 1, 10, ".", "+", ".",
         'note "a; b c"; original_transcript_id "WRONG"; gene_id "g1"; transcript_id "t1"; gene_name "N1";'),
        # unquoted values (some converters write them)
        ("c1", "x", "exon", 21, 30, ".", "+", ".", "gene_id g2; transcript_id t2; gene_biotype lncRNA;"),
        # trailing tab after the attributes
        ("c1", "x", "exon", 41, 50, ".", "+", ".", 'gene_id "g3"; transcript_id "t3";\t'),
    )
    t1, t2, t3 = load_transcripts(write(tmp_path, "spellings.gtf", text))
    assert (t1.transcript_id, t1.gene_id, t1.gene_name) == ("t1", "g1", "N1")
    assert (t2.transcript_id, t2.gene_id, t2.biotype) == ("t2", "g2", "lncRNA")
    assert t3.exons == [(40, 50)]


def test_transcripts_are_streamed_per_contig(tmp_path):
    # chr1's transcript must come out before the reader reaches the bad line of chr2.
    text = rows(
        ("chr1", "x", "exon", 1, 10, ".", "+", ".", 'gene_id "g1"; transcript_id "t1";'),
        ("chr2", "x", "exon", 1, 10, ".", "+", ".", 'gene_id "g2"; transcript_id "t2";'),
        ("chr2", "x", "exon", 30, 20, ".", "+", ".", 'gene_id "g2"; transcript_id "t2";'),
    )
    iterator = iter(read_annotation(write(tmp_path, "stream.gtf", text)))
    assert next(iterator).transcript_id == "t1"
    with pytest.raises(AnnotationError, match=r"stream\.gtf:3: start 30 is after end 20"):
        next(iterator)


def test_contig_blocks_may_repeat_when_transcripts_stay_together(tmp_path):
    text = rows(
        ("chr1", "x", "exon", 1, 10, ".", "+", ".", 'transcript_id "t1";'),
        ("chr2", "x", "exon", 1, 10, ".", "-", ".", 'transcript_id "t2";'),
        ("chr1", "x", "exon", 100, 110, ".", "+", ".", 'transcript_id "t3";'),
    )
    reader = read_annotation(write(tmp_path, "blocks.gtf", text))
    assert [t.transcript_id for t in reader] == ["t1", "t2", "t3"]
    assert reader.summary.contig_transcripts == {"chr1": 2, "chr2": 1}


def test_ungrouped_files_need_grouped_false(tmp_path):
    # All exons first, then all CDS lines, across contigs (some converters write this).
    text = rows(
        ("chr1", "x", "exon", 1, 100, ".", "+", ".", 'transcript_id "t1";'),
        ("chr2", "x", "exon", 1, 100, ".", "-", ".", 'transcript_id "t2";'),
        ("chr1", "x", "CDS", 11, 90, ".", "+", "1", 'transcript_id "t1";'),
        ("chr2", "x", "CDS", 21, 80, ".", "-", "2", 'transcript_id "t2";'),
    )
    path = write(tmp_path, "by_type.gtf", text)
    with pytest.raises(AnnotationError, match=r"by_type\.gtf:3: records of transcript t1 resume after records of other"):
        load_transcripts(path)
    t1, t2 = load_transcripts(path, grouped=False)
    assert (t1.transcript_id, t1.exons, t1.cds, t1.cds_phase) == ("t1", [(0, 100)], [(10, 90)], 1)
    assert (t2.transcript_id, t2.chrom, t2.cds, t2.cds_phase) == ("t2", "chr2", [(20, 80)], 2)
    gff3 = "##gff-version 3\n" + rows(
        ("c1", "s", "mRNA", 1, 100, ".", "+", ".", "ID=m1"),
        ("c2", "s", "mRNA", 1, 100, ".", "+", ".", "ID=m2"),
        ("c1", "s", "exon", 1, 100, ".", "+", ".", "Parent=m1"),
        ("c2", "s", "exon", 1, 50, ".", "+", ".", "Parent=m2"),
    )
    m1, m2 = load_transcripts(write(tmp_path, "by_type.gff3", gff3), grouped=False)
    assert (m1.exons, m2.exons, m2.chrom) == ([(0, 100)], [(0, 50)], "c2")
    # the same id on two contigs is still an error when everything is held
    clash = rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD), ("chr2", "x", "exon", 1, 10, ".", "+", ".", GOOD))
    with pytest.raises(AnnotationError, match=r"clash\.gtf:2: duplicate transcript id t1 on chr1 \(line 1\) and chr2"):
        load_transcripts(write(tmp_path, "clash.gtf", clash), grouped=False)
    clash3 = "##gff-version 3\n" + rows(("c1", "s", "exon", 1, 10, ".", "+", ".", "Parent=m1"),
                                        ("c2", "s", "exon", 1, 10, ".", "+", ".", "Parent=m1"))
    with pytest.raises(AnnotationError, match=r"clash\.gff3:3: duplicate transcript id m1 on c1 \(line 2\) and c2"):
        load_transcripts(write(tmp_path, "clash.gff3", clash3), grouped=False)


def test_a_reader_is_iterated_once(tmp_path):
    reader = read_annotation(write(tmp_path, "a.gtf", STRINGTIE_GTF))
    list(reader)
    with pytest.raises(RuntimeError):
        list(reader)


def test_skip_unstranded(tmp_path, caplog):
    text = rows(
        ("chr1", "StringTie", "transcript", 1, 100, ".", ".", ".", 'gene_id "STRG.9"; transcript_id "STRG.9.1";'),
        ("chr1", "StringTie", "exon", 1, 100, ".", ".", ".", 'gene_id "STRG.9"; transcript_id "STRG.9.1";'),
        ("chr1", "StringTie", "exon", 201, 300, ".", "+", ".", 'gene_id "STRG.10"; transcript_id "STRG.10.1";'),
    )
    path = write(tmp_path, "unstranded.gtf", text)
    with pytest.raises(AnnotationError, match=r"unstranded\.gtf:1: transcript STRG\.9\.1 has no usable strand"):
        load_transcripts(path)
    reader = read_annotation(path, skip_unstranded=True)
    with caplog.at_level(logging.WARNING):
        assert [t.transcript_id for t in reader] == ["STRG.10.1"]
    assert reader.summary.skipped_unstranded == 1 and "skipped 1 transcripts" in caplog.text


# -- format detection ----------------------------------------------------------------------------

def test_format_comes_from_the_content_not_the_suffix(tmp_path):
    assert detect_format(write(tmp_path, "really_gff3.gtf", ENSEMBL_GFF3.split("\n", 1)[1])) == "gff3"
    assert detect_format(write(tmp_path, "really_gtf.gff3", STRINGTIE_GTF)) == "gtf"
    assert detect_format(write(tmp_path, "anno.txt.gz", NCBI_GFF3, compress=True)) == "gff3"
    # nothing to go on (only comments): the suffix decides
    assert detect_format(write(tmp_path, "empty.gff3", "# nothing\n")) == "gff3"


# -- errors: one line naming the file and the line or transcript ---------------------------------

GOOD = 'gene_id "g1"; transcript_id "t1";'


@pytest.mark.parametrize("text, pattern", [
    ("chr1 HAVANA exon 1 10 . + . gene_id \"g\"; transcript_id \"t\";\n",
     r"bad\.gtf:1: expected 9 tab-separated columns, found 1 \(spaces instead of tabs\?\)"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD))[:-1] + "\textra\n",
     r"bad\.gtf:1: expected 9 tab-separated columns, found 10"),
    (rows(("chr1", "x", "exon", "1e3", 10, ".", "+", ".", GOOD)),
     r"bad\.gtf:1: start and end \(columns 4 and 5\) must be whole numbers, found '1e3' and '10'"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD), ("chr1", "x", "exon", 50, 20, ".", "+", ".", GOOD)),
     r"bad\.gtf:2: start 50 is after end 20"),
    (rows(("chr1", "x", "exon", 0, 10, ".", "+", ".", GOOD)), r"bad\.gtf:1: start 0 is below 1"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "x", ".", GOOD)), r"bad\.gtf:1: unknown strand 'x'"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD), ("chr1", "x", "exon", 20, 30, ".", "-", ".", GOOD)),
     r"bad\.gtf:2: exon of transcript t1 is on strand '-' but the transcript's first record \(line 1\) is on '\+'"),
    (rows(("chr1", "x", "exon", 1, 10, ".", ".", ".", GOOD)), r"bad\.gtf:1: transcript t1 has no usable strand"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", 'gene_id "g1";')),
     r"bad\.gtf:1: exon record without a transcript_id attribute"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", 'gene_id "g1"; transcript_id "";')),
     r"bad\.gtf:1: exon record without a transcript_id attribute"),
    (rows(("chr1", "x", "exon", 1, 100, ".", "+", ".", GOOD), ("chr1", "x", "CDS", 90, 120, ".", "+", "0", GOOD)),
     r"bad\.gtf:1: CDS 90-120 \(1-based\) of transcript t1 is not inside any of its exons \(1-100\)"),
    (rows(("chr1", "x", "exon", 1, 100, ".", "+", ".", GOOD), ("chr1", "x", "exon", 50, 150, ".", "+", ".", GOOD)),
     r"bad\.gtf:1: transcript t1 has overlapping exons 1-100 and 50-150"),
    (rows(("chr1", "x", "exon", 1, 100, ".", "+", ".", GOOD), ("chr1", "x", "CDS", 1, 60, ".", "+", "0", GOOD),
          ("chr1", "x", "CDS", 50, 90, ".", "+", "0", GOOD)),
     r"bad\.gtf:1: transcript t1 has overlapping CDS segments 1-60 and 50-90"),
    (rows(("chr1", "x", "exon", 1, 100, ".", "+", ".", GOOD), ("chr1", "x", "CDS", 1, 60, ".", "+", "x", GOOD)),
     r"bad\.gtf:1: transcript t1 has CDS phase 'x'"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD), ("chr2", "x", "exon", 1, 10, ".", "+", ".", 'transcript_id "t2";'),
          ("chr2", "x", "exon", 50, 60, ".", "+", ".", GOOD)),
     r"bad\.gtf:3: duplicate transcript id t1 on chr1 \(line 1\) and chr2 \(line 3\)"),
    (rows(("chr1", "x", "exon", 1, 10, ".", "+", ".", GOOD), ("chr2", "x", "exon", 1, 10, ".", "+", ".", 'transcript_id "t2";'),
          ("chr1", "x", "exon", 50, 60, ".", "+", ".", GOOD)),
     r"bad\.gtf:3: records of transcript t1 resume after records of other contigs .*not grouped by contig.*"
     r"`grep -v '\^#' \S*bad\.gtf \| sort -k1,1 -k4,4n > sorted\.gtf`"),
    (rows(("chr1", "x", "gene", 1, 10, ".", "+", ".", 'gene_id "g1";'), ("chr1", "x", "gene", 20, 30, ".", "+", ".", 'gene_id "g2";')),
     r"bad\.gtf: no transcripts found: .*found 2 gene in 2 lines"),
    ("", r"bad\.gtf: no transcripts found: .*found no feature lines in 0 lines"),
    (">chr1\nACGT\n", r"bad\.gtf:1: this is a FASTA file, not a GTF/GFF3 annotation"),
    ("\x00\x01binary\x02 stuff\n", r"bad\.gtf: looks like a binary file \(not text\), not a GTF/GFF3 annotation; "
                                  r"--annotation takes a GTF or GFF3 file \(plain or gzip\)"),
])
def test_gtf_errors_name_file_and_line(tmp_path, text, pattern):
    path = write(tmp_path, "bad.gtf", text)
    with pytest.raises(AnnotationError, match=pattern) as info:
        load_transcripts(path)
    assert "\n" not in str(info.value)


GFF3_HEAD = "##gff-version 3\n"


@pytest.mark.parametrize("text, pattern", [
    (GFF3_HEAD + rows(("c", "s", "mRNA", 1, 100, ".", "+", ".", "ID=t1"), ("c", "s", "exon", 1, 100, ".", "+", ".", "ID=e1")),
     r"bad\.gff3:3: exon record without a Parent attribute"),
    (GFF3_HEAD + rows(("c", "s", "mRNA", 1, 100, ".", "+", ".", "ID=t1"), ("c", "s", "exon", 1, 100, ".", "-", ".", "Parent=t1")),
     r"bad\.gff3:3: exon of transcript t1 is on strand '-' but the transcript's first record \(line 2\) is on '\+'"),
    (GFF3_HEAD + rows(("c", "s", "mRNA", 1, 100, ".", "+", ".", "ID=t1"), ("c", "s", "exon", 1, 100, ".", "+", ".", "Parent=t1"),
                      ("d", "s", "exon", 1, 100, ".", "+", ".", "Parent=t1")),
     r"bad\.gff3:4: duplicate transcript id t1 on c \(line 2\) and d \(line 4\)"),
    (GFF3_HEAD + rows(("c", "s", "exon", 1, 100, ".", "+", ".", "Parent=t1"), ("c", "s", "mRNA", 1, 100, ".", "-", ".", "ID=t1")),
     r"bad\.gff3:2: records of transcript t1 are on c strand \+ but its mRNA line \(line 3\) is on c strand -"),
    (GFF3_HEAD + rows(("c", "s", "exon", 1, 100, ".", "+", ".", "Parent=t1"), ("c", "s", "CDS", 150, 180, ".", "+", "0", "Parent=t1"),
                      ("c", "s", "mRNA", 1, 100, ".", "+", ".", "ID=t1")),
     r"bad\.gff3:2: CDS 150-180 \(1-based\) of transcript t1 is not inside any of its exons"),
    (GFF3_HEAD + rows(("c", "s", "gene", 1, 100, ".", "+", ".", "ID=g1"), ("c", "s", "region", 1, 1000, ".", "+", ".", "ID=r")),
     r"bad\.gff3: no transcripts found: .*1 gene, 1 region"),
    (GFF3_HEAD + rows(("c", "s", "exon", 1, 100, ".", "+", ".", "Parent=t1")) + ">c\nACGT\n",
     r"bad\.gff3:3: FASTA sequence inside the GFF3 without a '##FASTA' line"),
    (GFF3_HEAD + rows(("c", "s", "mRNA", 10, 5, ".", "+", ".", "ID=t1")), r"bad\.gff3:2: start 10 is after end 5"),
])
def test_gff3_errors_name_file_and_line(tmp_path, text, pattern):
    path = write(tmp_path, "bad.gff3", text)
    with pytest.raises(AnnotationError, match=pattern):
        load_transcripts(path)


def test_missing_folder_and_unreadable_annotation(tmp_path, monkeypatch):
    with pytest.raises(AnnotationError, match=r"nope\.gtf: annotation file not found"):
        read_annotation(str(tmp_path / "nope.gtf"))
    with pytest.raises(AnnotationError, match=r"is a folder, not an annotation file"):
        read_annotation(str(tmp_path))
    path = write(tmp_path, "locked.gtf", STRINGTIE_GTF)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, for whom chmod does not bite: refuse the open itself.
    monkeypatch.setattr(compressed, "open", refuse, raising=False)
    with pytest.raises(AnnotationError, match=r"locked\.gtf: permission denied; make the annotation file readable"):
        read_annotation(path)


@pytest.fixture(params=["isal", "gzip"])
def gzip_reader(request, monkeypatch):
    """Run a test with the threaded python-isal reader (when installed) and with plain gzip."""
    if request.param == "gzip":
        monkeypatch.setattr(compressed, "_igzip_threaded", None)
    elif compressed._igzip_threaded is None:
        pytest.skip("python-isal is not installed")
    return request.param


def many_transcripts_gz(count=20_000):
    text = "".join(rows(("chr1", "x", "exon", 10 * i + 1, 10 * i + 5, ".", "+", ".", f'transcript_id "t{i}";'))
                   for i in range(count))
    return gzip.compress(text.encode())


def test_gzip_readers_agree(tmp_path, gzip_reader):
    path = tmp_path / "many.gtf.gz"
    path.write_bytes(many_transcripts_gz(2_000))
    transcripts = load_transcripts(str(path))
    assert len(transcripts) == 2_000 and transcripts[-1].exons == [(19_990, 19_995)]
    check_gencode(load_transcripts(write(tmp_path, "gencode.gtf.gz", GENCODE_GTF, compress=True)), "gencode.gtf.gz")


def test_truncated_gzip(tmp_path, gzip_reader):
    data = many_transcripts_gz()
    path = tmp_path / "cut.gtf.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnnotationError, match=r"cut\.gtf\.gz: the gzip data is truncated or corrupt") as info:
        load_transcripts(str(path))
    if gzip_reader == "gzip":  # the threaded reader inflates ahead, so only plain gzip knows the line
        assert re.search(r"after line [1-9]\d{3,} ", str(info.value))


def test_corrupt_gzip(tmp_path, gzip_reader):
    data = bytearray(many_transcripts_gz())
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer: every record reads fine, the check fails at the end
    path = tmp_path / "bad.gtf.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(AnnotationError, match=r"bad\.gtf\.gz: the gzip data is truncated or corrupt"):
        load_transcripts(str(path))


def test_closing_the_iterator_early_releases_the_file(tmp_path, gzip_reader):
    import threading

    before = threading.active_count()
    path = tmp_path / "many.gtf.gz"
    path.write_bytes(many_transcripts_gz(5_000))
    iterator = iter(read_annotation(str(path)))
    next(iterator)
    iterator.close()
    assert threading.active_count() == before


# -- independent oracle: gffutils ----------------------------------------------------------------

def gffutils_structures(path, transcript_ids):
    """{transcript id: (exons, cds)} from a gffutils database, 0-based half-open, sorted."""
    gffutils = pytest.importorskip("gffutils")
    db = gffutils.create_db(path, ":memory:", merge_strategy="create_unique", keep_order=True,
                            disable_infer_genes=True, disable_infer_transcripts=True)
    structures = {}
    for featuretype, slot in (("exon", 0), ("CDS", 1)):
        for feature in db.features_of_type(featuretype):
            if "Parent" in feature.attributes:  # GFF3
                parents = feature.attributes["Parent"]
            else:  # GTF
                parents = feature.attributes["transcript_id"]
            for parent in parents:
                structures.setdefault(parent, ([], []))[slot].append((feature.start - 1, feature.end))
    return {key: (sorted(value[0]), sorted(value[1])) for key, value in structures.items() if key in transcript_ids}


@pytest.mark.parametrize("path", [REFGENE, MOUSE_GTF])
def test_example_files_match_gffutils(path):
    transcripts = load_transcripts(path)
    oracle = gffutils_structures(path, {t.transcript_id for t in transcripts})
    assert len(oracle) == len(transcripts)
    for t in transcripts:
        assert (t.exons, t.cds) == oracle[t.transcript_id], t.transcript_id


@pytest.mark.parametrize("fixture", ["NCBI_GFF3", "ENSEMBL_GFF3"])
def test_gff3_fixtures_match_gffutils(tmp_path, fixture):
    text = globals()[fixture]
    path = write(tmp_path, fixture.lower() + ".gff3", text.split("##FASTA")[0])
    transcripts = [t for t in load_transcripts(path) if not t.transcript_id.startswith("gene-ND1")]
    ids = {t.transcript_id for t in transcripts} | {"transcript:" + t.transcript_id for t in transcripts}
    oracle = {key.replace("transcript:", ""): value for key, value in gffutils_structures(path, ids).items()}
    assert len(oracle) == len(transcripts)
    for t in transcripts:
        assert (t.exons, t.cds) == oracle[t.transcript_id], t.transcript_id


@pytest.mark.oracle("gffread")
def test_gff3_written_by_gffread_reads_back_the_same(tmp_path):
    import subprocess

    gtf = write(tmp_path, "gencode.gtf", GENCODE_GTF)
    gff3 = str(tmp_path / "gencode.gff3")
    subprocess.run(["gffread", gtf, "-o", gff3], check=True, capture_output=True)
    from_gtf = load_transcripts(gtf)
    from_gff3 = by_id(load_transcripts(gff3))
    assert set(from_gff3) == {t.transcript_id for t in from_gtf}
    for t in from_gtf:
        other = from_gff3[t.transcript_id]
        assert (other.exons, other.gene_id, other.gene_name, other.strand) == (t.exons, t.gene_id, t.gene_name, t.strand)
        # gffread's GFF3 CDS includes the stop codon that the GTF CDS lines leave out
        assert sum(e - s for s, e in other.cds) == sum(e - s for s, e in t.cds) + sum(e - s for s, e in t.stop_codons)
        assert other.cds_phase == t.cds_phase


# -- the synthetic GENCODE-scale generator used by the benchmarks ------------------------------

def test_synthetic_dataset_round_trip(tmp_path):
    sys.path.insert(0, os.path.dirname(EXAMPLE))
    from benchmarks.synthetic_annotation import write_synthetic_dataset

    dataset = write_synthetic_dataset(str(tmp_path), n_transcripts=300, seed=3, n_contigs=3)
    reader = read_annotation(dataset.gtf)
    transcripts = list(reader)
    assert len(transcripts) == dataset.n_transcripts == 300
    assert reader.summary.coding_transcripts == dataset.n_coding > 0
    assert reader.summary.lines == dataset.n_lines
    assert set(reader.summary.contig_transcripts) == set(dataset.contigs)
    assert {t.strand for t in transcripts} == {"+", "-"}
    for t in transcripts:
        if t.cds:
            coding_length = sum(e - s for s, e in t.cds) + sum(e - s for s, e in t.stop_codons)
            assert coding_length % 3 == 0 and t.cds_phase == 0
    with open(dataset.fasta) as handle:
        assert handle.readline().startswith(">chr1")
