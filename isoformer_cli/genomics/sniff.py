"""What kind of file a path holds, from its first bytes: for the message of a reader given the wrong file.

    kind = sniff("reads.bam")            # FileKind or None (text we do not recognise, or unreadable)
    kind.code, kind.describe()           # "bam", "a BAM file (binary)"
    wrong_kind_message("reads.bam", ANNOTATION_KINDS, "a GTF/GFF3 annotation")
    # -> "reads.bam: looks like a BAM file (binary), not a GTF/GFF3 annotation" (None when the kind is accepted)

Readers call this only on their error paths (a column-count error, a missing header, a failed open), so it
costs nothing on good input; it reads at most :data:`SNIFF_BYTES` of the file (decompressed when gzip/BGZF).

Recognised, by magic bytes: BAM, BCF (plain or BGZF), CRAM, tabix and CSI indexes, HDF5 (.h5/.h5ad), zip
(Excel .xlsx and Word .docx told apart), old Office (.xls/.doc), PDF, bzip2, xz and zstd compression; by the
first lines of text (inside gzip/BGZF too): VCF, SAM, FASTA, FASTQ, GFF3, GTF, BED, a FASTA index (.fai) and
GCT. Other text is not recognised (None: it may be a table, and the reader's own message stands); bytes that
are not text are "a binary file".
"""

import re
import zlib
from dataclasses import dataclass
from typing import Collection, List, Optional

SNIFF_BYTES = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"

# Kind codes each reader accepts (text kinds also gzip/BGZF-compressed).
ANNOTATION_KINDS = frozenset({"gtf", "gff3"})
GENOME_KINDS = frozenset({"fasta"})
VCF_KINDS = frozenset({"vcf", "bcf"})
EXPRESSION_KINDS = frozenset({"gct"})  # and any text we do not recognise (a TSV/CSV table)
SAMPLE_SHEET_KINDS: frozenset = frozenset()  # only text we do not recognise (a TSV/CSV table)
# StringTie -e writes a GTF, kallisto an HDF5 abundance.h5; the other quantifiers' tables are unrecognised text.
QUANTIFICATION_KINDS = frozenset({"gtf", "hdf5"})

_NAMES = {
    "bam": "a BAM file (binary)", "bcf": "a BCF file (binary VCF)", "cram": "a CRAM file (binary)",
    "tabix": "a tabix index (binary)", "csi": "a CSI index (binary)", "hdf5": "an HDF5 file (binary)",
    "xlsx": "an Excel workbook (.xlsx)", "docx": "a Word document (.docx)", "zip": "a zip archive",
    "ole": "an old Office document (.xls/.doc)", "pdf": "a PDF document", "bzip2": "a bzip2-compressed file",
    "xz": "an xz-compressed file", "zstd": "a zstd-compressed file", "binary": "a binary file (not text)",
    "vcf": "a VCF file", "sam": "a SAM file (aligned reads)", "fasta": "a FASTA file",
    "fastq": "a FASTQ file (sequencing reads)", "gff3": "a GFF3 annotation", "gtf": "a GTF annotation",
    "bed": "a BED file", "fai": "a FASTA index (.fai)", "gct": "a GCT expression file",
}
_BINARY_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"%PDF", "pdf"), (b"CRAM", "cram"), (b"BAM\x01", "bam"), (b"BCF\x02", "bcf"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"), (b"TBI\x01", "tabix"), (b"CSI\x01", "csi"),
)
_SAM_HEADER = re.compile(r"^@(HD|SQ|RG|PG|CO)\t")
_GFF3_ATTRIBUTES = re.compile(r"^\s*[^\s=;]+=")
_GTF_ATTRIBUTES = re.compile(r'^\s*[A-Za-z_][^\s=;"]*\s+"')


@dataclass(frozen=True)
class FileKind:
    """A recognised kind of file.

    Attributes:
        code: short name (``"bam"``, ``"fasta"``, ``"binary"``, ...; see ``_NAMES``).
        compression: ``"gzip"``, ``"bgzip"`` or None, for text kinds read through compression.
    """

    code: str
    compression: Optional[str] = None

    def describe(self) -> str:
        """``"a BAM file (binary)"``, ``"a bgzip-compressed FASTA file"``."""
        name = _NAMES[self.code]
        if self.compression and self.code not in ("bam", "bcf", "tabix", "csi"):
            return f"a {self.compression}-compressed {name.split(' ', 1)[1]}"
        return name


def sniff(path) -> Optional[FileKind]:
    """The kind of ``path`` from its first bytes, or None (unreadable, empty, or text not recognised)."""
    try:
        with open(path, "rb") as raw:
            head = raw.read(SNIFF_BYTES)
    except OSError:
        return None
    if not head:
        return None
    compression = None
    if head.startswith(_GZIP_MAGIC):
        compression = "bgzip" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "gzip"
        head = _inflate(head)
        if not head:
            return None
    for magic, code in _BINARY_MAGIC:
        if head.startswith(magic):
            return FileKind(code, compression if code in ("bam", "bcf") else None)
    if head.startswith(b"PK\x03\x04"):
        code = "xlsx" if b"xl/" in head else "docx" if b"word/" in head else "zip"
        return FileKind(code)
    text = _as_text(head)
    if text is None:
        return FileKind("binary", compression)
    lines = text.splitlines()
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # cut off by the read
    code = _text_kind(lines[:20])
    return FileKind(code, compression) if code else None


def wrong_kind_message(path, accepted: Collection[str], expected: str) -> Optional[str]:
    """``"PATH: looks like KIND, not EXPECTED"`` when ``path`` is recognised as a kind not in ``accepted``;
    None when it is accepted or not recognised (then the reader's own message is the better one)."""
    kind = sniff(path)
    if kind is None or kind.code in accepted:
        return None
    return f"{path}: looks like {kind.describe()}, not {expected}"


def _inflate(compressed: bytes) -> bytes:
    """Up to SNIFF_BYTES of what the gzip members at the start of ``compressed`` hold (a BGZF file is a series
    of members); a truncated or damaged stream gives what could be inflated before the damage."""
    out = b""
    while compressed and len(out) < SNIFF_BYTES:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(compressed, SNIFF_BYTES - len(out))
        except zlib.error:
            break
        if not inflater.eof:
            break
        compressed = inflater.unused_data
    return out


def _as_text(head: bytes) -> Optional[str]:
    """The bytes as text, or None when they are not text (NUL bytes, or mostly undecodable)."""
    if b"\x00" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + sum(1 for c in text[:4096] if ord(c) < 32 and c not in "\t\r\n\f")
    return None if bad > max(8, len(text[:4096]) // 20) else text


def _is_int(text: str) -> bool:
    return text.isdigit()


def _text_kind(lines: List[str]) -> Optional[str]:
    """The kind of a text file from its first lines, or None."""
    lines = [line.rstrip("\r") for line in lines if line.strip()]
    if not lines:
        return None
    first = lines[0]
    if first.startswith("##fileformat=VCF") or first.startswith("#CHROM\tPOS"):
        return "vcf"
    if first.startswith("##gff-version"):
        version = first.split()[1] if len(first.split()) > 1 else ""
        return "gff3" if version.startswith("3") else "gtf"
    if _SAM_HEADER.match(first):
        return "sam"
    if first.startswith(">"):
        return "fasta"
    if first.startswith("@") and len(lines) >= 3 and lines[2].startswith("+"):
        return "fastq"
    if first.strip() == "#1.2":
        return "gct"
    if first.startswith(("track ", "browser ")):
        return "bed"
    data = [line for line in lines if not line.startswith("#")]
    if not data:
        return None
    fields = data[0].split("\t")
    if len(fields) in (9, 10) and _is_int(fields[3]) and _is_int(fields[4]) and (len(fields) == 9 or not fields[9].strip()):
        if _GFF3_ATTRIBUTES.match(fields[8]):
            return "gff3"
        if _GTF_ATTRIBUTES.match(fields[8]):
            return "gtf"
    if len(fields) >= 11 and _is_int(fields[1]) and _is_int(fields[3]) and _is_int(fields[4]):
        return "sam"
    if len(fields) == 5 and all(_is_int(field) for field in fields[1:]):
        return "fai"
    if 3 <= len(fields) <= 12 and _is_int(fields[1]) and _is_int(fields[2]) and not _is_int(fields[0]):
        return "bed"
    return None
