"""Preparing model inputs chunk by chunk, in DataLoader workers: triples, DNA windows, tokens.

The triple stream of a run (input order, after selection and ``--on-invalid``) is cut into
consecutive chunks of ``chunk_size`` transcripts after the ``start_row`` rows a resumed run already
wrote; chunk ``i`` holds output rows ``[start_row + i * chunk_size, start_row + (i + 1) * chunk_size)``. Inside
a chunk every distinct DNA window, RNA and
protein is fetched and tokenised once, and each row points at its distinct inputs: isoforms of a
gene often share a TSS (hence a window) or a protein, and the encoders, the expensive part, then
run once per distinct input.

Ownership: with ``world_size`` ranks (torchrun) and ``num_workers`` DataLoader workers per rank,
chunk ``i`` belongs to rank ``i % world_size``; within a rank, its ``j``-th chunk belongs to
worker ``j % num_workers``. PyTorch's DataLoader takes one item from each worker in turn, so a
rank receives its chunks in increasing order. Every worker reads the whole triple stream (cheap
next to the model) but fetches windows and tokenises only the chunks it owns.

Errors raised in a worker are passed to the main process as a :class:`PreparedChunk` carrying
the error, because DataLoader would otherwise wrap them in a multi-line traceback.
"""

import logging
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from isoformer_cli.errors import IsoformerError
from isoformer_cli.genomics.flags import PROTEIN_TRUNCATED, RNA_TRUNCATED
from isoformer_cli.formats.predictions import obs_row
from isoformer_cli.triples.source import iter_triples
from isoformer_cli.triples.dna_window import fetch_window

log = logging.getLogger(__name__)



@dataclass
class TokenizerSettings:
    """How one model's inputs become token ids: a tokenizer per modality, None where the model lacks it.

    Each tokenizer has ``encode(sequence, name) -> (ids (L,) int64, truncated bool)``; they are plain
    picklable objects, so DataLoader workers and torchrun ranks receive them as they are.
    """

    dna: Optional[object] = None
    rna: Optional[object] = None
    protein: Optional[object] = None

    @classmethod
    def for_model_config(cls, config, rna_truncation="keep_start", protein_truncation="keep_start"):
        """The tokenizers of ``config``'s encoders, with the truncation policies of RNA and protein."""
        truncation = {"dna": "error", "rna": rna_truncation, "protein": protein_truncation}
        return cls(**{modality: config.encoder(modality).tokenizer(config, truncation[modality])
                      for modality in config.modalities})


@dataclass
class PreparedChunk:
    """Model inputs of one chunk, with the distinct sequences shared between rows.

    Attributes:
        index: chunk number in the run (0-based).
        obs: one annotation dict per row (``outputs.predictions.obs_row``), in input order; the
            ``flags`` value includes ``rna_truncated`` / ``protein_truncated``.
        dna_tokens: distinct DNA windows as 1-D int64 token arrays (Enformer: one id per base).
        dna_of_row: ``(n_rows,)`` int64 index into ``dna_tokens`` (-1 without DNA modality).
        rna_tokens / protein_tokens: distinct RNAs / proteins as 1-D int64 token arrays
            (``<cls>`` first; protein ends with ``<eos>``).
        rna_of_row / protein_of_row: ``(n_rows,)`` int64 index, -1 where the row has none
            (a non-coding transcript has no protein).
        error: message of a typed error raised while preparing (the chunk is otherwise empty).
    """

    index: int
    obs: List[dict] = field(default_factory=list)
    dna_tokens: List[np.ndarray] = field(default_factory=list)
    dna_of_row: Optional[np.ndarray] = None
    rna_tokens: List[np.ndarray] = field(default_factory=list)
    rna_of_row: Optional[np.ndarray] = None
    protein_tokens: List[np.ndarray] = field(default_factory=list)
    protein_of_row: Optional[np.ndarray] = None
    error: Optional[IsoformerError] = None

    def __len__(self):
        return len(self.obs)

    def rows(self, start, stop):
        """The chunk of rows ``start`` to ``stop`` (0-based, half-open), holding only the distinct inputs those
        rows use, re-numbered in order of first use (a caller that must keep fewer encoder outputs in memory
        at once predicts a large chunk piece by piece)."""
        part = PreparedChunk(index=self.index, obs=self.obs[start:stop], error=self.error)
        for name in ("dna", "rna", "protein"):
            tokens, of_row = getattr(self, f"{name}_tokens"), getattr(self, f"{name}_of_row")
            if of_row is None:
                continue
            renumbered, kept = {}, []
            column = np.full(len(part.obs), -1, dtype=np.int64)
            for row, index in enumerate(of_row[start:stop]):
                if index < 0:
                    continue
                if index not in renumbered:
                    renumbered[index] = len(kept)
                    kept.append(tokens[index])
                column[row] = renumbered[index]
            setattr(part, f"{name}_tokens", kept)
            setattr(part, f"{name}_of_row", column)
        return part


class _Distinct:
    """Assigns consecutive ids to distinct keys and keeps the value built for each key once."""

    def __init__(self, enabled=True):
        self.enabled = enabled
        self.ids = {}
        self.values = []

    def index(self, key, build):
        if self.enabled and key in self.ids:
            return self.ids[key]
        self.values.append(build())
        position = len(self.values) - 1
        if self.enabled:
            self.ids[key] = position
        return position


def prepare_chunk(index, triples, genome, settings, dedupe=True):
    """Fetch and tokenise the inputs of one chunk of triples (see :class:`PreparedChunk`).

    Args:
        index: chunk number.
        triples: the chunk's :class:`~isoformer_cli.genomics.records.Triple` objects, in order.
        genome: anything with the :class:`~isoformer_cli.genomics.genome.Genome` ``length`` / ``fetch``
            interface, for the DNA windows.
        settings: :class:`TokenizerSettings`.
        dedupe: share identical inputs between rows (off only to check that sharing changes
            nothing).
    """

    def dna_ids(triple):
        sequence = fetch_window(genome, triple.genome_chrom, triple.window_start, triple.window_end,
                                triple.transcript.strand)
        return settings.dna.encode(sequence, triple.transcript.transcript_id)

    # Distinct inputs keep (token ids, truncated) pairs.
    windows, rnas, proteins = _Distinct(dedupe), _Distinct(dedupe), _Distinct(dedupe)
    chunk = PreparedChunk(index=index)
    dna_of_row, rna_of_row, protein_of_row = [], [], []
    for triple in triples:
        name = triple.transcript.transcript_id
        if settings.dna is not None:
            window_key = (triple.genome_chrom, triple.window_start, triple.window_end, triple.transcript.strand)
            dna_of_row.append(windows.index(window_key, lambda: dna_ids(triple)))
        else:
            dna_of_row.append(-1)
        rna_position, rna_truncated = _distinct_tokens(rnas, triple.rna, settings.rna, name)
        protein_position, protein_truncated = _distinct_tokens(proteins, triple.protein, settings.protein, name)
        rna_of_row.append(rna_position)
        protein_of_row.append(protein_position)
        extra_flags = [flag for flag, truncated in ((RNA_TRUNCATED, rna_truncated),
                                                    (PROTEIN_TRUNCATED, protein_truncated)) if truncated]
        row = obs_row(triple)
        if extra_flags:
            row["flags"] = ",".join(sorted(set(triple.flags) | set(extra_flags)))
        chunk.obs.append(row)
    chunk.dna_tokens = [ids for ids, _ in windows.values]
    chunk.rna_tokens = [ids for ids, _ in rnas.values]
    chunk.protein_tokens = [ids for ids, _ in proteins.values]
    chunk.dna_of_row = np.asarray(dna_of_row, dtype=np.int64)
    chunk.rna_of_row = np.asarray(rna_of_row, dtype=np.int64)
    chunk.protein_of_row = np.asarray(protein_of_row, dtype=np.int64)
    return chunk


def model_tokens(sequence, tokenizer, name):
    """``(token ids, truncated)``: what the model reads of ``sequence`` (the tokenizer's truncation policy
    applied) and whether the policy cut it; ``(None, False)`` when the row has none (empty, or the model lacks
    the modality: no tokenizer). The one place that decides what of an RNA or protein the model sees, for
    ``predict``'s ``rna_truncated`` / ``protein_truncated`` flags and for what a variant visibly changes."""
    if not sequence or tokenizer is None:
        return None, False
    ids, truncated = tokenizer.encode(sequence, name)
    return ids, bool(truncated)


def _distinct_tokens(distinct, sequence, tokenizer, name):
    """``(index among the chunk's distinct inputs, truncated)`` of ``sequence``; ``(-1, False)``
    when the row has none (empty, or the model lacks the modality: no tokenizer)."""
    if not sequence or tokenizer is None:
        return -1, False
    position = distinct.index(sequence, lambda: model_tokens(sequence, tokenizer, name))
    return position, bool(distinct.values[position][1])


class ChunkDataset(IterableDataset):
    """Yields the :class:`PreparedChunk` objects this rank (and DataLoader worker) owns.

    Args:
        source: a :class:`~isoformer_cli.triples.source.TripleSource`.
        genome: the genome the triples and their DNA windows come from: anything with the
            :class:`~isoformer_cli.genomics.genome.Genome` interface that pickles (each worker
            process uses its own copy; a ``Genome`` reopens its file handle after a fork).
        settings: :class:`TokenizerSettings`.
        chunk_size: rows per chunk.
        start_row: rows already written (``--resume``): they are skipped, and chunks start after them
            (whatever chunk size the interrupted run used).
        rank, world_size: this process's place among torchrun ranks.
        dedupe: share identical inputs within a chunk.
    """

    def __init__(self, source, genome, settings, chunk_size, start_row=0, rank=0, world_size=1, dedupe=True):
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.source = source
        self.genome = genome
        self.settings = settings
        self.chunk_size = chunk_size
        self.start_row = start_row
        self.rank = rank
        self.world_size = world_size
        self.dedupe = dedupe

    def __iter__(self):
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        if self.rank != 0 or worker_id != 0:
            # Every worker of every rank reads the whole stream; one of them reports its warnings.
            logging.getLogger("isoformer_cli").setLevel(logging.ERROR)
        try:
            yield from self._chunks(worker_id, num_workers)
        except IsoformerError as error:
            yield PreparedChunk(index=-1, error=error)

    def _chunks(self, worker_id, num_workers):
        genome = self.genome
        pending, chunk_index = [], 0
        for row, triple in enumerate(iter_triples(self.source, genome)):
            if row < self.start_row:
                continue
            pending.append(triple)
            if len(pending) == self.chunk_size:
                result = self._maybe_prepare(chunk_index, pending, genome, worker_id, num_workers)
                if result is not None:
                    yield result
                pending, chunk_index = [], chunk_index + 1
        if pending:
            result = self._maybe_prepare(chunk_index, pending, genome, worker_id, num_workers)
            if result is not None:
                yield result

    def owner(self, chunk_index, num_workers=1):
        """``(rank, worker)`` that prepares chunk ``chunk_index`` (counted from ``start_row``).

        Chunk ``i`` belongs to rank ``i % world_size``; within a rank, its ``j``-th chunk to worker
        ``j % num_workers``, so worker 0 always holds the rank's next chunk, as the DataLoader's round-robin
        expects.
        """
        rank = chunk_index % self.world_size
        return rank, (chunk_index // self.world_size) % num_workers

    def _maybe_prepare(self, chunk_index, triples, genome, worker_id, num_workers):
        if self.owner(chunk_index, num_workers) != (self.rank, worker_id):
            return None
        return prepare_chunk(chunk_index, triples, genome, self.settings, self.dedupe)
