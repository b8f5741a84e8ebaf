"""Nucleotide sequence helpers: normalisation and reverse complement.

Every sequence the tool emits uses the five upper-case letters A, C, G, T and N: soft-masked
(lower-case) bases are upper-cased and any other letter (IUPAC ambiguity codes such as R or Y,
or anything else a FASTA may hold) becomes N. The work is done with ``bytes.translate`` over a
256-entry table, which runs in C and keeps per-base Python loops out of the hot path.
"""

ACGT = "ACGT"

# 256-byte table: a/c/g/t and A/C/G/T map to themselves upper-cased, every other byte to N.
_NORMALISE = bytearray(b"N" * 256)
for _letter in b"ACGT":
    _NORMALISE[_letter] = _letter
    _NORMALISE[_letter + 32] = _letter  # lower-case
_NORMALISE = bytes(_NORMALISE)

# Complement of the normalised alphabet (N stays N); other bytes become N as well, so the
# complement of an un-normalised sequence is still a valid normalised sequence.
_COMPLEMENT = bytearray(b"N" * 256)
for _base, _pair in zip(b"ACGTacgt", b"TGCATGCA"):
    _COMPLEMENT[_base] = _pair
_COMPLEMENT = bytes(_COMPLEMENT)


def normalise(sequence):
    """``sequence`` upper-cased with every letter other than A/C/G/T replaced by N."""
    return sequence.encode("ascii", "replace").translate(_NORMALISE).decode("ascii")


def reverse_complement(sequence):
    """Reverse complement of ``sequence``, normalised (upper-case A/C/G/T/N)."""
    return sequence.encode("ascii", "replace").translate(_COMPLEMENT)[::-1].decode("ascii")


def has_non_acgt(sequence):
    """True when ``sequence`` holds any letter other than A, C, G, T (either case)."""
    return bool(sequence.encode("ascii", "replace").translate(None, b"ACGTacgt"))
