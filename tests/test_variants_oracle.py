"""`isoformer variants` against independent tools on both example datasets (marked ``oracle``).

For SNVs and indels of every class (missense, synonymous, stop gained, stop lost, frameshift, in-frame
insertion and deletion, start lost, 5'/3' UTR, intronic, non-coding exon, upstream-only), on both strands,
picked from the annotations' own coordinates (tests/variant_oracle.py) and normalised with ``bcftools norm``:

* consequence terms and amino-acid change == ``bcftools csq -l`` for every (variant, transcript) csq names
  (csq writes intronic and non-coding consequences per gene: there the union of ours over the gene's
  transcripts is compared; csq names no transcript for an upstream-only variant, nor a non-coding
  transcript when the variant hits another transcript's CDS or UTR: those pairs are not compared);
* alternative RNA and protein == ``bcftools consensus`` + chain + ``CrossMap bed`` + ``gffread --adj-stop``
  for every (variant, transcript) within 1 kb of the transcript's span (upstream-only variants included: both
  sides must leave the RNA and protein as they are; start lost: the oracle translates the
  non-ATG start, the tool gives no protein, so only the RNA is compared);
* the same, read back from ``isoformer variants --alt-triples`` (the whole command, demo checkpoint) on
  the human dataset (the mouse one too with ``-m slow``).

Skipped when bcftools, tabix, bgzip, gffread or CrossMap is missing (CI installs them).
"""

import collections
import csv
import gzip
import os
import shutil

import pytest

import variant_oracle as oracle
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.consequence import consequence
from isoformer_cli.triples.source import TripleSource, iter_triples
from isoformer_cli.triples.variants import Allele, alternative_triple

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "example_data")
DATASETS = {
    # name: (FASTA, annotation, gffread GFF3, contig)
    "hg38_chr16": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf", "hg38_chr16.gff3", "chr16"),
    "mm10_chr9": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz", "mm10_chr9.gff3", "chr9"),
}
WINDOW = 2048  # the demo checkpoint's

pytestmark = [
    pytest.mark.oracle(*oracle.TOOLS),
]


def _prepare(folder, dataset):
    fasta, annotation, gff3, contig = DATASETS[dataset]
    genome_path = folder / "genome.fa"
    if fasta.endswith(".gz"):
        with gzip.open(os.path.join(EXAMPLES, fasta), "rb") as src, open(genome_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copy(os.path.join(EXAMPLES, fasta), genome_path)
    annotation_path = os.path.join(EXAMPLES, annotation)
    genome = Genome(str(genome_path))
    triples = list(iter_triples(TripleSource(genome=str(genome_path), annotation=annotation_path,
                                             dna_length=WINDOW), genome))
    sequence = genome.fetch(contig, 0, genome.length(contig))
    picked = oracle.pick_variants(sequence, contig, oracle.models_from_triples(triples), per_strand=2)
    raw = [(f"{klass}_{number}", pos, ref, alt) for number, (klass, pos, ref, alt, _) in enumerate(picked)]
    oracle.write_vcf(folder / "raw.vcf", contig, genome.length(contig), raw)
    variants = oracle.normalise_vcf(genome_path, folder / "raw.vcf", folder / "norm.vcf")
    golden = os.path.join(HERE, "golden", gff3)
    ensembl = folder / "ensembl.gff3"
    oracle.ensembl_gff3(golden, ensembl, oracle.gtf_biotypes(annotation_path))
    csq = oracle.csq_consequences(genome_path, ensembl, folder / "norm.vcf", str(folder))
    consensus = oracle.consensus_sequences(genome_path, contig, genome.length(contig), golden, variants, str(folder))
    return {"folder": folder, "genome": genome, "genome_path": genome_path, "annotation": annotation_path, "contig": contig,
            "triples": triples, "variants": variants, "csq": csq, "consensus": consensus,
            "klass": {variant_id: variant_id.rsplit("_", 1)[0] for variant_id, *_ in variants}}


_PREPARED = {}


def _prepared(tmp_path_factory, dataset):
    """The oracle data of ``dataset``, prepared once per test session."""
    if dataset not in _PREPARED:
        _PREPARED[dataset] = _prepare(tmp_path_factory.mktemp(dataset), dataset)
    return _PREPARED[dataset]


@pytest.fixture(scope="module", params=sorted(DATASETS))
def data(request, tmp_path_factory):
    return request.param, _prepared(tmp_path_factory, request.param)


def _compare_consequences(data, ours):
    """Counts of compared pairs per (class, strand) and the list of differences; ``ours(vid, triple)``
    gives our (terms set, amino-acid change)."""
    compared, problems = collections.Counter(), []
    gene_union = collections.defaultdict(set)
    for variant_id, pos, ref, alt in data["variants"]:
        for triple in data["triples"]:
            transcript = triple.transcript
            found = ours(variant_id, triple)
            if found is None:
                continue
            terms, amino = found
            gene = transcript.gene_name or transcript.gene_id
            if (variant_id, transcript.transcript_id) in data["csq"]:
                expected = data["csq"][(variant_id, transcript.transcript_id)]
                if (terms, amino) != expected:
                    problems.append(f"{variant_id} {pos} {ref}>{alt} {transcript.transcript_id}: ours {terms} {amino} "
                                    f"csq {expected}")
                compared[(data["klass"][variant_id], transcript.strand)] += 1
            elif (variant_id, gene) in data["csq"] and terms <= {"intron", "non_coding"}:
                gene_union[(variant_id, gene, transcript.strand)] |= terms
    for (variant_id, gene, strand), terms in gene_union.items():
        if data["csq"][(variant_id, gene)][0] != terms:
            problems.append(f"{variant_id} gene {gene}: ours {terms} csq {data['csq'][(variant_id, gene)]}")
        compared[(data["klass"][variant_id], strand)] += 1
    return compared, problems


def _expected_classes(dataset):
    coding = {"missense", "synonymous", "stop_gained", "stop_lost", "frameshift", "inframe_deletion",
              "inframe_insertion", "5_prime_utr", "3_prime_utr", "intron"}
    if dataset == "hg38_chr16":
        return {(klass, strand) for klass in coding for strand in "+-"}
    # The mouse slice has coding transcripts on '+' only; '-' holds non-coding ones.
    return {(klass, "+") for klass in coding} | {("intron", "-")}


def test_consequences_equal_bcftools_csq(data):
    dataset, data = data

    def ours(variant_id, triple):
        variant = next(v for v in data["variants"] if v[0] == variant_id)
        found = consequence(triple, Allele(data["contig"], variant[1] - 1, variant[2], variant[3]))
        return set(found.terms), found.amino_acids

    compared, problems = _compare_consequences(data, ours)
    assert not problems, "\n".join(problems[:20])
    missing = _expected_classes(dataset) - set(compared)
    assert not missing, f"classes not compared: {sorted(missing)}"
    # Upstream-only variants: csq names nothing; ours is upstream (or downstream) on every transcript whose
    # window holds them.
    upstream = collections.Counter()
    for variant_id, pos, ref, alt in data["variants"]:
        if data["klass"][variant_id] != "upstream":
            continue
        assert not any(key[0] == variant_id for key in data["csq"]), f"csq names {variant_id}"
        for triple in data["triples"]:
            if triple.window_start < pos - 1 < triple.window_end:
                terms, _ = ours(variant_id, triple)
                assert terms <= {"upstream", "downstream"}, (variant_id, triple.transcript.transcript_id, terms)
                upstream[(triple.transcript.strand, tuple(sorted(terms)))] += 1
    assert any(terms == ("upstream",) for _, terms in upstream), upstream
    print(f"{dataset}: csq compared {sum(compared.values())} pairs: {dict(sorted(compared.items()))}; "
          f"upstream-only (csq: nothing) {dict(upstream)}")


def _compare_sequences(data, ours):
    compared, problems = collections.Counter(), []
    by_id = {triple.transcript.transcript_id: triple for triple in data["triples"]}
    for (variant_id, transcript_id), (rna, protein) in data["consensus"].items():
        triple = by_id[transcript_id]
        found = ours(variant_id, triple)
        if found is None:
            continue
        our_rna, our_protein, start_lost = found
        if our_rna != rna:
            problems.append(f"{variant_id} {transcript_id}: RNA differs ({len(our_rna)} vs {len(rna)} bases)")
        elif triple.protein and not start_lost and our_protein != protein:
            problems.append(f"{variant_id} {transcript_id}: protein differs\n ours {our_protein}\n oracle {protein}")
        compared[(data["klass"][variant_id], triple.transcript.strand)] += 1
    return compared, problems


def test_alternative_rna_and_protein_equal_consensus_crossmap_gffread(data):
    dataset, data = data
    variants = {variant[0]: variant for variant in data["variants"]}

    def ours(variant_id, triple):
        _, pos, ref, alt = variants[variant_id]
        alternative = alternative_triple(triple, Allele(data["contig"], pos - 1, ref, alt), data["genome"], WINDOW)
        return alternative.rna, alternative.protein, alternative.start_lost

    compared, problems = _compare_sequences(data, ours)
    assert not problems, "\n".join(problems[:20])
    expected = _expected_classes(dataset) | ({("start_lost", "+"), ("start_lost", "-"), ("upstream", "+"),
                                              ("upstream", "-")} if dataset == "hg38_chr16"
                                             else {("start_lost", "+"), ("upstream", "+")})
    missing = expected - set(compared)
    assert not missing, f"classes not compared: {sorted(missing)}"
    print(f"{dataset}: consensus compared {sum(compared.values())} pairs: {dict(sorted(compared.items()))}")


def _run_command(data, folder):
    from isoformer_cli.app.variants import VariantsConfig, run_variants

    source = TripleSource(genome=str(data["genome_path"]), annotation=data["annotation"])
    alt_triples = folder / "alt.tsv"
    run_variants(VariantsConfig(source=source, checkpoint="demo", vcf=str(data["folder"] / "norm.vcf"),
                                output=str(folder / "out.vcf"), alt_triples=str(alt_triples), command_args=("x",)))
    rows = {}
    with open(alt_triples) as handle:
        lines = [line for line in handle if not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        rows[(row["id"], row["transcript_id"])] = row
    return rows


def _command_check(dataset, data, folder):
    rows = _run_command(data, folder)

    def ours_sequences(variant_id, triple):
        row = rows.get((variant_id, triple.transcript.transcript_id))
        if row is None:
            return None
        return row["rna"], row["protein"], row["protein"] == "" and "start_lost" in row["consequence"]

    compared, problems = _compare_sequences(data, ours_sequences)
    assert not problems, "\n".join(problems[:20])
    assert sum(compared.values()) > 50

    def ours_consequence(variant_id, triple):
        row = rows.get((variant_id, triple.transcript.transcript_id))
        return None if row is None else (set(row["consequence"].split("&")), row["amino_acids"])

    compared, problems = _compare_consequences(data, ours_consequence)
    assert not problems, "\n".join(problems[:20])
    assert sum(compared.values()) > 50


def test_command_alt_triples_equal_the_oracles_human(tmp_path_factory):
    data = _prepared(tmp_path_factory, "hg38_chr16")
    _command_check("hg38_chr16", data, tmp_path_factory.mktemp("run_human"))


@pytest.mark.slow
def test_command_alt_triples_equal_the_oracles_mouse(tmp_path_factory):
    data = _prepared(tmp_path_factory, "mm10_chr9")
    _command_check("mm10_chr9", data, tmp_path_factory.mktemp("run_mouse"))


# ------------------------------------------------------------------ start codons (issue 18, item 16)

#: Alleles at the start codon on which our consequence and amino-acid change equal bcftools csq 1.16 ``-l``:
#: ``(strand, offset of the VCF POS from the start codon's first base in transcript order, REF length, ALT
#: bases after the anchor)``. SNVs at each codon base give ``start_lost`` with no amino-acid change (csq 1.16
#: writes none, in ``-l`` and in haplotype mode alike).
START_CASES = [
    ("+", 0, 1, "snv"), ("+", 1, 1, "snv"), ("+", 2, 1, "snv"),
    ("+", 0, 2, ""), ("+", 0, 3, ""), ("+", -1, 4, ""), ("+", 0, 4, ""), ("+", 1, 4, ""),
    ("+", 0, 1, "C"), ("+", 1, 1, "C"), ("+", 0, 1, "CCC"), ("+", -1, 1, "A"), ("+", 2, 4, ""),
    ("-", 0, 1, "snv"), ("-", 1, 1, "snv"), ("-", 2, 1, "snv"),
    ("-", 1, 2, ""), ("-", 0, 2, ""), ("-", 1, 1, "C"), ("-", 1, 4, ""), ("-", 0, 1, "C"), ("-", -1, 2, ""),
]


def _start_codon_model(folder, strand):
    """A 1-kb genome with one transcript (exon 201-700, 5' UTR of 50 bases, a 66-codon CDS) on ``strand``,
    as FASTA and Ensembl-style GFF3; returns (genome path, gff3 path, sequence, 1-based genomic position of
    the start codon's first base in transcript order)."""
    import random

    rng = random.Random(11)
    sequence = [rng.choice("ACGT") for _ in range(1000)]
    cds = "ATG" + "".join(rng.choice(["GCT", "AAA", "CGC", "TTC", "GGA", "CAG"]) for _ in range(64)) + "TAA"
    if strand == "+":
        low = 251
        sequence[low - 1:low - 1 + len(cds)] = cds
        first = low
    else:
        high = 650
        low = high - len(cds) + 1
        sequence[low - 1:high] = oracle.revcomp(cds)
        first = high
    sequence = "".join(sequence)
    genome = folder / f"start{strand}.fa"
    genome.write_text(">c\n" + sequence + "\n")
    high = low + len(cds) - 1
    utr5, utr3 = ((201, low - 1), (high + 1, 700)) if strand == "+" else ((high + 1, 700), (201, low - 1))
    rows = [("gene", 201, 700, ".", "ID=gene:G;Name=G;biotype=protein_coding"),
            ("transcript", 201, 700, ".", "ID=transcript:T;Parent=gene:G;Name=T;biotype=protein_coding"),
            ("exon", 201, 700, ".", "Parent=transcript:T"), ("CDS", low, high, "0", "Parent=transcript:T"),
            ("five_prime_UTR", *utr5, ".", "Parent=transcript:T"), ("three_prime_UTR", *utr3, ".", "Parent=transcript:T")]
    gff3 = folder / f"start{strand}.gff3"
    gff3.write_text("##gff-version 3\n" + "".join(f"c\t.\t{kind}\t{start}\t{end}\t.\t{strand}\t{phase}\t{attrs}\n"
                                                   for kind, start, end, phase, attrs in rows))
    return str(genome), str(gff3), sequence, first


def _start_records(sequence, first, strand):
    records = []
    for number, (case_strand, offset, length, alt) in enumerate(START_CASES):
        if case_strand != strand:
            continue
        position = first + offset if strand == "+" else first - offset - length + 1
        ref = sequence[position - 1:position - 1 + length]
        if alt == "snv":
            alt = next(base for base in "ACGT" if base != ref)
        else:
            alt = ref[0] + alt
        records.append((f"start_{number}", position, ref, alt))
    return sorted(records, key=lambda record: record[1])


@pytest.mark.parametrize("strand", ["+", "-"])
def test_start_codon_changes_equal_bcftools_csq(tmp_path, strand):
    genome_path, gff3, sequence, first = _start_codon_model(tmp_path, strand)
    records = _start_records(sequence, first, strand)
    oracle.write_vcf(tmp_path / "in.vcf", "c", len(sequence), records)
    csq = oracle.csq_consequences(genome_path, gff3, tmp_path / "in.vcf", str(tmp_path))
    genome = Genome(genome_path)
    triple = next(iter_triples(TripleSource(genome=genome_path, annotation=gff3, dna_length=WINDOW), genome))
    problems, snvs = [], 0
    for variant_id, pos, ref, alt in records:
        found = consequence(triple, Allele("c", pos - 1, ref, alt))
        expected = csq[(variant_id, "T")]
        if (set(found.terms), found.amino_acids) != expected:
            problems.append(f"{variant_id} {pos} {ref}>{alt}: ours {found.name} {found.amino_acids!r}, csq {expected}")
        if len(ref) == len(alt) == 1:
            assert expected == ({"start_lost"}, ""), expected  # csq 1.16 writes no amino-acid change here
            snvs += 1
    assert not problems, "\n".join(problems)
    assert snvs == 3


def test_command_writes_no_amino_acid_change_for_a_lost_start(tmp_path):
    from click.testing import CliRunner

    from isoformer_cli.cli.main import cli

    genome_path, gff3, sequence, first = _start_codon_model(tmp_path, "+")
    ref = sequence[first]
    alt = next(base for base in "ACGT" if base != ref)
    oracle.write_vcf(tmp_path / "in.vcf", "c", len(sequence), [("v", first + 1, ref, alt)])
    result = CliRunner().invoke(cli, ["-q", "variants", "--checkpoint", "demo", "-I", str(tmp_path / "in.vcf"),
                                      "--genome", genome_path, "--annotation", gff3, "-O", str(tmp_path / "out.vcf"),
                                      "--alt-triples", str(tmp_path / "alt.tsv")])
    assert result.exit_code == 0 and "error" not in result.output, result.output
    line = next(line for line in open(tmp_path / "out.vcf") if not line.startswith("#"))
    entry = line.split("ISOFORMER=", 1)[1].split(";")[0].split("|")
    assert entry[3] == "start_lost" and entry[4] == "." and "start_lost" in entry[6].split("&")
    rows = [row for row in csv.DictReader([text for text in open(tmp_path / "alt.tsv") if not text.startswith("#")],
                                          delimiter="\t")]
    assert len(rows) == 1 and rows[0]["protein"] == "" and rows[0]["amino_acids"] == ""
