"""Which transcripts an allele affects, found by a sweep along each contig of a position-sorted VCF.

Coordinates: 0-based half-open genomic (forward strand), as in :mod:`isoformer_cli.genomics.records`.

A transcript is affected by an allele when the allele lies in its DNA window (the model's length around
the TSS) or changes one of its exons (an exon base replaced, or an insertion strictly inside an exon: the
RNA changes even where a short window, such as the demo model's 2 kb, does not reach). Alleles outside
both change none of the transcript's inputs and give no row.

Genes are the unit of the index, because the isoform-share score needs the reference prediction of every
isoform of a gene: a gene is the ``gene_id`` (or, without one, the transcript itself) on one contig, and
its span is the union of its transcripts' windows and exons. :class:`GeneSweep` walks the genes of a
contig in span order while the VCF's positions increase, building each gene's reference triples when it
first becomes active and dropping them once the sweep has passed it, so memory holds the genes around the
current position only; the annotation's transcript models are held for the whole run.

Sharding (``--shard K/N``): the index keeps only the genes of the source's shard (by the gene key and hash of
:mod:`isoformer_cli.genomics.shards`, so a gene's isoforms stay together and its isoform shares stay whole).
Every gene still gets its *rank*, computed before the shard is applied: the position of its first transcript
in the single run's sweep order (contigs in the order the annotation first names them, genes by span start
then annotation order, isoforms in annotation order), so transcript ``i`` of a gene has rank ``rank + i``.
Within one VCF record an unsharded run meets (allele, transcript) pairs in allele order, then rank order;
:func:`shared_transcripts` lists the transcripts whose ranks a shard must record so that ``isoformer merge``
can interleave the shards' entries of one record (:mod:`isoformer_cli.formats.variant_shards`).
"""

import collections
import logging
from dataclasses import dataclass
from typing import Dict, List, Tuple

from isoformer_cli.genomics.annotation import read_annotation
from isoformer_cli.genomics.contigs import ContigAliases, ContigMatcher
from isoformer_cli.genomics.shards import gene_key, shard_of
from isoformer_cli.genomics.vcf import VcfReader
from isoformer_cli.triples.builder import TripleBuilder
from isoformer_cli.triples.dna_window import transcription_start_site, window_span
from isoformer_cli.triples.variants import overlaps_window

log = logging.getLogger(__name__)


@dataclass
class Gene:
    """The transcripts of one gene on one contig, in annotation order.

    Attributes:
        key: ``(genome contig, gene_id or transcript_id)``.
        transcripts: Transcript objects.
        start, end: the span (union of windows and exons), 0-based half-open; may reach past contig ends.
        order: position of the gene's first transcript in the annotation (for stable output order).
        rank: sweep rank of its first transcript among all selected genes, before any shard (module
            docstring); its transcripts have ranks ``rank``, ``rank + 1``, ...
    """

    key: Tuple[str, str]
    transcripts: list
    start: int
    end: int
    order: int
    rank: int = 0


class TranscriptIndex:
    """The selected transcripts of an annotation, grouped into genes per genome contig.

    Args:
        source: a :class:`~isoformer_cli.triples.source.TripleSource` with an annotation (its window
            length is the model's).
        genome: the open genome.
        aliases: a :class:`~isoformer_cli.genomics.contigs.ContigAliases` for the genome.
        all_shards: keep every selected gene, ignoring the source's ``--shard`` (to rank them all).

    Attributes:
        genes: genome contig -> its kept genes in sweep order (span start, then annotation order).
        transcript_count: transcripts kept.
    """

    def __init__(self, source, genome, aliases=None, all_shards=False):
        self.source = source
        self.genome = genome
        self.aliases = aliases or ContigAliases(genome.contigs, alias_file=source.contig_alias)
        self.shard = None if all_shards else source.own_shard()
        self.genes: Dict[str, List[Gene]] = {}
        self.transcript_count = 0
        self._read()

    def _read(self):
        source = self.source
        selection = source.selection()
        selection.check_region(self.aliases)
        matcher = ContigMatcher(self.aliases, annotation_label=source.label)
        by_gene = collections.OrderedDict()
        reader = read_annotation(source.annotation)
        for order, transcript in enumerate(selection.filter(reader, aliases=self.aliases)):
            contig = matcher.resolve(transcript.chrom)
            if contig is None:
                continue
            key = (contig, gene_key(transcript.gene_id, transcript.transcript_id))
            by_gene.setdefault(key, (order, []))[1].append(transcript)
        matcher.finish()
        selection.report_unmatched(annotation_label=source.label)
        for key, (order, transcripts) in by_gene.items():
            start, end = None, None
            for transcript in transcripts:
                window = window_span(transcription_start_site(transcript), transcript.strand, source.dna_length)
                low, high = min(window[0], transcript.start), max(window[1], transcript.end)
                start = low if start is None else min(start, low)
                end = high if end is None else max(end, high)
            self.genes.setdefault(key[0], []).append(Gene(key, transcripts, start, end, order))
        rank = 0
        for contig, genes in self.genes.items():
            genes.sort(key=lambda gene: (gene.start, gene.order))
            for gene in genes:
                gene.rank = rank
                rank += len(gene.transcripts)
            # The shard applies after ranking, so ranks are those of the unsharded run.
            if self.shard is not None:
                self.genes[contig] = genes = [gene for gene in genes if self.shard.holds(gene.key[1])]
            self.transcript_count += sum(len(gene.transcripts) for gene in genes)

    def sweep(self, contig):
        """A :class:`GeneSweep` over the genes of genome ``contig`` (empty when it has none)."""
        return GeneSweep(self.genes.get(contig, []), TripleBuilder(self.genome, self.source.build_options()))


class GeneSweep:
    """Genes overlapping increasing positions of one contig, with their reference triples built once.

    Call :meth:`genes_at` with non-decreasing positions; :meth:`triples_of` builds a returned gene's
    reference triples (one per transcript, annotation order) on first use. ``builder`` may be None for a
    sweep that only asks which genes overlap.
    """

    def __init__(self, genes, builder):
        self.genes = genes
        self.builder = builder
        self.next = 0
        self.active: List[Gene] = []
        self.triples: Dict[tuple, list] = {}

    def genes_at(self, start, end):
        """Genes whose span overlaps ``[start, end)`` (``end > start``), in span order."""
        while self.next < len(self.genes) and self.genes[self.next].start < end:
            self.active.append(self.genes[self.next])
            self.next += 1
        kept = [gene for gene in self.active if gene.end > start]
        if len(kept) != len(self.active):
            for gene in self.active:
                if gene.end <= start:
                    self.triples.pop(gene.key, None)
            self.active = kept
        return [gene for gene in self.active if gene.start < end]

    def triples_of(self, gene):
        """The reference triples of ``gene``'s transcripts (built on first use)."""
        triples = self.triples.get(gene.key)
        if triples is None:
            contig = gene.key[0]
            triples = self.triples[gene.key] = [self.builder.build(transcript, contig)
                                                for transcript in gene.transcripts]
        return triples


def affects(triple, allele):
    """True when ``allele`` changes an input of ``triple``: inside its DNA window or changing an exon."""
    if overlaps_window(triple, allele):
        return True
    start, end, _ = allele.minimal()
    for exon_start, exon_end in triple.transcript.exons:
        if (start < exon_end and end > exon_start) if start < end else (exon_start < start < exon_end):
            return True
    return False



def shared_transcripts(index, vcf, shard):
    """The transcripts of ``shard`` that one VCF record can reach together with a gene of another shard.

    A run scores an allele only on genes whose span overlaps its record (:meth:`GeneSweep.genes_at`), so
    only in such records do two shards both write entries, which ``isoformer merge`` must interleave by
    rank; elsewhere one shard's entries of a record are the whole record's. This sweep repeats the
    scoring run's geometry over every selected gene (no triple is built), for every record whose contig is
    in the genome and that has an ALT allele (a superset of the records scored).

    Args:
        index: a :class:`TranscriptIndex` of every shard (``all_shards=True``).
        vcf: path of the (position-sorted) VCF.
        shard: the run's :class:`~isoformer_cli.genomics.shards.Shard`.

    Returns ``{VCF CHROM as written: {(rank, transcript_id), ...}}``.
    """
    shared = collections.defaultdict(set)
    owners = {}  # gene key -> its shard (hashed once)
    sweep, current = None, None
    with VcfReader(vcf) as reader:
        for record in reader:
            contig = index.aliases.resolve(record.chrom)
            if contig is None or not record.alts:
                continue
            if contig != current:
                sweep, current = GeneSweep(index.genes.get(contig, []), None), contig
            genes = sweep.genes_at(record.start, record.start + max(len(record.ref), 1))
            for gene in genes:
                if gene.key not in owners:
                    owners[gene.key] = shard_of(gene.key[1], shard.count)
            shards = {owners[gene.key] for gene in genes}
            if len(shards) < 2 or shard.index not in shards:
                continue
            for gene in genes:
                if owners[gene.key] == shard.index:
                    shared[record.chrom].update((gene.rank + isoform, transcript.transcript_id)
                                                for isoform, transcript in enumerate(gene.transcripts))
    return dict(shared)
