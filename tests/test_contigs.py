"""Contig alias layer: built-in rules, UCSC chromAlias-style files, the up-front contig check."""

import logging

import pytest

from isoformer_cli.errors import ContigError, InputError
from isoformer_cli.genomics.contigs import (
    ContigAliases,
    ContigMatcher,
    builtin_alternatives,
    check_contigs,
    is_mitochondrial,
    read_alias_file,
)

UCSC = ("chr1", "chr2", "chrX", "chrY", "chrM", "chr1_KI270706v1_random", "chrUn_GL000220v1")
ENSEMBL = ("1", "2", "X", "Y", "MT", "KI270706.1")


@pytest.mark.parametrize("name, targets, expected", [
    ("chr1", UCSC, "chr1"),          # exact
    ("1", UCSC, "chr1"),
    ("X", UCSC, "chrX"),
    ("MT", UCSC, "chrM"),
    ("M", UCSC, "chrM"),
    ("chrMT", UCSC, "chrM"),
    ("chr1", ENSEMBL, "1"),
    ("chrM", ENSEMBL, "MT"),
    ("chrX", ENSEMBL, "X"),
    ("chr3", UCSC, None),
    ("KI270706.1", UCSC, None),      # needs an alias file
    ("chrMT", ("chrMT", "chrM"), "chrMT"),
])
def test_builtin_rules(name, targets, expected):
    assert ContigAliases(targets).resolve(name) == expected


def test_builtin_alternatives_and_mito():
    assert builtin_alternatives("chr7") == ["7"] and builtin_alternatives("7") == ["chr7"]
    assert set(builtin_alternatives("MT")) == {"chrM", "chrMT", "M"}
    assert all(is_mitochondrial(n) for n in ("chrM", "chrMT", "M", "MT", "mt", "ChrM"))
    assert not any(is_mitochondrial(n) for n in ("chr1", "chrMX", "Mito2", "NC_012920.1"))


def test_alias_file_in_ucsc_chromalias_layout(tmp_path):
    path = tmp_path / "hg38.chromAlias.txt"
    path.write_text(
        "# ucsc\tassembly\tgenbank\trefseq\n"
        "chr1\t1\tCM000663.2\tNC_000001.11\n"
        "chrM\tMT\tJ01415.2\tNC_012920.1\n"
        "chr1_KI270706v1_random\tHSCHR1_RANDOM_CTG1\tKI270706.1\tNT_187361.1\n"
        "\n"
        "chrUn_GL000220v1\t\tGL000220.1\tNT_167214.1\r\n"   # an empty cell and CRLF
    )
    assert read_alias_file(str(path))[1] == ("chrM", "MT", "J01415.2", "NC_012920.1")
    aliases = ContigAliases(UCSC, alias_file=str(path))
    assert aliases.resolve("NC_000001.11") == "chr1"
    assert aliases.resolve("KI270706.1") == "chr1_KI270706v1_random"
    assert aliases.resolve("NC_012920.1") == "chrM"
    assert aliases.resolve("GL000220.1") == "chrUn_GL000220v1"
    assert aliases.resolve("NC_000002.12") is None
    # resolving the other way: FASTA with RefSeq names, annotation with UCSC names
    refseq = ContigAliases(("NC_000001.11", "NC_012920.1"), alias_file=str(path))
    assert refseq.resolve("chr1") == "NC_000001.11" and refseq.resolve("1") == "NC_000001.11"
    assert refseq.resolve("chrM") == "NC_012920.1"


@pytest.mark.parametrize("text, pattern", [
    ("chr1 1 CM000663.2\n", r"aliases\.txt:1: an alias line needs at least two tab-separated names .*\(spaces instead of tabs\?\)"),
    ("# header\nchr1\t1\nchr2\n", r"aliases\.txt:3: an alias line needs at least two tab-separated names of the same sequence, found 1"),
    ("chr1\t1\nchr2\t1\n", r"aliases\.txt:2: contig name '1' is already on line 1"),
    ("# only comments\n\n", r"aliases\.txt: the contig alias file holds no alias lines"),
])
def test_alias_file_errors(tmp_path, text, pattern):
    path = tmp_path / "aliases.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        ContigAliases(UCSC, alias_file=str(path))


def test_alias_file_missing(tmp_path):
    with pytest.raises(InputError, match=r"nope\.txt: contig alias file not found"):
        read_alias_file(str(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match=r"is a folder"):
        read_alias_file(str(tmp_path))


def test_check_contigs_warns_about_missing_ones(caplog):
    aliases = ContigAliases(UCSC)
    with caplog.at_level(logging.WARNING):
        mapping = check_contigs({"1": 120, "MT": 13, "GL000009.2": 3, "KI270706.1": 5}, aliases,
                                annotation_label="genes.gtf", genome_label="hg38.fa")
    assert mapping == {"1": "chr1", "MT": "chrM", "GL000009.2": None, "KI270706.1": None}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "2 contigs of genes.gtf are not in hg38.fa; their 8 transcripts are skipped: KI270706.1 (5), GL000009.2 (3)" \
        in warnings[0]


def test_check_contigs_fails_when_nothing_matches():
    aliases = ContigAliases(("NC_000001.11", "NC_000002.12"), target_label="genome FASTA")
    with pytest.raises(ContigError) as info:
        check_contigs({"chr1": 10, "chr2": 4}, aliases, annotation_label="genes.gtf")
    message = str(info.value)
    assert "no contig of genes.gtf (chr1, chr2) is in genome FASTA (NC_000001.11, NC_000002.12)" in message
    assert "--contig-alias" in message and "\n" not in message


def test_check_contigs_lists_a_few_names_only():
    many = [f"scaffold_{i}" for i in range(40)]
    with pytest.raises(ContigError, match=r"scaffold_4, \.\.\. \(40 in all\)"):
        check_contigs({name: 1 for name in many}, ContigAliases(UCSC))


def test_streaming_matcher(caplog):
    matcher = ContigMatcher(ContigAliases(ENSEMBL), annotation_label="a.gtf")
    assert [matcher.resolve(c) for c in ("chr1", "chr1", "chrM", "chrUn_x")] == ["1", "1", "MT", None]
    with caplog.at_level(logging.WARNING):
        assert matcher.finish() == {"chr1": "1", "chrM": "MT", "chrUn_x": None}
    assert "chrUn_x (1)" in caplog.text
    nothing = ContigMatcher(ContigAliases(ENSEMBL), annotation_label="b.gtf")
    nothing.resolve("scaffold_1")
    with pytest.raises(ContigError, match=r"no contig of b\.gtf \(scaffold_1\)"):
        nothing.finish()


def test_same_contig():
    aliases = ContigAliases(UCSC)
    assert aliases.same("1", "chr1") and aliases.same("MT", "chrM") and aliases.same("chr2", "chr2")
    assert not aliases.same("1", "chr2")
    assert ContigAliases(()).same("7", "chr7")  # built-in rules even when the target lacks both
