"""The examples a fine-tuning run learns from: the selected triples that have expression, and their split.

* :func:`load_examples`: triples (annotation or triples table) matched to the expression table by
  transcript id; transcripts without expression are dropped (both sides' unmatched ids are logged).
* :func:`check_lengths`: with a truncation policy of ``error``, a too-long RNA or protein is found before
  anything is written, not mid-training.
* :func:`split_examples`: the train / validation / test split (:mod:`isoformer_cli.training.splits`) as row
  numbers per split.

Example ``i`` is ``triples[i]`` with targets ``targets[i]``: float32, shape (n_examples, n_tissues), column
``j`` for ``tissues[j]`` (the table's order), in log(TPM + 1) (or the table's own values with ``--values
log1p``). Split rows are int64 indices into the examples, ascending.
"""

import logging
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.genomics.transcript_match import match_transcripts, require_overlap
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.training.splits import SPLITS, SplitMember, SplitSpec, assign_splits, split_counts
from isoformer_cli.triples.source import iter_triples

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Triples with expression (see the module docstring for shapes), and the genome they were cut from."""

    genome: Genome
    triples: list
    targets: np.ndarray
    tissues: List[str]

    def genes(self, rows):
        """The gene of each of ``rows`` (a transcript without a gene id is its own gene)."""
        return [self.triples[row].transcript.gene_id or self.triples[row].transcript.transcript_id for row in rows]


def load_examples(source, expression):
    """The :class:`Examples` of ``source`` (a TripleSource) that ``expression`` (an ExpressionInput) covers.

    Raises InputError when no transcript is selected or too few match the table.
    """
    genome = Genome(source.genome)
    triples = list(iter_triples(source, genome))
    if not triples:
        raise InputError(f"{source.label}: no transcript selected; check the selection options")
    ids = [triple.transcript.transcript_id for triple in triples]
    table = expression.read(keep=ids)
    for note in table.notes:
        log.info("%s", note)
    match = match_transcripts(ids, table)
    require_overlap(match, table, ids, source.label)
    log.info("%s", match.describe(transcripts_label="selected transcripts"))
    kept = np.flatnonzero(match.rows >= 0)
    return Examples(genome=genome, triples=[triples[i] for i in kept],
                    targets=table.values[match.rows[kept]].astype(np.float32), tissues=list(table.tissues))


def check_lengths(examples, model_config, rna_truncation, protein_truncation):
    """With a truncation policy of ``error``, raise now for a sequence longer than the model takes."""
    policies = {"rna": rna_truncation, "protein": protein_truncation}
    for modality, policy in policies.items():
        if policy != "error" or modality not in model_config.modalities:
            continue
        tokenizer = model_config.encoder(modality).tokenizer(model_config, "error")
        for triple in examples.triples:
            sequence = getattr(triple, modality)
            if sequence:
                tokenizer.encode(sequence, triple.transcript.transcript_id)


@dataclass(frozen=True)
class ExampleSplit:
    """The split of the examples.

    Attributes:
        spec: how they were split (its seed is the training seed).
        members: what the split saw of each example (written to split.tsv).
        names: each example's split, ``"train"``, ``"val"`` or ``"test"``.
        rows: split name -> the examples in it (int64, ascending).
    """

    spec: SplitSpec
    members: List[SplitMember]
    names: List[str]
    rows: Dict[str, np.ndarray]


def split_examples(examples, spec):
    """Split ``examples`` by ``spec`` (a SplitSpec); logs the counts, and warns without validation examples."""
    members = [SplitMember(t.transcript.transcript_id, t.transcript.gene_id, t.transcript.chrom, t.genome_chrom)
               for t in examples.triples]
    names = assign_splits(members, spec)
    rows = {name: np.array([i for i, s in enumerate(names) if s == name], dtype=np.int64) for name in SPLITS}
    counts = split_counts(names)
    log.info("split %s: %d train, %d validation, %d test transcripts",
             "by chromosome" if spec.by_chromosome else "by gene", counts["train"], counts["val"], counts["test"])
    if counts["val"] == 0:
        log.warning("no validation transcripts: no early stopping and no best/ checkpoint")
    return ExampleSplit(spec=spec, members=members, names=names, rows=rows)


def check_validation(examples, val_rows, spec):
    """InputError, before anything is written, when a validation split cannot give a Spearman.

    Early stopping and ``best/`` follow the validation Spearman: the mean over tissues of the rank correlation
    across the validation transcripts, defined in a tissue only when it has at least two transcripts whose
    observed values differ there. A split with fewer than two transcripts, or whose observed values are the same
    in every tissue, would train to the end without ever choosing a best epoch. An empty validation split is
    allowed (no early stopping, no ``best/``; :func:`split_examples` warns).
    """
    count = len(val_rows)
    if count == 0:
        return
    observed = examples.targets[val_rows]
    varying = int(np.sum(np.any(observed != observed[:1], axis=0))) if count >= 2 else 0
    if varying:
        return
    how = ("--val-chroms takes more chromosomes" if spec.by_chromosome else
           f"raise --val-fraction (now {spec.val_fraction:g})")
    what = (f"{count} validation transcript" if count == 1 else
            f"{count} validation transcripts whose observed values are the same in every tissue")
    raise InputError(
        f"the split leaves {what} (of {len(examples.triples)} with expression): a Spearman needs at least 2 "
        f"validation transcripts whose values differ, so no epoch could be chosen as best; {how}, or give "
        "--val-fraction 0 to train without validation (no early stopping, last/ is the final model)"
    )
