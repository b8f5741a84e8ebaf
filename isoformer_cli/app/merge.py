"""``isoformer merge``: join the outputs of ``--shard K/N`` runs into the file one run writes.

Every output kind of the sharded commands merges:

=======================  ============================  =====================================
kind                     recognised by                 unit interleaved by ordinal
=======================  ============================  =====================================
triples table            ``# provenance:`` + columns   a row
predictions TSV          ``# isoformer predictions``   a row
gene summary             ``# isoformer gene summary``  a gene block (all rows of one gene)
predictions HDF5         AnnData with ``X``            a row
embeddings HDF5          ``format`` attribute          a row
=======================  ============================  =====================================

Checks, each a one-line error naming the file: every input is a shard output of the same kind; all come
from one split (same ``N``) and each ``K`` from 1 to ``N`` is there exactly once; their provenances agree
(inputs by checksum, checkpoint, tool version, units and the options that change results; see
:func:`~isoformer_cli.formats.sharding.provenance_difference`); each holds as many units as its shard order
lists; no input transcript is in two shards. The merged file's body is byte for byte the single run's;
its provenance is the first shard's without the shard entry, with ``merged_shards``. Text tables stream
(memory does not grow with their size); HDF5 files are read whole and written through the commands' own
writers. The output is written atomically, like every output of the tool.
"""

import gzip
import heapq
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Tuple

import h5py
import numpy as np

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import STDOUT, atomic_text_output, check_writable
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.embeddings import FORMAT_NAME as EMBEDDINGS_FORMAT
from isoformer_cli.formats.embeddings import SUFFIXES as EMBEDDING_SUFFIXES
from isoformer_cli.formats.embeddings import open_embedding_writer, read_embeddings
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.formats.predictions import GZIP_LEVEL, open_prediction_writer, read_predictions
from isoformer_cli.formats.sharding import (
    SHARD_KEY,
    decode_order,
    merged_provenance,
    provenance_difference,
)
from isoformer_cli.formats.streaming import canonical_json
from isoformer_cli.formats.triples_table import COLUMNS as TRIPLES_COLUMNS
from isoformer_cli.formats.triples_table import PROVENANCE_PREFIX
from isoformer_cli.genomics.compressed import compressed_read_errors
from isoformer_cli.genomics.shards import parse_shard

log = logging.getLogger(__name__)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
TRIPLES, PREDICTIONS_TSV, GENE_SUMMARY, PREDICTIONS_H5, EMBEDDINGS = (
    "triples table", "prediction table", "gene summary", "HDF5 prediction file", "embedding file")
_TITLES = {"# isoformer predictions": PREDICTIONS_TSV, "# isoformer gene summary": GENE_SUMMARY}
_TEXT_KINDS = (TRIPLES, PREDICTIONS_TSV, GENE_SUMMARY)
# Output suffixes each kind may be merged into.
_OUTPUT_SUFFIXES = {TRIPLES: (".tsv", ".tsv.gz"), PREDICTIONS_TSV: (".tsv", ".tsv.gz"),
                    GENE_SUMMARY: (".tsv", ".tsv.gz"), PREDICTIONS_H5: (".h5", ".h5ad"),
                    EMBEDDINGS: EMBEDDING_SUFFIXES}


@dataclass(frozen=True)
class MergeConfig:
    """``shards``: the shard outputs, in any order; ``output``: the merged file (``-``: standard output, for
    text tables)."""

    shards: Tuple[str, ...]
    output: str = STDOUT

    def __post_init__(self):
        if not self.shards:
            raise InputError("give the shard outputs to merge, e.g. isoformer merge -o all.tsv shard*.tsv")


@dataclass
class _Shard:
    """One input: its path, kind, provenance, leading text lines (text kinds) and ordinals."""

    path: str
    kind: str
    provenance: dict
    header: Tuple[str, ...] = ()
    index: int = 0
    count: int = 0
    ordinals: Tuple[int, ...] = ()


def run_merge(config):
    """Merge ``config.shards`` into ``config.output``; returns the number of units (rows or gene blocks)."""
    refuse_shared_files([("SHARD", path) for path in config.shards], {"-o/--output": config.output})
    check_writable(config.output)
    shards = [_describe(path) for path in config.shards]
    kind = _check_same_kind(shards)
    _check_output_suffix(config.output, kind)
    _check_split(shards)
    provenance = merged_provenance(shards[0].provenance, shards[0].count)
    with lock_outputs(config.output):
        if kind in _TEXT_KINDS:
            units = _merge_text(shards, kind, config.output, provenance)
        elif kind == PREDICTIONS_H5:
            units = _merge_predictions_h5(shards, config.output, provenance)
        else:
            units = _merge_embeddings(shards, config.output, provenance)
    log.info("merged %d shards (%d %s) into %s", len(shards), units,
             "gene blocks" if kind == GENE_SUMMARY else "rows", "standard output" if config.output == STDOUT
             else config.output)
    return units


# --------------------------------------------------------------------------------------- inputs


def _describe(path):
    """A :class:`_Shard` from the file's first bytes and header (InputError naming the file otherwise)."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the shard: {exc.strerror}") from None
    if magic == _HDF5_MAGIC:
        shard = _describe_hdf5(path)
    else:
        shard = _describe_text(path, gzipped=magic.startswith(_GZIP_MAGIC))
    entry = shard.provenance.get(SHARD_KEY)
    if not isinstance(entry, dict) or "shard" not in entry or "order" not in entry:
        raise InputError(f"{path}: not a shard output (its provenance has no shard entry); merge the outputs "
                         "of runs with --shard K/N")
    try:
        parsed = parse_shard(entry["shard"])
    except InputError:
        raise InputError(f"{path}: the shard entry {entry['shard']!r} is damaged; run that shard again") from None
    shard.index, shard.count = parsed.index, parsed.count
    shard.ordinals = tuple(decode_order(entry["order"], path))
    return shard


def _open_text(path, gzipped):
    opener = gzip.open if gzipped else open
    return opener(path, "rt", encoding="utf-8", newline="\n")


def _describe_text(path, gzipped):
    header = []
    with _open_text(path, gzipped) as stream, compressed_read_errors(path, "shard"):
        for line in stream:
            header.append(line)
            if not line.startswith("#"):
                break
    provenance = {}
    for line in header:
        if line.startswith(PROVENANCE_PREFIX):
            try:
                provenance = json.loads(line[len(PROVENANCE_PREFIX):])
            except ValueError as exc:
                raise InputError(f"{path}: the provenance line is not valid JSON ({exc})") from None
    columns = tuple(header[-1].rstrip("\n").split("\t")) if header else ()
    title = header[0].rstrip("\n") if header else ""
    titled = [kind for prefix, kind in _TITLES.items() if title.startswith(prefix + ",")]
    if titled:
        kind = titled[0]
    elif columns[:len(TRIPLES_COLUMNS)] == TRIPLES_COLUMNS:
        kind = TRIPLES
    else:
        raise InputError(f"{path}: not an output isoformer merge knows (a triples table, prediction table, gene "
                         "summary, HDF5 predictions or embeddings written with --shard)")
    return _Shard(path, kind, provenance, tuple(header))


def _describe_hdf5(path):
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") == EMBEDDINGS_FORMAT:
                return _Shard(path, EMBEDDINGS, json.loads(handle.attrs["provenance"]))
            if handle.attrs.get("encoding-type") == "anndata" and "X" in handle and "obs/flags" in handle:
                return _Shard(path, PREDICTIONS_H5, read_predictions(path).provenance)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the HDF5 shard, it is truncated or damaged ({exc})") from None
    raise InputError(f"{path}: an HDF5 file, but neither isoformer predictions nor embeddings")


def _check_same_kind(shards):
    first = shards[0]
    for shard in shards[1:]:
        if shard.kind != first.kind:
            raise InputError(f"{shard.path}: a {shard.kind}, but {first.path} is a {first.kind}; merge one kind "
                             "of output at a time")
    return first.kind


def _check_output_suffix(output, kind):
    suffixes = _OUTPUT_SUFFIXES[kind]
    if output == STDOUT:
        if kind not in _TEXT_KINDS:
            raise OutputError(f"a merged {kind} is HDF5 and cannot go to standard output; name it with -o FILE"
                              f"{suffixes[0]}")
        return
    if not output.endswith(suffixes):
        raise OutputError(f"{output}: a merged {kind} is written as {' or '.join(suffixes)}; name the output so")


def _check_split(shards):
    """One split, every shard once, the same run (module docstring)."""
    first = shards[0]
    seen = {}
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


def _interleave(shards, units_of):
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


# --------------------------------------------------------------------------------------- text


def _text_units(shard, kind):
    """A text shard's units in file order: rows, or for a gene summary the rows of one gene."""
    with _open_text(shard.path, _gzipped(shard.path)) as stream, compressed_read_errors(shard.path, "shard"):
        for _ in shard.header:
            next(stream)
        if kind != GENE_SUMMARY:
            yield from stream
            return
        for _, block in itertools.groupby(stream, key=lambda line: line.split("\t", 1)[0]):
            yield "".join(block)


def _gzipped(path):
    with open(path, "rb") as stream:
        return stream.read(2) == _GZIP_MAGIC


def _merged_header(shard, kind, provenance):
    """The single run's leading lines: the shard's, with the merged provenance (none for a triples table)."""
    lines = []
    for line in shard.header:
        if line.startswith(PROVENANCE_PREFIX):
            if kind != TRIPLES:
                lines.append(f"{PROVENANCE_PREFIX}{canonical_json(provenance)}\n")
        else:
            lines.append(line)
    return "".join(lines)


def _merge_text(shards, kind, output, provenance):
    columns = shards[0].header[-1]
    for shard in shards[1:]:
        if shard.header[-1] != columns:
            raise InputError(f"{shard.path}: its columns differ from those of {shards[0].path}")
    units = 0
    # Level 6 for triples tables and GZIP_LEVEL for the others: what the commands themselves write with.
    with atomic_text_output(output, compresslevel=6 if kind == TRIPLES else GZIP_LEVEL) as stream:
        stream.write(_merged_header(shards[0], kind, provenance))
        for _, unit in _interleave(shards, lambda shard: _text_units(shard, kind)):
            stream.write(unit)
            units += 1
    return units


# --------------------------------------------------------------------------------------- HDF5


def _order(shards, sizes):
    """``(shard position, row)`` of every row in merged order, checked like :func:`_interleave`."""
    return [unit for _, unit in _interleave(
        shards, lambda shard: ((shards.index(shard), row) for row in range(sizes[shard.path])))]


def _merge_predictions_h5(shards, output, provenance):
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


def _merge_embeddings(shards, output, provenance):
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
