"""Scoring variants with IsoFormer: alternative triples per (allele, transcript), encoded once, fused per row.

Coordinates: 0-based half-open genomic inside; VCF ``POS`` (1-based) only in records and outputs.

The VCF streams in chunks of ``chunk_size`` records (the unit of writing, resuming and torchrun ranks,
as transcripts are for ``predict``). For each chunk a DataLoader worker (:class:`VariantChunkDataset`):

1. checks each record (contig, REF against the genome, the allele's letters and length) and gives every
   allele that cannot be scored a status code (:mod:`isoformer_cli.genomics.vcf`);
2. finds the transcripts each allele affects (:mod:`isoformer_cli.triples.affected`; with ``--shard K/N``
   only the transcripts of the shard's genes) and builds their alternative triples and consequences
   (:mod:`isoformer_cli.triples.variants`, :mod:`isoformer_cli.triples.consequence`);
3. decides which inputs the allele changes *visibly*: what the checkpoint's encoders read, after the RNA and
   protein truncation policies (:func:`~isoformer_cli.inference.prepare.model_tokens`, the rule behind
   ``predict``'s ``rna_truncated`` / ``protein_truncated``): the DNA window when the allele lies in it, the RNA
   tokens and protein residues kept. An input that changes only where the model does not read (a missense past
   the residues kept, a 3' UTR variant past the RNA tokens kept, a modality the checkpoint lacks) is not a model
   input change: it gets the truncation flag of its modality, and an (allele, transcript) with no visible change
   gets status ``not_visible`` and no score (NaN), never a zero effect;
4. lays out model rows for the three attribution stages of each (allele, transcript): alternative DNA with
   the reference RNA and protein, then with the alternative RNA, then with the alternative protein too. A
   stage that changes nothing visible reuses the previous one (an intronic SNV is one row; an exonic SNV far
   from the TSS starts from the reference prediction), identical rows and identical DNA windows, RNAs and
   proteins are shared, so each distinct input is encoded once per chunk;
5. prepares the reference rows of every gene touched (all its isoforms, for the isoform share).

The main process (:class:`VariantScorer`) predicts each gene's reference rows once, in one call per gene
(so its numbers do not depend on which chunk or rank asked first, and a resumed run writes the same
values), keeps them while the chunks still touch the gene, predicts the chunk's alternative rows, and
computes the scores of :class:`ScoredChunk`.

Memory: a chunk of ``chunk_size`` VCF records can hold many more model rows than records (every affected
isoform, up to three stages each). The scorer therefore predicts a chunk's rows in pieces of at most the
memory plan's rows per chunk (:mod:`~isoformer_cli.inference.memory_plan`, the number of isoforms whose
encoder outputs fit beside the batches), as ``predict`` does with its chunks of transcripts.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from isoformer_cli.errors import ContigError, InputError, IsoformerError
from isoformer_cli.formats.gene_summary import isoform_usage
from isoformer_cli.genomics import vcf as V
from isoformer_cli.genomics.contigs import ContigAliases
from isoformer_cli.genomics.flags import PROTEIN_TRUNCATED, RNA_TRUNCATED
from isoformer_cli.inference.prepare import (
    ChunkDataset,
    PreparedChunk,
    _Distinct,
    model_tokens,
    prepare_chunk,
)
from isoformer_cli.triples.affected import TranscriptIndex, affects
from isoformer_cli.triples.consequence import consequence
from isoformer_cli.triples.dna_window import fetch_window
from isoformer_cli.triples.variants import (
    Allele,
    TssDeleted,
    alternative_triple,
    alternative_window,
)

log = logging.getLogger(__name__)

REFERENCE = -1  # a stage row equal to the reference prediction


@dataclass(frozen=True)
class VariantOptions:
    """What the dataset needs beyond the runner: the VCF, the longest allele scored, VCF records per chunk
    (``--chunk-size``: the unit of writing, resuming and torchrun ranks), whether to keep the alternative
    sequences (``--alt-triples``)."""

    vcf: str
    max_indel: int
    records_per_chunk: int = 64
    keep_sequences: bool = False


@dataclass
class Pair:
    """One scored (allele, transcript) of a chunk.

    Attributes:
        record: index of its record in the chunk; ``allele``: 1-based ALT number; ``alt``: the ALT text.
        transcript_id, gene_id, gene_name, biotype, strand: the transcript.
        gene_key: key of its gene in :attr:`VariantChunk.genes`; ``isoform``: its row there.
        consequence, amino_acids: csq-style terms (``&``-joined) and amino-acid change.
        inputs: which inputs differ from the reference *as the model reads them* (subset of dna, rna,
            protein; module docstring, step 3).
        flags: ``splice`` (junction change not modelled), ``start_lost`` (no protein), ``rna_truncated`` /
            ``protein_truncated`` (that input changed, but only where the truncation policy cut it), and the
            transcript's own flags.
        stages: rows of the chunk's alternative :class:`PreparedChunk` for the three stages, or
            :data:`REFERENCE`.
        unseen: the inputs that changed where the model does not read them (dna when the checkpoint has no
            DNA encoder, and so on).
        status: :data:`~isoformer_cli.genomics.vcf.NOT_VISIBLE` when no input changed visibly (no score),
            else None.
        window_start, window_end: the alternative DNA window (0-based half-open, alternative genome).
        rna, protein: the alternative sequences (only with ``keep_sequences``).
    """

    record: int
    allele: int
    alt: str
    transcript_id: str
    gene_id: str
    gene_name: str
    biotype: str
    strand: str
    gene_key: str
    isoform: int
    consequence: str
    amino_acids: str
    inputs: Tuple[str, ...]
    flags: Tuple[str, ...]
    stages: Tuple[int, int, int]
    window_start: int
    window_end: int
    rna: Optional[str] = None
    protein: Optional[str] = None
    unseen: Tuple[str, ...] = ()
    status: Optional[str] = None


@dataclass
class VariantChunk:
    """The prepared work of one chunk of VCF records.

    Attributes:
        index: chunk number; ``records``: the chunk's VcfRecord objects, in file order.
        statuses: per record, ``(allele number or 0, transcript id or '.', status code)`` of what was not
            scored.
        pairs: the scored (allele, transcript) pairs, record by record.
        genes: gene key -> :class:`PreparedChunk` of the reference rows of all its isoforms.
        alt: :class:`PreparedChunk` of the alternative rows.
        gene_ends: gene key -> end of its span (0-based exclusive), for dropping cached predictions.
        frontier: ``(genome contig, 0-based position)`` of the chunk's last record (None when none resolved).
        first_allele: ALT alleles in the VCF before the chunk's first record (the *allele ordinal* of its first
            ALT: ALT alleles counted from 0 in file order, which a shard's tables record for ``isoformer merge``).
        error: a typed error raised while preparing.
    """

    index: int
    records: list = field(default_factory=list)
    statuses: List[list] = field(default_factory=list)
    pairs: List[Pair] = field(default_factory=list)
    genes: Dict[str, PreparedChunk] = field(default_factory=dict)
    gene_ends: Dict[str, int] = field(default_factory=dict)
    frontier: Optional[Tuple[str, int]] = None
    first_allele: int = 0
    alt: Optional[PreparedChunk] = None
    error: Optional[IsoformerError] = None

    def __len__(self):
        return len(self.records)


class _Rows:
    """Distinct model rows ``(dna key, rna, protein)`` and the distinct inputs they point at."""

    def __init__(self, settings, dedupe):
        self.settings = settings
        self.dedupe = dedupe
        self.rows = {}
        self.dna, self.rna, self.protein = _Distinct(dedupe), _Distinct(dedupe), _Distinct(dedupe)
        self.of_row = ([], [], [])
        self._read = {}  # (modality, sequence) -> what the model reads of it, for the visibility test

    def visible_change(self, modality, reference, alternative, name):
        """``(changed visibly, changed unseen)`` of one RNA or protein input: whether the token ids the model
        reads differ between ``reference`` and ``alternative``, and whether the sequences differ only where the
        truncation policy cut them (or the checkpoint lacks the modality)."""
        if reference == alternative:
            return False, False
        tokenizer = getattr(self.settings, modality)
        read = []
        for sequence in (reference, alternative):
            key = (modality, sequence)
            if key not in self._read:
                self._read[key] = model_tokens(sequence, tokenizer, name)[0]
            read.append(self._read[key])
        ref_ids, alt_ids = read
        same = (ref_ids is None and alt_ids is None) or (
            ref_ids is not None and alt_ids is not None and np.array_equal(ref_ids, alt_ids))
        return not same, same

    def row(self, dna_key, dna_sequence, rna, protein, name):
        key = (dna_key, rna, protein)
        if self.dedupe and key in self.rows:
            return self.rows[key]
        settings = self.settings
        dna_of = self.dna.index(dna_key, lambda: settings.dna.encode(dna_sequence(), name)) \
            if settings.dna is not None else -1
        rna_of = self.rna.index(rna, lambda: settings.rna.encode(rna, name)) \
            if rna and settings.rna is not None else -1
        protein_of = self.protein.index(protein, lambda: settings.protein.encode(protein, name)) \
            if protein and settings.protein is not None else -1
        for column, value in zip(self.of_row, (dna_of, rna_of, protein_of)):
            column.append(value)
        position = len(self.of_row[0]) - 1
        self.rows[key] = position
        return position

    def prepared(self, index):
        chunk = PreparedChunk(index=index, obs=[{}] * len(self.of_row[0]))
        chunk.dna_tokens = [ids for ids, _ in self.dna.values]
        chunk.rna_tokens = [ids for ids, _ in self.rna.values]
        chunk.protein_tokens = [ids for ids, _ in self.protein.values]
        chunk.dna_of_row, chunk.rna_of_row, chunk.protein_of_row = (np.asarray(column, dtype=np.int64)
                                                                    for column in self.of_row)
        return chunk


def ref_matches(genome_bases, ref):
    """True when REF equals the genome, a genome letter other than A/C/G/T matching any REF base."""
    if len(genome_bases) != len(ref):
        return False
    return all(g == r or g not in "ACGT" for g, r in zip(genome_bases, ref))


class VariantChunkDataset(ChunkDataset):
    """Yields the :class:`VariantChunk` objects this rank and worker own (ownership as in ``predict``): chunks
    of ``options.records_per_chunk`` records, counted from the first record after ``start_row``.

    Args:
        runner: the :class:`~isoformer_cli.inference.runner.ModelRunner` (source, genome, settings, chunks).
        start_row: records already written (``--resume``).
        options: :class:`VariantOptions`.
    """

    def __init__(self, runner, start_row, options):
        super().__init__(runner.source, runner.genome, runner.settings, options.records_per_chunk,
                         start_row=start_row,
                         rank=runner.group.rank, world_size=runner.group.world_size, dedupe=runner.dedupe)
        self.options = options

    def _chunks(self, worker_id, num_workers):
        genome = self.genome
        aliases = ContigAliases(genome.contigs, alias_file=self.source.contig_alias)
        index = TranscriptIndex(self.source, genome, aliases)
        reader = V.VcfReader(self.options.vcf)
        check_header_contigs(reader, aliases)
        state = {"contig": None, "sweep": None, "resolved": 0, "records": 0, "alleles": 0}
        pending, chunk_index = [], 0
        try:
            for row, record in enumerate(reader):
                if row < self.start_row:
                    # Written by the interrupted run (--resume); counted for the contig check all the same.
                    state["records"] += 1
                    state["resolved"] += aliases.resolve(record.chrom) is not None
                    state["alleles"] += len(record.alts)
                    continue
                pending.append(record)
                if len(pending) == self.chunk_size:
                    yield from self._maybe(chunk_index, pending, index, aliases, state, worker_id, num_workers)
                    pending, chunk_index = [], chunk_index + 1
            if pending:
                yield from self._maybe(chunk_index, pending, index, aliases, state, worker_id, num_workers)
        finally:
            reader.close()
        if state["records"] and not state["resolved"]:
            raise ContigError(
                f"{reader.label}: no contig of the VCF is in the genome FASTA ({', '.join(genome.contigs[:5])}), even "
                "through the chr1<->1 / chrM<->MT rules; check that both are from the same assembly or give "
                "--contig-alias FILE")

    def _maybe(self, chunk_index, records, index, aliases, state, worker_id, num_workers):
        # Every worker counts contigs (for the no-contig-in-common check) and alleles; only the owner prepares.
        first_allele = state["alleles"]
        for record in records:
            state["records"] += 1
            state["alleles"] += len(record.alts)
            if aliases.resolve(record.chrom) is not None:
                state["resolved"] += 1
        if self.owner(chunk_index, num_workers) != (self.rank, worker_id):
            return
        yield self._prepare(chunk_index, records, index, aliases, state, first_allele)

    def _prepare(self, chunk_index, records, index, aliases, state, first_allele):
        genome, settings = self.genome, self.settings
        dna_length = self.source.dna_length
        chunk = VariantChunk(index=chunk_index, records=list(records), first_allele=first_allele)
        rows = _Rows(settings, self.dedupe)
        touched = {}  # gene key -> its reference triples, in order of first use
        for position, record in enumerate(records):
            statuses = []
            chunk.statuses.append(statuses)
            contig = aliases.resolve(record.chrom)
            if contig is None:
                statuses.extend((number, ".", V.CONTIG_MISSING) for number in range(1, len(record.alts) + 1))
                continue
            if not record.alts:
                statuses.append((0, ".", V.MISSING_ALT))
                continue
            record_status = None
            length = genome.length(contig)
            if record.start + len(record.ref) > length:
                record_status = V.CONTIG_END
            elif not ref_matches(genome.fetch(contig, record.start, record.start + len(record.ref)), record.ref):
                record_status = V.REF_MISMATCH
            chunk.frontier = (contig, record.start)
            if contig != state["contig"]:
                state["contig"], state["sweep"] = contig, index.sweep(contig)
            sweep = state["sweep"]
            genes = sweep.genes_at(record.start, record.start + max(len(record.ref), 1)) if not record_status else []
            for number, alt in enumerate(record.alts, 1):
                status = record_status or V.allele_status(record.ref, alt, self.options.max_indel)
                if status:
                    statuses.append((number, ".", status))
                    continue
                allele = Allele(contig, record.start, record.ref, alt)
                for gene in genes:
                    triples = sweep.triples_of(gene)
                    for isoform, triple in enumerate(triples):
                        if not affects(triple, allele):
                            continue
                        try:
                            alternative = alternative_triple(triple, allele, genome, dna_length)
                        except TssDeleted:
                            statuses.append((number, triple.transcript.transcript_id, V.TSS_DELETED))
                            continue
                        touched.setdefault(_gene_name(gene.key), triples)
                        chunk.gene_ends[_gene_name(gene.key)] = gene.end
                        pair = self._pair(position, number, allele, gene, isoform, triple, alternative, rows)
                        chunk.pairs.append(pair)
                        if pair.status:
                            statuses.append((number, triple.transcript.transcript_id, pair.status))
        for key, triples in touched.items():
            chunk.genes[key] = prepare_chunk(-1, triples, genome, settings, self.dedupe)
        chunk.alt = rows.prepared(chunk_index)
        return chunk

    def _pair(self, position, number, allele, gene, isoform, triple, alternative, rows):
        transcript = triple.transcript
        csq = consequence(triple, allele)
        genome = self.genome
        name = transcript.transcript_id
        ref_dna_key = ("ref", triple.genome_chrom, triple.window_start, triple.window_end, transcript.strand)

        def ref_window():
            return fetch_window(genome, triple.genome_chrom, triple.window_start, triple.window_end, transcript.strand)

        # What the model reads (module docstring, step 3): the DNA window when the checkpoint has a DNA
        # encoder, the RNA tokens and protein residues its truncation policies keep.
        dna_visible = alternative.dna_changed and self.settings.dna is not None
        dna_unseen = alternative.dna_changed and not dna_visible
        rna_visible, rna_unseen = rows.visible_change("rna", triple.rna, alternative.rna, name)
        protein_visible, protein_unseen = rows.visible_change("protein", triple.protein, alternative.protein, name)
        if dna_visible:
            dna_key = ("alt", allele, alternative.window_start, alternative.window_end, transcript.strand)

            def dna_sequence():
                return alternative_window(genome, allele, alternative, transcript.strand)
        else:
            dna_key, dna_sequence = ref_dna_key, ref_window
        # A stage whose input the model does not see changed keeps the previous stage's row; the sequences
        # given are the reference ones there, so rows of equal model inputs are shared.
        rna = alternative.rna if rna_visible else triple.rna
        first = rows.row(dna_key, dna_sequence, triple.rna, triple.protein, name) if dna_visible else REFERENCE
        second = rows.row(dna_key, dna_sequence, rna, triple.protein, name) if rna_visible else first
        third = rows.row(dna_key, dna_sequence, rna, alternative.protein, name) if protein_visible else second
        inputs = tuple(name for name, changed in (("dna", dna_visible), ("rna", rna_visible),
                                                  ("protein", protein_visible)) if changed)
        unseen = tuple(name for name, changed in (("dna", dna_unseen), ("rna", rna_unseen),
                                                  ("protein", protein_unseen)) if changed)
        flags = set(triple.flags)
        # The truncation flag of an input changed only where the model does not read it (not for a modality
        # the checkpoint lacks: nothing was truncated there).
        if rna_unseen and self.settings.rna is not None:
            flags.add(RNA_TRUNCATED)
        if protein_unseen and self.settings.protein is not None:
            flags.add(PROTEIN_TRUNCATED)
        if csq.splice:
            flags.add("splice")
        if alternative.start_lost and triple.protein:
            flags.add("start_lost")
        keep = self.options.keep_sequences
        return Pair(
            record=position, allele=number, alt=allele.alt, transcript_id=transcript.transcript_id,
            gene_id=transcript.gene_id, gene_name=transcript.gene_name, biotype=transcript.biotype,
            strand=transcript.strand, gene_key=_gene_name(gene.key), isoform=isoform, consequence=csq.name,
            amino_acids=csq.amino_acids, inputs=inputs, flags=tuple(sorted(flags)), stages=(first, second, third),
            window_start=alternative.window_start, window_end=alternative.window_end,
            rna=alternative.rna if keep else None, protein=alternative.protein if keep else None,
            unseen=unseen, status=None if inputs else V.NOT_VISIBLE,
        )


def _gene_name(key):
    """A gene key as a string (the contig and the gene id), usable as a dict key after pickling."""
    return f"{key[0]}\t{key[1]}"


def check_header_contigs(reader, aliases):
    """ContigError at once when the header declares contigs and none is in the genome."""
    declared = reader.header_contigs
    if declared and all(aliases.resolve(name) is None for name in declared):
        raise ContigError(
            f"{reader.label}: no contig of the VCF header ({', '.join(declared[:5])}) is in the genome FASTA "
            f"({', '.join(aliases.target_contigs[:5])}), even through the chr1<->1 / chrM<->MT rules; check that "
            "both are from the same assembly or give --contig-alias FILE")


@dataclass
class ScoredChunk:
    """Scores of one chunk's pairs (rows in the order of :attr:`VariantChunk.pairs`).

    Rows of pairs with status ``not_visible`` hold NaN in every array but ``ref``: the model cannot score them.

    Attributes:
        ref, alt: ``(n_pairs, n_tissues)`` float32 reference and alternative predictions.
        dna, dna_rna: ``(n_pairs, n_tissues)`` predictions of the first two stages (alternative DNA;
            alternative DNA and RNA).
        share_delta: ``(n_pairs, n_tissues)`` float32 change of the isoform's share of its gene (NaN where
            the gene has no expression, or the units are not log(TPM+1)).
    """

    ref: np.ndarray
    alt: np.ndarray
    dna: np.ndarray
    dna_rna: np.ndarray
    share_delta: np.ndarray


class VariantScorer:
    """Runs the model over :class:`VariantChunk` objects in the main process (see the module docstring).

    Args:
        predictor: the runner's :class:`~isoformer_cli.inference.engine.ChunkPredictor`.
        n_tissues: outputs per row.
        log1p_units: the checkpoint predicts log(TPM+1) (the isoform share is computed on TPM).
    """

    def __init__(self, predictor, n_tissues, log1p_units=True):
        self.predictor = predictor
        self.n_tissues = n_tissues
        self.log1p_units = log1p_units
        # Rows whose encoder outputs the memory plan lets one predict call hold at once.
        self.rows_per_call = max(1, predictor.limits.chunk_size)
        self.reference = {}
        self.ends = {}
        self.reference_predictions = 0

    def __call__(self, chunk):
        return self.score(chunk)

    def score(self, chunk):
        """The :class:`ScoredChunk` of ``chunk``."""
        kept = {}
        for key, gene_chunk in chunk.genes.items():
            predictions = self.reference.get(key)
            if predictions is None:
                predictions = self._predict(gene_chunk)
                self.reference_predictions += len(gene_chunk)
            kept[key] = predictions
        self.ends.update(chunk.gene_ends)
        # Keep a gene while later records (positions only grow along a contig) may still reach it.
        if chunk.frontier is not None:
            contig, position = chunk.frontier
            for key, predictions in self.reference.items():
                if key not in kept and key.split("\t", 1)[0] == contig and self.ends.get(key, 0) > position:
                    kept[key] = predictions
        self.reference = kept
        self.ends = {key: self.ends[key] for key in kept}
        empty = np.zeros((0, self.n_tissues), dtype=np.float32)
        alt_rows = self._predict(chunk.alt) if chunk.alt is not None and len(chunk.alt) else empty
        n_pairs = len(chunk.pairs)
        ref = np.zeros((n_pairs, self.n_tissues), dtype=np.float32)
        stages = [np.zeros_like(ref) for _ in range(3)]
        for row, pair in enumerate(chunk.pairs):
            ref[row] = kept[pair.gene_key][pair.isoform]
            for stage, index in zip(stages, pair.stages):
                stage[row] = ref[row] if index == REFERENCE else alt_rows[index]
        # The isoform share of a gene uses every isoform's prediction; an isoform whose inputs the model reads
        # unchanged keeps its reference value there (its stages are REFERENCE), and only then is masked.
        share = self._share_delta(chunk, kept, stages[2])
        hidden = [row for row, pair in enumerate(chunk.pairs) if pair.status]
        for array in (*stages, share):
            array[hidden] = np.nan
        return ScoredChunk(ref=ref, alt=stages[2], dna=stages[0], dna_rna=stages[1], share_delta=share)

    def _predict(self, prepared):
        """``(len(prepared), n_tissues)`` predictions of a :class:`PreparedChunk`, in pieces of at most
        ``rows_per_call`` rows (see the module docstring)."""
        if len(prepared) <= self.rows_per_call:
            return self.predictor.predict(prepared).predictions
        return np.concatenate([self.predictor.predict(prepared.rows(start, start + self.rows_per_call)).predictions
                               for start in range(0, len(prepared), self.rows_per_call)])

    def _share_delta(self, chunk, reference, alt):
        share = np.full((len(chunk.pairs), self.n_tissues), np.nan, dtype=np.float32)
        if not self.log1p_units:
            return share
        groups = {}
        for row, pair in enumerate(chunk.pairs):
            groups.setdefault((pair.record, pair.allele, pair.gene_key), []).append(row)
        for (_, _, key), members in groups.items():
            ref_all = np.asarray(reference[key], dtype=np.float64)
            alt_all = ref_all.copy()
            for row in members:
                alt_all[chunk.pairs[row].isoform] = alt[row]
            genes = ["gene"] * len(ref_all)
            _, _, ref_usage = isoform_usage(genes, ref_all)
            _, _, alt_usage = isoform_usage(genes, alt_all)
            for row in members:
                isoform = chunk.pairs[row].isoform
                share[row] = (alt_usage[isoform] - ref_usage[isoform]).astype(np.float32)
        return share


def check_max_indel(value):
    """``value`` when it is a whole number of at least 1; InputError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"--max-indel must be a whole number of bases, at least 1, not {value!r}")
    return value
