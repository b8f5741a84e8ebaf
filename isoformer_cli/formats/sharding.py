"""What a shard's output records so that ``isoformer merge`` can rebuild the single run's file.

A run with ``--shard K/N`` adds one entry to its provenance::

    "shard": {"shard": "2/3", "units": 17, "order": "eJwz0DXQNdA1AAAIYgHn"}

``order`` lists, for each unit of the file in file order, its *ordinal*: the position of its transcript in
the input (the annotation's transcripts, or a triples table's rows, counted before any selection, from 0).
A unit is a row (triples table, predictions, embeddings), or a gene block for the gene summary (the
ordinal of the gene's first transcript). The outputs of ``isoformer variants`` have units of their own (VCF
records; rows of one record and ALT) and one more key: :mod:`isoformer_cli.formats.variant_shards`. Ordinals rise through a file, so
the list is stored as runs of consecutive values, ``gap:length`` pairs in decimal joined by commas (the
first gap counted from 0), zlib-compressed and base64-encoded. A shard of a GENCODE-sized annotation holds
about one run per gene it owns, a few tens of kB. The merge interleaves the shards' units by ordinal; since
a gene's transcripts share a shard, no ordinal appears in two shards of one split.
"""

import base64
import shlex
import zlib

from isoformer_cli.errors import InputError
from isoformer_cli.formats.run_identity import SHARD_KEY, represented_inputs, run_difference


def encode_order(ordinals):
    """Rising ordinals -> the compact text of the module docstring."""
    runs, previous_end = [], 0
    start = length = None
    for ordinal in ordinals:
        if start is not None and ordinal == start + length:
            length += 1
            continue
        if start is not None:
            runs.append(f"{start - previous_end}:{length}")
            previous_end = start + length
        if ordinal < previous_end:
            raise ValueError(f"ordinals must rise; {ordinal} after {previous_end - 1}")
        start, length = ordinal, 1
    if start is not None:
        runs.append(f"{start - previous_end}:{length}")
    return base64.b64encode(zlib.compress(",".join(runs).encode("ascii"), 9)).decode("ascii")


def decode_order(text, where):
    """The ordinals of :func:`encode_order`'s ``text``; InputError naming ``where`` when damaged."""
    try:
        runs = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True)).decode("ascii")
        ordinals, position = [], 0
        for run in filter(None, runs.split(",")):
            gap, length = (int(part) for part in run.split(":"))
            if gap < 0 or length < 1:
                raise ValueError(run)
            start = position + gap
            ordinals.extend(range(start, start + length))
            position = start + length
    except (ValueError, zlib.error, UnicodeError, AttributeError) as exc:
        raise InputError(f"{where}: the shard order in the provenance is damaged ({exc}); "
                         "run that shard again") from None
    return ordinals


def shard_entry(shard, ordinals, source=None):
    """The provenance entry of shard ``shard`` (a :class:`~isoformer_cli.genomics.shards.Shard`) whose file
    holds units with these ordinals, in file order. ``source``: for a run on a shard's triples table, the
    inputs that table was built from (its provenance's ``inputs``), recorded because the tables of two
    shards differ while their sources agree."""
    ordinals = list(ordinals)
    entry = {"shard": str(shard), "units": len(ordinals), "order": encode_order(ordinals)}
    if source is not None:
        entry["source"] = source
    return entry


def with_shard(provenance, shard, ordinals, source=None):
    """``provenance`` plus the shard entry (unchanged when ``shard`` is None)."""
    if shard is None:
        return provenance
    return dict(provenance, **{SHARD_KEY: shard_entry(shard, ordinals, source)})


def _inputs(provenance):
    """The inputs a shard stands for: for a run on a shard's triples table, the table's sources (and the
    genome) instead of the table itself, which differs from shard to shard."""
    return represented_inputs(provenance, merging=True)


def gene_block_entry(entry, genes, where):
    """The shard entry of a gene summary, from its predictions' entry (row ordinals) and each row's gene key:
    one ordinal per gene block, the gene's first row's, in order of first appearance."""
    ordinals = decode_order(entry["order"], where)
    if len(ordinals) != len(genes):
        raise InputError(f"{where}: the shard order lists {len(ordinals)} rows but the file holds {len(genes)}")
    first = {}
    for gene, ordinal in zip(genes, ordinals):
        first.setdefault(gene, ordinal)
    return dict(entry, units=len(first), order=encode_order(first.values()))


def provenance_difference(first, other):
    """What makes two shards' provenances come from different runs (a short phrase), or None when they may
    be merged: the definition of "the same run" that ``--resume`` uses too, less the shard entry
    (:func:`isoformer_cli.formats.run_identity.run_difference`)."""
    return run_difference(first, other, merging=True)


# Options naming a shard's own output files: the merged file's command line leaves them out, since they name
# the first shard's files, not the merged one.
_SHARD_OUTPUT_OPTIONS = frozenset({"--shard", "-o", "--output", "--gene-summary", "-O", "--table",
                                   "--alt-triples", "--fasta-prefix"})


def merged_provenance(first, count):
    """The provenance of the merged file: the first shard's, without its shard entry, with the command line
    of the run the shards split (no ``--shard``, no output files) and the number of shards merged."""
    provenance = {key: value for key, value in first.items() if key != SHARD_KEY}
    provenance["inputs"] = dict(sorted(_inputs(first).items()))
    if "command_line" in provenance:
        words, kept, skip = shlex.split(provenance["command_line"]), [], False
        for word in words:
            if skip:
                skip = False
            elif word.split("=", 1)[0] in _SHARD_OUTPUT_OPTIONS:
                skip = "=" not in word
            else:
                kept.append(word)
        provenance["command_line"] = shlex.join(kept)
    provenance["merged_shards"] = count
    return provenance
