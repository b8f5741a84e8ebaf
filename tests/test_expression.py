"""Reading observed expression tables (matrix and GTEx GCT + samples) and matching their transcript ids."""

import gzip

import numpy as np
import pytest

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.expression import ExpressionTable, read_expression, read_sample_tissues
from isoformer_cli.genomics.transcript_match import match_transcripts, require_overlap


def write(path, text, compress=False):
    if compress:
        with gzip.open(path, "wt") as stream:
            stream.write(text)
    else:
        path.write_text(text)
    return str(path)


def test_tpm_matrix_becomes_log1p_with_annotation_columns_skipped(tmp_path):
    path = write(tmp_path / "e.tsv",
                 "# a comment\ntranscript\tgene_id\tLiver\tBrain\nT1.1\tG1\t0\t9\nT2\tG1\t1.5\t0.25\n")
    table = read_expression(path)
    assert table.ids == ["T1.1", "T2"]
    assert table.tissues == ["Liver", "Brain"]
    assert table.gene_ids == ["G1", "G1"]
    np.testing.assert_allclose(table.values, np.log1p([[0, 9], [1.5, 0.25]]), rtol=1e-6)
    assert table.values.dtype == np.float32


def test_log1p_values_are_used_as_given_and_csv_gzip_is_read(tmp_path):
    path = write(tmp_path / "e.csv.gz", "id,Liver\nT1,-0.5\nT2,3\n", compress=True)
    table = read_expression(path, values="log1p")
    np.testing.assert_allclose(table.values[:, 0], [-0.5, 3.0])


def test_gct_is_averaged_per_tissue_as_log_of_the_mean_tpm(tmp_path):
    gct = write(tmp_path / "t.gct.gz", "#1.2\n2\t4\ntranscript_id\tgene_id\tS1\tS2\tS3\tS4\n"
                "ENST1.2\tENSG1\t1\t3\t10\t100\nENST2.1\tENSG1\t0\t0\t0\t7\n", compress=True)
    samples = write(tmp_path / "samples.txt",
                    "SAMPID\tSMTSD\tSMTS\nS1\tx\tLiver\nS2\tx\tLiver\nS3\tx\tBrain\nS5\tx\tLung\n")
    table = read_expression(gct, samples=samples)
    # Tissues sorted by name; S4 has no tissue and is left out; Lung has no sample in the file.
    assert table.tissues == ["Brain", "Liver"]
    np.testing.assert_allclose(table.values, np.log1p([[10.0, 2.0], [0.0, 0.0]]), rtol=1e-6)
    assert table.gene_ids == ["ENSG1", "ENSG1"]
    assert any("1 of 4 samples" in note for note in table.notes)


def test_gct_keep_skips_rows_and_counts_them(tmp_path):
    gct = write(tmp_path / "t.gct", "#1.2\n3\t1\nName\tDescription\tS1\nA.1\tg\t1\nB.3\tg\tnot-parsed\nC\tg\t2\n")
    samples = write(tmp_path / "s.tsv", "sample\ttissue\nS1\tLiver\n")
    table = read_expression(gct, samples=samples, keep=["A", "C.9"])
    assert table.ids == ["A.1", "C"] and table.skipped_rows == 1
    match = match_transcripts(["A", "C.9", "Z"], table)
    assert match.rows.tolist() == [0, 1, -1]
    assert match.unmatched_rows == 1 and match.unmatched_transcripts == ["Z"]


def test_sample_table_columns_can_be_named(tmp_path):
    path = write(tmp_path / "s.csv", "tissue_name,id\nLiver,S1\n,S2\n")
    assert read_sample_tissues(path, sample_column="id", tissue_column="tissue_name") == {"S1": "Liver"}
    with pytest.raises(InputError, match="no column 'nope'"):
        read_sample_tissues(path, sample_column="nope")


@pytest.mark.parametrize("text, message", [
    ("id\tLiver\nT1\tNA\n", "e.tsv:2: missing value"),
    ("id\tLiver\nT1\t\n", "missing value"),
    ("id\tLiver\nT1\tnan\n", "missing value"),
    ("id\tLiver\nT1\t-1\n", "e.tsv:2: negative TPM -1"),
    ("id\tLiver\nT1\tabc\n", "'abc' for transcript T1 in tissue 'Liver' is not a number"),
    ("id\tLiver\nT1\tinf\n", "not a finite number"),
    ("id\tLiver\nT1\t1\nT1\t2\n", "already appears on line 2"),
    ("id\tLiver\tLiver\nT1\t1\t2\n", "'Liver' appears twice"),
    ("id\tLiver\nT1\t1\t2\n", "expected 2 fields"),
    ("id\tgene_id\nT1\tG\n", "no tissue columns"),
    ("id\tLiver\n", "no data rows"),
    ("", "no header line"),
])
def test_bad_matrices_name_file_line_and_problem(tmp_path, text, message):
    path = write(tmp_path / "e.tsv", text)
    with pytest.raises(InputError, match=message):
        read_expression(path)


def test_comma_file_named_tsv_gets_a_hint(tmp_path):
    path = write(tmp_path / "e.tsv", "id,Liver\nT1,1\n")
    with pytest.raises(InputError, match="no tissue columns"):
        read_expression(path)


@pytest.mark.parametrize("gct, samples, message", [
    ("#1.2\n1\t2\nName\tDescription\tS1\n", None, "declares 2 samples but the header names 1"),
    ("#1.2\nx\ty\nName\tDescription\tS1\n", None, "'<rows> <columns>' on line 2"),
    ("#1.2\n2\t1\nName\tDescription\tS1\nA\tg\t1\n", None, "declares 2 rows but the file has 1"),
    ("#1.2\n1\t1\nName\tDescription\tS1\nA\tg\t-2\n", None, "negative TPM -2 for transcript A in sample S1"),
    ("#1.2\n1\t1\nName\tDescription\tS1\nA\tg\tnan\n", None, "non-finite TPM"),
    ("#1.2\n1\t1\nName\tDescription\tS1\nA\tg\tx\n", None, "value 'x' of transcript A"),
    ("#1.2\n1\t1\nName\tDescription\tS9\nA\tg\t1\n", None, "none of its 1 samples is in the sample table"),
])
def test_bad_gct_files(tmp_path, gct, samples, message):
    gct_path = write(tmp_path / "t.gct", gct)
    samples_path = write(tmp_path / "s.tsv", samples or "SAMPID\tSMTS\nS1\tLiver\n")
    with pytest.raises(InputError, match=message):
        read_expression(gct_path, samples=samples_path)


def test_gct_needs_samples_and_samples_need_gct(tmp_path):
    gct = write(tmp_path / "t.gct", "#1.2\n1\t1\nName\tDescription\tS1\nA\tg\t1\n")
    matrix = write(tmp_path / "m.tsv", "id\tLiver\nA\t1\n")
    samples = write(tmp_path / "s.tsv", "SAMPID\tSMTS\nS1\tLiver\n")
    with pytest.raises(InputError, match="give the sample -> tissue table with --samples"):
        read_expression(gct)
    with pytest.raises(InputError, match="--samples only goes with a GCT file"):
        read_expression(matrix, samples=samples)
    with pytest.raises(InputError, match="GCT files hold TPM"):
        read_expression(gct, values="log1p", samples=samples)


def test_conflicting_sample_tissues_and_missing_files(tmp_path):
    samples = write(tmp_path / "s.tsv", "SAMPID\tSMTS\nS1\tLiver\nS1\tBrain\n")
    with pytest.raises(InputError, match="s.tsv:3: sample S1 is 'Brain' here but 'Liver' on line 2"):
        read_sample_tissues(samples)
    with pytest.raises(InputError, match="expression table not found"):
        read_expression(tmp_path / "missing.tsv")
    with pytest.raises(InputError, match="is a folder"):
        read_expression(tmp_path)
    broken = tmp_path / "broken.tsv.gz"
    lines = b"id\tLiver\n" + b"".join(b"T%d\t1\n" % number for number in range(1000))
    broken.write_bytes(gzip.compress(lines)[:200])
    with pytest.raises(InputError, match="damaged"):
        read_expression(broken)


def _table(ids):
    return ExpressionTable(ids=list(ids), tissues=["Liver"], values=np.zeros((len(ids), 1), np.float32), source="t")


def test_matching_exact_first_then_without_versions():
    table = _table(["ENST1.2", "ENST2", "NM_5.1", "MSTRG.1.1", "MSTRG.1.2", "X.1", "X.2"])
    match = match_transcripts(["ENST1", "ENST2.7", "NM_5.1", "MSTRG.1", "MSTRG.1.2", "X"], table)
    # X is ambiguous (two versions in the table), MSTRG.1 ambiguous too; MSTRG.1.2 matches exactly.
    assert match.rows.tolist() == [0, 1, 2, -1, 4, -1]
    assert match.by_version == 2
    assert match.unmatched_transcripts == ["MSTRG.1", "X"]
    assert "2 after dropping version suffixes" in match.describe()


def test_a_version_match_never_steals_a_row_matched_exactly():
    table = _table(["A.1"])
    match = match_transcripts(["A.1", "A.2"], table)
    assert match.rows.tolist() == [0, -1]


def test_empty_overlap_is_an_error_with_examples():
    table = _table(["ENST1"])
    match = match_transcripts(["NM_1", "NM_2"], table)
    with pytest.raises(InputError, match="NM_1, NM_2 vs ENST1"):
        require_overlap(match, table, ["NM_1", "NM_2"], "genes.gtf")
    with pytest.raises(InputError, match="appears twice"):
        match_transcripts(["A", "A"], table)
