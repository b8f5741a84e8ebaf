"""`isoformer variants`: what the model cannot see is not scored as "no effect" (issue 18, item 1), and the
alternative protein follows the reference's translation rule (item 2).

The demo checkpoint reads 2 kb DNA windows, 256 RNA tokens (about 1.5 kb) and 126 protein residues, so the
example transcripts are truncated and variants are found on both sides of what it reads, on both example
datasets and with both truncation sides (``keep_start``, ``keep_end``).
"""

import csv
import re
import gzip
import json
import os
import shutil

import h5py
import numpy as np
import pytest
from cli_helpers import EXAMPLES, HUMAN_GENOME, HUMAN_GTF
from click.testing import CliRunner

from isoformer_cli.cli.main import cli
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.cds import ExonMap
from isoformer_cli.triples.source import TripleSource, iter_triples
from isoformer_cli.triples.translation import STANDARD_CODE
from isoformer_cli.triples.variants import Allele, alternative_triple

DEMO = json.load(open(os.path.join(os.path.dirname(__file__), "..", "isoformer_cli", "data", "demo_checkpoint",
                                   "config.json")))
WINDOW, RNA_TOKENS, RESIDUES = DEMO["dna_length"], DEMO["max_rna_tokens"], DEMO["max_protein_residues"]
MARGIN = 12  # bases kept clear of every boundary (tokens of 6 bases, splice regions, window edges)
DATASETS = {"human": (HUMAN_GENOME, HUMAN_GTF, "chr16"),
            "mouse": (str(EXAMPLES / "chr9.4M.fa.gz"), str(EXAMPLES / "chr9.4M.gtf.gz"), "chr9")}
COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module", params=sorted(DATASETS))
def dataset(request, tmp_path_factory):
    fasta, annotation, contig = DATASETS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    genome_path = folder / "genome.fa"
    if fasta.endswith(".gz"):
        with gzip.open(fasta, "rb") as source, open(genome_path, "wb") as target:
            shutil.copyfileobj(source, target)
    else:
        shutil.copy(fasta, genome_path)
    genome = Genome(str(genome_path))
    triples = list(iter_triples(TripleSource(genome=str(genome_path), annotation=annotation, dna_length=WINDOW),
                                genome))
    return {"name": request.param, "genome_path": str(genome_path), "annotation": annotation, "contig": contig,
            "genome": genome, "triples": triples, "sequence": genome.fetch(contig, 0, genome.length(contig))}


def _missense(data, wanted):
    """``(pos 1-based, ref, alt, triple, codon index, RNA offset)`` of a missense SNV in a CDS, outside every
    transcript's DNA window and away from exon ends, whose codon and RNA offset satisfy ``wanted(triple,
    codon, offset)``; None when the dataset has none."""
    windows = [(triple.window_start, triple.window_end) for triple in data["triples"]]
    sequence = data["sequence"]
    for triple in data["triples"]:
        transcript = triple.transcript
        if triple.cds_start is None or "*" in triple.protein or not triple.protein.startswith("M"):
            continue
        exon_map = ExonMap(transcript)
        for genomic in range(transcript.start, transcript.end):
            if any(start - MARGIN <= genomic < end + MARGIN for start, end in windows):
                continue
            index = exon_map.exon_index(genomic, genomic + 1)
            if index is None:
                continue
            low, high = transcript.exons[index]
            if genomic - low < MARGIN or high - genomic <= MARGIN:
                continue
            offset = exon_map.to_transcript(genomic, genomic + 1, "x")[0]
            codon = (offset - triple.cds_start) // 3
            if not 1 <= codon < len(triple.protein) - 1 or not wanted(triple, codon, offset):
                continue
            ref_codon = triple.rna[triple.cds_start + 3 * codon:triple.cds_start + 3 * codon + 3]
            for alt in "ACGT":
                if alt == sequence[genomic]:
                    continue
                base = alt if transcript.strand == "+" else alt.translate(COMPLEMENT)
                within = offset - triple.cds_start - 3 * codon
                new = ref_codon[:within] + base + ref_codon[within + 1:]
                if STANDARD_CODE.codons[new] not in ("*", STANDARD_CODE.codons[ref_codon]):
                    return genomic + 1, sequence[genomic], alt, triple, codon, offset
    return None


def _keep_start_hidden(triple, codon, offset):
    return codon >= RESIDUES + 2 and offset >= 6 * RNA_TOKENS + MARGIN


def _keep_end_hidden(triple, codon, offset):
    return codon < len(triple.protein) - RESIDUES - 2 and offset < len(triple.rna) - 6 * RNA_TOKENS - MARGIN


def _rna_seen_protein_not(triple, codon, offset):
    return codon >= RESIDUES + 2 and offset < 6 * RNA_TOKENS - 6 * MARGIN and "N" not in triple.rna


def _write_vcf(path, contig, length, records):
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={contig},length={length}>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for number, (pos, ref, alt) in enumerate(records):
            out.write(f"{contig}\t{pos}\tv{number}\t{ref}\t{alt}\t.\t.\t.\n")
    return str(path)


def _invoke(data, vcf, folder, *extra):
    result = CliRunner().invoke(cli, ["variants", "--checkpoint", "demo", "-I", vcf, "--genome", data["genome_path"],
                                      "--annotation", data["annotation"], "-O", str(folder / "out.vcf"),
                                      "--table", str(folder / "out.tsv"), *extra])
    return result


def _entries(vcf_path):
    """{transcript: ISOFORMER entry fields} and the ISOFORMER_STATUS entries of the first record."""
    line = next(line for line in open(vcf_path) if not line.startswith("#"))
    info = dict(item.split("=", 1) for item in line.rstrip("\n").split("\t")[7].split(";") if "=" in item)
    entries = {entry.split("|")[2]: entry.split("|") for entry in info.get("ISOFORMER", "").split(",") if entry}
    statuses = [entry for entry in info.get("ISOFORMER_STATUS", "").split(",") if entry]
    return entries, statuses


def _table(path):
    lines = [line for line in open(path) if not line.startswith("#")]
    return {row["transcript_id"]: row for row in csv.DictReader(lines, delimiter="\t")}


@pytest.mark.parametrize("side", ["keep_start", "keep_end"])
def test_a_change_past_what_the_model_reads_is_not_visible_not_zero(dataset, side, tmp_path):
    wanted = _keep_start_hidden if side == "keep_start" else _keep_end_hidden
    found = _missense(dataset, wanted)
    assert found is not None, f"{dataset['name']}: no missense SNV the demo cannot see with {side}"
    pos, ref, alt, triple, _, _ = found
    transcript_id = triple.transcript.transcript_id
    vcf = _write_vcf(tmp_path / "in.vcf", dataset["contig"], len(dataset["sequence"]), [(pos, ref, alt)])
    result = _invoke(dataset, vcf, tmp_path, "--rna-truncation", side, "--protein-truncation", side,
                     "--alt-triples", str(tmp_path / "alt.tsv"))
    assert result.exit_code == 0, result.output
    assert "change only what the model does not read (status not_visible" in result.output
    entries, statuses = _entries(tmp_path / "out.vcf")
    entry = dict(zip(("ALLELE", "GENE", "TRANSCRIPT", "CONSEQUENCE", "AMINO_ACIDS", "INPUTS", "FLAGS", "MAX_DELTA",
                      "MAX_TISSUE", "DNA", "RNA", "PROTEIN", "MAX_SHARE_DELTA", "SHARE_TISSUE"), entries[transcript_id]))
    assert entry["CONSEQUENCE"] == "missense" and entry["INPUTS"] == "none"
    assert {"rna_truncated", "protein_truncated"} <= set(entry["FLAGS"].split("&"))
    # No score at all: no zero, no tissue claimed.
    for name in ("MAX_DELTA", "MAX_TISSUE", "DNA", "RNA", "PROTEIN", "MAX_SHARE_DELTA", "SHARE_TISSUE"):
        assert entry[name] == ".", (name, entry)
    assert f"{alt}|{transcript_id}|not_visible" in statuses
    assert "##INFO=<ID=ISOFORMER_STATUS" in open(tmp_path / "out.vcf").read()
    row = _table(tmp_path / "out.tsv")[transcript_id]
    assert row["status"] == "not_visible" and row["inputs"] == "none" and row["max_tissue"] == "."
    assert all(row[key] == "NA" for key in row if key.startswith(("delta:", "alt:", "share_delta:")))
    assert all(np.isfinite(float(row[key])) for key in row if key.startswith("ref:"))
    assert np.isnan(float(row["max_delta"].replace("NA", "nan")))


def test_not_visible_rows_are_nan_in_hdf5(dataset, tmp_path):
    pos, ref, alt, triple, _, _ = _missense(dataset, _keep_start_hidden)
    vcf = _write_vcf(tmp_path / "in.vcf", dataset["contig"], len(dataset["sequence"]), [(pos, ref, alt)])
    result = CliRunner().invoke(cli, ["-q", "variants", "--checkpoint", "demo", "-I", vcf, "--genome",
                                      dataset["genome_path"], "--annotation", dataset["annotation"],
                                      "-O", str(tmp_path / "out.vcf"), "--table", str(tmp_path / "out.h5")])
    assert result.exit_code == 0 and "error" not in result.output, result.output
    with h5py.File(tmp_path / "out.h5") as handle:
        ids = [value.decode() for value in handle["obs/transcript_id"][()]] if "categories" not in \
            handle["obs/transcript_id"] else None
        status = handle["obs/status"]
        statuses = [value.decode() if isinstance(value, bytes) else value
                    for value in (status[()] if not isinstance(status, h5py.Group) else
                                  status["categories"][()][status["codes"][()]])]
        row = statuses.index("not_visible")
        assert np.isnan(handle["X"][row]).all() and np.isnan(handle["layers/alt"][row]).all()
        assert np.isfinite(handle["layers/ref"][row]).all()
        assert np.isnan(handle["obs/max_delta"][row])
        del ids


def test_a_partly_visible_change_is_scored_and_flagged(dataset, tmp_path):
    found = _missense(dataset, _rna_seen_protein_not)
    if found is None:
        pytest.skip(f"{dataset['name']}: no missense SNV in the RNA the demo reads but past its residues")
    pos, ref, alt, triple, _, _ = found
    transcript_id = triple.transcript.transcript_id
    vcf = _write_vcf(tmp_path / "in.vcf", dataset["contig"], len(dataset["sequence"]), [(pos, ref, alt)])
    result = _invoke(dataset, vcf, tmp_path)
    assert result.exit_code == 0, result.output
    assert re.search(r"[1-9]\d* change a part it reads and a part it does not", result.output), result.output
    entries, statuses = _entries(tmp_path / "out.vcf")
    fields = entries[transcript_id]
    assert fields[5] == "rna" and "protein_truncated" in fields[6].split("&")
    assert "rna_truncated" not in fields[6].split("&")
    assert fields[7] != "." and fields[8] != "." and fields[11] == "0"
    assert not any(transcript_id in status for status in statuses)
    row = _table(tmp_path / "out.tsv")[transcript_id]
    assert row["status"] == "scored" and np.isfinite(float(row["max_delta"]))


# ------------------------------------------------------------------------- item 2: internal stops


CODONS = ["GCT", "AAA", "CGC", "TTC", "GGA", "CAG", "GTC", "ACC"]


def _internal_stop_model(tmp_path, stop_codon):
    """A genome and GTF of one '+' transcript whose 60-codon CDS has an internal TAA at codon ``stop_codon``
    (1-based codon 1 = ATG); returns (genome path, gtf path, cds start 0-based, codons)."""
    codons = ["ATG"] + [CODONS[index % len(CODONS)] for index in range(58)] + ["TAG"]
    codons[stop_codon - 1] = "TAA"
    flank = "".join("ACGTTGCA"[index % 8] for index in range(300))
    cds = "".join(codons)
    sequence = flank + cds + flank
    start = len(flank)
    genome = tmp_path / "g.fa"
    genome.write_text(">c\n" + sequence + "\n")
    gtf = tmp_path / "a.gtf"
    attrs = 'gene_id "G"; transcript_id "T";'
    gtf.write_text("\n".join([
        f"c\tt\texon\t{start - 99}\t{start + len(cds) + 100}\t.\t+\t.\t{attrs}",
        f"c\tt\tCDS\t{start + 1}\t{start + len(cds) - 3}\t.\t+\t0\t{attrs}",
        f"c\tt\tstop_codon\t{start + len(cds) - 2}\t{start + len(cds)}\t.\t+\t0\t{attrs}",
    ]) + "\n")
    return str(genome), str(gtf), start, codons, sequence


def _missense_at(sequence, start, codons, codon):
    """A missense SNV ``(pos 1-based, ref, alt)`` at the second base of 1-based ``codon``."""
    position = start + 3 * (codon - 1) + 1
    ref = sequence[position]
    for alt in "ACGT":
        changed = codons[codon - 1][:1] + alt + codons[codon - 1][2:]
        if alt != ref and STANDARD_CODE.codons[changed] not in ("*", STANDARD_CODE.codons[codons[codon - 1]]):
            return position + 1, ref, alt
    raise AssertionError("no missense base")


@pytest.mark.parametrize("stop_codon, variant_codon", [(10, 45), (45, 10)])
def test_alternative_protein_reads_through_internal_stops_as_the_reference(tmp_path, stop_codon, variant_codon):
    genome_path, gtf, start, codons, sequence = _internal_stop_model(tmp_path, stop_codon)
    genome = Genome(genome_path)
    triple = next(iter_triples(TripleSource(genome=genome_path, annotation=gtf, dna_length=WINDOW), genome))
    assert "internal_stop" in triple.flags and len(triple.protein) == 59 and triple.protein[stop_codon - 1] == "*"
    pos, ref, alt = _missense_at(sequence, start, codons, variant_codon)
    alternative = alternative_triple(triple, Allele("c", pos - 1, ref, alt), genome, WINDOW)
    # Only the variant's codon differs: the old stop is read through on either side of it.
    assert len(alternative.protein) == len(triple.protein)
    assert [index for index, (a, b) in enumerate(zip(triple.protein, alternative.protein)) if a != b] == \
        [variant_codon - 1]
    # A stop the variant creates still ends the protein.
    position = start + 3 * (variant_codon - 1)
    alternative = alternative_triple(triple, Allele("c", position, sequence[position:position + 3], "TAA"), genome,
                                     WINDOW)
    assert alternative.protein == triple.protein[:variant_codon - 1]
    # The command writes the same protein.
    vcf = _write_vcf(tmp_path / "in.vcf", "c", len(sequence), [(pos, ref, alt)])
    result = CliRunner().invoke(cli, ["-q", "variants", "--checkpoint", "demo", "-I", vcf, "--genome", genome_path,
                                      "--annotation", gtf, "-O", str(tmp_path / "out.vcf"),
                                      "--alt-triples", str(tmp_path / "alt.tsv")])
    assert result.exit_code == 0 and "error" not in result.output, result.output
    rows = [row for row in csv.DictReader([line for line in open(tmp_path / "alt.tsv") if not line.startswith("#")],
                                          delimiter="\t")]
    assert len(rows) == 1 and rows[0]["consequence"] == "missense"
    assert len(rows[0]["protein"]) == 59 and rows[0]["protein"][stop_codon - 1] == "*"


def test_a_frameshift_after_an_internal_stop_reads_on_in_the_new_frame(tmp_path):
    genome_path, gtf, start, codons, sequence = _internal_stop_model(tmp_path, 10)
    genome = Genome(genome_path)
    triple = next(iter_triples(TripleSource(genome=genome_path, annotation=gtf, dna_length=WINDOW), genome))
    anchor = start + 3 * 30  # delete one base after codon 30
    alternative = alternative_triple(triple, Allele("c", anchor, sequence[anchor:anchor + 2], sequence[anchor]),
                                     genome, WINDOW)
    rna_end = start + 3 * len(codons) + 100  # the exon's end (0-based exclusive)
    shifted = sequence[start:anchor + 1] + sequence[anchor + 2:rna_end]
    expected = STANDARD_CODE.translate(shifted[:len(shifted) - len(shifted) % 3])
    expected = expected[:9] + "*" + expected[10:]  # the old stop, upstream of the change, is read through
    first_new = expected.find("*", 30)
    assert alternative.protein == (expected[:first_new] if first_new != -1 else expected)
    assert alternative.protein[9] == "*" and len(alternative.protein) > 30
