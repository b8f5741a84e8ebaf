"""`isoformer variants`: lifting and alternative sequences, invariances, statuses, bad inputs, resume.

The exactness of consequences and alternative sequences against bcftools csq / consensus + CrossMap +
gffread is in tests/test_variants_oracle.py; here the demo checkpoint runs the whole command on the human
example (2 kb windows) with variants chosen from the annotation's coordinates.
"""

import csv
import gzip
import os
import random
import shutil

import numpy as np
import pytest
from cli_helpers import HUMAN_GENOME, HUMAN_GTF, invoke, leftovers, run_torchrun
from click.testing import CliRunner

from isoformer_cli.app.variants import VariantsConfig, run_variants
from isoformer_cli.cli.main import cli
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.source import TripleSource, iter_triples
from isoformer_cli.triples.variants import Allele, AlternativeGenome, lift_interval

WINDOW = 2048


# ------------------------------------------------------------------------------------ unit level


@pytest.mark.parametrize("interval, variant, expected", [
    ((10, 20), (30, 31, 1), (10, 20)),       # SNV after: unchanged
    ((10, 20), (5, 8, 0), (7, 17)),          # deletion before: shifted
    ((10, 20), (12, 12, 3), (10, 23)),       # insertion inside: lengthened
    ((10, 20), (10, 10, 3), (13, 23)),       # insertion at the start: not taken in
    ((10, 20), (20, 20, 3), (10, 20)),       # insertion at the end: not taken in
    ((10, 20), (8, 12, 0), (8, 16)),         # deletion over the start: keeps the surviving bases
    ((10, 20), (18, 25, 0), (10, 18)),       # deletion over the end
    ((10, 20), (5, 25, 0), None),            # deletion of the whole interval
    ((10, 20), (12, 14, 2), (10, 20)),       # substitution: base to base
])
def test_lift_interval(interval, variant, expected):
    assert lift_interval(*interval, *variant) == expected


class _Genome:
    def __init__(self, sequence):
        self.sequence = sequence

    def length(self, contig):
        return len(self.sequence)

    def fetch(self, contig, start, end):
        return self.sequence[start:end]


def test_alternative_genome_applies_the_minimal_allele():
    genome = _Genome("ACGTACGTAC")
    view = AlternativeGenome(genome, Allele("c", 2, "GTA", "G"))  # deletes TA at [3, 5)
    assert view.length("c") == 8 and view.fetch("c", 0, 8) == "ACGCGTAC"
    assert view.fetch("c", 3, 6) == "CGT"
    view = AlternativeGenome(genome, Allele("c", 2, "G", "GTT"))  # inserts TT before 3
    assert view.fetch("c", 0, 12) == "ACGTTTACGTAC"
    assert Allele("c", 0, "CAGT", "CGT").minimal() == (1, 2, "")


# ------------------------------------------------------------------------------- test variants


@pytest.fixture(scope="module")
def human(tmp_path_factory):
    folder = tmp_path_factory.mktemp("human")
    genome_path = folder / "genome.fa"
    shutil.copy(HUMAN_GENOME, genome_path)
    genome = Genome(str(genome_path))
    triples = list(iter_triples(TripleSource(genome=str(genome_path), annotation=HUMAN_GTF, dna_length=WINDOW),
                                genome))
    return {"folder": folder, "genome_path": str(genome_path), "genome": genome, "triples": triples,
            "sequence": genome.fetch("chr16", 0, genome.length("chr16"))}


def _base(sequence, position):
    """1-based ``position``'s base and an ALT that differs from it."""
    ref = sequence[position - 1]
    return ref, "A" if ref != "A" else "C"


def _variants(human):
    """Variants around the TSSs and in exons of several transcripts on both strands, (pos, ref, alt)."""
    sequence, records = human["sequence"], []
    for triple in human["triples"][::3]:
        transcript = triple.transcript
        tss = triple.tss + 1  # 1-based
        step = -1 if transcript.strand == "+" else 1
        for offset in (150,):  # upstream of the TSS, inside the window
            position = tss + step * offset
            records.append((position, *_base(sequence, position)))
        first_exon = transcript.exons[0] if transcript.strand == "+" else transcript.exons[-1]
        middle = (first_exon[0] + first_exon[1]) // 2 + 1
        records.append((middle, *_base(sequence, middle)))
        records.append((middle + 2, sequence[middle + 1:middle + 4], sequence[middle + 1]))  # 2-bp deletion
        if transcript.strand == "-":
            records.append((middle - 3, sequence[middle - 4], sequence[middle - 4] + "GA"))  # 2-bp insertion
        if transcript.cds:
            low, high = transcript.cds[len(transcript.cds) // 2]
            position = (low + high) // 2 + 1
            records.append((position, *_base(sequence, position)))
    return sorted(set(records))


def _synonymous(human):
    """A synonymous SNV (pos, ref, alt) in the CDS of a plus-strand transcript, found codon by codon."""
    from isoformer_cli.triples.translation import STANDARD_CODE

    for triple in human["triples"]:
        transcript = triple.transcript
        if transcript.strand != "+" or triple.cds_start is None:
            continue
        offset = 0
        for start, end in transcript.exons:
            for genomic in range(start, end):
                position = offset + genomic - start
                if triple.cds_start + 30 <= position < triple.cds_end - 30 and (position - triple.cds_start) % 3 == 2 \
                        and start + 5 < genomic < end - 5:
                    codon = triple.rna[position - 2:position + 1]
                    for base in "ACGT":
                        if base != codon[2] and STANDARD_CODE.codons[codon[:2] + base] == STANDARD_CODE.codons[codon]:
                            return genomic + 1, codon[2], base
            offset += end - start
    raise AssertionError("no synonymous SNV found")


def _write_vcf(path, records, contig_lengths=(("chr16", 210155),), contigs=None):
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n')
        for name, length in contig_lengths:
            out.write(f"##contig=<ID={name},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for number, record in enumerate(records):
            chrom, (pos, ref, alt) = (record[0], record[1:]) if isinstance(record[0], str) else ("chr16", record)
            out.write(f"{chrom}\t{pos}\tv{number}\t{ref}\t{alt}\t.\t.\tDP=3\n")
    return str(path)


def _run(human, vcf, folder, name="out", **options):
    folder.mkdir(parents=True, exist_ok=True)
    source = TripleSource(genome=options.pop("genome", human["genome_path"]),
                          annotation=options.pop("annotation", HUMAN_GTF))
    outputs = {"output": str(folder / f"{name}.vcf"), "table": str(folder / f"{name}.tsv"),
               "alt_triples": str(folder / f"{name}.alt.tsv")}
    outputs.update(options.pop("outputs", {}))
    run_variants(VariantsConfig(source=source, checkpoint="demo", vcf=str(vcf), command_args=("x",), **outputs,
                                **options))
    return outputs


def _table(path):
    with open(path) as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def _values(rows):
    """(chrom, pos, ref, alt, transcript) -> delta, ref and share values of every tissue."""
    keyed = {}
    for row in rows:
        numbers = [float(value) if value != "NA" else np.nan
                   for key, value in row.items() if key.startswith(("delta:", "ref:", "share_delta:"))]
        keyed[(row["chrom"], row["pos"], row["ref"], row["alt"], row["transcript_id"])] = np.array(numbers)
    return keyed


#: VCF records per chunk of the reference run (and of the resume test, whose outputs must equal its bytes).
REFERENCE_CHUNK = 4


@pytest.fixture(scope="module")
def reference_run(human, tmp_path_factory):
    """Eight records in the first genes of the slice (both strands; SNVs and indels; a synonymous SNV)."""
    folder = tmp_path_factory.mktemp("reference")
    vcf = _write_vcf(folder / "in.vcf", sorted(_variants(human)[:7] + [_synonymous(human)]))
    return vcf, _run(human, vcf, folder, chunk_size=REFERENCE_CHUNK)


def test_every_record_is_kept_in_order_and_scored_pairs_are_consistent(reference_run):
    vcf, outputs = reference_run
    written = [line for line in open(outputs["output"]) if not line.startswith("#")]
    given = [line for line in open(vcf) if not line.startswith("#")]
    assert [line.split("\t")[:7] for line in written] == [line.split("\t")[:7] for line in given]
    assert all("DP=3" in line for line in written)
    rows = _table(outputs["table"])
    entries = sum(line.split("ISOFORMER=", 1)[1].split(";")[0].count(",") + 1 for line in written
                  if "ISOFORMER=" in line)
    assert len(rows) == entries > 10
    for row in rows:
        parts = [float(row[name]) for name in ("dna_delta", "rna_delta", "protein_delta")]
        assert sum(parts) == pytest.approx(float(row["max_delta"]), abs=1e-5)
        if "rna" not in row["inputs"]:
            assert float(row["rna_delta"]) == 0
        if "protein" not in row["inputs"]:
            assert float(row["protein_delta"]) == 0
    header = open(outputs["output"]).read()
    assert '##INFO=<ID=ISOFORMER,Number=.,Type=String' in header and "##isoformer_provenance=" in header


def test_synonymous_snv_leaves_the_protein_input_unchanged(human, reference_run):
    _, outputs = reference_run
    rows = [row for row in _table(outputs["alt_triples"]) if row["consequence"] == "synonymous"]
    assert rows
    proteins = {triple.transcript.transcript_id: triple.protein for triple in human["triples"]}
    for row in rows:
        assert "protein" not in row["inputs"].split("&")
        assert row["protein"] == proteins[row["transcript_id"]]


def test_a_variant_outside_every_window_yields_no_rows(human, tmp_path):
    spans = [(min(t.window_start, t.transcript.start), max(t.window_end, t.transcript.end)) for t in human["triples"]]
    position = next(p for p in range(1000, 200000, 500) if not any(low - 10 <= p <= high + 10 for low, high in spans))
    vcf = _write_vcf(tmp_path / "in.vcf", [(position, *_base(human["sequence"], position))])
    outputs = _run(human, vcf, tmp_path)
    assert _table(outputs["table"]) == [] and _table(outputs["alt_triples"]) == []
    line = [line for line in open(outputs["output"]) if not line.startswith("#")][0]
    assert "ISOFORMER" not in line


def test_scores_do_not_depend_on_batching_or_chunking(human, reference_run, tmp_path, monkeypatch):
    """One record per chunk, one DNA window per batch, no sharing of inputs, model calls of two isoform rows:
    the same scores (up to float summation order) as the reference run (several records per chunk, batches
    from memory, sharing), for the first records of its VCF."""
    from isoformer_cli.inference import memory_plan

    monkeypatch.setattr(memory_plan, "DEFAULT_CHUNK_ROWS", 2)  # rows per model call: genes take several
    vcf, reference = reference_run
    with open(vcf) as handle:
        lines = handle.readlines()
    body = [line for line in lines if not line.startswith("#")]
    first = tmp_path / "first.vcf"
    first.write_text("".join([line for line in lines if line.startswith("#")] + body[:4]))
    outputs = _run(human, first, tmp_path, chunk_size=1, max_tokens=3000, dedupe=False)
    positions = {line.split("\t")[1] for line in body[:4]}
    expected = {key: value for key, value in _values(_table(reference["table"])).items() if key[1] in positions}
    found = _values(_table(outputs["table"]))
    assert expected.keys() == found.keys() and len(found) > 4
    for key, values in expected.items():
        np.testing.assert_allclose(found[key], values, rtol=1e-4, atol=1e-5, err_msg=str(key))


def test_scores_do_not_depend_on_the_order_of_records(human, tmp_path):
    """Two contigs (the slice and a renamed copy of its first 60 kb, with its transcripts): contig blocks in
    either order and records at one position shuffled give the same scores."""
    folder = tmp_path / "two"
    folder.mkdir()
    sequence = human["sequence"]
    genome = folder / "two.fa"
    genome.write_text(f">chr16\n{sequence}\n>chrB\n{sequence[:60000]}\n")
    annotation = folder / "two.gtf"
    lines = open(HUMAN_GTF).read().splitlines()
    copied = []
    for line in lines:
        fields = line.split("\t")
        if int(fields[4]) < 58000:
            copied.append("\t".join(["chrB"] + fields[1:8] + [fields[8].replace('"NM_', '"B_NM_').replace('"NR_', '"B_NR_')]))
    annotation.write_text("\n".join(lines + copied) + "\n")
    base = list(_variants(human)[:4])
    chr16 = [("chr16", *record) for record in base]
    chr_b = [("chrB", *record) for record in base if record[0] < 59000]
    # Two alleles at one position, as two records, in both orders.
    position = chr16[3][1]
    extra = [("chr16", position, sequence[position - 1], alt) for alt in "ACGT" if alt != sequence[position - 1]][:2]
    lengths = (("chr16", len(sequence)), ("chrB", 60000))
    first = sorted(chr16 + extra, key=lambda item: item[1]) + chr_b
    rng = random.Random(3)
    reordered_chr16 = sorted(chr16 + extra[::-1], key=lambda item: (item[1], rng.random()))
    second = chr_b + reordered_chr16
    a = _run(human, _write_vcf(folder / "in_a.vcf", first, lengths), folder, "a", genome=str(genome),
             annotation=str(annotation), chunk_size=4)
    b = _run(human, _write_vcf(folder / "in_b.vcf", second, lengths), folder, "b", genome=str(genome),
             annotation=str(annotation), chunk_size=5)
    values_a, values_b = _values(_table(a["table"])), _values(_table(b["table"]))
    assert values_a.keys() == values_b.keys() and any(key[0] == "chrB" for key in values_a)
    for key, values in values_a.items():
        np.testing.assert_allclose(values_b[key], values, rtol=1e-4, atol=1e-5, err_msg=str(key))


def test_hdf5_table_has_ref_alt_delta_layers(human, reference_run, tmp_path):
    anndata = pytest.importorskip("anndata")
    vcf, reference = reference_run
    with open(vcf) as handle:
        lines = handle.readlines()
    body = [line for line in lines if not line.startswith("#")][:2]
    first = tmp_path / "first.vcf"
    first.write_text("".join([line for line in lines if line.startswith("#")] + body))
    outputs = _run(human, first, tmp_path, outputs={"output": str(tmp_path / "out.vcf.gz"),
                                                     "table": str(tmp_path / "out.h5ad"), "alt_triples": None})
    data = anndata.read_h5ad(outputs["table"])
    positions = {line.split("\t")[1] for line in body}
    rows = [row for row in _table(reference["table"]) if row["pos"] in positions]
    assert data.shape[0] == len(rows) > 0 and data.shape[1] == 30
    assert {"ref", "alt", "delta", "alt_dna", "alt_dna_rna", "share_delta"} <= set(data.layers)
    np.testing.assert_allclose(data.X, data.layers["alt"] - data.layers["ref"], atol=1e-6)
    assert list(data.obs["transcript_id"]) == [row["transcript_id"] for row in rows]


def test_prepared_rows_keep_only_their_inputs():
    from isoformer_cli.inference.prepare import PreparedChunk

    tokens = [np.array([i]) for i in range(4)]
    chunk = PreparedChunk(index=3, obs=[{}] * 4, dna_tokens=tokens[:3], dna_of_row=np.array([0, 1, 1, 2]),
                          rna_tokens=tokens[:2], rna_of_row=np.array([-1, 1, 0, 1]),
                          protein_tokens=tokens[:1], protein_of_row=np.array([0, -1, -1, 0]))
    part = chunk.rows(1, 3)
    assert len(part) == 2 and part.index == 3
    assert [int(t[0]) for t in part.dna_tokens] == [1] and list(part.dna_of_row) == [0, 0]
    assert [int(t[0]) for t in part.rna_tokens] == [1, 0] and list(part.rna_of_row) == [0, 1]
    assert part.protein_tokens == [] and list(part.protein_of_row) == [-1, -1]


# --------------------------------------------------------------------------- statuses, bad inputs


def test_max_memory_below_one_isoform_refuses_before_the_model_loads(human, tmp_path):
    vcf = _write_vcf(tmp_path / "in.vcf", _variants(human)[:2])
    out = tmp_path / "out.vcf"
    result = _invoke("-I", vcf, "--genome", human["genome_path"], "--annotation", HUMAN_GTF, "-O", out,
                     "--table", tmp_path / "out.tsv", "--max-memory", "1M")
    _one_error(result, "not enough memory: one full-length isoform", "--max-memory 1.0 MB")
    assert sorted(os.listdir(tmp_path)) == ["in.vcf"]


def test_records_that_cannot_be_scored_are_kept_with_a_status(human, tmp_path, caplog):
    sequence = human["sequence"]
    minus = next(t for t in human["triples"] if t.transcript.strand == "-")
    tss = minus.tss + 1
    length = len(sequence)
    near = minus.tss - 100
    records = [
        (near, "A" if sequence[near - 1] != "A" else "C", "G"),               # REF mismatch
        (near + 1, sequence[near], "<DEL>"),                                   # symbolic
        (near + 2, sequence[near + 1], f"{sequence[near + 1]}]chr16:5000]"),  # breakend
        (near + 3, sequence[near + 2], "*"),                                   # upstream deletion
        (near + 4, sequence[near + 3], "."),                                   # missing ALT
        (near + 5, sequence[near + 4], "R"),                                   # not A/C/G/T/N
        (near + 6, sequence[near + 5:near + 5 + 12], sequence[near + 5]),      # longer than --max-indel 5
        (tss - 2, sequence[tss - 3:tss + 2], sequence[tss - 3]),               # deletes the TSS
        (length, sequence[length - 1] + "A", sequence[length - 1]),            # past the contig end
    ]
    records = [("chr16", *record) for record in records] + [("chrUn_missing", 10, "A", "C")]
    vcf = _write_vcf(tmp_path / "in.vcf", records, (("chr16", length), ("chrUn_missing", 100)))
    caplog.set_level("INFO", logger="isoformer_cli")
    outputs = _run(human, vcf, tmp_path, max_indel=5)
    lines = [line for line in open(outputs["output"]) if not line.startswith("#")]
    assert len(lines) == len(records)
    statuses = [line.split("ISOFORMER_STATUS=")[1].split(";")[0].split("\t")[0] if "ISOFORMER_STATUS=" in line else ""
                for line in lines]
    expected = ["ref_mismatch", "symbolic", "breakend", "star", "missing_alt", "non_acgtn", "indel_too_long",
                "tss_deleted", "contig_end", "contig_missing"]
    for status, code in zip(statuses, expected):
        assert code in status, (status, code)
    assert f"|{minus.transcript.transcript_id}|tss_deleted" in statuses[7]
    assert "alleles not scored" in caplog.text and "ref_mismatch 1" in caplog.text


def _invoke(*args):
    return invoke("variants", "--checkpoint", "demo", *args)


def _one_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isoformer: error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_vcf_whose_contigs_match_none_of_the_genome_is_an_error(human, tmp_path):
    vcf = _write_vcf(tmp_path / "in.vcf", [("chrZ", 100, "A", "C")], (("chrZ", 1000),))
    result = _invoke("-I", vcf, "--genome", human["genome_path"], "--annotation", HUMAN_GTF,
                     "-O", tmp_path / "out.vcf", "--table", tmp_path / "out.tsv")
    _one_error(result, "no contig of the VCF", "--contig-alias")
    assert leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["in.vcf"]


def test_an_unsorted_vcf_is_an_error(human, tmp_path):
    base = _variants(human)
    records = base[:5] + [base[1]] + base[5:8]
    vcf = _write_vcf(tmp_path / "in.vcf", records)
    result = _invoke("-I", vcf, "--genome", human["genome_path"], "--annotation", HUMAN_GTF,
                     "-O", tmp_path / "out.vcf.gz", "--chunk-size", "2")
    _one_error(result, "not sorted", "bcftools sort", "line 10 ")
    assert sorted(os.listdir(tmp_path)) == ["in.vcf"]


@pytest.mark.oracle("bgzip")
def test_a_truncated_bgzip_vcf_is_an_error_and_plain_gzip_is_read(human, tmp_path):
    base = _variants(human)
    vcf = _write_vcf(tmp_path / "in.vcf", base[:3])
    plain = tmp_path / "plain.vcf.gz"
    with open(vcf, "rb") as src, gzip.open(plain, "wb") as dst:
        dst.write(src.read())
    result = _invoke("-I", plain, "--genome", human["genome_path"], "--annotation", HUMAN_GTF, "-O",
                     tmp_path / "plain_out.vcf")
    assert result.exit_code == 0, result.output
    os.system(f"bgzip -f {vcf}")
    data = open(f"{vcf}.gz", "rb").read()
    truncated = tmp_path / "cut.vcf.gz"
    truncated.write_bytes(data[:len(data) // 2])
    out = tmp_path / "out.vcf.gz"
    result = _invoke("-I", truncated, "--genome", human["genome_path"], "--annotation", HUMAN_GTF, "-O", out)
    _one_error(result, str(truncated), "truncated or corrupt")
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.oracle("bcftools")
def test_bcf_input_reads_as_the_vcf(human, tmp_path):
    """A BCF (bcftools view -Ob) gives the same records, with multi-allelic ALTs, as the text VCF."""
    import subprocess

    from isoformer_cli.genomics.vcf import VcfReader

    sequence = human["sequence"]
    records = list(_variants(human)[:4])
    pos = records[0][0]
    records[0] = (pos, sequence[pos - 1], ",".join(base for base in "ACG" if base != sequence[pos - 1]))
    vcf = _write_vcf(tmp_path / "in.vcf", records)
    bcf = tmp_path / "in.bcf"
    subprocess.run(["bcftools", "view", "-Ob", "-o", str(bcf), vcf], check=True, capture_output=True)

    def read(path):
        with VcfReader(str(path)) as reader:
            return [(r.chrom, r.pos, r.ref, r.alts, r.fields[2], r.fields[7]) for r in reader]

    assert read(bcf) == read(vcf) and len(read(vcf)[0][3]) >= 2


def test_output_that_is_the_input_is_refused(human, tmp_path):
    vcf = _write_vcf(tmp_path / "in.vcf", _variants(human)[:2])
    result = _invoke("-I", vcf, "--genome", human["genome_path"], "--annotation", HUMAN_GTF, "-O", vcf)
    _one_error(result, "is the same file as -I/--input")
    result = _invoke("-I", vcf, "--genome", human["genome_path"], "--annotation", HUMAN_GTF, "-O",
                     tmp_path / "x.txt")
    _one_error(result, "name it .vcf or .vcf.gz")


def test_standard_input_and_output(human, tmp_path):
    vcf = _write_vcf(tmp_path / "in.vcf", _variants(human)[:6])
    result = CliRunner().invoke(cli, ["-q", "variants", "--checkpoint", "demo", "-I", "-", "--genome",
                                      human["genome_path"], "--annotation", HUMAN_GTF],
                                input=open(vcf).read())
    assert result.exit_code == 0, result.output
    body = [line for line in result.output.splitlines() if not line.startswith(("#", "isoformer:"))]
    assert len(body) == 6 and any("ISOFORMER=" in line for line in body)


def test_interrupted_run_resumes_to_the_same_files(human, reference_run, tmp_path, monkeypatch):
    """Killed after its first chunk, then resumed: the outputs equal an uninterrupted run's (the reference
    run, same chunk size), byte for byte for the tables, line for line for the bgzipped VCF."""
    import isoformer_cli.app.variants as app

    vcf, reference = reference_run
    original, calls = app._write_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(app, "_write_chunk", interrupted)
    outputs = {"output": str(tmp_path / "out.vcf.gz"), "table": str(tmp_path / "out.tsv"),
               "alt_triples": str(tmp_path / "out.alt.tsv")}
    with pytest.raises(KeyboardInterrupt):
        _run(human, vcf, tmp_path, outputs=outputs, chunk_size=REFERENCE_CHUNK)
    assert not os.path.exists(outputs["output"]) and leftovers(tmp_path)
    monkeypatch.setattr(app, "_write_chunk", original)
    _run(human, vcf, tmp_path, outputs=outputs, chunk_size=REFERENCE_CHUNK, resume=True)
    with gzip.open(outputs["output"], "rt") as resumed, open(reference["output"]) as whole:
        assert resumed.read() == whole.read()
    for key in ("table", "alt_triples"):
        with open(outputs[key], "rb") as resumed, open(reference[key], "rb") as whole:
            assert resumed.read() == whole.read(), key
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(human, reference_run, tmp_path):
    import subprocess
    import sys

    pytest.importorskip("torch.distributed")
    vcf, _ = reference_run
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["-q", "variants", "--checkpoint", "demo", "-I", vcf, "--genome", human["genome_path"],
              "--annotation", HUMAN_GTF, "--chunk-size", "3"]
    single = [sys.executable, "-m", "isoformer_cli", *common, "-O", str(tmp_path / "one.vcf"),
              "--table", str(tmp_path / "one.tsv")]
    assert subprocess.run(single, env=env, capture_output=True, timeout=600).returncode == 0
    run_torchrun([*common, "-O", tmp_path / "two.vcf", "--table", tmp_path / "two.tsv"], env, timeout=600)
    body = lambda path: [line for line in open(path) if "provenance" not in line]
    assert body(tmp_path / "one.vcf") == body(tmp_path / "two.vcf")
    one, two = _values(_table(tmp_path / "one.tsv")), _values(_table(tmp_path / "two.tsv"))
    assert one.keys() == two.keys()
    for key, values in one.items():
        np.testing.assert_allclose(two[key], values, rtol=1e-4, atol=1e-5)
