"""``isoformer triples`` over a large plain GTF in worker processes, one part of the file each.

Reading and building are CPU work in Python, about half each; on a machine with two or more cores a
GENCODE-sized annotation is cut into parts at contig changes (:mod:`isoformer_cli.genomics.gtf_parts`),
each worker parses its part, builds the triples and formats the table rows and FASTA records, and the
main process writes the parts' text in file order. The output is the sequential pass's, byte for byte:
a part holds whole contig blocks, which the reader groups independently of one another, and the
worker runs the same reader, builder and ``--on-invalid`` rule (:func:`~isoformer_cli.triples.source.keep_triple`).

Whatever the sequential pass would report as an error (a bad record, a transcript id seen in two
contig blocks, no transcripts at all, an invalid triple under ``--on-invalid fail``) makes the caller
read the file sequentially instead, from the row where the parts stopped (:func:`write_in_parallel`
returns False), so messages and line numbers are the sequential pass's too.

Used only where it pays and is simple to keep exact: a plain (not compressed) GTF of at least
:data:`MIN_PARALLEL_BYTES`, no selection and no ``--shard`` (their bookkeeping stays sequential), and
two or more usable cores. Memory: each worker holds the transcripts of one contig block; the text of
a part goes to a file in a temporary folder as it is made and the main process copies it into the
outputs in file order (at most ``workers + 1`` parts are in flight).
"""

import collections
import contextlib
import itertools
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from isoformer_cli.formats.triples_table import fasta_records, format_row
from isoformer_cli.genomics.annotation import (
    GTF,
    AnnotationReader,
    AnnotationSummary,
    detect_format,
    report_summary,
)
from isoformer_cli.genomics.compressed import is_gzip_file
from isoformer_cli.genomics.contigs import ContigAliases, ContigMatcher
from isoformer_cli.genomics.gtf_parts import contig_parts
from isoformer_cli.triples.builder import TripleBuilder
from isoformer_cli.triples.source import SourceSummary, keep_triple

# Smaller annotations are read sequentially: starting workers would cost more than it saves.
MIN_PARALLEL_BYTES = 32 << 20
# Size of one part: small enough that a few parts per worker balance the load and bound the text
# waiting in memory, large enough that the per-part overhead (a task, one message back) is negligible.
PART_BYTES = 24 << 20
MAX_WORKERS = 8
COPY_BLOCK = 1 << 20  # bytes copied at a time from a part's text file into an output


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parallel_workers(source, min_bytes: Optional[int] = None) -> int:
    """Worker processes for the triples of ``source`` (0: read it sequentially)."""
    path = source.annotation
    cores = min(usable_cores(), MAX_WORKERS)
    if path is None or cores < 2 or source.shard is not None or not source.selection().selects_all:
        return 0
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0  # the sequential reader reports it
    if size < (MIN_PARALLEL_BYTES if min_bytes is None else min_bytes) or not os.path.isfile(path) \
            or is_gzip_file(path) or detect_format(path) != GTF:
        return 0
    return cores


@dataclass
class PartResult:
    """What one worker made of one part: the files of its formatted text, and counts to add up."""

    table: str                    # path of the part's table rows (format_row lines)
    fasta: Dict[str, str]         # kind -> path of the part's FASTA records
    rows: int
    transcript_ids: List[str]
    reader: AnnotationSummary
    selected: int = 0
    yielded: int = 0
    skipped_invalid: int = 0
    skipped_missing_contig: int = 0
    flag_counts: Dict[str, int] = field(default_factory=dict)
    contig_counts: Dict[str, int] = field(default_factory=dict)


# One per worker process, set by _start_worker.
_worker = None


def _text_file(path):
    return open(path, "w", encoding="utf-8", newline="")


class _Worker:
    def __init__(self, source, genome, fasta_kinds, folder):
        self.source = source
        self.genome = genome  # reopens its FASTA handle in this process on first fetch
        self.aliases = ContigAliases(genome.contigs, alias_file=source.contig_alias)
        self.builder = TripleBuilder(genome, source.build_options())
        self.fasta_kinds = tuple(fasta_kinds)
        self.folder = folder

    def part(self, index: int, byte_range: Tuple[int, int]) -> PartResult:
        """Parse, build and format one part. The text goes to files in the run's temporary folder as it
        is made (the main process copies them into the outputs), so no part's text is held in memory."""
        source = self.source
        reader = AnnotationReader(source.annotation, byte_range=byte_range)
        matcher = ContigMatcher(self.aliases, annotation_label=source.label)
        summary = SourceSummary()
        flag_counts: collections.Counter = collections.Counter()
        ids = []
        build = self.builder.build
        with_dna = source.with_dna
        table_path = os.path.join(self.folder, f"{index}.tsv")
        fasta_paths = {kind: os.path.join(self.folder, f"{index}.{kind}.fa") for kind in self.fasta_kinds}
        with contextlib.ExitStack() as files:
            table = files.enter_context(_text_file(table_path))
            fasta = {kind: files.enter_context(_text_file(path)) for kind, path in fasta_paths.items()}
            for transcript in reader:
                ids.append(transcript.transcript_id)
                summary.selected += 1
                genome_chrom = matcher.resolve(transcript.chrom)
                if genome_chrom is None:
                    summary.skipped_missing_contig += 1
                    continue
                triple = build(transcript, genome_chrom)
                if not keep_triple(triple, source, summary, flag_counts):
                    continue
                table.write(format_row(triple, with_dna))
                if fasta:
                    for kind, text in fasta_records(triple, self.fasta_kinds).items():
                        fasta[kind].write(text)
        return PartResult(
            table=table_path, fasta=fasta_paths, rows=summary.yielded, transcript_ids=ids, reader=reader.summary,
            selected=summary.selected, yielded=summary.yielded, skipped_invalid=summary.skipped_invalid,
            skipped_missing_contig=summary.skipped_missing_contig, flag_counts=dict(flag_counts),
            contig_counts=matcher.counts,
        )


def _start_worker(source, genome, fasta_kinds, folder):
    global _worker
    # The main process handles Ctrl-C and SIGTERM (and stops the workers); a worker just ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker = _Worker(source, genome, fasta_kinds, folder)


def _run_part(index, byte_range):
    """A part's :class:`PartResult`, or None when reading it sequentially would stop with an error."""
    try:
        return _worker.part(index, byte_range)
    except Exception:  # noqa: BLE001 - the sequential pass reports it, with its own message and line
        return None


def _context():
    # fork: the workers start at once, without importing the package again.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def write_in_parallel(source, genome, writer, summary, workers: int, on_rows=None) -> bool:
    """Build and write the triples of ``source`` with ``workers`` processes; fills ``summary`` and logs
    as :func:`~isoformer_cli.triples.source.iter_triples` does; ``on_rows(n)`` (a progress bar's update)
    is called after each part's ``n`` rows are written. False when the file must be read
    sequentially instead (see the module docstring): ``writer.rows`` rows are written by then, the
    same as the sequential pass's first rows."""
    parts = contig_parts(source.annotation, max(workers, -(-os.path.getsize(source.annotation) // PART_BYTES)))
    if len(parts) < 2:
        return False
    # Buffered output must not be inherited: a worker flushes its copy of sys.stdout when it ends.
    sys.stdout.flush()
    sys.stderr.flush()
    seen = set()
    reader_summary = AnnotationSummary(path=source.annotation, format=GTF)
    contig_counts: Dict[str, int] = {}
    flag_counts: collections.Counter = collections.Counter()
    folder = tempfile.mkdtemp(prefix="isoformer-triples-")
    try:
        with _context().Pool(min(workers, len(parts)), initializer=_start_worker,
                             initargs=(source, genome, tuple(writer.fasta_targets), folder)) as pool:
            queue = enumerate(parts)
            # At most workers + 1 parts are in flight (their text waits on disk, not in memory).
            waiting = collections.deque(pool.apply_async(_run_part, task)
                                        for task in itertools.islice(queue, workers + 1))
            while waiting:
                result = waiting.popleft().get()
                for task in itertools.islice(queue, 1):
                    waiting.append(pool.apply_async(_run_part, task))
                if result is None or not seen.isdisjoint(result.transcript_ids):
                    return False
                seen.update(result.transcript_ids)
                _copy_part(result, writer)
                if on_rows is not None:
                    on_rows(result.rows)
                _add_up(summary, reader_summary, contig_counts, flag_counts, result)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if reader_summary.transcripts == 0:
        return False  # the sequential pass raises "no transcripts found"
    reader_summary.complete = True
    report_summary(reader_summary)
    summary.transcripts_read = reader_summary.transcripts
    summary.flag_counts = dict(sorted(flag_counts.items()))
    matcher = ContigMatcher(ContigAliases(genome.contigs, alias_file=source.contig_alias),
                            annotation_label=source.label)
    matcher.counts = contig_counts
    mapping = matcher.finish()  # logs contigs missing from the genome; raises ContigError when none matched
    summary.missing_contigs = {contig: contig_counts[contig] for contig, target in mapping.items() if target is None}
    return True


def _copy_part(result, writer):
    """Append a part's text files (UTF-8) to the outputs, then remove them."""
    for kind, path in [("table", result.table)] + list(result.fasta.items()):
        with open(path, "rb") as part:
            for block in iter(lambda: part.read(COPY_BLOCK), b""):
                writer.write_encoded(kind, block)
        os.remove(path)
    writer.rows += result.rows


def _add_up(summary, reader_summary, contig_counts, flag_counts, result):
    part = result.reader
    reader_summary.lines += part.lines
    reader_summary.transcripts += part.transcripts
    reader_summary.coding_transcripts += part.coding_transcripts
    reader_summary.exons_from_cds += part.exons_from_cds
    reader_summary.span_as_exon += part.span_as_exon
    reader_summary.skipped_unstranded += part.skipped_unstranded
    for contig, count in part.contig_transcripts.items():
        reader_summary.contig_transcripts[contig] = reader_summary.contig_transcripts.get(contig, 0) + count
    for contig, count in result.contig_counts.items():
        contig_counts[contig] = contig_counts.get(contig, 0) + count
    flag_counts.update(result.flag_counts)
    summary.selected += result.selected
    summary.yielded += result.yielded
    summary.skipped_invalid += result.skipped_invalid
    summary.skipped_missing_contig += result.skipped_missing_contig
