"""The GFF3 pass of the annotation reader (NCBI RefSeq, Ensembl, GENCODE).

``exon``/``CDS``/UTR lines are grouped by each ``Parent`` (an exon with ``Parent=a,b`` belongs to both); the
parent feature (mRNA, lnc_RNA, transcript, ... or a gene when exons hang directly from it) is the transcript,
and the gene is found by following ``Parent`` upwards. The transcript id is the GFF3 ``ID`` (unique by the
GFF3 rules), without Ensembl's ``transcript:`` prefix. Reading stops at ``##FASTA``.

Orphans: a child whose ``Parent`` names no feature of the file (within the same contig block and ``###``
section) is left out, never made a transcript of its own: it would be a transcript without gene, biotype or
name, usually a sign of a damaged or filtered file. Such Parent ids are counted and logged in one warning
(the count, the first few ids, the file); a file of orphans only is an error. A Parent that names any
feature with an ID is kept, whatever its type (mRNA-like, a gene with exons hanging from it as in RefSeq's
ncRNA genes and prokaryote-style files, or a type we do not know), except the types of
``_GFF3_NEVER_PARENT`` (regions, matches, repeats, ...): those are never remembered, so their children are
orphans too.
"""

import logging

import re
from typing import Dict, Tuple
from urllib.parse import unquote

from isoformer_cli.errors import AnnotationError
from isoformer_cli.genomics.annotation_common import (
    CDS,
    EXON,
    GENE_BIOTYPE_KEYS,
    GFF3,
    SEC,
    STOP,
    TRANSCRIPT_BIOTYPE_KEYS,
    UTR,
    UTR_TYPES,
    PendingTranscript,
    first_value,
)

log = logging.getLogger(__name__)
_ORPHANS_SHOWN = 5

# GFF3 child records (grouped by Parent). Every other feature with an ID is remembered as a
# possible transcript or gene, except these types which never are.
_GFF3_CHILD_KINDS = {"exon": EXON, "CDS": CDS, "stop_codon": STOP, "Selenocysteine": SEC}
_GFF3_CHILD_KINDS.update({name: UTR for name in UTR_TYPES})
_GFF3_NEVER_PARENT = frozenset((
    "region", "chromosome", "supercontig", "contig", "scaffold", "biological_region", "cDNA_match",
    "match", "match_part", "expressed_sequence_match", "protein_match", "nucleotide_match",
    "repeat_region", "sequence_feature", "enhancer", "promoter", "start_codon", "intron",
    "sequence_alteration", "D_loop", "centromere", "telomere",
))


class Gff3Pass:
    """The GFF3 pass, mixed into :class:`~isoformer_cli.genomics.annotation.AnnotationReader`, which provides
    the line checks, ``_flush`` and the shared assembly ``_build``."""


    def _parse_gff3(self, handle):
        kinds = _GFF3_CHILD_KINDS
        never_parent = _GFF3_NEVER_PARENT
        grouped = self.grouped
        pending: Dict[str, PendingTranscript] = {}
        done: Dict[str, Tuple[str, int]] = {}
        # ID -> (type, attribute text, line, chrom, strand, start, end) of non-child features
        # of the current contig block: the possible transcripts and genes.
        features: Dict[str, tuple] = {}
        self._features = features
        self._orphans: Dict[str, int] = {}  # Parent id naming no feature -> its child records
        current = None
        lineno = 0
        try:
            for lineno, line in enumerate(handle, 1):
                if line[0] == "#":
                    if line.startswith("###"):
                        if pending:
                            yield from self._flush(pending, done, self._finish_gff3)
                        features.clear()
                    elif line.startswith("##FASTA"):
                        break
                    continue
                fields = line.split("\t")
                if len(fields) != 9:
                    if line[0] == ">":
                        raise self._error(lineno, "FASTA sequence inside the GFF3 without a '##FASTA' line before it")
                    self._bad_columns(lineno, line, fields)
                    if not line.strip():
                        continue
                    fields = fields[:9]
                chrom, _, feature, start_text, end_text, _, strand, phase, attrs = fields
                kind = kinds.get(feature)
                if kind is None:
                    if feature in never_parent:
                        continue
                    feature_id = _gff3_value(attrs, "ID")
                    if feature_id is None:
                        continue
                    if chrom != current and grouped:
                        if pending:
                            yield from self._flush(pending, done, self._finish_gff3)
                        features.clear()
                        current = chrom
                    if feature_id in features:
                        continue  # a feature written on several lines (the same ID): the first one describes it
                    start, end = self._coordinates(lineno, start_text, end_text)
                    features[feature_id] = (feature, attrs, lineno, chrom, strand, start, end)
                    if _is_transcript_type(feature):
                        # Created now so that the annotation order is the order of transcript lines.
                        if feature_id in done:
                            raise self._already_done(lineno, feature_id, chrom, done[feature_id])
                        if feature_id not in pending:
                            self._check_strand(lineno, strand, None, feature)
                            item = PendingTranscript(feature_id, chrom, strand, lineno)
                            item.span = (start, end)
                            pending[feature_id] = item
                    continue
                try:
                    start = int(start_text) - 1
                    end = int(end_text)
                except ValueError:
                    start = end = -1
                if start < 0 or start >= end:
                    start, end = self._coordinates(lineno, start_text, end_text)
                parents = _gff3_value(attrs, "Parent")
                if not parents:
                    raise self._error(
                        lineno, f"{feature} record without a Parent attribute; in GFF3 each exon/CDS line names "
                                "its transcript with Parent=ID (is this a GTF file named .gff3?)"
                    )
                if chrom != current and grouped:
                    if pending:
                        yield from self._flush(pending, done, self._finish_gff3)
                    features.clear()
                    current = chrom
                for parent in parents.split(","):
                    item = pending.get(parent)
                    if item is None:
                        if parent in done:
                            raise self._already_done(lineno, parent, chrom, done[parent])
                        self._check_strand(lineno, strand, None, feature)
                        item = PendingTranscript(parent, chrom, strand, lineno)
                        pending[parent] = item
                    else:
                        if item.chrom != chrom:  # only possible with grouped=False
                            raise self._already_done(lineno, parent, chrom, (item.chrom, item.line))
                        if strand != item.strand:
                            self._check_strand(lineno, strand, item, feature)
                    if kind == EXON:
                        item.exons.append((start, end))
                    elif kind == CDS:
                        item.cds.append((start, end, phase))
                        if "_range=" in attrs or "transl_except=" in attrs:
                            self._gff3_cds_extras(item, attrs, strand)
                    elif kind == UTR:
                        item.utrs.append((start, end))
                    elif kind == STOP:
                        item.stops.append((start, end))
                    else:
                        item.secs.append((start, end))
        finally:  # also when a bad record or a read error stops the pass
            self.summary.lines = lineno
        if pending:
            yield from self._flush(pending, done, self._finish_gff3)
        features.clear()
        self._report_orphans()

    def _report_orphans(self):
        """One warning for the Parent ids that name no feature (module docstring); an error when the file
        holds nothing else."""
        orphans = self._orphans
        if not orphans:
            return
        shown = ", ".join(list(orphans)[:_ORPHANS_SHOWN])
        if len(orphans) > _ORPHANS_SHOWN:
            shown += f" and {len(orphans) - _ORPHANS_SHOWN} more"
        records = sum(orphans.values())
        what = (f"{records} exon/CDS/UTR records name a Parent that is no feature of the file "
                f"({len(orphans)} Parent ids: {shown})")
        if self.summary.transcripts == 0 and self.summary.skipped_unstranded == 0:
            raise AnnotationError(
                f"{self.path}: no transcripts found: {what}; each Parent must be the ID of a transcript (mRNA, "
                "transcript, ...) or gene line of the file — are those lines missing (a filtered file?)"
            )
        log.warning("%s: %s; they were left out (is the transcript line of each missing?)", self.path, what)

    def _gff3_cds_extras(self, item, attrs, strand):
        """NCBI partial-CDS ranges become cds_start_NF/cds_end_NF tags; transl_except Sec codons
        become selenocysteine intervals."""
        parsed = _parse_gff3_attributes(attrs)
        tags = list(item.tags or ())
        tags.extend(_range_tags(parsed, strand, "cds"))
        item.tags = tuple(dict.fromkeys(tags))
        for start, end in _selenocysteine_positions(parsed.get("transl_except", "")):
            if (start, end) not in item.secs:
                item.secs.append((start, end))

    def _finish_gff3(self, item):
        features = self._features
        record = features.get(item.key)
        if record is None and item.span is None:
            # Children only, and their Parent is no feature: an orphan, not a transcript (module docstring).
            self._orphans[item.key] = (len(item.exons) + len(item.cds) + len(item.utrs) + len(item.stops)
                                       + len(item.secs))
            return None
        attrs = _parse_gff3_attributes(record[1]) if record else {}
        if record is not None and (record[3] != item.chrom or record[4] != item.strand):
            raise AnnotationError(
                f"{self.path}:{item.line}: records of transcript {item.key} are on {item.chrom} strand "
                f"{item.strand} but its {record[0]} line (line {record[2]}) is on {record[3]} strand {record[4]}"
            )
        if item.span is None and record is not None:
            item.span = (record[5], record[6])
        gene_attrs, gene_key = self._gff3_gene(item.key, record, attrs)
        gene_id = (gene_attrs.get("gene_id") or _strip_prefix(gene_key, "gene:") or attrs.get("gene_id")
                   or attrs.get("geneID", ""))  # geneID: GFF3 written by gffread
        gene_name = (first_value(attrs, ("gene_name", "gene")) or first_value(gene_attrs, ("gene_name", "Name", "gene"))
                     or "")
        biotype = first_value(attrs, TRANSCRIPT_BIOTYPE_KEYS) or first_value(gene_attrs, GENE_BIOTYPE_KEYS)
        tags = [t for t in attrs.get("tag", "").split(",") if t]
        tags.extend(_range_tags(attrs, item.strand, "mRNA"))
        if item.tags:
            tags.extend(item.tags)
        item.key = _strip_prefix(item.key, "transcript:")
        return self._build(item, gene_id, gene_name, biotype, tuple(dict.fromkeys(tags)), GFF3)

    def _gff3_gene(self, key, record, attrs):
        """(attributes, ID) of the gene above a transcript: follow Parent up to a gene-like
        feature; a transcript that is itself gene-like (exons hanging from a gene) is its own."""
        features = self._features
        if record is not None and _is_gene_type(record[0]):
            return attrs, key
        current_attrs = attrs
        for _ in range(4):
            parent = current_attrs.get("Parent", "").split(",")[0]
            if not parent:
                break
            parent_record = features.get(parent)
            if parent_record is None:
                return {}, parent
            current_attrs = _parse_gff3_attributes(parent_record[1])
            if _is_gene_type(parent_record[0]) or "Parent" not in current_attrs:
                return current_attrs, parent
        return {}, ""


def _gff3_value(attrs, key):
    """Raw (percent-decoded) value of ``key`` in a GFF3 attribute column, or None."""
    needle = key + "="
    index = attrs.find(needle)
    while index > 0 and attrs[index - 1] not in "; \t":
        index = attrs.find(needle, index + 1)
    if index < 0:
        return None
    start = index + len(needle)
    stop = attrs.find(";", start)
    value = (attrs[start:] if stop < 0 else attrs[start:stop]).strip()
    if "%" in value:
        value = ",".join(unquote(part) for part in value.split(","))
    return value


def _parse_gff3_attributes(text):
    """GFF3 attribute column -> dict of percent-decoded values (multi-values stay comma-joined)."""
    attrs = {}
    for part in text.rstrip("\r\n").split(";"):
        key, sep, value = part.strip().partition("=")
        if not sep or key in attrs:
            continue
        if "%" in value:
            value = ",".join(unquote(piece) for piece in value.split(","))
        attrs[key] = value
    return attrs


def _is_transcript_type(feature):
    return (feature in ("mRNA", "transcript", "primary_transcript")
            or feature.endswith(("RNA", "_transcript", "transcript_variant", "gene_segment")))


def _is_gene_type(feature):
    return feature.endswith("gene") or feature in ("pseudogene", "transposable_element_gene")


def _strip_prefix(text, prefix):
    return text[len(prefix):] if text.startswith(prefix) else text


def _range_tags(attrs, strand, level):
    """NCBI ``start_range=.,N`` / ``end_range=N,.`` (left / right end incomplete) as GENCODE-style
    tags: ``cds_start_NF``/``cds_end_NF`` for a CDS, ``mRNA_start_NF``/``mRNA_end_NF`` otherwise."""
    left = "start_range" in attrs
    right = "end_range" in attrs
    if not (left or right):
        return []
    prefix = "cds" if level == "cds" else "mRNA"
    five, three = (left, right) if strand == "+" else (right, left)
    tags = []
    if five:
        tags.append(f"{prefix}_start_NF")
    if three:
        tags.append(f"{prefix}_end_NF")
    return tags


_TRANSL_EXCEPT = re.compile(r"pos:(?:complement\()?(\d+)\.\.(\d+)\)?,aa:Sec")


def _selenocysteine_positions(text):
    """0-based half-open codons of NCBI ``transl_except=(pos:A..B,aa:Sec)`` entries."""
    return [(int(a) - 1, int(b)) for a, b in _TRANSL_EXCEPT.findall(text)]
