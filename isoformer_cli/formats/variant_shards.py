"""Shards of ``isoformer variants``: what their outputs record, and how ``isoformer merge`` joins them.

``isoformer variants --shard K/N`` scores the transcripts of shard K's genes only (the split of
:mod:`isoformer_cli.genomics.shards`: a gene's isoforms stay together, so isoform shares stay whole), and
every shard still reads and writes every VCF record. The single run's order, which the merge rebuilds:

* VCF records in input order; inside a record, ``ISOFORMER`` entries and ``ISOFORMER_STATUS`` entries each
  by allele (ALT order), then by the transcript's *rank* (its position in the sweep order of every selected
  gene, :mod:`isoformer_cli.triples.affected`: span start, annotation order, isoform);
* table and ``--alt-triples`` rows: one per ``ISOFORMER`` entry, in the same order (record, allele, rank).

A shard writes, per record, the entries of the (allele, transcript) pairs of its genes; the
*transcript-level* statuses of its genes (``ALLELE|TRANSCRIPT|tss_deleted``); and every *allele-level*
status (``ALLELE|.|STATUS``: missing contig, REF mismatch, contig end, allele letters or length), which
depend on the record and the genome alone and so are the same in every shard. An allele with an
allele-level status is scored on no transcript, in any shard. A record that none of the shard's transcripts
takes is written with the allele-level statuses only: a single run writes no status for "affects no
transcript" either (such a record has no ``ISOFORMER`` field), so a shard has nothing to add for it.

**Shard entry.** Each output's provenance gets the entry of :mod:`isoformer_cli.formats.sharding` plus
``transcripts``::

    "shard": {"shard": "2/3", "units": 26, "order": "...", "transcripts": "eJyLjgUAARUAuQ=="}

* VCF: the units are the records, ``order`` lists ``0 .. records-1`` (every shard holds them all).
* Table and alternative triples: a unit is a run of rows with the same ``record`` and ``alt`` (consecutive
  in the file); its ordinal is the *allele ordinal* of its first row: the position of the allele among the
  VCF's ALT alleles, counted from 0 in file order. Ordinals rise through a shard's file.
* ``transcripts``: the rank of every transcript of the shard that one record can reach together with a
  gene of another shard (:func:`~isoformer_cli.triples.affected.shared_transcripts`): only in such records
  must the merge interleave two shards' entries. JSON ``{CHROM: [[rank gap, transcript_id], ...]}`` (CHROM
  as the VCF writes it, ranks rising, each gap from the previous rank of that CHROM, the first from 0),
  zlib-compressed and base64-encoded. A VCF whose records each reach genes of one shard records nothing;
  otherwise it is bounded by the shard's transcripts, never by the VCF's size.

**Merge rules** (each rebuilds the single run exactly, by the order above):

* VCF record: all shards' lines must agree once ``ISOFORMER`` / ``ISOFORMER_STATUS`` are set aside, and so
  must their allele-level statuses. When at most one shard has entries or transcript-level statuses, its
  line *is* the single run's line (the others add only the same allele-level statuses). Otherwise the
  entries and transcript-level statuses of all shards are sorted by (allele number, rank), with each
  allele-level status at (its allele, -1). The allele number comes from the entry's ALLELE text and the
  record's ALT column; within one shard ranks rise inside an allele, so a rank that does not rise after the
  same ALLELE text starts the next allele with that text (a record listing one ALT twice).
* Table and alternative-triples rows: units are interleaved by ordinal. Units of one ordinal from several
  shards (one allele scored on genes of several shards) are split into runs of rising rank (one per allele
  when an ALT is listed twice in a row, else one) and each run is interleaved by rank.

A transcript id found at two loci of one contig has one rank per locus; an entry takes the smallest rank
above the previous entry's of its shard and allele (which is the entry's own unless the same id sits at two
loci within one record's reach and only the farther is affected).
"""

import base64
import heapq
import itertools
import json
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from isoformer_cli.errors import InputError
from isoformer_cli.formats.atomic import atomic_text_output
from isoformer_cli.formats.output_kinds import (
    VARIANT_TABLE_H5,
    VARIANT_TABLE_TSV,
    VARIANT_VCF,
    VCF_PROVENANCE_PREFIX,
    body_lines,
)
from isoformer_cli.formats.predictions import GZIP_LEVEL
from isoformer_cli.formats.shard_merge import Shard, check_same_columns, merged_header
from isoformer_cli.formats.sharding import SHARD_KEY, with_shard
from isoformer_cli.formats.streaming import canonical_json
from isoformer_cli.formats.variants import (
    ALT_TRIPLE_FIELDS,
    INFO_KEY,
    MISSING,
    STATUS_KEY,
    TABLE_FIELDS,
    VariantTableWriter,
    VcfWriter,
    annotate_record,
    info_safe,
    read_variant_table_h5,
)

TRANSCRIPTS_KEY = "transcripts"


# ------------------------------------------------------------------------------------ the shard entry


def encode_transcripts(shared):
    """``{CHROM: {(rank, transcript_id), ...}}`` -> the compact text of the module docstring."""
    listed = {}
    for chrom, pairs in shared.items():
        previous, rows = 0, []
        for rank, transcript_id in sorted(pairs):
            rows.append([rank - previous, transcript_id])
            previous = rank
        listed[chrom] = rows
    text = json.dumps(listed, separators=(",", ":"), sort_keys=True)
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def variant_provenance(provenance, shard, ordinals, shared):
    """``provenance`` plus the shard entry of a variants output (unchanged when ``shard`` is None).

    Args:
        shard: the run's :class:`~isoformer_cli.genomics.shards.Shard` or None.
        ordinals: the units' ordinals, in file order (module docstring).
        shared: the encoded ``transcripts`` text (:func:`encode_transcripts`).
    """
    if shard is None:
        return provenance
    provenance = with_shard(provenance, shard, ordinals)
    provenance[SHARD_KEY] = dict(provenance[SHARD_KEY], **{TRANSCRIPTS_KEY: shared})
    return provenance


class TranscriptRanks:
    """The ranks a shard entry records (``transcripts``), looked up by CHROM and transcript id.

    Args:
        entry: the shard entry (a dict); ``where``: the file, for messages.
    """

    def __init__(self, entry, where):
        self._ranks = {}
        try:
            text = zlib.decompress(base64.b64decode(entry[TRANSCRIPTS_KEY].encode("ascii"), validate=True))
            for chrom, rows in json.loads(text.decode("utf-8")).items():
                ranks, rank = {}, 0
                for gap, transcript_id in rows:
                    rank += int(gap)
                    ranks.setdefault(str(transcript_id), []).append(rank)
                self._ranks[chrom] = ranks
        except (KeyError, ValueError, TypeError, zlib.error, UnicodeError, AttributeError) as exc:
            raise InputError(f"{where}: the shard's transcript ranks in the provenance are missing or damaged "
                             f"({exc!r}); run that shard again") from None
        self._safe = {}

    def of(self, chrom, transcript_id):
        """The rising ranks of ``transcript_id`` (as the table writes it) on ``chrom``; [] when not recorded."""
        return self._ranks.get(chrom, {}).get(transcript_id, [])

    def of_entry(self, chrom, transcript):
        """The same for a TRANSCRIPT field of the VCF (the id with ``,;=|`` and white space made ``_``)."""
        if chrom not in self._safe:
            safe = {}
            for transcript_id, ranks in self._ranks.get(chrom, {}).items():
                safe.setdefault(info_safe(transcript_id), []).extend(ranks)
            self._safe[chrom] = {key: sorted(ranks) for key, ranks in safe.items()}
        return self._safe[chrom].get(transcript, [])


def _rank_after(ranks, previous, where, transcript):
    """The smallest of ``ranks`` above ``previous`` (None when none is), InputError when there are none."""
    if not ranks:
        raise InputError(f"{where}: transcript {transcript} is not among the transcripts its shard entry ranks, "
                         "though another shard scored the same record; the file was edited or is from another "
                         "run, run that shard again")
    if previous is None:
        return ranks[0]
    return next((rank for rank in ranks if rank > previous), None)


# ------------------------------------------------------------------------------------------ VCF records


def _info_values(fields, key):
    for item in fields[7].split(";"):
        name, _, value = item.partition("=")
        if name == key:
            return value.split(",") if value else []
    return []


def _allele_texts(alt_column):
    """``{allele number: ALLELE text of the INFO entries}``: 1.. for the ALT alleles, ``{0: '.'}`` without."""
    if alt_column == MISSING:
        return {0: MISSING}
    # As the VCF reader reads ALT (upper case but symbolic alleles) and the writer prints it (info_safe).
    return {number: info_safe(alt.upper() if not alt.startswith("<") else alt)
            for number, alt in enumerate(alt_column.split(","), 1)}


def _next_allele(alleles, text, after, where):
    """The first allele number above ``after`` (any when None) whose ALLELE text is ``text``."""
    for number, allele_text in alleles.items():
        if (after is None or number > after) and allele_text == text:
            return number
    raise InputError(f"{where}: an ISOFORMER entry names allele {text}, which the record's ALT column does not "
                     "list (in that order); the file was edited, run that shard again")


def _keyed(items, alleles, ranks_of, where):
    """``((allele number, rank), text)`` of a shard's transcript-level items ``(ALLELE, TRANSCRIPT, text)``,
    in their order (module docstring)."""
    keyed, allele, previous = [], None, None
    for allele_text, transcript, text in items:
        ranks = ranks_of(transcript)
        rank = None
        if allele is not None and alleles[allele] == allele_text:
            rank = _rank_after(ranks, previous, where, transcript)
        if rank is None:  # another allele: the next one with this text
            allele = _next_allele(alleles, allele_text, allele, where)
            rank = _rank_after(ranks, None, where, transcript)
        keyed.append(((allele, rank), text))
        previous = rank
    return keyed


def _allele_level_keyed(statuses, alleles, where):
    """``((allele number, -1), text)`` of allele-level statuses, in their order (one per allele)."""
    keyed, allele = [], None
    for text in statuses:
        allele = _next_allele(alleles, text.split("|", 1)[0], allele, where)
        keyed.append(((allele, -1), text))
    return keyed


def _is_allele_level(status):
    return status.split("|")[1] == MISSING


def merge_vcf_record(lines, ranks, paths, number):
    """The single run's text line of VCF record ``number`` (1-based) from each shard's line of it.

    Args:
        lines: the record's line in each shard (ending in a newline), shards in any order.
        ranks: each shard's :class:`TranscriptRanks`.
        paths: each shard's file, for messages.

    Raises InputError when the shards' lines are not of one record and one run.
    """
    parsed = [line.rstrip("\n").split("\t") for line in lines]
    first = parsed[0]
    where = f"{paths[0]}: record {number} ({first[0]}:{first[1] if len(first) > 1 else '?'})"
    if len(first) < 8:
        raise InputError(f"{where}: not a VCF record line (fewer than 8 columns); the file is damaged")
    bare = annotate_record(first, [], [])
    allele_level = [status for status in _info_values(first, STATUS_KEY) if _is_allele_level(status)]
    owners = []
    for position, (path, fields) in enumerate(zip(paths, parsed)):
        if len(fields) < 8 or annotate_record(fields, [], []) != bare:
            raise InputError(f"{path}: record {number} differs from {paths[0]}'s beyond the ISOFORMER fields "
                             "(different VCFs, or a damaged file); merge the shards of one run")
        statuses = _info_values(fields, STATUS_KEY)
        if [status for status in statuses if _is_allele_level(status)] != allele_level:
            raise InputError(f"{path}: record {number}: its allele statuses differ from {paths[0]}'s; merge the "
                             "shards of one run")
        if _info_values(fields, INFO_KEY) or len(statuses) > len(allele_level):
            owners.append(position)
    if len(owners) <= 1:
        return lines[owners[0] if owners else 0]
    alleles = _allele_texts(first[4])
    chrom = first[0]
    entries, statuses = [], _allele_level_keyed(allele_level, alleles, where)
    for position in owners:
        fields, shard_ranks = parsed[position], ranks[position]
        shard_where = f"{paths[position]}: record {number} ({first[0]}:{first[1]})"

        def ranks_of(transcript, shard_ranks=shard_ranks):
            return shard_ranks.of_entry(chrom, transcript)

        items = [(entry.split("|")[0], entry.split("|")[2], entry) for entry in _info_values(fields, INFO_KEY)]
        entries.extend(_keyed(items, alleles, ranks_of, shard_where))
        items = [(status.split("|")[0], status.split("|")[1], status) for status in _info_values(fields, STATUS_KEY)
                 if not _is_allele_level(status)]
        statuses.extend(_keyed(items, alleles, ranks_of, shard_where))
    entries.sort(key=lambda item: item[0])
    statuses.sort(key=lambda item: item[0])
    return annotate_record(first, [text for _, text in entries], [text for _, text in statuses])


# ------------------------------------------------------------------------------ table and triples rows


def _rising_runs(rows, shard_ranks, where):
    """A unit's rows ``(chrom, transcript_id, payload)`` split into runs of rising rank: ``[[(rank,
    payload), ...], ...]``."""
    runs, previous = [], None
    for chrom, transcript_id, payload in rows:
        ranks = shard_ranks.of(chrom, transcript_id)
        rank = _rank_after(ranks, previous, where, transcript_id) if runs else None
        if rank is None:
            rank = _rank_after(ranks, None, where, transcript_id)
            runs.append([])
        runs[-1].append((rank, payload))
        previous = rank
    return runs


def merge_row_units(shards):
    """Payloads of every shard's rows in the single run's order (module docstring).

    Args:
        shards: per shard ``(path, ordinals, units, ranks)``: the ordinals its shard entry lists, an iterable
            of its units in file order (each a list of rows ``(chrom, transcript_id, payload)``) and its
            :class:`TranscriptRanks`.

    Yields payloads. InputError when a shard holds more or fewer units than its order lists.
    """
    def tagged(position, path, ordinals, units):
        for ordinal, unit in itertools.zip_longest(ordinals, units, fillvalue=None):
            if ordinal is None or unit is None:
                raise InputError(f"{path}: holds {'more' if ordinal is None else 'fewer'} row groups than its "
                                 f"shard order lists ({len(ordinals)}); the file is incomplete or edited, run that "
                                 "shard again")
            yield ordinal, position, unit

    streams = [tagged(position, path, ordinals, units) for position, (path, ordinals, units, _) in enumerate(shards)]
    merged = heapq.merge(*streams, key=lambda item: item[:2])
    for ordinal, group in itertools.groupby(merged, key=lambda item: item[0]):
        group = list(group)
        if len(group) == 1:
            yield from (payload for _, _, payload in group[0][2])
            continue
        runs = []
        for _, position, unit in group:
            path, _, _, shard_ranks = shards[position]
            runs.append((path, _rising_runs(unit, shard_ranks, f"{path}: the rows of allele #{ordinal + 1}")))
        counts = {len(shard_runs) for _, shard_runs in runs}
        if len(counts) != 1:
            raise InputError(f"{runs[0][0]}: the rows of allele #{ordinal + 1} do not pair with those of "
                             f"{runs[1][0]}; the files were edited or are from other runs")
        for index in range(counts.pop()):
            for _, payload in sorted((item for _, shard_runs in runs for item in shard_runs[index]),
                                     key=lambda item: item[0]):
                yield payload


# --------------------------------------------------------------------------------------- merging whole files

_VCF_LINES_PER_WRITE = 1000  # records per write of the merged VCF (a BGZF block boundary, nothing more)


def merge_variant_shards(shards: Sequence[Shard], output: str, provenance: dict[str, Any]) -> int:
    """Merge the variant outputs ``shards`` (one kind, checked as one split) into ``output``; returns the VCF
    records or the table rows written. A merged ``.vcf.gz`` is BGZF, like the command's."""
    ranks = [TranscriptRanks(shard.provenance[SHARD_KEY], shard.path) for shard in shards]
    kind = shards[0].kind
    if kind == VARIANT_VCF:
        return _merge_variant_vcf(shards, ranks, output, provenance)
    if kind == VARIANT_TABLE_H5:
        return _merge_variant_table_h5(shards, ranks, output, provenance)
    return _merge_variant_text(shards, ranks, output, provenance)


def _merge_variant_vcf(shards, ranks, output, provenance):
    records = len(shards[0].ordinals)
    for shard in shards:
        if shard.ordinals != tuple(range(len(shard.ordinals))):
            raise InputError(f"{shard.path}: its shard order is not a variant VCF's (every record, in order); the "
                             "provenance is damaged, run that shard again")
        if len(shard.ordinals) != records:
            raise InputError(f"{shard.path}: holds {len(shard.ordinals)} records, but {shards[0].path} holds "
                             f"{records}; merge the shards of one run")
    header = "".join(f"{VCF_PROVENANCE_PREFIX}{canonical_json(provenance)}\n"
                     if line.startswith(VCF_PROVENANCE_PREFIX) else line for line in shards[0].header)
    paths = [shard.path for shard in shards]
    number = 0
    with VcfWriter(output, header, _VCF_LINES_PER_WRITE) as writer:
        batch = []
        for number, lines in enumerate(itertools.zip_longest(*(body_lines(shard) for shard in shards)), 1):
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
    and ALT, each a list of ``(chrom, transcript_id, payload)``, for :func:`merge_row_units`."""
    record, alt, chrom, transcript = (names.index(name) for name in ("record", "alt", "chrom", "transcript_id"))
    for _, unit in itertools.groupby(rows, key=lambda row: (row[0][record], row[0][alt])):
        yield [(values[chrom], values[transcript], payload) for values, payload in unit]


def _merge_variant_text(shards, ranks, output, provenance):
    kind = shards[0].kind
    names = check_same_columns(shards).rstrip("\n").split("\t")
    fields = TABLE_FIELDS if kind == VARIANT_TABLE_TSV else ALT_TRIPLE_FIELDS
    if tuple(names[:len(fields)]) != fields:
        raise InputError(f"{shards[0].path}: its columns are not those of a {kind}; the file is damaged")

    def units(shard):
        rows = ((line.rstrip("\n").split("\t"), line) for line in body_lines(shard))
        return _row_units(rows, names)

    rows = 0
    with atomic_text_output(output, compresslevel=GZIP_LEVEL) as stream:
        stream.write(merged_header(shards[0], provenance))
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
