"""``isoformer variants`` between htslib tools in real shell pipes: bcftools in, bgzip/tabix/bcftools out."""

import pathlib
import subprocess
import sys

import pytest

from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.source import TripleSource, iter_triples

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "example_data"
GENOME = str(EXAMPLES / "hg38_chr16_186964-397118.fa")
ANNOTATION = str(EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf")
ISOFORMER = f"{sys.executable} -m isoformer_cli -q"
COMMON = f"variants --checkpoint demo --genome {GENOME} --annotation {ANNOTATION}"

pytestmark = pytest.mark.oracle("bcftools", "bgzip", "tabix")


@pytest.fixture(scope="module")
def vcf(tmp_path_factory):
    """SNVs 5, 40 and 300 bases downstream of the first transcripts' TSS (REF from the genome)."""
    folder = tmp_path_factory.mktemp("pipes")
    with Genome(GENOME) as genome:
        length = genome.length("chr16")
        triples = list(iter_triples(TripleSource(genome=GENOME, annotation=ANNOTATION), genome))[:4]
        records = set()
        for triple in triples:
            for offset in (5, 40, 300):
                position = triple.tss + (offset if triple.transcript.strand == "+" else -offset)
                ref = genome.fetch("chr16", position, position + 1).upper()
                alt = "A" if ref != "A" else "C"
                records.add((position + 1, ref, alt))
    path = folder / "in.vcf"
    with open(path, "w") as stream:
        stream.write(f"##fileformat=VCFv4.2\n##contig=<ID=chr16,length={length}>\n"
                     "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for position, ref, alt in sorted(records):
            stream.write(f"chr16\t{position}\t.\t{ref}\t{alt}\t.\tPASS\t.\n")
    return path


def shell(command):
    completed = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_bcftools_in_bgzip_and_tabix_out(vcf, tmp_path):
    """``bcftools view | isoformer variants -I - -O - | bgzip`` equals the file run, and tabix indexes it."""
    shell(f"{ISOFORMER} {COMMON} -I {vcf} -O {tmp_path / 'direct.vcf'}")
    piped = tmp_path / "piped.vcf.gz"
    shell(f"bcftools view -Oz {vcf} | {ISOFORMER} {COMMON} -I - -O - | bgzip -c > {piped}")
    shell(f"tabix -p vcf {piped}")
    # Records equal; the headers differ by the lines bcftools view adds about itself.
    assert shell(f"bcftools view -H {piped}") == shell(f"bcftools view -H {tmp_path / 'direct.vcf'}")
    assert "##INFO=<ID=ISOFORMER," in shell(f"bcftools view -h {piped}")
    # The annotations reach downstream tools: one ISOFORMER entry list per scored record.
    scored = shell(f"bcftools query -i 'INFO/ISOFORMER!=\".\"' -f '%POS\\t%INFO/ISOFORMER\\n' {piped}")
    assert scored.strip() and all(line.split("\t")[1].count("|") >= 13 for line in scored.splitlines())


def test_bgzipped_output_is_indexed_and_queried_by_region(vcf, tmp_path):
    out = tmp_path / "out.vcf.gz"
    shell(f"{ISOFORMER} {COMMON} -I {vcf} -O {out}")
    shell(f"tabix -p vcf {out}")
    first = shell(f"bcftools view -H {out}").splitlines()[0].split("\t")
    region = shell(f"tabix {out} chr16:{first[1]}-{first[1]}")
    assert region.splitlines()[0].split("\t")[:5] == first[:5]
