"""What the GTF and GFF3 passes of the annotation reader share: record kinds, attribute names, the
transcript being collected.

Coordinates in :class:`PendingTranscript` are already 0-based half-open (converted from the 1-based closed
columns 4-5 as each line is read).
"""

GTF = "gtf"
GFF3 = "gff3"

# Record kinds kept per transcript.
EXON, CDS, STOP, SEC, UTR, TRANSCRIPT = range(6)

UTR_TYPES = ("UTR", "5UTR", "3UTR", "five_prime_utr", "three_prime_utr", "five_prime_UTR", "three_prime_UTR")

# Attribute names consulted, best first.
GENE_NAME_KEYS = ("gene_name", "gene", "gene_symbol", "ref_gene_name", "Name")
TRANSCRIPT_BIOTYPE_KEYS = ("transcript_type", "transcript_biotype", "biotype")
GENE_BIOTYPE_KEYS = ("gene_type", "gene_biotype", "biotype")


class PendingTranscript:
    """A transcript being collected; intervals 0-based half-open, in file order until finished."""

    __slots__ = ("key", "chrom", "strand", "raw_strand", "line", "exons", "cds", "stops", "secs", "utrs",
                 "span", "attrs", "tags")

    def __init__(self, key, chrom, strand, line, raw_strand=None):
        self.key = key
        self.chrom = chrom
        self.strand = strand
        self.raw_strand = raw_strand  # the GTF reader compares the undecoded column
        self.line = line
        self.exons = []
        self.cds = []          # (start, end, phase column as read: str, or bytes for GTF)
        self.stops = []
        self.secs = []
        self.utrs = []
        self.span = None       # (start, end) of the transcript-level record, when there is one
        self.attrs = None      # GTF: parsed attributes dict; GFF3: unused
        self.tags = None       # extra tags found on child records (GFF3 start_range/end_range)


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def first_value(attrs, keys):
    for key in keys:
        value = attrs.get(key)
        if value:
            return value
    return ""
