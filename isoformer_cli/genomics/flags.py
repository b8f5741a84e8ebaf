"""The flag vocabulary of a triple, and which flags make a record invalid.

Flags are short snake_case words written comma-separated (sorted) in the ``flags`` column of the
triples table. They describe, never hide: a flagged record still carries every sequence the tool
could build. ``--on-invalid`` decides what happens to records carrying an *invalid* flag:
``flag`` (default) writes them with their flags, ``skip`` leaves them out of the outputs (counted
in the summary), ``fail`` stops the run with an error naming the transcript.
"""

WINDOW_PADDED = "window_padded"
NO_CDS = "no_cds"
CDS_START_INCOMPLETE = "cds_start_incomplete"
CDS_END_INCOMPLETE = "cds_end_incomplete"
INTERNAL_STOP = "internal_stop"
SELENOCYSTEINE = "selenocysteine"
NON_ACGT = "non_acgt"
ORF_PREDICTED = "orf_predicted"
MITO_CODE = "mito_code"
CDS_DISCONTINUOUS = "cds_discontinuous"
# Set when a model's tokenizer cut an input to the model's maximum length (``predict``, ``embed``).
RNA_TRUNCATED = "rna_truncated"
PROTEIN_TRUNCATED = "protein_truncated"

#: Every flag with its meaning (the README's flag table is generated from the same wording).
FLAG_DESCRIPTIONS = {
    WINDOW_PADDED: "the DNA window reaches past a contig end; those positions are N",
    NO_CDS: "no CDS annotated (and none predicted): the protein is empty, a missing modality",
    CDS_START_INCOMPLETE: (
        "the CDS 5' end is not a complete start: tagged cds_start_NF, a non-zero phase on the "
        "5' CDS segment, or a first codon that is not a start codon of the genetic code"
    ),
    CDS_END_INCOMPLETE: (
        "the CDS 3' end is not a stop codon: tagged cds_end_NF, or the last complete codon "
        "(after adding stop_codon features) is not a stop"
    ),
    INTERNAL_STOP: "a stop codon inside the CDS (written * in the protein); the protein is unreliable",
    SELENOCYSTEINE: "annotated Selenocysteine codon(s) translated as U",
    NON_ACGT: "the spliced RNA contains N (or a non-ACGT letter of the FASTA, written N)",
    ORF_PREDICTED: "no annotated CDS; cds_start/cds_end and protein come from --orf longest",
    MITO_CODE: "translated with the vertebrate mitochondrial code (NCBI table 2)",
    CDS_DISCONTINUOUS: (
        "the CDS segments skip exonic bases between its first and last base; cds_start/cds_end "
        "span the gap but the protein is translated from the CDS segments only"
    ),
    RNA_TRUNCATED: "the RNA was longer than the model's maximum; the --rna-truncation policy kept part of it",
    PROTEIN_TRUNCATED: "the protein was longer than the model's maximum; the --protein-truncation policy kept part",
}

#: Flags that make a record invalid for ``--on-invalid``: its protein cannot be trusted.
INVALID_FLAGS = frozenset({INTERNAL_STOP, CDS_DISCONTINUOUS})

ON_INVALID_CHOICES = ("flag", "skip", "fail")


def format_flags(flags):
    """Flags as written in the table: sorted, de-duplicated, comma-separated ('' when none)."""
    return ",".join(sorted(set(flags)))


def parse_flags(text):
    """Inverse of :func:`format_flags`: a sorted tuple of flag names ('' gives ())."""
    text = text.strip()
    return tuple(sorted({flag for flag in text.split(",") if flag})) if text else ()


def invalid_flags(flags):
    """The flags among ``flags`` that make a record invalid, sorted."""
    return tuple(sorted(INVALID_FLAGS.intersection(flags)))
