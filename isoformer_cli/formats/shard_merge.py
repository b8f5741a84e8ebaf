"""Merging the outputs of ``--shard K/N`` runs: the checks that they make one split of one run, the
interleaving of their units by input ordinal, and the merge of each non-variant kind (the variant kinds
merge by the rules of :mod:`isoformer_cli.formats.variant_shards`).

=======================  =====================================
kind                     unit interleaved by ordinal
=======================  =====================================
triples table            a row
prediction table         a row
gene summary             a gene block (all rows of one gene)
HDF5 prediction file     a row
embedding file           a row
=======================  =====================================

Text tables stream (memory does not grow with their size); HDF5 files are read whole and written through
the commands' own writers, so a merged body is byte for byte the single run's.
"""

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import STDOUT, atomic_text_output
from isoformer_cli.formats.embeddings import open_embedding_writer, read_embeddings
from isoformer_cli.formats.output_kinds import (
    GENE_SUMMARY,
    OUTPUT_SUFFIXES,
    TEXT_KINDS,
    TRIPLES,
    VARIANT_TEXT_KINDS,
    RecognisedOutput,
    body_lines,
    recognise_output,
)
from isoformer_cli.formats.predictions import GZIP_LEVEL, open_prediction_writer, read_predictions
from isoformer_cli.formats.sharding import SHARD_KEY, decode_order, provenance_difference
from isoformer_cli.formats.streaming import canonical_json
from isoformer_cli.formats.triples_table import PROVENANCE_PREFIX
from isoformer_cli.genomics.shards import parse_shard

Unit = TypeVar("Unit")


@dataclass
class Shard(RecognisedOutput):
    """A recognised output of a ``--shard K/N`` run: ``index`` K, ``count`` N and the input ``ordinals`` of its
    units, in file order (from the provenance's shard entry)."""

    index: int = 0
    count: int = 0
    ordinals: tuple[int, ...] = ()


def read_shard(path: str) -> Shard:
    """The :class:`Shard` at ``path`` (InputError naming the file when it is not a shard output)."""
    output = recognise_output(path, "shard")
    entry = output.provenance.get(SHARD_KEY)
    if not isinstance(entry, dict) or "shard" not in entry or "order" not in entry:
        raise InputError(f"{path}: not a shard output (its provenance has no shard entry); merge the outputs "
                         "of runs with --shard K/N")
    try:
        parsed = parse_shard(entry["shard"])
    except InputError:
        raise InputError(f"{path}: the shard entry {entry['shard']!r} is damaged; run that shard again") from None
    return Shard(output.path, output.kind, output.provenance, output.header, index=parsed.index,
                 count=parsed.count, ordinals=tuple(decode_order(entry["order"], path)))


def check_same_kind(shards: Sequence[Shard]) -> str:
    """The kind all ``shards`` share (InputError naming the first that differs)."""
    first = shards[0]
    for shard in shards[1:]:
        if shard.kind != first.kind:
            raise InputError(f"{shard.path}: a {shard.kind}, but {first.path} is a {first.kind}; merge one kind "
                             "of output at a time")
    return first.kind


def check_merged_output(output: str, kind: str) -> None:
    """OutputError unless ``output`` is named as ``kind`` is written (HDF5 kinds cannot go to standard output)."""
    suffixes = OUTPUT_SUFFIXES[kind]
    if output == STDOUT:
        if kind not in TEXT_KINDS + VARIANT_TEXT_KINDS:
            raise OutputError(f"a merged {kind} is HDF5 and cannot go to standard output; name it with -o FILE"
                              f"{suffixes[0]}")
        return
    if not output.endswith(suffixes):
        raise OutputError(f"{output}: a merged {kind} is written as {' or '.join(suffixes)}; name the output so")


def check_split(shards: Sequence[Shard]) -> None:
    """One split (the same N), each K from 1 to N exactly once, provenances that agree (InputError otherwise)."""
    first = shards[0]
    seen: dict[int, Shard] = {}
    for shard in shards:
        if shard.count != first.count:
            raise InputError(f"{shard.path}: shard {shard.index}/{shard.count} is from a split into {shard.count}, "
                             f"but {first.path} is from a split into {first.count}")
        if shard.index in seen:
            raise InputError(f"{shard.path}: shard {shard.index}/{shard.count} was given twice (also "
                             f"{seen[shard.index].path})")
        seen[shard.index] = shard
        difference = provenance_difference(first.provenance, shard.provenance)
        if difference:
            raise InputError(f"{shard.path}: not from the same run as {first.path}: {difference}")
    missing = [index for index in range(1, first.count + 1) if index not in seen]
    if missing:
        shown = ", ".join(f"{index}/{first.count}" for index in missing[:5])
        raise InputError(f"shard {shown}{' and more' if len(missing) > 5 else ''} missing: {len(shards)} of "
                         f"{first.count} shards given ({', '.join(s.path for s in shards[:3])}"
                         f"{', ...' if len(shards) > 3 else ''})")


def interleave(shards: Sequence[Shard], units_of: Callable[[Shard], Iterable[Unit]]) -> Iterator[tuple[int, Unit]]:
    """``(ordinal, unit)`` of every shard's units, in ordinal order; ``units_of(shard)`` yields a shard's units
    in file order. InputError when a shard holds more or fewer units than its order lists, or two shards
    hold the same input transcript."""
    def tagged(shard):
        for ordinal, unit in itertools.zip_longest(shard.ordinals, units_of(shard), fillvalue=None):
            if ordinal is None or unit is None:
                raise InputError(f"{shard.path}: holds {'more' if ordinal is None else 'fewer'} units than its "
                                 f"shard order lists ({len(shard.ordinals)}); the file is incomplete or edited, "
                                 "run that shard again")
            yield ordinal, shard.path, unit

    previous = None
    for ordinal, path, unit in heapq.merge(*(tagged(shard) for shard in shards), key=lambda item: item[0]):
        if previous is not None and ordinal == previous[0]:
            raise InputError(f"{path}: holds input transcript #{ordinal + 1}, which {previous[1]} holds too; "
                             "these are not shards of one split")
        previous = (ordinal, path)
        yield ordinal, unit


def check_same_columns(shards: Sequence[Shard]) -> str:
    """The column line all text ``shards`` share (InputError naming the first that differs)."""
    columns = shards[0].header[-1]
    for shard in shards[1:]:
        if shard.header[-1] != columns:
            raise InputError(f"{shard.path}: its columns differ from those of {shards[0].path}")
    return columns


def merged_header(shard: Shard, provenance: dict[str, Any]) -> str:
    """The single run's leading lines: the shard's, with the merged provenance in place of the shard's."""
    lines = []
    for line in shard.header:
        if line.startswith(PROVENANCE_PREFIX):
            lines.append(f"{PROVENANCE_PREFIX}{canonical_json(provenance)}\n")
        else:
            lines.append(line)
    return "".join(lines)


def text_units(shard: Shard) -> Iterator[str]:
    """A text shard's units in file order: rows, or for a gene summary the rows of one gene."""
    lines = body_lines(shard)
    if shard.kind != GENE_SUMMARY:
        return lines
    return ("".join(block) for _, block in itertools.groupby(lines, key=lambda line: line.split("\t", 1)[0]))


def merge_text(shards: Sequence[Shard], output: str, provenance: dict[str, Any]) -> int:
    """Merge triples tables, prediction tables or gene summaries into ``output``; returns the units written."""
    check_same_columns(shards)
    units = 0
    # Level 6 for triples tables and GZIP_LEVEL for the others: what the commands themselves write with.
    with atomic_text_output(output, compresslevel=6 if shards[0].kind == TRIPLES else GZIP_LEVEL) as stream:
        stream.write(merged_header(shards[0], provenance))
        for _, unit in interleave(shards, text_units):
            stream.write(unit)
            units += 1
    return units


def _order(shards: Sequence[Shard], sizes: dict[str, int]) -> list[tuple[int, int]]:
    """``(shard position, row)`` of every row in merged order, checked like :func:`interleave`."""
    return [unit for _, unit in interleave(
        shards, lambda shard: ((shards.index(shard), row) for row in range(sizes[shard.path])))]


def merge_predictions_h5(shards: Sequence[Shard], output: str, provenance: dict[str, Any]) -> int:
    """Merge HDF5 prediction files into ``output`` (through the predict command's writer); returns the rows."""
    tables = [read_predictions(shard.path) for shard in shards]
    for shard, table in zip(shards[1:], tables[1:]):
        if table.tissues != tables[0].tissues:
            raise InputError(f"{shard.path}: its tissues differ from those of {shards[0].path}")
    order = _order(shards, {shard.path: len(table.obs) for shard, table in zip(shards, tables)})
    obs = [tables[position].obs[row] for position, row in order]
    values = np.stack([tables[position].values[row] for position, row in order]) if order else \
        np.zeros((0, len(tables[0].tissues)), dtype=np.float32)
    writer = open_prediction_writer(output, tables[0].tissues, provenance)
    with writer:
        writer.write_chunk(obs, values)
    return len(order)


def merge_embeddings(shards: Sequence[Shard], output: str, provenance: dict[str, Any]) -> int:
    """Merge embedding files into ``output`` (through the embed command's writer); returns the rows."""
    files = [read_embeddings(shard.path) for shard in shards]
    dims = {name: values.shape[1] for name, (values, _) in files[0].modalities.items()}
    for shard, file in zip(shards[1:], files[1:]):
        if file.fused.shape[1] != files[0].fused.shape[1] or \
                {name: values.shape[1] for name, (values, _) in file.modalities.items()} != dims:
            raise InputError(f"{shard.path}: its embedding widths or modalities differ from those of "
                             f"{shards[0].path}")
    order = _order(shards, {shard.path: len(file.transcript_ids) for shard, file in zip(shards, files)})

    def gather(arrays):
        return np.stack([arrays[position][row] for position, row in order]) if order else None

    fused = gather([file.fused for file in files])
    if fused is None:
        fused = np.zeros((0, files[0].fused.shape[1]), dtype=np.float32)
    modalities = {}
    for name, dim in dims.items():
        values = gather([file.modalities[name][0] for file in files])
        has = gather([file.modalities[name][1] for file in files])
        modalities[name] = (values if values is not None else np.zeros((0, dim), dtype=np.float32),
                            has if has is not None else np.zeros(0, dtype=bool))
    writer = open_embedding_writer(output, files[0].fused.shape[1], provenance, modality_dims=dims)
    with writer:
        writer.write_chunk([files[position].transcript_ids[row] for position, row in order], fused, modalities)
    return len(order)
