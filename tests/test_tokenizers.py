"""Tokenizers: hand-worked vectors, cross-checks against transformers.EsmTokenizer, truncation, and the
encoders' collation of token arrays into batches.

6-mer ids are 6 + sum(digit_i * 4**(5 - i)) with digits A0 T1 C2 G3 (itertools.product("ATCG") order);
single bases are A4102 T4103 C4104 G4105 N4106; <cls> is 3, <pad> 1.
"""

import random

import pytest
import torch
from transformers import EsmTokenizer

from isoformer_cli.errors import InputError
from isoformer_cli.inference.prepare import TokenizerSettings
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.models.network.encoders import PROTEIN_ENCODER, RNA_ENCODER, dna_encoder
from isoformer_cli.models.network.tokenizers import (
    DnaTokenizer,
    ProteinTokenizer,
    RnaTokenizer,
    protein_vocabulary,
    rna_vocabulary,
)

TINY = IsoformerConfig.from_preset("tiny")

# ------------------------------------------------------------------------------------------ RNA


def rna_ids(sequence, **options):
    return RnaTokenizer(**options).encode(sequence)[0].tolist()


def test_rna_vocabulary_layout():
    vocabulary = rna_vocabulary()
    assert len(vocabulary) == 4107
    assert vocabulary[:6] == ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
    assert vocabulary[6] == "AAAAAA"
    assert vocabulary[7] == "AAAAAT"
    assert vocabulary[4101] == "GGGGGG"
    assert vocabulary[4102:] == ["A", "T", "C", "G", "N"]


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ("AAAAAA", [3, 6]),
        ("AAAAAT", [3, 7]),
        ("AAAAAC", [3, 8]),
        ("AAAAAG", [3, 9]),
        ("TAAAAA", [3, 6 + 1024]),
        ("GGGGGG", [3, 4101]),  # 6 + 3 * (1024 + 256 + 64 + 16 + 4 + 1)
        ("ACGTAC", [3, 728]),  # 6 + 0*1024 + 2*256 + 3*64 + 1*16 + 0*4 + 2
        ("A", [3, 4102]),
        ("T", [3, 4103]),
        ("C", [3, 4104]),
        ("G", [3, 4105]),
        ("N", [3, 4106]),
        ("", [3]),
        # 7 bases: one 6-mer, then the 1-base tail as a single base.
        ("AAAAAAC", [3, 6, 4104]),
        # 13 bases: ACGTAC, GTACGT (6 + 3*1024 + 1*256 + 0 + 2*16 + 3*4 + 1 = 3379), tail A.
        ("ACGTACGTACGTA", [3, 728, 3379, 4102]),
        # N in the middle: the 3 bases before it are single tokens, the 6-mer frame restarts after it.
        ("AAANAAAAAAT", [3, 4102, 4102, 4102, 4106, 6, 4103]),
        # Two Ns in a row, then a 5-base tail.
        ("CCCCCCNNACGTA", [3, 6 + 2 * 1365, 4106, 4106, 4102, 4104, 4105, 4103, 4102]),
        # U reads as T, lower case as upper case.
        ("UUUUUU", [3, 6 + 1365]),
        ("acgtac", [3, 728]),
        # Any other letter is an N (here R, an IUPAC code).
        ("AAAAARAAAAAA", [3, 4102, 4102, 4102, 4102, 4102, 4106, 6]),
    ],
)
def test_rna_hand_worked_vectors(sequence, expected):
    assert rna_ids(sequence) == expected


def test_rna_matches_transformers_esm_tokenizer_on_random_sequences(tmp_path):
    vocab_file = tmp_path / "rna_vocab_list.txt"
    vocab_file.write_text("\n".join(rna_vocabulary()))
    # The official RNA tokenizer is EsmTokenizer over this vocabulary; <cls> first, no <eos>.
    reference = EsmTokenizer(str(vocab_file), eos_token=None, model_max_length=10**9)
    ours = RnaTokenizer(max_tokens=10**9)
    rng = random.Random(1)
    for _ in range(400):
        alphabet = "ACGT" if rng.random() < 0.5 else "ACGTACGTACGTN"
        sequence = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert ours.encode(sequence)[0].tolist() == reference(sequence)["input_ids"], sequence


def test_rna_truncation_policies():
    # Four 6-mers: AAAAAA (6), CCCCCC (6 + 2*1365 = 2736), GGGGGG (4101), TTTTTT (6 + 1365 = 1371).
    sequence = "AAAAAACCCCCCGGGGGGTTTTTT"
    assert RnaTokenizer(max_tokens=2, truncation="keep_start").encode(sequence)[0].tolist() == [3, 6, 2736]
    assert RnaTokenizer(max_tokens=2, truncation="keep_end").encode(sequence)[0].tolist() == [3, 4101, 1371]
    assert RnaTokenizer(max_tokens=2, truncation="keep_center").encode(sequence)[0].tolist() == [3, 2736, 4101]
    # Odd surplus: the extra token comes off the end.
    assert RnaTokenizer(max_tokens=3, truncation="keep_center").encode(sequence)[0].tolist() == [3, 6, 2736, 4101]
    ids, truncated = RnaTokenizer(max_tokens=4).encode(sequence)
    assert ids.tolist() == [3, 6, 2736, 4101, 1371]
    assert truncated is False
    assert RnaTokenizer(max_tokens=3).encode(sequence)[1] is True


def test_rna_truncation_error_names_the_record():
    tokenizer = RnaTokenizer(max_tokens=2, truncation="error")
    with pytest.raises(InputError, match=r"ENST0001.*3 tokens.*maximum of 2"):
        tokenizer.encode("AAAAAACCCCCCGGGGGG", "ENST0001")


def test_unknown_truncation_policy_is_rejected():
    with pytest.raises(InputError, match="keep_start, keep_end, keep_center, error"):
        RnaTokenizer(truncation="left")
    with pytest.raises(InputError, match="unknown truncation policy"):
        ProteinTokenizer(truncation="start")


def test_default_rna_limit_is_2048_tokens_after_cls():
    ids, truncated = RnaTokenizer().encode("ACGTAC" * 3000)
    assert len(ids) == 1 + 2048
    assert truncated is True
    ids, truncated = RnaTokenizer().encode("ACGTAC" * 2048)
    assert len(ids) == 1 + 2048
    assert truncated is False


def test_rna_batch_pads_to_longest():
    tokenizer = RnaTokenizer(max_tokens=1)
    arrays = [tokenizer.encode(sequence)[0] for sequence in ("AAAAAA", "", "AAAAAACCCCCC")]
    input_ids, mask = RNA_ENCODER.collate(arrays, TINY)
    assert input_ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert input_ids.tolist() == [[3, 6], [3, 1], [3, 6]]
    assert mask.tolist() == [[True, True], [True, False], [True, True]]

    mixed = [RnaTokenizer().encode(sequence)[0] for sequence in ("AAAAAAC", "A")]
    input_ids, mask = RNA_ENCODER.collate(mixed, TINY)
    assert input_ids.tolist() == [[3, 6, 4104], [3, 4102, 1]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_non_string_sequence_is_an_input_error():
    with pytest.raises(InputError, match="expected a sequence string"):
        RnaTokenizer().encode(b"ACGT")


# -------------------------------------------------------------------------------------- protein


def test_protein_vocabulary_layout():
    vocabulary = protein_vocabulary()
    assert len(vocabulary) == 33
    assert vocabulary[:4] == ["<cls>", "<pad>", "<eos>", "<unk>"]
    assert vocabulary[4:8] == ["L", "A", "G", "V"]
    assert vocabulary[31:] == ["<null_1>", "<mask>"]


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        ("MKV", [0, 20, 15, 7, 2]),
        ("mkv", [0, 20, 15, 7, 2]),
        ("LAGVSERTIDPKQNFYMHWCXBUZO.-", [0, *range(4, 31), 2]),
        # A stop or any other character outside the alphabet is one <unk> each.
        ("M*K", [0, 20, 3, 15, 2]),
        ("MJJ", [0, 20, 3, 3, 2]),
    ],
)
def test_protein_hand_worked_vectors(sequence, expected):
    assert ProteinTokenizer().encode(sequence)[0].tolist() == expected


def test_protein_matches_transformers_esm_tokenizer(tmp_path):
    vocab_file = tmp_path / "protein_vocab_list.txt"
    vocab_file.write_text("\n".join(protein_vocabulary()))
    reference = EsmTokenizer(str(vocab_file))
    ours = ProteinTokenizer(max_residues=10**6)
    rng = random.Random(3)
    alphabet = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
    for _ in range(300):
        sequence = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert ours.encode(sequence)[0].tolist() == reference(sequence)["input_ids"], sequence


def test_protein_truncation_keeps_cls_and_eos():
    ids, truncated = ProteinTokenizer(max_residues=2).encode("MKVL")
    assert (ids.tolist(), truncated) == ([0, 20, 15, 2], True)
    ids, _ = ProteinTokenizer(max_residues=2, truncation="keep_end").encode("MKVL")
    assert ids.tolist() == [0, 7, 4, 2]
    ids, truncated = ProteinTokenizer().encode("A" * 1022)
    assert (len(ids), truncated) == (1024, False)
    ids, truncated = ProteinTokenizer().encode("A" * 1023)
    assert (len(ids), truncated) == (1024, True)
    with pytest.raises(InputError, match="1,023 tokens"):
        ProteinTokenizer(truncation="error").encode("A" * 1023)


def test_protein_batch():
    arrays = [ProteinTokenizer().encode(sequence)[0] for sequence in ("MK", "", "M")]
    input_ids, mask = PROTEIN_ENCODER.collate(arrays, TINY)
    assert input_ids.tolist() == [[0, 20, 15, 2], [0, 2, 1, 1], [0, 20, 2, 1]]
    assert mask.sum(dim=1).tolist() == [4, 2, 3]


# ------------------------------------------------------------------------------------------ DNA


def test_dna_indices_and_other_letters():
    assert DnaTokenizer().encode("ACGTN").tolist() == [0, 1, 2, 3, 4]
    assert DnaTokenizer().encode("acgtRYU-").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_enformer_batch_stacks_windows_of_one_length():
    enformer = dna_encoder("enformer")
    arrays = [enformer.tokenizer(TINY).encode(sequence, "T")[0] for sequence in ("ACGT", "TTNA")]
    input_ids, mask = enformer.collate(arrays, TINY)
    assert mask is None and input_ids.dtype == torch.int64
    assert input_ids.tolist() == [[0, 1, 2, 3], [3, 3, 4, 0]]
    with pytest.raises(ValueError, match=r"one length, got \[3, 4\]"):
        enformer.collate([arrays[0], arrays[1][:3]], TINY)


def test_tokenizer_settings_use_the_config_limits():
    settings = TokenizerSettings.for_model_config(TINY, rna_truncation="keep_end")
    assert (settings.rna.max_tokens, settings.rna.truncation) == (TINY.max_rna_tokens, "keep_end")
    assert (settings.protein.max_residues, settings.protein.truncation) == (TINY.max_protein_residues, "keep_start")
    assert settings.dna.encode("ACGTN", "T")[0].tolist() == [0, 1, 2, 3, 4]
    dna_only = TokenizerSettings.for_model_config(IsoformerConfig.from_preset("tiny", modalities="dna"))
    assert dna_only.rna is None and dna_only.protein is None
