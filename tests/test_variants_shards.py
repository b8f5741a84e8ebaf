"""`isoformer variants --shard K/N` then `isoformer merge`: the merged files are the single run's.

On both example datasets (the human chr16 refGene slice, where every isoform is its own gene and several
share a TSS; the mouse chr9 GENCODE slice, with multi-isoform genes and a minus-strand gene overlapping a
cluster of plus-strand ones), a VCF built from the annotation's coordinates holds: SNVs and indels around
TSSs and in exons; multi-allelic records, with an ALT listed twice (adjacent and not), with alleles that
cannot be scored beside ones that can, with a deletion and an SNV reaching different transcripts; deletions
of shared TSSs (``tss_deleted`` statuses of several genes in one record); a REF mismatch, a missing ALT and
a contig missing from the genome. For N in 1, 2, 3, 7 every shard runs, then ``isoformer merge`` joins each
output, whose body must equal the single run's: the VCF (all lines but ``##isoformer_provenance``; plain,
and bgzipped: BGZF, indexed by tabix), the table (TSV, and every HDF5 dataset but the provenance), the
alternative triples. For N > 1 the test checks that some record was scored in two shards, so that the
interleaving rules are exercised. Refusals, the command line and a resumed shard run on the first records
of the human VCF.

The comparison is exact, numbers included, once the structure (every number masked) has matched: the
scores of a pair must not depend on which other pairs its chunk holds, so the engine's results must not
depend on how its batches are made up.
"""

import collections
import gzip
import os
import re
import shutil

import h5py
import numpy as np
import pysam
import pytest
from cli_helpers import EXAMPLES, HUMAN_GENOME, HUMAN_GTF, invoke, leftovers

from isoformer_cli.app.variants import VariantsConfig, run_variants
from isoformer_cli.errors import InputError
from isoformer_cli.formats import h5ad
from isoformer_cli.formats.variant_shards import (
    TranscriptRanks,
    encode_transcripts,
    merge_row_units,
    merge_vcf_record,
)
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.triples.source import TripleSource, iter_triples

WINDOW = 2048  # the demo checkpoint's
DATASETS = {
    # name: (FASTA, annotation, contig, stride of the TSSs and transcripts given variants: see _records)
    "human": (HUMAN_GENOME, HUMAN_GTF, "chr16", 1),
    "mouse": (str(EXAMPLES / "chr9.4M.fa.gz"), str(EXAMPLES / "chr9.4M.gtf.gz"), "chr9", 4),
}
#: Output names of the two format sets: plain VCF and TSV tables, or bgzipped VCF, HDF5 table, gzip triples.
PLAIN = {"output": ".vcf", "table": ".tsv", "alt_triples": ".alt.tsv"}
PACKED = {"output": ".vcf.gz", "table": ".h5", "alt_triples": ".alt.tsv.gz"}
#: (dataset, N, formats) of the split-and-merge test: each format set twice on each dataset.
SPLITS = [(name, count, formats) for name in ("human", "mouse")
          for count, formats in ((1, PLAIN), (2, PACKED), (3, PLAIN), (7, PACKED))]
MISSING_CONTIG = "chrUn_missing"


# --------------------------------------------------------------------------------------------- the VCF


def _records(triples, sequence, contig, stride):
    """``(chrom, pos, ref, alt)`` records (see the module docstring), sorted by position, around every
    ``stride``-th TSS and in the exons of every ``3 * stride``-th transcript."""
    records = set()

    def snv(position, count=1):
        ref = sequence[position - 1]
        return (contig, position, ref, ",".join([letter for letter in "ACGT" if letter != ref][:count]))

    def other(base, skip=""):
        return next(letter for letter in "ACGT" if letter != base and letter not in skip)

    tss_groups = sorted({(triple.tss, triple.transcript.strand) for triple in triples})[::stride]
    for number, (tss, strand) in enumerate(tss_groups):
        tss1 = tss + 1  # 1-based
        step = -1 if strand == "+" else 1  # towards upstream
        records.add(snv(tss1 + step * 150))
        if number % 2 == 0:
            # The TSS deleted by one allele; the other allele an SNV just after it.
            ref = sequence[tss1 - 3:tss1 + 2]
            records.add((contig, tss1 - 2, ref, f"{ref[0]},{ref[:-1] + other(ref[-1])}"))
        if number % 3 == 0:
            records.add(snv(tss1 + step * 300, count=2))
        if number % 4 == 0:
            position = tss1 + step * 400
            base = sequence[position - 1]
            records.add((contig, position, base, f"{other(base)},{other(base)}"))  # one ALT twice
            position = tss1 + step * 500
            base = sequence[position - 1]
            records.add((contig, position, base, f"{other(base)},{other(base, other(base))},{other(base)}"))
            position = tss1 + step * 600
            base = sequence[position - 1]
            records.add((contig, position, base, f"{other(base)},<DEL>,*"))
            # A 3-bp deletion and an SNV at the deletion's last base: different transcripts may take them.
            position = tss1 + 2 if strand == "+" else tss1 - 5
            ref = sequence[position - 1:position + 3]
            records.add((contig, position, ref, f"{ref[0]},{ref[:3] + other(ref[3])}"))
    for triple in triples[::3 * stride]:
        transcript = triple.transcript
        first_exon = transcript.exons[0] if transcript.strand == "+" else transcript.exons[-1]
        middle = (first_exon[0] + first_exon[1]) // 2 + 1
        records.add(snv(middle))
        records.add((contig, middle + 2, sequence[middle + 1:middle + 4], sequence[middle + 1]))
        if transcript.cds:
            low, high = transcript.cds[len(transcript.cds) // 2]
            records.add(snv((low + high) // 2 + 1))
    anchor = triples[0].tss + 1 + 120
    records.add((contig, anchor, other(sequence[anchor - 1]), "G"))  # REF mismatch
    records.add((contig, anchor + 1, sequence[anchor], "."))  # missing ALT
    return sorted(records, key=lambda record: record[1]) + [(MISSING_CONTIG, 10, "A", "C")]


def _write_vcf(path, records, contig, length):
    with open(path, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n')
        out.write(f"##contig=<ID={contig},length={length}>\n##contig=<ID={MISSING_CONTIG},length=100>\n")
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for number, (chrom, pos, ref, alt) in enumerate(records):
            out.write(f"{chrom}\t{pos}\tv{number}\t{ref}\t{alt}\t.\t.\tDP={number % 7}\n")
    return str(path)


# ---------------------------------------------------------------------------------------------- runs


def _run(data, folder, name, formats, shard=None, resume=False):
    """Run variants (in this process) on ``data["vcf"]`` into ``folder/name`` + each suffix of ``formats``;
    the output paths."""
    outputs = {key: str(folder / f"{name}{suffix}") for key, suffix in formats.items()}
    source = TripleSource(genome=data["genome"], annotation=data["annotation"], shard=shard)
    args = ("variants", "-I", "in.vcf") + (("--shard", shard) if shard else ())
    run_variants(VariantsConfig(source=source, checkpoint="demo", vcf=data["vcf"], command_args=args,
                                chunk_size=data.get("chunk_size", 8), resume=resume, **outputs))
    return outputs


_PREPARED = {}


def _data(name, tmp_path_factory):
    """A dataset's genome, annotation, VCF and the single run's outputs in the format sets its splits use
    (made once)."""
    if name not in _PREPARED:
        _PREPARED[name] = _prepare(name, tmp_path_factory.mktemp(name))
    return _PREPARED[name]


def _prepare(name, folder):
    fasta, annotation, contig, stride = DATASETS[name]
    genome_path = folder / "genome.fa"
    if fasta.endswith(".gz"):
        with gzip.open(fasta, "rb") as source, open(genome_path, "wb") as target:
            shutil.copyfileobj(source, target)
    else:
        shutil.copy(fasta, genome_path)
    genome = Genome(str(genome_path))
    triples = list(iter_triples(TripleSource(genome=str(genome_path), annotation=annotation, dna_length=WINDOW),
                                genome))
    sequence = genome.fetch(contig, 0, genome.length(contig))
    vcf = _write_vcf(folder / "in.vcf", _records(triples, sequence, contig, stride), contig, len(sequence))
    data = {"name": name, "genome": str(genome_path), "annotation": annotation, "vcf": vcf}
    data["single"] = {"plain": _run(data, folder, "single", PLAIN)}
    if any(dataset == name and formats is PACKED for dataset, _, formats in SPLITS):
        data["single"]["packed"] = _run(data, folder, "single", PACKED)
    return data


def _lines(path):
    """A text output's lines, decompressed, without the provenance line."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as stream:
        return [line for line in stream if not line.startswith(("##isoformer_provenance=", "# provenance: "))]


_NUMBER = re.compile(r"(?<=[\t|,=])-?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)(?=[\t|,;\n])")


def _masked(lines):
    """``lines`` with every number written as ``#``: the files' structure, which must match even where the
    printed values would differ in a last digit."""
    return [_NUMBER.sub("#", line) for line in lines]


def _datasets(path):
    """Every HDF5 dataset but the provenance (``uns``): name -> values."""
    found = {}
    with h5py.File(path, "r") as handle:
        def visit(name, node):
            if isinstance(node, h5py.Dataset) and not name.startswith("uns"):
                found[name] = node[()]
        handle.visititems(visit)
    return found


def _record_entries(lines):
    """Per record line: its ISOFORMER entries and ISOFORMER_STATUS entries (lists of text)."""
    found = []
    for line in lines:
        if line.startswith("#"):
            continue
        info = dict(item.partition("=")[::2] for item in line.rstrip("\n").split("\t")[7].split(";"))
        found.append((info.get("ISOFORMER", "").split(",") if info.get("ISOFORMER") else [],
                      info.get("ISOFORMER_STATUS", "").split(",") if info.get("ISOFORMER_STATUS") else []))
    return found


# ------------------------------------------------------------------------------------ the merge rules


def _ranks(shared):
    return TranscriptRanks({"transcripts": encode_transcripts(shared)}, "shard")


def test_a_record_scored_in_two_shards_is_combined_in_allele_then_rank_order():
    """ALT A,C,A,<DEL>: shard 1 holds t1 and t3, shard 2 t2; the third allele repeats the first, the fourth
    is not scored (an allele-level status, in both shards); t1 of allele C is a transcript-level status."""
    ranks = [_ranks({"c1": {(1, "t1"), (3, "t3")}}), _ranks({"c1": {(2, "t2")}})]
    fields = "c1\t5\tv1\tG\tA,C,A,<DEL>\t.\t.\tDP=3;{}\n"
    one = fields.format("ISOFORMER=A|g|t1|x,A|g|t3|x,A|g|t1|y,A|g|t3|y;"
                        "ISOFORMER_STATUS=C|t1|tss_deleted,<DEL>|.|symbolic")
    two = fields.format("ISOFORMER=A|g|t2|x,C|g|t2|x,A|g|t2|y;ISOFORMER_STATUS=<DEL>|.|symbolic")
    single = fields.format("ISOFORMER=A|g|t1|x,A|g|t2|x,A|g|t3|x,C|g|t2|x,A|g|t1|y,A|g|t2|y,A|g|t3|y;"
                           "ISOFORMER_STATUS=C|t1|tss_deleted,<DEL>|.|symbolic")
    assert merge_vcf_record([two, one], ranks[::-1], ["b", "a"], 1) == single
    assert merge_vcf_record([one, two], ranks, ["a", "b"], 1) == single
    # Scored in one shard only: that shard's line is the record's, statuses included.
    alone = fields.format("ISOFORMER_STATUS=<DEL>|.|symbolic")
    assert merge_vcf_record([alone, one], ranks[::-1], ["b", "a"], 1) == one
    with pytest.raises(InputError, match="differs from a's beyond the ISOFORMER fields"):
        merge_vcf_record([one, two.replace("DP=3", "DP=4")], ranks, ["a", "b"], 1)
    with pytest.raises(InputError, match="transcript t2 is not among the transcripts its shard entry ranks"):
        merge_vcf_record([one, two], [ranks[0], ranks[0]], ["a", "b"], 1)


def test_rows_of_one_allele_in_two_shards_interleave_by_rank():
    """Units of ordinal 4 (an ALT listed twice in a row: two runs of rising rank) in both shards."""
    ranks = [_ranks({"c1": {(1, "t1"), (3, "t3")}}), _ranks({"c1": {(2, "t2")}})]
    one = [[("c1", "t1", "a"), ("c1", "t3", "b")], [("c1", "t1", "d"), ("c1", "t3", "e"), ("c1", "t1", "f"),
                                                    ("c1", "t3", "g")]]
    two = [[("c1", "x9", "c")], [("c1", "t2", "h"), ("c1", "t2", "i")]]
    merged = merge_row_units([("a", (1, 4), iter(one), ranks[0]), ("b", (2, 4), iter(two), ranks[1])])
    assert "".join(merged) == "abcdhefig"
    with pytest.raises(InputError, match="holds fewer row groups than its shard order lists"):
        list(merge_row_units([("a", (1, 4, 6), iter(one), ranks[0])]))


# --------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_vcf_covers_what_the_merge_rules_handle(name, tmp_path_factory):
    """The single run's VCF holds the cases of the module docstring."""
    data = _data(name, tmp_path_factory)
    entries = _record_entries(_lines(data["single"]["plain"]["output"]))
    statuses = [status for _, record_statuses in entries for status in record_statuses]
    assert sum(bool(record_entries) for record_entries, _ in entries) > 30
    assert any(status.endswith("|tss_deleted") for status in statuses)
    for code in ("ref_mismatch", "missing_alt", "contig_missing", "symbolic", "star"):
        assert any(status.endswith(f"|{code}") for status in statuses), code
    # A record with an ALT listed twice, scored on both.
    assert any(len({entry.split("|")[0] for entry in record_entries}) == 1
               and collections.Counter(entry.split("|")[2] for entry in record_entries).most_common(1)[0][1] == 2
               for record_entries, _ in entries if record_entries)


@pytest.mark.parametrize("name, count, formats", SPLITS, ids=[f"{name}-{count}" for name, count, _ in SPLITS])
def test_merged_shards_equal_the_single_run(name, count, formats, tmp_path, tmp_path_factory):
    data = _data(name, tmp_path_factory)
    shards = [_run(data, tmp_path, f"shard{index}", formats, shard=f"{index}/{count}")
              for index in range(1, count + 1)]
    single = data["single"]["plain" if formats is PLAIN else "packed"]
    merged = {}
    for key, suffix in formats.items():
        merged[key] = str(tmp_path / f"merged{suffix}")
        # Shards given in reverse order: the merge orders them itself.
        result = invoke("merge", "-o", merged[key], *[outputs[key] for outputs in reversed(shards)])
        assert result.exit_code == 0, result.output
    # The structure first (which rows, entries and statuses, in which order), then every value.
    text = ("output", "alt_triples", "table") if formats is PLAIN else ("output", "alt_triples")
    for key in text:
        assert _masked(_lines(merged[key])) == _masked(_lines(single[key])), key
    if formats is PACKED:
        expected, found = _datasets(single["table"]), _datasets(merged["table"])
        assert found.keys() == expected.keys()
        for name, values in expected.items():
            if values.dtype.kind != "f":
                assert np.array_equal(found[name], values), name
    for key in text:
        assert _lines(merged[key]) == _lines(single[key]), key
    if formats is PACKED:
        for name, values in expected.items():
            np.testing.assert_array_equal(found[name], values, err_msg=name)
        # BGZF, as the command writes it: tabix indexes it and finds every record of the contig.
        pysam.tabix_index(merged["output"], preset="vcf", keep_original=True, force=True)
        assert os.path.exists(merged["output"] + ".tbi")
        with pysam.TabixFile(merged["output"]) as tabix:
            contig = DATASETS[data["name"]][2]
            assert len(list(tabix.fetch(contig))) == sum(line.startswith(f"{contig}\t")
                                                         for line in _lines(single["output"]))
    assert leftovers(tmp_path) == []
    if count > 1:
        # Some record was scored in two shards (its entries had to be interleaved by the merge).
        per_shard = [_record_entries(_lines(outputs["output"])) for outputs in shards]
        assert any(sum(bool(shard[record][0]) for shard in per_shard) > 1 for record in range(len(per_shard[0])))


def _first_records(vcf, path, count):
    """A VCF at ``path`` with the header and the first ``count`` records of ``vcf``."""
    with open(vcf) as source:
        lines = source.readlines()
    body = [line for line in lines if not line.startswith("#")]
    path.write_text("".join([line for line in lines if line.startswith("#")] + body[:count]))
    return str(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The human dataset with the first 12 records of its VCF, in chunks of 4, and the single run's plain
    outputs: the runs of the tests below need no more."""
    folder = tmp_path_factory.mktemp("small")
    human = _data("human", tmp_path_factory)
    data = dict(human, vcf=_first_records(human["vcf"], folder / "in.vcf", 12), chunk_size=4)
    data["single"] = {"plain": _run(data, folder, "single", PLAIN)}
    return data


@pytest.fixture(scope="module")
def three_shards(small, tmp_path_factory):
    """The plain outputs of a split into three."""
    folder = tmp_path_factory.mktemp("three")
    return folder, [_run(small, folder, f"shard{index}", PLAIN, shard=f"{index}/3") for index in range(1, 4)]


@pytest.mark.parametrize("key", sorted(PLAIN))
def test_merge_refuses_a_missing_or_repeated_shard(three_shards, key, tmp_path):
    _, shards = three_shards
    output = tmp_path / f"merged{PLAIN[key]}"
    result = invoke("merge", "-o", output, shards[0][key], shards[2][key])
    assert result.exit_code == 1 and "shard 2/3 missing: 2 of 3 shards given" in result.output, result.output
    copy = tmp_path / f"copy{PLAIN[key]}"
    shutil.copy(shards[0][key], copy)
    result = invoke("merge", "-o", output, shards[0][key], shards[1][key], shards[2][key], copy)
    assert result.exit_code == 1 and f"{copy}: shard 1/3 was given twice" in result.output, result.output
    assert not output.exists() and leftovers(tmp_path) == []


def test_merge_refuses_shards_of_another_run_or_files_that_are_not_shards(small, three_shards, tmp_path):
    data = small
    folder, shards = three_shards
    other_vcf = _first_records(data["vcf"], tmp_path / "other_input.vcf", 10)
    other = _run(dict(data, vcf=other_vcf), tmp_path, "other", PLAIN, shard="3/3")
    output = tmp_path / "merged.vcf"
    for key in sorted(PLAIN):
        output = tmp_path / f"merged{PLAIN[key]}"
        result = invoke("merge", "-o", output, shards[0][key], shards[1][key], other[key])
        assert result.exit_code == 1, result.output
        assert f"{other[key]}: not from the same run as {shards[0][key]}: its input vcf differs" in result.output
        single = data["single"]["plain"][key]
        result = invoke("merge", "-o", output, single, shards[1][key], shards[2][key])
        assert result.exit_code == 1, result.output
        assert f"{single}: not a shard output (its provenance has no shard entry)" in result.output
    result = invoke("merge", "-o", output, data["vcf"])
    assert result.exit_code == 1 and "a VCF, but not one isoformer variants wrote" in result.output, result.output
    result = invoke("merge", "-o", tmp_path / "m.vcf", shards[0]["output"], shards[1]["table"], shards[2]["output"])
    assert result.exit_code == 1 and "merge one kind of output at a time" in result.output, result.output
    # The shards of one run, the VCF edited in one record beyond the ISOFORMER fields.
    edited = tmp_path / "edited.vcf"
    text = open(shards[1]["output"]).read().replace("\tDP=3", "\tDP=30", 1)
    edited.write_text(text)
    result = invoke("merge", "-o", tmp_path / "m.vcf", shards[0]["output"], edited, shards[2]["output"])
    assert result.exit_code == 1 and f"{edited}: record" in result.output and "differs from" in result.output, \
        result.output
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("m")) == []
    assert leftovers(tmp_path, folder) == []


def test_the_shard_option_on_the_command_line(small, tmp_path):
    """``--shard`` through the command line, then merge: the single run's VCF."""
    data = small
    common = ["variants", "--checkpoint", "demo", "-I", data["vcf"], "--genome", data["genome"], "--annotation",
              data["annotation"], "--chunk-size", "4"]
    for index in (1, 2):
        result = invoke(*common, "--shard", f"{index}/2", "-O", tmp_path / f"s{index}.vcf")
        assert result.exit_code == 0, result.output
    result = invoke("merge", "-o", tmp_path / "m.vcf", tmp_path / "s1.vcf", tmp_path / "s2.vcf")
    assert result.exit_code == 0, result.output
    merged, single = _lines(str(tmp_path / "m.vcf")), _lines(data["single"]["plain"]["output"])
    assert _masked(merged) == _masked(single)
    assert merged == single
    with open(tmp_path / "m.vcf") as stream:
        provenance = next(line for line in stream if line.startswith("##isoformer_provenance="))
    assert '"merged_shards": 2' in provenance and '"shard"' not in provenance.replace('"merged_shards"', "")
    result = invoke(*common, "--shard", "3/2", "-O", tmp_path / "bad.vcf")
    assert result.exit_code == 2 and "K must be between 1 and N" in result.output, result.output


def test_an_interrupted_shard_resumes_to_the_same_files(small, tmp_path, monkeypatch):
    """A shard killed after its first chunk and resumed writes what an uninterrupted shard writes (its table's
    shard entry, built at the end, covers the rows of both runs)."""
    import isoformer_cli.app.variants as app

    # Shard 1/3 scores records of all three chunks of the small VCF.
    reference = _run(small, tmp_path, "whole", PACKED, shard="1/3")
    with h5py.File(reference["table"]) as whole:
        assert len({record // 4 for record in whole["obs/record"][()] - 1}) == 3
    original, calls = app._write_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(app, "_write_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(small, tmp_path, "resumed", PACKED, shard="1/3")
    assert calls == [1, 1]
    monkeypatch.setattr(app, "_write_chunk", original)
    outputs = _run(small, tmp_path, "resumed", PACKED, shard="1/3", resume=True)
    for key in ("output", "alt_triples"):
        with gzip.open(outputs[key], "rt") as resumed, gzip.open(reference[key], "rt") as whole:
            assert resumed.read() == whole.read(), key
    expected, found = _datasets(reference["table"]), _datasets(outputs["table"])
    assert found.keys() == expected.keys()
    for name, values in expected.items():
        np.testing.assert_array_equal(found[name], values, err_msg=name)
    with h5py.File(outputs["table"]) as resumed, h5py.File(reference["table"]) as whole:
        assert h5ad.read_mapping(resumed["uns/provenance"]) == h5ad.read_mapping(whole["uns/provenance"])
    assert leftovers(tmp_path) == []
