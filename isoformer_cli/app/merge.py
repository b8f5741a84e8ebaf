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

and so do the outputs of ``isoformer variants``, by the rules of :mod:`isoformer_cli.formats.variant_shards`
(each record's ISOFORMER entries and statuses combined from every shard; rows of one allele scored in
several shards interleaved by transcript rank; a merged ``.vcf.gz`` is BGZF, like the command's):

====================  ===================================  =====================================
kind                  recognised by                        unit
====================  ===================================  =====================================
variant VCF           ``##fileformat=VCF`` + provenance    a record (every shard holds them all)
variant table TSV     ``# isoformer variant scores``       the rows of one record and ALT
variant table HDF5    AnnData with ``layers/alt_dna_rna``  the rows of one record and ALT
alternative triples   ``# isoformer alternative triples``  the rows of one record and ALT
====================  ===================================  =====================================

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
from isoformer_cli.formats import h5ad
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
from isoformer_cli.formats.variant_shards import TranscriptRanks, merge_row_units, merge_vcf_record
from isoformer_cli.formats.variants import (
    ALT_TRIPLE_FIELDS,
    TABLE_FIELDS,
    VCF_SUFFIXES,
    VariantTableWriter,
    VcfWriter,
    read_variant_table_h5,
)
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
        if kind in _VARIANT_KINDS:
            units = _merge_variants(shards, kind, config.output, provenance)
        elif kind in _TEXT_KINDS:
            units = _merge_text(shards, kind, config.output, provenance)
        elif kind == PREDICTIONS_H5:
            units = _merge_predictions_h5(shards, config.output, provenance)
        else:
            units = _merge_embeddings(shards, config.output, provenance)
    log.info("merged %d shards (%d %s) into %s", len(shards), units,
             "gene blocks" if kind == GENE_SUMMARY else "records" if kind == VARIANT_VCF else "rows",
             "standard output" if config.output == STDOUT else config.output)
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
    elif _is_vcf(path, gzipped=magic.startswith(_GZIP_MAGIC)):
        shard = _describe_variant_vcf(path)
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
    titled = [kind for prefix, kind in (*_TITLES.items(), *_VARIANT_TITLES.items()) if title.startswith(prefix + ",")]
    if titled:
        kind = titled[0]
    elif columns[:len(TRIPLES_COLUMNS)] == TRIPLES_COLUMNS:
        kind = TRIPLES
    else:
        raise InputError(f"{path}: not an output isoformer merge knows (a triples table, prediction table, gene "
                         "summary, HDF5 predictions, embeddings or variants output written with --shard)")
    return _Shard(path, kind, provenance, tuple(header))


def _describe_hdf5(path):
    try:
        with h5py.File(path, "r") as handle:
            if _is_variant_table_h5(handle):
                return _Shard(path, VARIANT_TABLE_H5, h5ad.read_mapping(handle["uns/provenance"]))
            if handle.attrs.get("format") == EMBEDDINGS_FORMAT:
                return _Shard(path, EMBEDDINGS, json.loads(handle.attrs["provenance"]))
            if handle.attrs.get("encoding-type") == "anndata" and "X" in handle and "obs/flags" in handle:
                # Only the provenance here: the values are read once, when merging.
                provenance = h5ad.read_mapping(handle["uns/provenance"]) if "uns/provenance" in handle else {}
                return _Shard(path, PREDICTIONS_H5, provenance)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the HDF5 shard, it is truncated or damaged ({exc})") from None
    raise InputError(f"{path}: an HDF5 file, but neither isoformer predictions, embeddings nor a variant table")


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
        if kind not in _TEXT_KINDS + _VARIANT_TEXT_KINDS:
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


def _merged_header(shard, provenance):
    """The single run's leading lines: the shard's, with the merged provenance in place of the shard's."""
    lines = []
    for line in shard.header:
        if line.startswith(PROVENANCE_PREFIX):
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
        stream.write(_merged_header(shards[0], provenance))
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


# --------------------------------------------------------------------------------------- isoformer variants
# The outputs of ``isoformer variants --shard``; the rules that combine them are in formats/variant_shards.py.

VARIANT_VCF, VARIANT_TABLE_TSV, VARIANT_TABLE_H5, ALT_TRIPLES = (
    "variant VCF", "variant table", "HDF5 variant table", "alternative triples table")
_VARIANT_KINDS = (VARIANT_VCF, VARIANT_TABLE_TSV, VARIANT_TABLE_H5, ALT_TRIPLES)
_VARIANT_TEXT_KINDS = (VARIANT_VCF, VARIANT_TABLE_TSV, ALT_TRIPLES)
_VARIANT_TITLES = {"# isoformer variant scores": VARIANT_TABLE_TSV, "# isoformer alternative triples": ALT_TRIPLES}
_OUTPUT_SUFFIXES.update({VARIANT_VCF: VCF_SUFFIXES, VARIANT_TABLE_TSV: (".tsv", ".tsv.gz"),
                         VARIANT_TABLE_H5: (".h5", ".h5ad"), ALT_TRIPLES: (".tsv", ".tsv.gz")})
_VCF_PROVENANCE_PREFIX = "##isoformer_provenance="
_VCF_LINES_PER_WRITE = 1000  # records per write of the merged VCF (a BGZF block boundary, nothing more)


def _is_vcf(path, gzipped):
    with _open_text(path, gzipped) as stream, compressed_read_errors(path, "shard"):
        return stream.readline().startswith("##fileformat=VCF")


def _is_variant_table_h5(handle):
    return handle.attrs.get("encoding-type") == "anndata" and "layers/alt_dna_rna" in handle \
        and "uns/provenance" in handle


def _describe_variant_vcf(path):
    """A VCF shard: its header lines (up to ``#CHROM``) and the provenance of its ``##isoformer_provenance``."""
    header, provenance = [], None
    with _open_text(path, _gzipped(path)) as stream, compressed_read_errors(path, "shard"):
        for line in stream:
            header.append(line)
            if line.startswith(_VCF_PROVENANCE_PREFIX):
                try:
                    provenance = json.loads(line[len(_VCF_PROVENANCE_PREFIX):])
                except ValueError as exc:
                    raise InputError(f"{path}: the ##isoformer_provenance line is not valid JSON ({exc})") from None
            if line.startswith("#CHROM") or not line.startswith("#"):
                break
    if provenance is None or not header[-1].startswith("#CHROM"):
        raise InputError(f"{path}: a VCF, but not one isoformer variants wrote (no ##isoformer_provenance line "
                         "before #CHROM)")
    return _Shard(path, VARIANT_VCF, provenance, tuple(header))


def _merge_variants(shards, kind, output, provenance):
    ranks = [TranscriptRanks(shard.provenance[SHARD_KEY], shard.path) for shard in shards]
    if kind == VARIANT_VCF:
        return _merge_variant_vcf(shards, ranks, output, provenance)
    if kind == VARIANT_TABLE_H5:
        return _merge_variant_table_h5(shards, ranks, output, provenance)
    return _merge_variant_text(shards, ranks, kind, output, provenance)


def _vcf_records(shard):
    """A VCF shard's record lines, in file order."""
    with _open_text(shard.path, _gzipped(shard.path)) as stream, compressed_read_errors(shard.path, "shard"):
        for _ in shard.header:
            next(stream)
        yield from stream


def _merge_variant_vcf(shards, ranks, output, provenance):
    records = len(shards[0].ordinals)
    for shard in shards:
        if shard.ordinals != tuple(range(len(shard.ordinals))):
            raise InputError(f"{shard.path}: its shard order is not a variant VCF's (every record, in order); the "
                             "provenance is damaged, run that shard again")
        if len(shard.ordinals) != records:
            raise InputError(f"{shard.path}: holds {len(shard.ordinals)} records, but {shards[0].path} holds "
                             f"{records}; merge the shards of one run")
    header = "".join(f"{_VCF_PROVENANCE_PREFIX}{canonical_json(provenance)}\n"
                     if line.startswith(_VCF_PROVENANCE_PREFIX) else line for line in shards[0].header)
    paths = [shard.path for shard in shards]
    number = 0
    with VcfWriter(output, header, _VCF_LINES_PER_WRITE) as writer:
        batch = []
        for number, lines in enumerate(itertools.zip_longest(*(_vcf_records(shard) for shard in shards)), 1):
            if number > records or None in lines:
                shard = shards[lines.index(None)] if None in lines else shards[0]
                raise InputError(f"{shard.path}: holds {'fewer' if None in lines else 'more'} records than its "
                                 f"shard order lists ({records}); the file is incomplete or edited, run that shard "
                                 "again")
            batch.append(merge_vcf_record(lines, ranks, paths, number))
            if len(batch) == _VCF_LINES_PER_WRITE:
                writer.write_chunk(batch)
                batch = []
        if number < records:
            raise InputError(f"{shards[0].path}: holds fewer records than its shard order lists ({records}); the "
                             "file is incomplete, run that shard again")
        if batch:
            writer.write_chunk(batch)
    return records


def _row_units(rows, names):
    """Rows ``(values, payload)`` of a table (``names``: its columns) grouped into units, runs of one record
    and ALT, each a list of ``(chrom, transcript_id, payload)``, for
    :func:`~isoformer_cli.formats.variant_shards.merge_row_units`."""
    record, alt, chrom, transcript = (names.index(name) for name in ("record", "alt", "chrom", "transcript_id"))
    for _, unit in itertools.groupby(rows, key=lambda row: (row[0][record], row[0][alt])):
        yield [(values[chrom], values[transcript], payload) for values, payload in unit]


def _merge_variant_text(shards, ranks, kind, output, provenance):
    columns = shards[0].header[-1]
    for shard in shards[1:]:
        if shard.header[-1] != columns:
            raise InputError(f"{shard.path}: its columns differ from those of {shards[0].path}")
    names = columns.rstrip("\n").split("\t")
    fields = TABLE_FIELDS if kind == VARIANT_TABLE_TSV else ALT_TRIPLE_FIELDS
    if tuple(names[:len(fields)]) != fields:
        raise InputError(f"{shards[0].path}: its columns are not those of a {kind}; the file is damaged")

    def units(shard):
        rows = ((line.rstrip("\n").split("\t"), line) for line in _text_units(shard, kind))
        return _row_units(rows, names)

    rows = 0
    with atomic_text_output(output, compresslevel=GZIP_LEVEL) as stream:
        stream.write(_merged_header(shards[0], provenance))
        for line in merge_row_units([(shard.path, shard.ordinals, units(shard), shard_ranks)
                                     for shard, shard_ranks in zip(shards, ranks)]):
            stream.write(line)
            rows += 1
    return rows


def _merge_variant_table_h5(shards, ranks, output, provenance):
    tables = []
    for shard in shards:
        try:
            tables.append(read_variant_table_h5(shard.path))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"{shard.path}: cannot read the HDF5 variant table, it is truncated or damaged "
                             f"({exc})") from None
    tissues = tables[0][0]
    for shard, table in zip(shards[1:], tables[1:]):
        if table[0] != tissues:
            raise InputError(f"{shard.path}: its tissues differ from those of {shards[0].path}")

    def units(position):  # the payload of a row: (shard position, row)
        return _row_units(((values, (position, row)) for row, values in enumerate(tables[position][1])),
                          list(TABLE_FIELDS))

    order = list(merge_row_units([(shard.path, shard.ordinals, units(position), ranks[position])
                                  for position, shard in enumerate(shards)]))
    rows = [dict(zip(TABLE_FIELDS, tables[position][1][row])) for position, row in order]
    arrays = {}
    for name in ("ref", "alt", "dna", "dna_rna", "share_delta"):
        arrays[name] = np.stack([tables[position][2][name][row] for position, row in order]) if order else \
            np.zeros((0, len(tissues)), dtype=np.float32)
    with VariantTableWriter(output, tissues, provenance) as writer:
        writer.write_chunk(len(rows), rows, arrays)
    return len(rows)
