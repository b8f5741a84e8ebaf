"""``isoformer merge``: join the outputs of ``--shard K/N`` runs into the file one run writes.

Every output kind of the sharded commands merges: triples tables, prediction tables, gene summaries, HDF5
predictions and embeddings (:mod:`isoformer_cli.formats.shard_merge`), and the VCF, table and alternative
triples of ``isoformer variants`` (:mod:`isoformer_cli.formats.variant_shards`). Each input's kind is
recognised from its content (:func:`isoformer_cli.formats.output_kinds.recognise_output`).

Checks, each a one-line error naming the file: every input is a shard output of the same kind; all come
from one split (same ``N``) and each ``K`` from 1 to ``N`` is there exactly once; their provenances agree
(inputs by checksum, checkpoint, tool version, units and the options that change results; see
:func:`~isoformer_cli.formats.sharding.provenance_difference`); each holds as many units as its shard order
lists; no input transcript is in two shards. The merged file's body is byte for byte the single run's;
its provenance is the first shard's without the shard entry, with ``merged_shards``. The output is
written atomically, like every output of the tool.
"""

import logging
from dataclasses import dataclass

from isoformer_cli.errors import InputError
from isoformer_cli.formats.atomic import STDOUT, check_writable
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.output_kinds import (
    EMBEDDINGS,
    GENE_SUMMARY,
    PREDICTIONS_H5,
    TEXT_KINDS,
    VARIANT_KINDS,
    VARIANT_VCF,
)
from isoformer_cli.formats.shard_merge import (
    check_merged_output,
    check_same_kind,
    check_split,
    merge_embeddings,
    merge_predictions_h5,
    merge_text,
    read_shard,
)
from isoformer_cli.formats.sharding import merged_provenance
from isoformer_cli.formats.variant_shards import merge_variant_shards

log = logging.getLogger(__name__)

# How each kind merges (every one writes the output atomically and returns the units it wrote).
_MERGERS = {**{kind: merge_text for kind in TEXT_KINDS}, **{kind: merge_variant_shards for kind in VARIANT_KINDS},
            PREDICTIONS_H5: merge_predictions_h5, EMBEDDINGS: merge_embeddings}


@dataclass(frozen=True)
class MergeConfig:
    """``shards``: the shard outputs, in any order; ``output``: the merged file (``-``: standard output, for
    text tables)."""

    shards: tuple[str, ...]
    output: str = STDOUT

    def __post_init__(self) -> None:
        if not self.shards:
            raise InputError("give the shard outputs to merge, e.g. isoformer merge -o all.tsv shard*.tsv")


def run_merge(config: MergeConfig) -> int:
    """Merge ``config.shards`` into ``config.output``; returns the number of units (rows, gene blocks or VCF
    records) written."""
    refuse_shared_files([("SHARD", path) for path in config.shards], {"-o/--output": config.output})
    check_writable(config.output)
    shards = [read_shard(path) for path in config.shards]
    kind = check_same_kind(shards)
    check_merged_output(config.output, kind)
    check_split(shards)
    provenance = merged_provenance(shards[0].provenance, shards[0].count)
    with lock_outputs(config.output):
        units = _MERGERS[kind](shards, config.output, provenance)
    log.info("merged %d shards (%d %s) into %s", len(shards), units,
             "gene blocks" if kind == GENE_SUMMARY else "records" if kind == VARIANT_VCF else "rows",
             "standard output" if config.output == STDOUT else config.output)
    return units
