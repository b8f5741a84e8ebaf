"""Transcript selection: option parsing, id matching with/without versions, region overlap
through the alias layer, biotypes, coding-only, and the report of ids not found."""

import logging

import pytest

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.contigs import ContigAliases
from isoformer_cli.genomics.records import Transcript
from isoformer_cli.genomics.selection import (
    Region,
    TranscriptSelection,
    parse_biotypes,
    parse_id_list,
    parse_region,
    strip_version,
)


def transcript(tid, gene_id="G1", gene_name="", biotype="protein_coding", chrom="chr1", exons=((999, 2000),),
               cds=()):
    return Transcript(transcript_id=tid, gene_id=gene_id, gene_name=gene_name, biotype=biotype, chrom=chrom,
                      strand="+", exons=list(exons), cds=list(cds))


ANNOTATION = [
    transcript("ENST00000001.5", "ENSG00000001.3", "AXIN1", "protein_coding", "chr16", ((99, 500), (899, 1200)), ((150, 300),)),
    transcript("ENST00000002.1", "ENSG00000001.3", "AXIN1", "retained_intron", "chr16", ((1999, 3000),)),
    transcript("ENST00000003", "ENSG00000002", "LUC7L", "lncRNA", "chr16", ((4999, 6000),)),
    transcript("rna-NM_000014.6", "gene-A2M", "A2M", "protein_coding", "chr12", ((99, 200),), ((120, 180),)),
    transcript("ENST00000004.2", "ENSG00000009.1", "MTND1", "protein_coding", "chrM", ((3306, 4262),), ((3306, 4262),)),
]


def selected(selection, aliases=None):
    return [t.transcript_id for t in selection.filter(ANNOTATION, aliases=aliases)]


@pytest.mark.parametrize("text, expected", [
    ("chr1:1,000-2,000", Region("chr1", 999, 2000)),
    ("chr1:1000-2000", Region("chr1", 999, 2000)),
    ("chr1:5", Region("chr1", 4, None)),
    ("chr1:5-", Region("chr1", 4, None)),
    ("chr1", Region("chr1", 0, None)),
    ("  1:7-7 ", Region("1", 6, 7)),
    ("HLA-A*01:01", Region("HLA-A*01", 0, None)),  # samtools has the same reading
    ("chrUn_KI270302v1", Region("chrUn_KI270302v1", 0, None)),
])
def test_parse_region(text, expected):
    assert parse_region(text) == expected


@pytest.mark.parametrize("text, pattern", [
    ("", r"--region: empty region"),
    ("chr1:0-100", r"START must be at least 1 \(regions are 1-based, like samtools\)"),
    ("chr1:2,000-1,000", r"END 1,000 is before START 2,000"),
    ("chr1:1k-2k", r"START-END must be whole numbers"),
    ("chr1:-100", r"START-END must be whole numbers"),
    (":1-100", r"the contig name is missing"),
])
def test_parse_region_errors(text, pattern):
    with pytest.raises(InputError, match=pattern):
        parse_region(text)


def test_region_text_and_overlap():
    region = parse_region("chr1:1,000-2,000")
    assert str(region) == "chr1:1,000-2,000"
    assert region.overlaps(1999, 2500) and region.overlaps(0, 1000)
    assert not region.overlaps(2000, 2500) and not region.overlaps(0, 999)


def test_parse_id_list_inline_and_file(tmp_path):
    assert parse_id_list(" A, B,,A ,C ") == ["A", "B", "C"]
    ids = tmp_path / "ids.txt"
    ids.write_text("# wanted\nENST1.2\n\nENST2\textra column\r\nENST1.2\n")
    assert parse_id_list(f"@{ids}") == ["ENST1.2", "ENST2"]
    with pytest.raises(InputError, match=r"--genes @.*missing\.txt: file not found"):
        parse_id_list(f"@{tmp_path / 'missing.txt'}", "--genes")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(InputError, match=r"empty\.txt: the file holds no ids"):
        parse_id_list(f"@{tmp_path / 'empty.txt'}")
    with pytest.raises(InputError, match=r"--transcripts: no ids given"):
        parse_id_list(" , ")
    with pytest.raises(InputError, match=r"the file name is missing after '@'"):
        parse_id_list("@")


def test_parse_biotypes_and_versions():
    assert parse_biotypes(["protein_coding,lncRNA", "lncRNA", " snRNA "]) == ["protein_coding", "lncRNA", "snRNA"]
    assert parse_biotypes(None) == []
    assert strip_version("ENST00000456328.2") == "ENST00000456328"
    assert strip_version("NM_000014.6") == "NM_000014" and strip_version("STRG.1") == "STRG"
    assert strip_version("ENST00000456328") == "ENST00000456328"


def test_no_filter_selects_everything():
    selection = TranscriptSelection.from_options()
    assert selection.selects_all and selection.describe() == "all transcripts"
    assert selected(selection) == [t.transcript_id for t in ANNOTATION]


def test_transcript_ids_with_and_without_versions_and_prefixes():
    selection = TranscriptSelection.from_options(
        transcripts="ENST00000001,ENST00000002.1,ENST00000003.7,NM_000014.6,ENST00000004.1,ENST99")
    # ENST00000001 (no version) matches .5; ENST00000003.7 matches the version-less annotation id;
    # ENST00000004.1 does not match .2; NM_000014.6 matches the NCBI GFF3 id rna-NM_000014.6
    assert selected(selection) == ["ENST00000001.5", "ENST00000002.1", "ENST00000003", "rna-NM_000014.6"]
    assert selection.unmatched()["transcripts"] == ["ENST00000004.1", "ENST99"]


def test_genes_by_id_or_name():
    selection = TranscriptSelection.from_options(genes="ENSG00000001,luc7l,A2M,NOPE")
    assert selected(selection) == ["ENST00000001.5", "ENST00000002.1", "ENST00000003", "rna-NM_000014.6"]
    assert selection.unmatched() == {"genes": ["NOPE"]}


def test_region_through_aliases_biotype_and_coding_only():
    aliases = ContigAliases(("16", "12", "MT"))
    assert selected(TranscriptSelection.from_options(region="16:1,000-2,500"), aliases) == [
        "ENST00000001.5", "ENST00000002.1"]
    # without an alias object, the built-in chr1<->1 rule still applies
    assert selected(TranscriptSelection.from_options(region="16:2,001-2,001")) == ["ENST00000002.1"]
    assert selected(TranscriptSelection.from_options(region="chr16:1,201-1,999")) == []
    assert selected(TranscriptSelection.from_options(region="MT"), aliases) == ["ENST00000004.2"]
    assert selected(TranscriptSelection.from_options(biotypes=["lncRNA", "Retained_Intron"])) == [
        "ENST00000002.1", "ENST00000003"]
    assert selected(TranscriptSelection.from_options(coding_only=True)) == [
        "ENST00000001.5", "rna-NM_000014.6", "ENST00000004.2"]
    combined = TranscriptSelection.from_options(genes="AXIN1", coding_only=True, region="chr16")
    assert selected(combined) == ["ENST00000001.5"]
    assert combined.describe() == "1 genes, region chr16, coding only"


def test_check_region_against_the_genome():
    aliases = ContigAliases(("chr16",))
    TranscriptSelection.from_options(region="16:1-10").check_region(aliases)
    with pytest.raises(InputError, match=r"--region chr2:1-10: contig 'chr2' is not in the genome FASTA \(it has chr16\)"):
        TranscriptSelection.from_options(region="chr2:1-10").check_region(aliases)


def test_report_unmatched_warns_with_count_and_a_few_names(caplog):
    wanted = ",".join(["ENST00000001"] + [f"MISSING{i}" for i in range(7)])
    selection = TranscriptSelection.from_options(transcripts=wanted, biotypes="protein_coding,snoRNA")
    with caplog.at_level(logging.WARNING):
        assert selected(selection) == ["ENST00000001.5"]
        missing = selection.report_unmatched("genes.gtf")
    assert missing["transcripts"] == [f"MISSING{i}" for i in range(7)] and missing["biotypes"] == ["snoRNA"]
    text = caplog.text
    assert "7 of 8 requested transcript ids not found in genes.gtf: MISSING0, MISSING1, MISSING2, MISSING3, " \
           "MISSING4 and 2 more" in text
    assert "1 of 2 requested biotypes not found in genes.gtf: snoRNA (biotypes present: protein_coding" in text


def test_nothing_to_warn_when_everything_was_found(caplog):
    selection = TranscriptSelection.from_options(transcripts="ENST00000003")
    with caplog.at_level(logging.WARNING):
        list(selection.filter(ANNOTATION))
        assert selection.report_unmatched() == {"transcripts": []}
    assert caplog.text == ""


@pytest.mark.parametrize("options, expected", [
    ({"genes": "NOSUCH,NOPE"}, "--genes: none of the 2 requested genes is in genes.gtf: NOSUCH, NOPE; check the ids "
                               "(gene ids or gene names; a version suffix and rna-/gene- prefixes may be left out)"),
    ({"transcripts": ",".join(f"X{i}" for i in range(7))},
     "--transcripts: none of the 7 requested transcript ids is in genes.gtf: X0, X1, X2, X3, X4 and 2 more; check "
     "the ids (transcript ids; a version suffix and rna-/gene- prefixes may be left out)"),
    ({"biotypes": "snoRNA"}, "--biotype: none of the 1 requested biotypes is in genes.gtf: snoRNA (biotypes present: "),
])
def test_a_kind_of_request_that_matches_nothing_is_an_error(options, expected, caplog):
    selection = TranscriptSelection.from_options(**options)
    assert selected(selection) == []
    with caplog.at_level(logging.WARNING), pytest.raises(InputError) as info:
        selection.report_unmatched("genes.gtf")
    assert str(info.value).startswith(expected)
    assert caplog.text == ""


def test_every_kind_that_matches_nothing_is_in_the_one_error():
    selection = TranscriptSelection.from_options(genes="NOSUCH", transcripts="ENST00000001,NOPE", biotypes="snoRNA")
    selected(selection)
    with pytest.raises(InputError) as info:
        selection.report_unmatched("genes.gtf")
    message = str(info.value)
    assert message.startswith("--genes: none of the 1 requested genes is in genes.gtf: NOSUCH; ")
    assert "; --biotype: none of the 1 requested biotypes" in message and "--transcripts" not in message
