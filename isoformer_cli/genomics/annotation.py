"""GTF and GFF3 annotation reader: records grouped into :class:`~isoformer_cli.genomics.records.Transcript`.

Public API::

    reader = read_annotation(path)          # AnnotationReader; opens and sniffs the file at once
    reader.format                            # "gtf" or "gff3"
    for transcript in reader: ...            # Transcript objects, annotation order, streamed
    reader.summary                           # AnnotationSummary, complete once iteration ended

Coordinates: the 1-based closed columns 4-5 are converted once here to 0-based half-open
``(start - 1, end)``; every interval list of a Transcript is sorted by start ascending.

What is read (everything else is skipped without a word):

* GTF (GENCODE, Ensembl, UCSC refGene, StringTie, IsoQuant, FLAIR): records are grouped by their
  ``transcript_id``; ``exon``, ``CDS``, ``stop_codon``, ``Selenocysteine``, UTR lines and the
  optional ``transcript`` line. Gene and transcript attributes come from the transcript line and
  the transcript's first record.
* GFF3 (NCBI RefSeq, Ensembl, GENCODE): ``exon``/``CDS``/UTR lines are grouped by each ``Parent``
  (an exon with ``Parent=a,b`` belongs to both); the parent feature (mRNA, lnc_RNA, transcript,
  ... or a gene when exons hang directly from it) is the transcript, and the gene is found by
  following ``Parent`` upwards. The transcript id is the GFF3 ``ID`` (unique by the GFF3 rules),
  without Ensembl's ``transcript:`` prefix. Reading stops at ``##FASTA``.

Like gffread 0.12.7, a transcript without exon records gets its exons from the union of its CDS,
stop codon and UTR segments (touching segments merged), and a transcript line (GTF
``transcript``, GFF3 mRNA-like) without any child record becomes one exon spanning it; both
cases are counted in the summary and logged.

Streaming: the file is read once, line by line. A transcript is complete when the contig changes,
at a GFF3 ``###`` line and at the end of the file; then the pending transcripts are checked and
yielded in the order of their first record, so memory holds one contig's transcripts at most.
Records of a transcript must therefore not be separated by records of another contig (true of
every annotation written by the tools above); a file that breaks this gets an AnnotationError
naming both lines and the command that sorts it, or can be read with ``grouped=False``, which
holds every transcript until the end of the file.

Speed: GTF lines are split as bytes and only decoded once per transcript; consecutive records of
one transcript are recognised by their attribute prefix; gzip input is inflated by python-isal in
a background thread when it is installed (plain ``gzip`` otherwise). About 0.35 M lines/s of CPU
time on a GENCODE-like file (``benchmarks/synthetic_annotation.py``), ~150 MB peak memory.

Modules: this one holds the reader (file opening, format detection, line checks, the per-contig flush and
the assembly of a :class:`~isoformer_cli.genomics.records.Transcript`); the two passes over the lines are
:mod:`~isoformer_cli.genomics.gtf` and :mod:`~isoformer_cli.genomics.gff3`, and what they share is
:mod:`~isoformer_cli.genomics.annotation_common`. At about 500 lines it stays one module on purpose: the
checks and the assembly are one contract that both passes rely on.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

from isoformer_cli.errors import AnnotationError
from isoformer_cli.genomics.annotation_common import GFF3, GTF, decode
from isoformer_cli.genomics.compressed import COMPRESSED_STREAM_ERRORS, is_gzip_file, open_binary, open_text
from isoformer_cli.genomics.gff3 import Gff3Pass
from isoformer_cli.genomics.gtf import GtfPass
from isoformer_cli.genomics.records import Transcript
from isoformer_cli.genomics.sniff import ANNOTATION_KINDS, wrong_kind_message

log = logging.getLogger(__name__)



def _sort_hint(path, annotation_format):
    """The command that groups a file's records by contig (keeping each transcript together)."""
    if annotation_format == GFF3:
        return (f"sort it so that each contig's records are together, e.g. `gffread {path} -o sorted.gff3` "
                "(keeps transcripts with their exons)")
    reader = f"zcat {path} | grep -v '^#' | sort" if is_gzip_file(path) else f"grep -v '^#' {path} | sort"
    return f"sort it so that each transcript's records are together, e.g. `{reader} -k1,1 -k4,4n > sorted.gtf`"


@dataclass
class AnnotationSummary:
    """What a pass over an annotation found (filled while iterating).

    Attributes:
        path: the annotation file as given.
        format: ``"gtf"`` or ``"gff3"``.
        lines: number of lines read (comments included).
        feature_counts: feature type (column 3) -> number of records; counted (by a second pass)
            only for the message of an annotation without transcripts, empty otherwise.
        transcripts: number of transcripts yielded.
        coding_transcripts: how many of them have a CDS.
        contig_transcripts: annotation contig -> number of transcripts yielded on it, file order.
        exons_from_cds: transcripts without exon records whose exons were built from their
            CDS/UTR/stop-codon segments (as gffread does).
        span_as_exon: transcript records without any exon/CDS/UTR record, used as one exon.
        skipped_unstranded: transcripts dropped because their strand is ``.``/``?`` (only with
            ``skip_unstranded=True``).
        complete: True once the whole file was read.
    """

    path: str
    format: str
    lines: int = 0
    feature_counts: Dict[str, int] = field(default_factory=dict)
    transcripts: int = 0
    coding_transcripts: int = 0
    contig_transcripts: Dict[str, int] = field(default_factory=dict)
    exons_from_cds: int = 0
    span_as_exon: int = 0
    skipped_unstranded: int = 0
    complete: bool = False

    def describe_features(self, limit=8):
        """``"120 gene, 30 region"``: the most frequent feature types, for messages."""
        if not self.feature_counts:
            return "no feature lines"
        ranked = sorted(self.feature_counts.items(), key=lambda item: -item[1])
        text = ", ".join(f"{count} {name}" for name, count in ranked[:limit])
        if len(ranked) > limit:
            text += f" and {len(ranked) - limit} more types"
        return text

def report_summary(summary: AnnotationSummary) -> None:
    """Log what a whole pass did that a user should know (exons built from CDSs, spans used as exons,
    unstranded transcripts skipped)."""
    if summary.exons_from_cds:
        log.info("%s: %d transcripts have no exon records; their exons were built from their CDS/UTR "
                 "segments, as gffread does", summary.path, summary.exons_from_cds)
    if summary.span_as_exon:
        log.warning("%s: %d transcript records have no exon, CDS or UTR records; each was used as a "
                    "single exon spanning the transcript, as gffread does", summary.path, summary.span_as_exon)
    if summary.skipped_unstranded:
        log.warning("%s: skipped %d transcripts without a strand ('.' or '?')",
                    summary.path, summary.skipped_unstranded)


def read_annotation(path, *, skip_unstranded=False, grouped=True) -> "AnnotationReader":
    """Open ``path`` and return an iterable :class:`AnnotationReader` (iterate it once)."""
    return AnnotationReader(path, skip_unstranded=skip_unstranded, grouped=grouped)


class AnnotationReader(GtfPass, Gff3Pass):
    """One streaming pass over a GTF/GFF3 file (plain or gzip), yielding Transcript objects.

    Transcripts come in annotation order (the order of each transcript's first record) as soon
    as they are complete (see the module docstring).

    Args:
        path: annotation file; gzip is recognised from its magic bytes, the format from the
            content (``##gff-version 3``, ``key=value`` or ``key "value";`` attributes) and only
            then from the suffix.
        skip_unstranded: drop transcripts whose strand is ``.`` or ``?`` (counted in
            ``summary.skipped_unstranded``) instead of raising AnnotationError.
        grouped: True (default) assumes each transcript's records are not separated by records
            of another contig and yields a contig's transcripts when the contig changes (memory:
            one contig). False holds every transcript until the end of the file (GFF3 ``###``
            still flushes): correct for any record order, memory grows with the annotation.

        byte_range: ``(start, end)`` byte offsets of a plain GTF, both at the start of a line (or the
            end of the file) and at contig changes (:func:`~isoformer_cli.genomics.gtf_parts.contig_parts`):
            read only these lines, as one part of a file read in parallel. Line numbers then count from
            the part's first line, and neither the end-of-file checks nor their log lines happen
            (the caller adds the parts' summaries up and calls :func:`report_summary`).

    Raises AnnotationError (when constructed: unreadable file, not an annotation; while
    iterating: a bad record) with one line naming ``FILE:LINE`` or the transcript and the fix.
    """

    def __init__(self, path, *, skip_unstranded=False, grouped=True, byte_range=None):
        self.path = os.fspath(path)
        self.skip_unstranded = skip_unstranded
        self.grouped = grouped
        self.format = detect_format(self.path)
        if byte_range is not None and (self.format != GTF or is_gzip_file(self.path)):
            raise ValueError("byte_range: only a plain (not compressed) GTF can be read in parts")
        self.byte_range = byte_range
        self.summary = AnnotationSummary(path=self.path, format=self.format)
        self._iterated = False

    def __iter__(self) -> Iterator[Transcript]:
        if self._iterated:
            raise RuntimeError("an AnnotationReader can be iterated only once; call read_annotation again")
        self._iterated = True
        return self._transcripts()

    # -- the pass over the file ---------------------------------------------------------------

    def _transcripts(self):
        if self.format == GTF:
            handle, parse = _open_binary(self.path), self._parse_gtf
        else:
            handle, parse = _open_text(self.path), self._parse_gff3
        try:
            with handle:
                yield from parse(handle if self.byte_range is None else _lines_in_range(handle, *self.byte_range))
        except COMPRESSED_STREAM_ERRORS as exc:
            # (python-isal inflates ahead of the parser, so the line count is only a lower bound)
            where = f" after line {self.summary.lines}" if self.summary.lines else ""
            raise AnnotationError(
                f"{self.path}: the gzip data is truncated or corrupt{where} ({exc}); download or "
                f"compress the file again (test it with `gzip -t {self.path}`)"
            ) from None
        except OSError as exc:
            raise AnnotationError(f"{self.path}: read error after line {self.summary.lines}: {exc}") from None
        self.summary.complete = True
        if self.byte_range is not None:
            return
        summary = self.summary
        if summary.transcripts == 0 and summary.skipped_unstranded == 0:
            summary.feature_counts = _count_features(self.path)
            raise AnnotationError(
                f"{self.path}: no transcripts found: the annotation has no exon, CDS or transcript "
                f"records (found {summary.describe_features()} in {summary.lines} lines); give a "
                "GTF/GFF3 with exon lines"
            )
        report_summary(summary)

    def _error(self, lineno, message):
        return AnnotationError(f"{self.path}:{lineno}: {message}")

    def _bad_columns(self, lineno, line, fields):
        """Blank lines pass; anything else with a wrong column count raises."""
        if not line.strip():
            return
        if len(fields) == 10 and not fields[9].strip():
            return  # a trailing tab before the newline
        # Another kind of file altogether (a BAM, a VCF, a FASTA...): say which, not the column count.
        wrong = wrong_kind_message(self.path, ANNOTATION_KINDS, "a GTF/GFF3 annotation")
        if wrong:
            raise AnnotationError(f"{wrong}; --annotation takes a GTF or GFF3 file (plain or gzip)")
        stripped = line.rstrip("\r\n")
        hint = ""
        if len(fields) < 9 and len(stripped.split()) >= 9:
            hint = " (spaces instead of tabs?)"
        elif len(fields) == 1 and stripped.startswith(">"):
            hint = " (this looks like FASTA: did you swap --genome and --annotation?)"
        raise self._error(
            lineno, f"expected 9 tab-separated columns, found {len(fields)}{hint}; "
                    "GTF/GFF3 records are seqname, source, feature, start, end, score, strand, frame, attributes"
        )

    def _coordinates(self, lineno, start_text, end_text):
        """0-based half-open (start, end) from the 1-based closed columns, or AnnotationError."""
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise self._error(
                lineno, f"start and end (columns 4 and 5) must be whole numbers, found {start_text!r} and {end_text!r}"
            ) from None
        if start < 1:
            raise self._error(lineno, f"start {start} is below 1; GTF/GFF3 coordinates are 1-based")
        if start > end:
            raise self._error(lineno, f"start {start} is after end {end}; columns 4 and 5 must satisfy start <= end")
        return start - 1, end

    def _check_strand(self, lineno, strand, pending, what):
        if strand not in "+-.?" or len(strand) != 1:
            raise self._error(lineno, f"unknown strand {strand!r} in column 7; use '+' or '-'")
        if pending is not None and strand != pending.strand:
            raise self._error(
                lineno, f"{what} of transcript {pending.key} is on strand {strand!r} but the transcript's "
                        f"first record (line {pending.line}) is on {pending.strand!r}"
            )

    def _already_done(self, lineno, key, chrom, first):
        first_chrom, first_line = first
        if first_chrom != chrom:
            return self._error(
                lineno, f"duplicate transcript id {key} on {first_chrom} (line {first_line}) and {chrom} "
                        f"(line {lineno}); transcript ids must be unique — rename one of them"
            )
        return self._error(
            lineno, f"records of transcript {key} resume after records of other contigs (its first record "
                    f"is line {first_line}); the file is not grouped by contig: "
                    + _sort_hint(self.path, self.format)
        )

    def _flush(self, pending, done, finish):
        summary = self.summary
        for key, item in pending.items():
            done[key] = (item.chrom, item.line)
            transcript = finish(item)
            if transcript is None:
                continue
            summary.transcripts += 1
            if transcript.cds:
                summary.coding_transcripts += 1
            counts = summary.contig_transcripts
            counts[transcript.chrom] = counts.get(transcript.chrom, 0) + 1
            yield transcript
        pending.clear()

    # -- shared checks and assembly ------------------------------------------------------------

    def _build(self, item, gene_id, gene_name, biotype, tags, annotation_format):
        where = f"{self.path}:{item.line}"
        if item.strand not in ("+", "-"):
            if self.skip_unstranded:
                self.summary.skipped_unstranded += 1
                return None
            raise AnnotationError(
                f"{where}: transcript {item.key} has no usable strand ({item.strand!r}); "
                "only '+' and '-' transcripts can be spliced and translated — fix the strand or drop it"
            )
        exons = item.exons
        if exons:
            exons.sort()
        elif item.cds or item.utrs:
            exons = _merge_touching(sorted([(s, e) for s, e, _ in item.cds] + item.stops + item.utrs))
            self.summary.exons_from_cds += 1
        elif item.span is not None:
            exons = [item.span]
            self.summary.span_as_exon += 1
        else:
            raise AnnotationError(
                f"{where}: transcript {item.key} has only stop-codon/selenocysteine records and no exon, "
                "CDS or transcript record"
            )
        for previous, following in zip(exons, exons[1:]):
            if following[0] < previous[1]:
                raise AnnotationError(
                    f"{where}: transcript {item.key} has overlapping exons {_one_based(previous)} and "
                    f"{_one_based(following)} (1-based); each exon must end before the next starts"
                )
        cds = []
        cds_phase = None
        if item.cds:
            segments = sorted(item.cds)
            first = segments[0] if item.strand == "+" else segments[-1]
            cds_phase = _phase(first[2], where, item.key)
            cds = [(s, e) for s, e, _ in segments]
            for previous, following in zip(cds, cds[1:]):
                if following[0] < previous[1]:
                    raise AnnotationError(
                        f"{where}: transcript {item.key} has overlapping CDS segments {_one_based(previous)} "
                        f"and {_one_based(following)} (1-based)"
                    )
            outside = _first_outside(cds, exons)
            if outside is not None:
                raise AnnotationError(
                    f"{where}: CDS {_one_based(outside)} (1-based) of transcript {item.key} is not inside any "
                    f"of its exons ({_describe_intervals(exons)}); fix the CDS or exon coordinates"
                )
        stops = sorted(item.stops)
        secs = sorted(item.secs)
        return Transcript(
            transcript_id=item.key,
            gene_id=gene_id,
            gene_name=gene_name,
            biotype=biotype,
            chrom=item.chrom,
            strand=item.strand,
            exons=exons,
            cds=cds,
            cds_phase=cds_phase,
            stop_codons=stops,
            selenocysteines=secs,
            tags=tags,
            annotation_format=annotation_format,
            source=where,
        )


# -- format detection and file opening -------------------------------------------------------------

_GTF_ATTRIBUTE_START = re.compile(r'\s*[A-Za-z_][^\s=;"]*\s+("|[^\s=;"]+\s*(;|$))')
_GFF3_ATTRIBUTE_START = re.compile(r"\s*[^\s=;]+=")


def detect_format(path) -> str:
    """``"gtf"`` or ``"gff3"`` from the file's content (``##gff-version``, then the look of the
    attribute column of the first records), then from the suffix; AnnotationError for a file that
    cannot be opened or is not an annotation (for example a FASTA)."""
    path = os.fspath(path)
    handle = _open_text(path, threaded=False)
    decided = None
    try:
        with handle:
            for lineno, line in enumerate(handle, 1):
                if lineno > 1000:
                    break
                stripped = line.strip()
                if not stripped:
                    continue
                if stripped.startswith("##gff-version"):
                    version = stripped.split()[1] if len(stripped.split()) > 1 else ""
                    return GFF3 if version.startswith("3") else GTF
                if stripped.startswith("#"):
                    continue
                if stripped.startswith(">"):
                    raise AnnotationError(
                        f"{path}:{lineno}: this is a FASTA file, not a GTF/GFF3 annotation "
                        "(did you swap --genome and --annotation?)"
                    )
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) < 9:
                    break  # the parser reports the column count with the line number
                attributes = fields[8]
                if _GFF3_ATTRIBUTE_START.match(attributes):
                    decided = GFF3
                elif _GTF_ATTRIBUTE_START.match(attributes):
                    decided = GTF
                if decided:
                    return decided
    except COMPRESSED_STREAM_ERRORS as exc:
        raise AnnotationError(
            f"{path}: the gzip data is truncated or corrupt ({exc}); download or compress the file again"
        ) from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the annotation: {exc.strerror or exc}") from None
    lowered = path.lower()
    for suffix in (".gz", ".bgz"):
        if lowered.endswith(suffix):
            lowered = lowered[: -len(suffix)]
    if lowered.endswith((".gff", ".gff3")):
        return GFF3
    return GTF


def _count_features(path) -> Dict[str, int]:
    """Feature type -> record count of a whole file (for error messages only)."""
    counts: Dict[str, int] = {}
    with _open_text(path, threaded=False) as handle:
        for line in handle:
            if line[0] == "#" and line.startswith("##FASTA"):
                break
            fields = line.split("\t", 3)
            if line[0] != "#" and len(fields) > 3:
                counts[fields[2]] = counts.get(fields[2], 0) + 1
    return counts


def _lines_in_range(handle, start, end):
    """The lines of binary ``handle`` from byte ``start`` (a line start) up to byte ``end``."""
    handle.seek(start)
    remaining = end - start
    if remaining <= 0:
        return
    for line in handle:
        yield line
        remaining -= len(line)
        if remaining <= 0:
            return


def _open_text(path, threaded=True):
    """Text handle over a plain or gzip file (magic bytes decide); lines keep their ``\\r\\n``."""
    return open_text(path, "annotation file", error=AnnotationError, threaded=threaded, errors="replace",
                     buffering=1 << 20)


def _open_binary(path, threaded=True):
    """Binary handle over a plain or gzip file; with ``threaded``, python-isal (when installed) inflates gzip
    in a background thread beside the parser (:func:`~isoformer_cli.genomics.compressed.open_binary`)."""
    return open_binary(path, "annotation file", error=AnnotationError, threaded=threaded, buffering=1 << 20)


# -- interval helpers ----------------------------------------------------------------------------

def _phase(text, where, key):
    if isinstance(text, bytes):
        text = decode(text)
    if text in ("0", "1", "2"):
        return int(text)
    if text in (".", ""):
        return 0
    raise AnnotationError(f"{where}: transcript {key} has CDS phase {text!r}; column 8 must be 0, 1, 2 or '.'")


def _merge_touching(intervals):
    merged: List[Tuple[int, int]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _first_outside(inner, outer):
    """First interval of sorted ``inner`` not contained in one interval of sorted, disjoint
    ``outer``; None when all are contained."""
    index = 0
    for start, end in inner:
        while index < len(outer) and outer[index][1] <= start:
            index += 1
        if index == len(outer) or not (outer[index][0] <= start and end <= outer[index][1]):
            return (start, end)
    return None


def _one_based(interval):
    return f"{interval[0] + 1}-{interval[1]}"


def _describe_intervals(intervals, limit=4):
    text = ", ".join(_one_based(i) for i in intervals[:limit])
    return text + (f" and {len(intervals) - limit} more" if len(intervals) > limit else "")


def load_transcripts(path, **options) -> List[Transcript]:
    """All transcripts of ``path`` as a list (small annotations, tests)."""
    return list(read_annotation(path, **options))


__all__ = ["AnnotationReader", "AnnotationSummary", "detect_format", "load_transcripts", "read_annotation",
           "report_summary",
           "GTF", "GFF3"]
