"""`isoformer triples` on both example datasets against gffread 0.12.7 and samtools faidx.

Two ways each: against the golden files in tests/golden/ (always), and against the tools run
live (marked ``oracle``; skipped when the tool is not installed). The live runs are also
compared with the golden files, which shows the committed files are what the tools write.

What is compared (see tests/golden/README.md for gffread's semantics):
* RNA (gffread -w): identical, case-insensitively, for 100% of transcripts, same transcript set.
* CDS span: gffread's ``CDS=a-b`` header == (cds_start + 1, cds_end); no CDS on both sides otherwise.
* CDS (gffread -x, stop codon included) == rna[cds_start:cds_end].
* Protein (gffread -y, terminal stop dropped, internal stop '.'): identical for 100% of coding transcripts.
* DNA windows: samtools faidx (-i on '-') for windows inside the contig; padded windows carry
  exactly the expected number of Ns on the expected side, and the rest equals the genome.
"""

import gzip
import os
import shutil
import subprocess

import pytest

from isoformer_cli.formats.triples_table import read_triples_table
from isoformer_cli.app.triples import TriplesConfig, run_triples
from isoformer_cli.triples.source import TripleSource

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
EXAMPLES = os.path.join(HERE, "..", "example_data")
DATASETS = {
    # name: (FASTA, annotation, transcripts, coding transcripts)
    "hg38_chr16": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf", 17, 14),
    "mm10_chr9": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz", 54, 33),
}
SMALL_WINDOW = 2000



def read_fasta(path):
    """name -> (description, sequence) of a FASTA file (plain or gzip), in plain Python."""
    opener = gzip.open if path.endswith(".gz") else open
    records, name = {}, None
    with opener(path, "rt") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                name, _, description = line[1:].partition(" ")
                records[name] = [description, []]
            elif name is not None:
                records[name][1].append(line)
    return {name: (description, "".join(parts)) for name, (description, parts) in records.items()}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """A private copy of example_data/ (indexing writes .fai/.gzi next to the FASTA), plus plain
    copies of the gzipped files for gffread, which reads neither BGZF nor gzip."""
    folder = tmp_path_factory.mktemp("examples")
    for name in os.listdir(EXAMPLES):
        if not name.endswith((".fai", ".gzi")):
            shutil.copy(os.path.join(EXAMPLES, name), folder / name)
    for name in ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"):
        with gzip.open(folder / name, "rb") as src, open(folder / name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return folder


def plain(name):
    return name[:-3] if name.endswith(".gz") else name


def run(examples, dataset, **options):
    fasta, annotation, _, _ = DATASETS[dataset]
    output = examples / f"{dataset}.{len(options)}.{abs(hash(tuple(sorted(options.items()))))}.tsv"
    source = TripleSource(genome=str(examples / fasta), annotation=str(examples / annotation), **options)
    run_triples(TriplesConfig(source=source, output=str(output)))
    return {row.transcript_id: row for row in read_triples_table(str(output))}


@pytest.fixture(scope="module")
def triples(examples):
    return {dataset: run(examples, dataset) for dataset in DATASETS}


@pytest.fixture(scope="module")
def small_windows(examples):
    return {dataset: run(examples, dataset, dna_length=SMALL_WINDOW, with_dna=True) for dataset in DATASETS}


def gffread_mismatches(rows, rna_fasta, cds_fasta, protein_fasta):
    """Every difference between our rows and gffread's three FASTA files, as readable strings."""
    rna = read_fasta(rna_fasta)
    cds = read_fasta(cds_fasta)
    protein = read_fasta(protein_fasta)
    problems = []
    if set(rna) != set(rows):
        problems.append(f"transcript sets differ: {sorted(set(rna) ^ set(rows))}")
    for tid in sorted(set(rna) & set(rows)):
        row = rows[tid]
        description, sequence = rna[tid]
        if sequence.upper() != row.rna:
            problems.append(f"{tid}: RNA differs")
        span = None
        if description.startswith("CDS="):
            first, last = description[4:].split("-")
            span = (int(first) - 1, int(last))
        ours = (row.cds_start, row.cds_end) if row.cds_start is not None else None
        if span != ours:
            problems.append(f"{tid}: CDS span gffread {span} ours {ours}")
        if tid in protein:
            if protein[tid][1].replace(".", "*") != row.protein:
                problems.append(f"{tid}: protein differs")
            if ours and cds[tid][1].upper() != row.rna[row.cds_start:row.cds_end]:
                problems.append(f"{tid}: CDS sequence differs")
        elif row.protein:
            problems.append(f"{tid}: we have a protein, gffread none")
    return problems


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_equal_to_gffread_golden_files(triples, dataset):
    rows = triples[dataset]
    _, _, transcripts, coding = DATASETS[dataset]
    assert len(rows) == transcripts
    assert sum(1 for row in rows.values() if row.protein) == coding
    prefix = os.path.join(GOLDEN, dataset)
    assert gffread_mismatches(rows, f"{prefix}.rna.fa", f"{prefix}.cds.fa", f"{prefix}.protein.fa") == []


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_gff3_with_stop_inside_cds_gives_the_same_triples(examples, triples, dataset):
    """The golden GFF3 (gffread's rewrite of the GTF: CDS lines include the stop codon, no
    stop_codon lines) gives gffread's sequences and exactly the triples of the GTF."""
    fasta = DATASETS[dataset][0]
    output = examples / f"{dataset}.from_gff3.tsv"
    source = TripleSource(genome=str(examples / fasta), annotation=os.path.join(GOLDEN, f"{dataset}.gff3"))
    run_triples(TriplesConfig(source=source, output=str(output)))
    rows = {row.transcript_id: row for row in read_triples_table(str(output))}
    prefix = os.path.join(GOLDEN, dataset)
    assert gffread_mismatches(rows, f"{prefix}.rna.fa", f"{prefix}.cds.fa", f"{prefix}.protein.fa") == []
    from_gtf = triples[dataset]
    fields = ("chrom", "strand", "tss", "window_start", "window_end", "cds_start", "cds_end", "rna", "protein", "flags")
    for tid, row in rows.items():
        assert [getattr(row, name) for name in fields] == [getattr(from_gtf[tid], name) for name in fields], tid


@pytest.mark.oracle("gffread")
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_equal_to_gffread_live(examples, triples, tmp_path, dataset):
    fasta, annotation, _, _ = DATASETS[dataset]
    out = {kind: str(tmp_path / f"{dataset}.{kind}.fa") for kind in ("rna", "cds", "protein")}
    subprocess.run(["gffread", "-w", out["rna"], "-x", out["cds"], "-y", out["protein"],
                    "-g", str(examples / plain(fasta)), str(examples / plain(annotation))],
                   check=True, capture_output=True)
    assert gffread_mismatches(triples[dataset], out["rna"], out["cds"], out["protein"]) == []
    for kind, path in out.items():
        with open(path) as live, open(os.path.join(GOLDEN, f"{dataset}.{kind}.fa")) as golden:
            assert live.read() == golden.read(), f"golden {dataset}.{kind}.fa is stale: rerun make_golden.py"


def inside(row, contig_length):
    return row.window_start >= 0 and row.window_end <= contig_length


def contig_length(examples, dataset):
    fasta = read_fasta(str(examples / plain(DATASETS[dataset][0])))
    (_, sequence), = fasta.values()
    return len(sequence), sequence.upper()


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_small_windows_equal_samtools_golden(examples, small_windows, dataset):
    rows = small_windows[dataset]
    length, _ = contig_length(examples, dataset)
    golden = read_fasta(os.path.join(GOLDEN, f"{dataset}.windows{SMALL_WINDOW}.fa"))
    expected_ids = {tid for tid, row in rows.items() if inside(row, length)}
    assert set(golden) == expected_ids
    assert len(expected_ids) >= len(rows) - 1
    for tid in sorted(expected_ids):
        row = rows[tid]
        region = f"{row.chrom}:{row.window_start + 1}-{row.window_end}({row.strand})"
        assert golden[tid][0] == region, tid
        assert row.dna == golden[tid][1].upper(), tid
        assert len(row.dna) == SMALL_WINDOW


def samtools_windows(fasta, regions, reverse):
    """Sequences of ``regions`` (1-based CHR:FIRST-LAST) from one samtools faidx call."""
    command = ["samtools", "faidx", fasta, *regions] + (["-i"] if reverse else [])
    records = read_fasta_text(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return [sequence.upper() for _, sequence in records]


def read_fasta_text(text):
    records = []
    for line in text.splitlines():
        if line.startswith(">"):
            records.append([line[1:], ""])
        else:
            records[-1][1] += line
    return records


@pytest.mark.oracle("samtools")
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_small_windows_equal_samtools_live(examples, small_windows, dataset):
    rows = small_windows[dataset]
    length, _ = contig_length(examples, dataset)
    fasta = str(examples / DATASETS[dataset][0])   # samtools reads the BGZF FASTA itself
    for strand in "+-":
        chosen = [row for row in rows.values() if row.strand == strand and inside(row, length)]
        assert chosen
        regions = [f"{row.chrom}:{row.window_start + 1}-{row.window_end}" for row in chosen]
        assert [row.dna for row in chosen] == samtools_windows(fasta, regions, reverse=strand == "-")


@pytest.fixture(scope="module")
def full_windows(examples):
    """Default 196,608-bp windows on the human slice (210 kb): every window is padded."""
    return run(examples, "hg38_chr16", with_dna=True)


def expected_padding(row, length):
    """(Ns at the window's left, Ns at its right) after orienting it on the transcript strand."""
    before_contig = max(0, -row.window_start)
    after_contig = max(0, row.window_end - length)
    return (before_contig, after_contig) if row.strand == "+" else (after_contig, before_contig)


def test_padded_windows_have_exact_n_counts(examples, full_windows):
    length, genome = contig_length(examples, "hg38_chr16")
    sides = set()
    for tid, row in full_windows.items():
        left, right = expected_padding(row, length)
        assert "window_padded" in row.flags
        assert len(row.dna) == 196_608
        assert row.dna[:left] == "N" * left and row.dna[left] != "N", tid
        assert row.dna[len(row.dna) - right:] == "N" * right and row.dna[-right - 1] != "N", tid
        inner = genome[max(row.window_start, 0):min(row.window_end, length)]
        if row.strand == "-":
            inner = inner[::-1].translate(str.maketrans("ACGTN", "TGCAN"))
        assert row.dna[left:len(row.dna) - right] == inner, tid
        sides.add((row.strand, "left" if left else "", "right" if right else ""))
    # The slice exercises padding on both sides of both strands.
    assert {("+", "left", ""), ("+", "", "right"), ("-", "left", ""), ("-", "", "right")} <= sides


@pytest.mark.oracle("samtools")
def test_padded_windows_inner_part_equals_samtools(examples, full_windows):
    length, _ = contig_length(examples, "hg38_chr16")
    fasta = str(examples / DATASETS["hg38_chr16"][0])
    for strand in "+-":
        chosen = [row for row in full_windows.values() if row.strand == strand]
        regions = [f"{row.chrom}:{max(row.window_start, 0) + 1}-{min(row.window_end, length)}" for row in chosen]
        for row, inner in zip(chosen, samtools_windows(fasta, regions, reverse=strand == "-")):
            left, right = expected_padding(row, length)
            assert row.dna == "N" * left + inner + "N" * right, row.transcript_id


def test_tss_at_window_centre(small_windows):
    for rows in small_windows.values():
        for row in rows.values():
            offset = SMALL_WINDOW // 2
            if row.strand == "+":
                assert row.window_start + offset == row.tss
            else:
                assert row.window_end - 1 - offset == row.tss
            # The base at the centre is the RNA's first base.
            assert row.dna[offset] == row.rna[0], row.transcript_id


def tricky_annotation(folder):
    """A random genome and a GTF of the cases the example data lack: a 5'-incomplete CDS with
    phase 1 or 2 on both strands, a stop codon split by an intron, a CDS ending in a partial
    codon, N inside codons (GGN resolves, ANC does not), random CDSs with internal stops."""
    import random

    rng = random.Random(5)
    genome = [rng.choice("ACGT") for _ in range(4000)]
    genome[1099:1105] = list("GGNANC")   # codons 2 and 3 of t5's CDS (1-based 1097...)
    with open(folder / "tricky.fa", "w") as handle:
        handle.write(">c1\n" + "\n".join("".join(genome[i:i + 60]) for i in range(0, 4000, 60)) + "\n")
    lines = []

    def add(n, feature, start, end, strand, phase="."):
        lines.append(f'c1\tt\t{feature}\t{start}\t{end}\t.\t{strand}\t{phase}\tgene_id "g{n}"; transcript_id "t{n}";')

    add(1, "exon", 101, 200, "+"); add(1, "exon", 301, 400, "+")
    add(1, "CDS", 101, 200, "+", "1"); add(1, "CDS", 301, 350, "+", "2")
    add(2, "exon", 501, 600, "-"); add(2, "exon", 701, 800, "-")
    add(2, "CDS", 550, 600, "-", "0"); add(2, "CDS", 701, 790, "-", "2")
    add(3, "exon", 901, 1000, "+"); add(3, "exon", 1201, 1300, "+")
    add(3, "CDS", 922, 999, "+", "0"); add(3, "stop_codon", 1000, 1000, "+"); add(3, "stop_codon", 1201, 1202, "+")
    add(4, "exon", 1301, 1350, "+"); add(4, "exon", 1401, 1450, "+")
    add(4, "CDS", 1301, 1350, "+", "0"); add(4, "CDS", 1401, 1405, "+", "1")
    add(5, "exon", 1090, 1150, "+"); add(5, "CDS", 1097, 1130, "+", "0")
    add(6, "exon", 1550, 1750, "-"); add(6, "CDS", 1603, 1700, "-", "0"); add(6, "stop_codon", 1600, 1602, "-")
    add(7, "exon", 2001, 2100, "-"); add(7, "exon", 2201, 2300, "-"); add(7, "exon", 2401, 2500, "-")
    add(7, "CDS", 2051, 2100, "-", "1"); add(7, "CDS", 2201, 2300, "-", "0"); add(7, "CDS", 2401, 2450, "-", "1")
    (folder / "tricky.gtf").write_text("\n".join(lines) + "\n")
    return folder / "tricky.fa", folder / "tricky.gtf"


@pytest.mark.oracle("gffread")
def test_tricky_cases_equal_gffread_live(tmp_path):
    fasta, gtf = tricky_annotation(tmp_path)
    output = tmp_path / "tricky.tsv"
    run_triples(TriplesConfig(source=TripleSource(genome=str(fasta), annotation=str(gtf), dna_length=100),
                              output=str(output)))
    rows = {row.transcript_id: row for row in read_triples_table(str(output))}
    assert len(rows) == 7
    flags = {flag for row in rows.values() for flag in row.flags}
    assert {"cds_start_incomplete", "internal_stop", "non_acgt", "cds_end_incomplete"} <= flags
    assert rows["t5"].protein[1:3] == "GX"
    out = {kind: str(tmp_path / f"tricky.{kind}.fa") for kind in ("rna", "cds", "protein")}
    subprocess.run(["gffread", "-w", out["rna"], "-x", out["cds"], "-y", out["protein"], "-g", str(fasta), str(gtf)],
                   check=True, capture_output=True)
    assert gffread_mismatches(rows, out["rna"], out["cds"], out["protein"]) == []
