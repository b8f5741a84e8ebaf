"""Tokenizers for IsoFormer's three inputs, held in code (no hub access, no vocabulary files).

* DNA: one index per base, ``A0 C1 G2 T3 N4`` (enformer-pytorch's own index map); any other letter
  becomes N. No special tokens: the official tokenizer prepends a ``<cls>`` that its model strips
  before Enformer, so leaving it out gives the same Enformer input.
* RNA: the Nucleotide Transformer v2 6-mer tokenizer. Vocabulary (4,107 tokens): ``<unk>``0
  ``<pad>``1 ``<mask>``2 ``<cls>``3 ``<eos>``4 ``<bos>``5, the 4,096 6-mers in
  ``itertools.product("ATCG", repeat=6)`` order (ids 6..4101), then ``A T C G N`` (4102..4106).
  A sequence becomes ``<cls>`` then, greedily from left to right, six bases as one token when all
  six are A/C/G/T, otherwise one base as a single-base token. So 6-mers realign right after an N,
  and a tail shorter than six bases is single-base tokens. This is what the official
  ``EsmTokenizer`` over that vocabulary produces (its longest-match trie only knows 6-mers and
  single bases). Input may use U (read as T) and lower case; any letter other than A/C/G/T/U
  becomes N.
* Protein: the ESM-2 alphabet (33 tokens: ``<cls>``0 ``<pad>``1 ``<eos>``2 ``<unk>``3, the
  residues ``LAGVSERTIDPKQNFYMHWCXBUZO.-``, ``<null_1>``31, ``<mask>``32); a sequence becomes
  ``<cls>`` + one token per residue + ``<eos>``. Lower case is accepted; any character outside
  the alphabet (``*`` included) becomes ``<unk>``, one token per character.

Padding id is 1 for RNA and protein. Each tokenizer encodes one sequence at a time; batches are padded
by the encoders' ``collate`` (:mod:`isoformer_cli.models.network.encoders.base`).

Truncation (``truncation=``), applied to the tokens between the special tokens, so ``<cls>`` (and
the protein's ``<eos>``) are always kept:

* ``"keep_start"`` (default): keep the first tokens, drop the 3' end / C-terminus. This is what a
  Hugging Face tokenizer called with ``truncation=True`` does (its default truncation side is
  the right), i.e. what the official model most plausibly saw; the 5' UTR and start of the CDS
  survive.
* ``"keep_end"``: keep the last tokens (3' UTR / C-terminus).
* ``"keep_center"``: drop equal amounts from both ends (the extra one from the end).
* ``"error"``: raise :class:`~isoformer_cli.errors.InputError`.

RNA is truncated after tokenisation, so the kept 6-mers are in the same frame as in the full
sequence. ``encode`` returns whether tokens were lost, so the caller can flag the record
(``rna_truncated`` / ``protein_truncated``).
"""

import itertools

import numpy as np

from isoformer_cli.errors import InputError

TRUNCATION_POLICIES = ("keep_start", "keep_end", "keep_center", "error")

# ---------------------------------------------------------------------------------------------
# DNA
# ---------------------------------------------------------------------------------------------

DNA_VOCABULARY = ("A", "C", "G", "T", "N")
DNA_N_ID = 4

# ---------------------------------------------------------------------------------------------
# RNA (Nucleotide Transformer v2)
# ---------------------------------------------------------------------------------------------

RNA_SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
RNA_KMER_ALPHABET = "ATCG"
RNA_KMER_SIZE = 6
RNA_PAD_ID = 1
RNA_CLS_ID = 3
RNA_FIRST_KMER_ID = len(RNA_SPECIAL_TOKENS)  # 6
RNA_FIRST_SINGLE_BASE_ID = RNA_FIRST_KMER_ID + 4**RNA_KMER_SIZE  # 4102: A, then T, C, G
RNA_N_ID = RNA_FIRST_SINGLE_BASE_ID + 4  # 4106
RNA_VOCABULARY_SIZE = RNA_N_ID + 1  # 4107
# Maximum tokens after <cls> (NT-v2's position table holds 2,050: <cls>, 2,048 tokens and one spare).
RNA_MAX_TOKENS = 2048

# ---------------------------------------------------------------------------------------------
# Protein (ESM-2)
# ---------------------------------------------------------------------------------------------

PROTEIN_VOCABULARY = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)  # fmt: skip
PROTEIN_CLS_ID = 0
PROTEIN_PAD_ID = 1
PROTEIN_EOS_ID = 2
PROTEIN_UNK_ID = 3
# Maximum residues between <cls> and <eos> (ESM-2: 1,026 positions).
PROTEIN_MAX_RESIDUES = 1022


def rna_vocabulary():
    """The 4,107 NT-v2 tokens in id order (what the official ``rna_vocab_list.txt`` holds)."""
    kmers = ["".join(bases) for bases in itertools.product(RNA_KMER_ALPHABET, repeat=RNA_KMER_SIZE)]
    return list(RNA_SPECIAL_TOKENS) + kmers + list(RNA_KMER_ALPHABET) + ["N"]


def protein_vocabulary():
    """The 33 ESM-2 tokens in id order."""
    return list(PROTEIN_VOCABULARY)


def _byte_table(mapping, default):
    """A 256-entry lookup table from ASCII byte to code; both cases of each letter are mapped."""
    table = np.full(256, default, dtype=np.int64)
    for character, code in mapping.items():
        table[ord(character.upper())] = code
        table[ord(character.lower())] = code
    return table


def _as_bytes(sequence):
    """The sequence as a uint8 array; non-ASCII characters become ``?`` (an unknown letter)."""
    if not isinstance(sequence, str):
        raise InputError(f"expected a sequence string, got {type(sequence).__name__}")
    return np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)


_DNA_TABLE = _byte_table({"A": 0, "C": 1, "G": 2, "T": 3}, DNA_N_ID)
# RNA: position of each base in "ATCG" (the 6-mer digit); 4 means "not A/C/G/T" (N).
_RNA_BASE_TABLE = _byte_table({"A": 0, "T": 1, "U": 1, "C": 2, "G": 3}, 4)
_KMER_DIGIT_WEIGHTS = 4 ** np.arange(RNA_KMER_SIZE - 1, -1, -1, dtype=np.int64)  # 1024, 256, ..., 1
_PROTEIN_TABLE = _byte_table(
    {token: index for index, token in enumerate(PROTEIN_VOCABULARY) if len(token) == 1}, PROTEIN_UNK_ID
)


def _check_policy(truncation):
    if truncation not in TRUNCATION_POLICIES:
        raise InputError(f"unknown truncation policy {truncation!r}; choose one of {', '.join(TRUNCATION_POLICIES)}")
    return truncation


def kept_offset(n_tokens, max_tokens, truncation):
    """Index of the first token :func:`truncate_tokens` keeps of ``n_tokens`` (0 when nothing is cut)."""
    if n_tokens <= max_tokens or truncation == "keep_start":
        return 0
    if truncation == "keep_end":
        return n_tokens - max_tokens
    return (n_tokens - max_tokens) // 2  # keep_center


def truncate_tokens(ids, max_tokens, truncation, what="sequence"):
    """Cut ``ids`` (1-D array) to at most ``max_tokens`` following ``truncation``.

    Returns ``(kept_ids, truncated)``; ``what`` names the record in the ``"error"`` message.
    """
    if len(ids) <= max_tokens:
        return ids, False
    if truncation == "keep_start":
        return ids[:max_tokens], True
    if truncation == "keep_end":
        return ids[len(ids) - max_tokens :], True
    if truncation == "keep_center":
        start = (len(ids) - max_tokens) // 2
        return ids[start : start + max_tokens], True
    raise InputError(
        f"{what} has {len(ids):,} tokens, more than the model maximum of {max_tokens:,}; "
        "choose a truncation policy other than 'error' to cut it"
    )


class DnaTokenizer:
    """DNA window → Enformer indices ``A0 C1 G2 T3 N4`` (any other letter → N; case ignored)."""

    vocabulary = DNA_VOCABULARY

    def encode(self, sequence):
        """``(length,)`` int64 array of indices, one per base, no special tokens."""
        return _DNA_TABLE[_as_bytes(sequence)]


class RnaTokenizer:
    """Spliced RNA → NT-v2 6-mer token ids (``<cls>`` first, no ``<eos>``, pad id 1).

    Args:
        max_tokens: tokens allowed after ``<cls>`` (default 2,048).
        truncation: one of :data:`TRUNCATION_POLICIES` (default ``"keep_start"``).
    """

    pad_id = RNA_PAD_ID
    cls_id = RNA_CLS_ID

    def __init__(self, max_tokens=RNA_MAX_TOKENS, truncation="keep_start"):
        if max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
        self.max_tokens = int(max_tokens)
        self.truncation = _check_policy(truncation)

    @staticmethod
    def vocabulary():
        return rna_vocabulary()

    @staticmethod
    def tokenize_bases(sequence):
        """Token ids of ``sequence`` without ``<cls>`` and without truncation: ``(n_tokens,)`` int64.

        Vectorised form of the greedy rule: split the sequence into runs of A/C/G/T separated by
        other letters; a run of length L gives L // 6 six-mers followed by L % 6 single bases, and
        every other letter is one N token.
        """
        digits = _RNA_BASE_TABLE[_as_bytes(sequence)]
        n = len(digits)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        positions = np.arange(n)
        valid = digits < 4
        previous_valid = np.concatenate(([False], valid[:-1]))
        next_valid = np.concatenate((valid[1:], [False]))
        run_start_here = valid & ~previous_valid
        run_end_here = valid & ~next_valid
        # For each position: start of its run (last run start at or before it) and end (exclusive).
        run_start = np.maximum.accumulate(np.where(run_start_here, positions, 0))
        run_end = np.minimum.accumulate(np.where(run_end_here, positions + 1, n)[::-1])[::-1]
        offset = positions - run_start
        whole_kmers_end = (run_end - run_start) // RNA_KMER_SIZE * RNA_KMER_SIZE
        kmer_start = valid & (offset < whole_kmers_end) & (offset % RNA_KMER_SIZE == 0)
        single_base = valid & (offset >= whole_kmers_end)
        token_start = kmer_start | single_base | ~valid

        ids = np.full(n, RNA_N_ID, dtype=np.int64)
        ids[single_base] = RNA_FIRST_SINGLE_BASE_ID + digits[single_base]
        starts = np.flatnonzero(kmer_start)
        if len(starts):
            windows = digits[starts[:, None] + np.arange(RNA_KMER_SIZE)]
            ids[starts] = RNA_FIRST_KMER_ID + windows @ _KMER_DIGIT_WEIGHTS
        return ids[token_start]

    def token_spans(self, sequence):
        """``(n_kept, 2)`` int64: the half-open base span ``[start, end)`` of ``sequence`` that each token kept by
        :meth:`encode` reads (``<cls>`` excluded; 6 bases for a 6-mer, 1 for a single-base or N token)."""
        tokens = self.tokenize_bases(sequence)
        lengths = np.where((tokens >= RNA_FIRST_KMER_ID) & (tokens < RNA_FIRST_SINGLE_BASE_ID), RNA_KMER_SIZE, 1)
        ends = np.cumsum(lengths)
        spans = np.stack([ends - lengths, ends], axis=1).astype(np.int64)
        first = kept_offset(len(tokens), self.max_tokens, self.truncation)
        return spans[first: first + self.max_tokens]

    def encode(self, sequence, name="RNA sequence"):
        """``(ids, truncated)``: ids ``(1 + n_tokens,)`` int64 starting with ``<cls>``."""
        tokens, truncated = truncate_tokens(self.tokenize_bases(sequence), self.max_tokens, self.truncation, name)
        return np.concatenate(([RNA_CLS_ID], tokens)).astype(np.int64, copy=False), truncated



class ProteinTokenizer:
    """Protein → ESM-2 token ids (``<cls>`` + residues + ``<eos>``, pad id 1).

    Args:
        max_residues: residues allowed between ``<cls>`` and ``<eos>`` (default 1,022).
        truncation: one of :data:`TRUNCATION_POLICIES` (default ``"keep_start"``).
    """

    pad_id = PROTEIN_PAD_ID
    cls_id = PROTEIN_CLS_ID
    eos_id = PROTEIN_EOS_ID

    def __init__(self, max_residues=PROTEIN_MAX_RESIDUES, truncation="keep_start"):
        if max_residues < 1:
            raise InputError(f"max_residues must be at least 1, got {max_residues}")
        self.max_residues = int(max_residues)
        self.truncation = _check_policy(truncation)

    @staticmethod
    def vocabulary():
        return protein_vocabulary()

    def residue_spans(self, sequence):
        """``(n_kept, 2)`` int64: the residue span ``[i, i + 1)`` of ``sequence`` of each residue token kept by
        :meth:`encode` (``<cls>`` and ``<eos>`` excluded)."""
        first = kept_offset(len(sequence), self.max_residues, self.truncation)
        kept = np.arange(first, first + min(len(sequence), self.max_residues), dtype=np.int64)
        return np.stack([kept, kept + 1], axis=1)

    def encode(self, sequence, name="protein sequence"):
        """``(ids, truncated)``: ids ``(n_residues + 2,)`` int64, ``<cls>`` first and ``<eos>`` last."""
        residues, truncated = truncate_tokens(
            _PROTEIN_TABLE[_as_bytes(sequence)], self.max_residues, self.truncation, name
        )
        return np.concatenate(([PROTEIN_CLS_ID], residues, [PROTEIN_EOS_ID])).astype(np.int64, copy=False), truncated
