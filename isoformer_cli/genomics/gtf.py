"""The GTF pass of the annotation reader (GENCODE, Ensembl, UCSC refGene, StringTie, IsoQuant, FLAIR).

Records are grouped by their ``transcript_id``; ``exon``, ``CDS``, ``stop_codon``, ``Selenocysteine``, UTR
lines and the optional ``transcript`` line are kept. Gene and transcript attributes come from the transcript
line and the transcript's first record. Columns stay bytes in the per-line path (decoding every line costs
about 15% of the pass); ids, contig and attributes are decoded once per transcript.
"""

import re
import sys
from typing import Dict, Optional, Tuple

from isoformer_cli.genomics.annotation_common import (
    CDS,
    EXON,
    GENE_BIOTYPE_KEYS,
    GENE_NAME_KEYS,
    GTF,
    SEC,
    STOP,
    TRANSCRIPT,
    TRANSCRIPT_BIOTYPE_KEYS,
    UTR,
    UTR_TYPES,
    PendingTranscript,
    decode,
    first_value,
)

_GTF_KINDS = {"exon": EXON, "CDS": CDS, "stop_codon": STOP, "Selenocysteine": SEC,
              "transcript": TRANSCRIPT, "mRNA": TRANSCRIPT}
_GTF_KINDS.update({name: UTR for name in UTR_TYPES})
_GTF_KINDS_BYTES = {name.encode(): kind for name, kind in _GTF_KINDS.items()}


class GtfPass:
    """The GTF pass, mixed into :class:`~isoformer_cli.genomics.annotation.AnnotationReader`, which provides
    the line checks (``_error``, ``_bad_columns``, ``_coordinates``, ``_check_strand``, ``_already_done``),
    ``_flush`` and the shared assembly ``_build``."""


    def _parse_gtf(self, handle):
        """GTF pass over a binary handle: columns stay bytes in the per-line path (decoding every
        line costs ~15% of the pass); ids, contig and attributes are decoded once per transcript."""
        kinds = _GTF_KINDS_BYTES
        grouped = self.grouped
        pending: Dict[bytes, PendingTranscript] = {}
        done: Dict[bytes, Tuple[str, int]] = {}
        current = current_text = None
        # Consecutive lines mostly belong to one transcript: when a line's attribute column starts
        # with the previous line's text up to the end of its transcript_id value, it is the same
        # transcript, and neither the id search nor the dict lookup is needed.
        # (b"\t" starts no attribute column: the columns were split at tabs.)
        last_prefix = b"\t"
        last_item = None
        lineno = 0
        try:
            for lineno, line in enumerate(handle, 1):
                if line[0] == 35:  # '#'
                    continue
                fields = line.split(b"\t")
                if len(fields) != 9:
                    text = line.decode("utf-8", "replace")
                    self._bad_columns(lineno, text, text.split("\t"))
                    if not text.strip():
                        continue
                    fields = fields[:9]
                chrom, _, feature, start_text, end_text, _, strand, phase, attrs = fields
                kind = kinds.get(feature)
                if kind is None:
                    continue
                try:
                    start = int(start_text) - 1
                    end = int(end_text)
                except ValueError:
                    start = end = -1
                if start < 0 or start >= end:
                    start, end = self._coordinates(lineno, decode(start_text), decode(end_text))
                if chrom != current:
                    if pending and grouped:
                        yield from self._flush(pending, done, self._finish_gtf)
                    current = chrom
                    current_text = decode(chrom)
                    last_prefix, last_item = b"\t", None
                if attrs.startswith(last_prefix):
                    item = last_item
                else:
                    index = attrs.find(b'transcript_id "')
                    if index == 0 or (index > 0 and attrs[index - 1] in b" ;\t"):
                        close = attrs.find(b'"', index + 15)
                        transcript_id = attrs[index + 15:close] if close > 0 else None
                        last_prefix = attrs[:close + 1] if transcript_id else b"\t"
                    else:
                        transcript_id = _gtf_transcript_id(attrs)
                        last_prefix = b"\t"
                    if not transcript_id:
                        raise self._error(
                            lineno, f"{decode(feature)} record without a transcript_id attribute; every exon/CDS line "
                                    'of a GTF needs transcript_id "..."; (is this a GFF3 file named .gtf?)'
                        )
                    item = pending.get(transcript_id)
                    if item is None:
                        if transcript_id in done:
                            raise self._already_done(lineno, decode(transcript_id), decode(chrom), done[transcript_id])
                        self._check_strand(lineno, decode(strand), None, decode(feature))
                        item = PendingTranscript(decode(transcript_id), decode(chrom), decode(strand), lineno, strand)
                        item.attrs = _parse_gtf_attributes(attrs, USED_KEYS)
                        pending[transcript_id] = item
                    elif item.chrom != current_text:  # only possible with grouped=False
                        raise self._already_done(lineno, item.key, current_text, (item.chrom, item.line))
                    last_item = item
                if strand != item.raw_strand:
                    self._check_strand(lineno, decode(strand), item, decode(feature))
                if kind == EXON:
                    item.exons.append((start, end))
                elif kind == CDS:
                    item.cds.append((start, end, phase))
                elif kind != TRANSCRIPT:
                    # UTR, stop_codon or Selenocysteine: the list of that kind
                    (item.utrs if kind == UTR else item.stops if kind == STOP else item.secs).append((start, end))
                else:  # transcript line: its attributes win over those of the first record
                    item.span = (start, end)
                    if item.line != lineno:
                        extra = _parse_gtf_attributes(attrs, USED_KEYS)
                        tags = tuple(dict.fromkeys(item.attrs.get("tag", ()) + extra.get("tag", ())))
                        item.attrs.update(extra)
                        if tags:
                            item.attrs["tag"] = tags
        finally:  # also when a bad record or a read error stops the pass
            self.summary.lines = lineno
        if pending:
            yield from self._flush(pending, done, self._finish_gtf)

    def _finish_gtf(self, item):
        attrs = item.attrs
        gene_id = attrs.get("gene_id", "")
        gene_name = first_value(attrs, GENE_NAME_KEYS)
        biotype = first_value(attrs, TRANSCRIPT_BIOTYPE_KEYS) or first_value(attrs, GENE_BIOTYPE_KEYS)
        tags = tuple(attrs.get("tag", ()))
        return self._build(item, gene_id, gene_name, biotype, tags, GTF)


# -- attribute helpers --------------------------------------------------------------------------

# key, then a quoted value (which may hold ';' and spaces) or a bare word; a key starts the
# column or follows ';' or a space, so text inside a quoted value is never taken for a key.
_GTF_ATTRIBUTE = re.compile(rb'(?:^|[;\s])([^\s";]+)\s+(?:"([^"]*)"|([^\s;"]+))')


def _gtf_transcript_id(raw: bytes) -> Optional[bytes]:
    """``transcript_id`` of a raw GTF attribute column in any spelling (the reader's inline fast
    path handles ``transcript_id "X"``), or None."""
    if b"transcript_id" not in raw:
        return None
    value = _parse_gtf_attributes(raw).get("transcript_id")
    return value.encode() if value else None


# The attributes a Transcript is made of (see GtfPass._finish_gtf); the others are never decoded.
USED_KEYS = frozenset(key.encode() for key in ("gene_id", "tag") + GENE_NAME_KEYS + TRANSCRIPT_BIOTYPE_KEYS
                      + GENE_BIOTYPE_KEYS)


def _parse_gtf_attributes(raw: bytes, keys: Optional[frozenset] = None):
    """Raw GTF attribute column -> dict of str, of every key or only of ``keys`` (bytes). The first
    value of a key wins, except ``tag`` whose values are collected, in order and without repeats, in a
    tuple."""
    attrs = {}
    tags = []
    for key, quoted, bare in _GTF_ATTRIBUTE.findall(raw):
        if keys is not None and key not in keys:
            continue
        if key == b"tag":
            value = (quoted if quoted or not bare else bare).decode("utf-8", "replace")
            if value not in tags:
                tags.append(sys.intern(value))
        else:
            key = key.decode("utf-8", "replace")
            if key not in attrs:
                attrs[key] = (quoted if quoted or not bare else bare).decode("utf-8", "replace")
    if tags:
        attrs["tag"] = tuple(tags)
    return attrs
