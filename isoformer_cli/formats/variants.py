"""Outputs of ``isoformer variants``: the annotated VCF, the score table, the alternative triples.

**VCF** (``-``, ``.vcf``, ``.vcf.gz``: BGZF blocks, so ``tabix -p vcf`` indexes it). The input's header
with ``##INFO`` lines for ``ISOFORMER`` and ``ISOFORMER_STATUS``, for a demo checkpoint or one fine-tuned from
it one ``##isoformer_warning=WARNING: ...`` line (the warning of predict's outputs), and one
``##isoformer_provenance=`` line (JSON) added before ``#CHROM``; then every input record, in input order, its
columns as they came, with (replacing any earlier ones) the fields::

    ISOFORMER=ALLELE|GENE|TRANSCRIPT|CONSEQUENCE|AMINO_ACIDS|INPUTS|FLAGS|MAX_DELTA|MAX_TISSUE|DNA|RNA|PROTEIN|MAX_SHARE_DELTA|SHARE_TISSUE,...
    ISOFORMER_STATUS=ALLELE|TRANSCRIPT|STATUS,...

one ``ISOFORMER`` entry per scored (allele, transcript) and one ``ISOFORMER_STATUS`` entry per allele (or
allele and transcript) not scored; a record neither affects nor skips has neither field. Inside an entry
``&`` joins several terms; names are sanitised so no entry holds ``,;=|`` or white space. Numbers are in
the checkpoint's units, printed with ``%.4g``; ``.`` where undefined.

**Table** (``.tsv``, ``.tsv.gz``, ``.h5``/``.h5ad``): one row per scored (allele, transcript) with every
tissue. TSV: ``#`` header lines (title, units, provenance) then the columns :data:`TABLE_FIELDS`, then
``delta:T``, ``ref:T``, ``alt:T`` and ``share_delta:T`` for each tissue T. HDF5 (AnnData layout): obs =
the same fields, var = tissues, X = alt − ref, layers ``ref``, ``alt``, ``delta``, ``alt_dna`` (stage 1:
alternative DNA only), ``alt_dna_rna`` (stage 2) and ``share_delta``; ``uns["provenance"]``.

**Alternative triples** (``--alt-triples``, ``.tsv`` or ``.tsv.gz``): every alternative triple scored,
columns :data:`ALT_TRIPLE_FIELDS` (``window_start``/``window_end``: the alternative DNA window, 0-based
half-open on the alternative genome).

A shard's outputs (``--shard K/N``) record the shard entry of :mod:`isoformer_cli.formats.variant_shards` in
their provenance; the table and the triples complete it (units and order) when they are built, from each
row's allele ordinal, which their journals keep beside the rows.

All three stream chunk by chunk (rows of a chunk = its VCF records) into temporary files renamed into
place when the run completes, and resume after a kill: the VCF keeps its complete chunks (each chunk
ends a BGZF block or a line), the table and the triples keep their journals, and the run continues from
the fewest records any of them holds (:meth:`VcfWriter.keep_rows`, ``truncate_rows``).
"""

import contextlib
import gzip
import json
import logging
import math
import os
import re
import struct
import sys
import zlib

import h5py
import numpy as np

from isoformer_cli.errors import OutputError
from isoformer_cli.formats import h5ad
from isoformer_cli.formats.atomic import STDOUT, replace_into_place
from isoformer_cli.formats.predictions import (
    GZIP_LEVEL,
    VALUE_FORMAT,
    _complete_gzip_members,
    tsv_header,
)
from isoformer_cli.formats.provenance import demo_warning
from isoformer_cli.formats.sharding import SHARD_KEY, encode_order
from isoformer_cli.formats.streaming import (
    JournalWriter,
    PartialFileWriter,
    canonical_json,
    fsync_file,
    refuse_other_run,
    refuse_resume_of_direct,
)
from isoformer_cli.formats.targets import (
    classify_output,
    open_direct,
    resumable_partial_path,
)

log = logging.getLogger(__name__)

INFO_KEY = "ISOFORMER"
STATUS_KEY = "ISOFORMER_STATUS"
INFO_FIELDS = ("ALLELE", "GENE", "TRANSCRIPT", "CONSEQUENCE", "AMINO_ACIDS", "INPUTS", "FLAGS", "MAX_DELTA",
               "MAX_TISSUE", "DNA", "RNA", "PROTEIN", "MAX_SHARE_DELTA", "SHARE_TISSUE")
INFO_NUMBER_FORMAT = "%.4g"
TABLE_FIELDS = ("record", "chrom", "pos", "id", "ref", "alt", "gene_id", "gene_name", "transcript_id", "strand",
                "consequence", "amino_acids", "inputs", "flags", "status", "max_delta", "max_tissue", "dna_delta",
                "rna_delta", "protein_delta", "max_share_delta", "share_tissue")
TABLE_INT_FIELDS = ("record", "pos")
TABLE_FLOAT_FIELDS = ("max_delta", "dna_delta", "rna_delta", "protein_delta", "max_share_delta")
ALT_TRIPLE_FIELDS = ("record", "chrom", "pos", "id", "ref", "alt", "transcript_id", "gene_id", "consequence",
                     "amino_acids", "inputs", "window_start", "window_end", "rna", "protein")
TABLE_SUFFIXES = (".tsv", ".tsv.gz", ".h5", ".h5ad")
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".vcf.bgz")
MISSING = "."

_UNSAFE = re.compile(r"[\s,;=|]+")
_BGZF_BLOCK = 0xff00  # uncompressed bytes per BGZF block (htslib uses the same)
# The empty block that ends every BGZF file (SAM/BAM specification, section 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def info_safe(text):
    """``text`` with the characters an INFO entry cannot hold (``,;=|`` and white space) made ``_``."""
    return _UNSAFE.sub("_", str(text)) or MISSING


def _number(value, fmt=INFO_NUMBER_FORMAT):
    return MISSING if value is None or not math.isfinite(value) else fmt % value


def summarise(ref, alt, dna, dna_rna, share, tissues):
    """Per row: the largest absolute change, its tissue, its split over the modalities, the largest
    absolute change of the isoform share and its tissue.

    Args:
        ref, alt, dna, dna_rna, share: ``(n_rows, n_tissues)`` arrays (see ``ScoredChunk``).
        tissues: tissue names.

    Returns a list of dicts with max_delta, max_tissue, dna_delta, rna_delta, protein_delta (the stage
    differences at that tissue: they add up to max_delta), max_share_delta, share_tissue. A row without a
    finite change (an allele the model cannot see: NaN) has None values and no tissue (``.``): no tissue is
    claimed for it.
    """
    rows = []
    delta = alt.astype(np.float64) - ref.astype(np.float64)
    for row in range(len(ref)):
        shares = share[row].astype(np.float64)
        if np.isfinite(shares).any():
            share_column = int(np.nanargmax(np.abs(shares)))
            max_share, share_tissue = float(shares[share_column]), tissues[share_column]
        else:
            max_share, share_tissue = None, MISSING
        if not np.isfinite(delta[row]).any():
            rows.append({"max_delta": None, "max_tissue": MISSING, "dna_delta": None, "rna_delta": None,
                         "protein_delta": None, "max_share_delta": max_share, "share_tissue": share_tissue})
            continue
        column = int(np.nanargmax(np.abs(delta[row])))
        rows.append({
            "max_delta": float(delta[row, column]), "max_tissue": tissues[column],
            "dna_delta": float(dna[row, column]) - float(ref[row, column]),
            "rna_delta": float(dna_rna[row, column]) - float(dna[row, column]),
            "protein_delta": float(alt[row, column]) - float(dna_rna[row, column]),
            "max_share_delta": max_share, "share_tissue": share_tissue,
        })
    return rows


def info_header_lines(tissues, provenance, status_descriptions):
    """The ``##INFO``, warning and provenance lines added to the input header."""
    text = demo_warning(provenance)
    warning = [f"##isoformer_warning=WARNING: {text}"] if text else []
    tissue_names = ", ".join(f"{info_safe(tissue)}" for tissue in tissues)
    statuses = "; ".join(f"{code}: {text}" for code, text in status_descriptions.items())
    return [
        f'##INFO=<ID={INFO_KEY},Number=.,Type=String,Description="IsoFormer variant effect per allele and '
        f'transcript, in {provenance.get("units", "model units")} (alt - ref; DNA, RNA, PROTEIN: the change '
        'added by the alternative DNA, then RNA, then protein, at MAX_TISSUE; MAX_SHARE_DELTA: largest change of '
        f'the isoform\'s share of its gene). Format: {"|".join(INFO_FIELDS)}">',
        f'##INFO=<ID={STATUS_KEY},Number=.,Type=String,Description="Alleles isoformer did not score. Format: '
        f'ALLELE|TRANSCRIPT|STATUS. Status: {statuses.replace(chr(34), chr(39))}">',
        f"##isoformer_tissues={tissue_names}",
    ] + warning + [f"##isoformer_provenance={canonical_json(provenance)}"]


def output_header(input_lines, added_lines):
    """The output VCF header: the input's ``##`` lines (earlier isoformer lines dropped), the added lines,
    then the ``#CHROM`` line."""
    kept = [line for line in input_lines[:-1]
            if not line.startswith((f"##INFO=<ID={INFO_KEY},", f"##INFO=<ID={STATUS_KEY},", "##isoformer_"))]
    return "\n".join(kept + list(added_lines) + [input_lines[-1]]) + "\n"


def annotate_record(fields, entries, statuses):
    """The record's text line with ISOFORMER / ISOFORMER_STATUS set (earlier values replaced)."""
    info = [item for item in fields[7].split(";")
            if item not in (".", "") and item.split("=", 1)[0] not in (INFO_KEY, STATUS_KEY)]
    if entries:
        info.append(f"{INFO_KEY}={','.join(entries)}")
    if statuses:
        info.append(f"{STATUS_KEY}={','.join(statuses)}")
    out = list(fields)
    out[7] = ";".join(info) if info else "."
    return "\t".join(out) + "\n"


def info_entry(pair_row, summary):
    """One ISOFORMER entry from a table row (dict of TABLE_FIELDS values) and its summary."""
    values = [
        pair_row["alt"], pair_row["gene_name"] or pair_row["gene_id"], pair_row["transcript_id"],
        pair_row["consequence"], pair_row["amino_acids"], pair_row["inputs"], pair_row["flags"],
        _number(summary["max_delta"]), summary["max_tissue"], _number(summary["dna_delta"]),
        _number(summary["rna_delta"]), _number(summary["protein_delta"]), _number(summary["max_share_delta"]),
        summary["share_tissue"],
    ]
    return "|".join(info_safe(value) if value not in ("", None) else MISSING for value in values)


def status_entry(alt, transcript, status):
    return "|".join(info_safe(value) for value in (alt or MISSING, transcript or MISSING, status))


# ------------------------------------------------------------------------------------------- BGZF


def bgzf_blocks(data):
    """``data`` as complete BGZF blocks (each a gzip member with the ``BC`` extra field)."""
    out = []
    for start in range(0, len(data), _BGZF_BLOCK):
        piece = data[start:start + _BGZF_BLOCK]
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
        deflated = compressor.compress(piece) + compressor.flush()
        size = len(deflated) + 25  # header 18 + trailer 8, minus one
        out.append(b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", size)
                   + deflated + struct.pack("<II", zlib.crc32(piece), len(piece)))
    return b"".join(out)


def _header_length(data):
    """Bytes of a VCF header at the start of ``data`` (through the ``#CHROM`` line's newline), or None while
    that line is not complete."""
    start = 0 if data.startswith(b"#CHROM") else data.find(b"\n#CHROM")
    if start < 0:
        return None
    end = data.find(b"\n", start + 1)
    return None if end < 0 else end + 1


class VcfWriter(PartialFileWriter):
    """The annotated VCF, streamed (see the module docstring).

    Args:
        target: ``-``, a path ending in .vcf or .vcf.gz (BGZF), or a direct target.
        header: the complete header text (:func:`output_header`).
        chunk_size: records per chunk; on resume the kept records are a whole number of chunks.
        resume: continue the partial file of a killed run of the same command.
    """

    def __init__(self, target, header, chunk_size, resume=False):
        self.target = target
        self.header = header.encode("utf-8")
        self.chunk_size = chunk_size
        self.bgzf = target.endswith((".gz", ".bgz"))
        self._stream = None
        self._direct = None
        self._partial = None
        self.completed_rows = self.written_rows = 0
        self._boundaries = [(0, 0)]
        if target == STDOUT:
            sys.stdout.write(header)
            sys.stdout.flush()
            return
        output = classify_output(target)
        if output.is_direct:
            refuse_resume_of_direct(output, resume)
            self._direct = contextlib.ExitStack()
            self._stream = self._direct.enter_context(open_direct(output))
            self._write(self._encode(self.header))
            return
        self._take_lock(output)
        try:
            self._open_partial(output, resume)
        except BaseException:
            self._release_lock()
            raise

    def _encode(self, data):
        return bgzf_blocks(data) if self.bgzf else data

    def _open_partial(self, output, resume):
        self._partial = resumable_partial_path(output)
        kept = self._scan() if resume and os.path.exists(self._partial) else None
        try:
            if kept is None:
                if os.path.exists(self._partial) and not resume:
                    log.warning("replacing the partial output %s of an earlier run (use --resume to continue it)",
                                self._partial)
                self._stream = open(self._partial, "wb")
                self._write(self._encode(self.header))
            else:
                self._stream = open(self._partial, "r+b")
                self.keep_rows(self._boundaries[-1][1])
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot write the temporary file {self._partial}: {exc.strerror}") from exc

    def _scan(self):
        """Record the chunk boundaries ``(offset, records)`` of the partial file; None to start afresh."""
        if self.bgzf:
            members = list(_complete_gzip_members(self._partial))
        else:
            with open(self._partial, "rb") as stream:
                data = stream.read()
            members, offset = [], 0
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                members.append((offset, line))
        text, boundaries, header_end = b"", [], None
        records = 0
        for end, piece in members:
            if header_end is None:
                text += piece
                found_end = _header_length(text)
                if found_end is None:
                    continue
                if text[:found_end] != self.header:
                    self._adopt_or_refuse(text[:found_end])
                header_end = end
                records = text[found_end:].count(b"\n")
                if records == 0:
                    boundaries.append((end, 0))
                continue
            records += piece.count(b"\n")
            if records % self.chunk_size == 0:
                boundaries.append((end, records))
        if header_end is None:
            if not self.header.startswith(text):
                self._adopt_or_refuse(text)  # not this run's header, and not complete: refused
            return None  # killed while writing the header
        self._boundaries = boundaries or [(header_end, 0)]
        return self._boundaries[-1]

    def _adopt_or_refuse(self, found_header):
        """Continue a partial VCF whose header differs from this run's: keep that header when it is the same
        run spelled another way (the finished file is then the interrupted run's), else raise the OutputError
        naming what differs."""
        found = found_header.decode("utf-8", "replace")
        provenance = re.search(r"^##isoformer_provenance=(.*)$", found, re.M)
        try:
            found_identity = json.loads(provenance.group(1)) if provenance else None
        except ValueError:
            found_identity = None
        expected = json.loads(re.search(r"^##isoformer_provenance=(.*)$", self.header.decode("utf-8"), re.M).group(1))
        if _header_length(found_header) is None:
            found_identity = None  # an incomplete header cannot be checked
        refuse_other_run(self.target, self._partial, found_identity, expected)
        self.header = found_header

    def keep_rows(self, rows):
        """Keep the first ``rows`` records of a resumed partial file (a boundary found by the scan)."""
        for offset, count in self._boundaries:
            if count == rows:
                self._stream.truncate(offset)
                self._stream.seek(offset)
                self.completed_rows = self.written_rows = rows
                return
        raise ValueError(f"{self._partial}: no chunk boundary after {rows} records")

    def write_chunk(self, lines):
        """Append one chunk's record lines (each ending in a newline)."""
        self._check_open()
        data = "".join(lines).encode("utf-8")
        self.written_rows += len(lines)
        if self.target == STDOUT:
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        self._write(self._encode(data))

    def _write(self, data):
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot write: {exc.strerror}") from exc

    def _finish(self):
        if self.target == STDOUT:
            sys.stdout.flush()
            return
        if self.bgzf:
            self._write(BGZF_EOF)
        self._close()
        if self._partial is not None:
            fsync_file(self._partial)
            replace_into_place(self._partial, self.target)


# ------------------------------------------------------------------------------------ the tables


class VariantTableWriter(JournalWriter):
    """The score table (TSV or AnnData HDF5 by the target's name), built from its journal at the end."""

    def __init__(self, target, tissues, provenance, resume=False):
        self.target = target
        self.tissues = list(tissues)
        self.provenance = provenance
        self.kind = "h5ad" if target.endswith((".h5", ".h5ad")) else "tsv"
        identity = {"layout": f"isoformer variant table {self.kind}", "tissues": self.tissues,
                    "fields": list(TABLE_FIELDS), "provenance": provenance}
        self._open_journal(identity, resume)

    def write_chunk(self, records, rows, arrays, alleles=()):
        """Append one chunk: ``records`` VCF records, ``rows`` (dicts of TABLE_FIELDS), ``arrays`` (ref, alt,
        dna, dna_rna, share_delta: ``(len(rows), n_tissues)``), ``alleles``: each row's allele ordinal (for a
        shard's provenance; not written)."""
        self._check_open()
        table = [[row[name] for name in TABLE_FIELDS] for row in rows]
        self._append(records, {"rows": table, "alleles": list(alleles)},
                     {name: np.asarray(value, dtype=np.float32) for name, value in arrays.items()})

    def _build(self, path):
        self.provenance = shard_row_provenance(self.provenance, self._journal, TABLE_FIELDS)
        if self.kind == "tsv":
            self._build_tsv(path)
        else:
            self._build_h5ad(path)

    def _lines(self):
        tissues = self.tissues
        columns = list(TABLE_FIELDS) + [f"{prefix}:{tissue}" for prefix in ("delta", "ref", "alt", "share_delta")
                                        for tissue in tissues]
        notes = [f"units: {self.provenance.get('units', 'unknown')}; values printed with {VALUE_FORMAT}; "
                 "delta = alt - ref; share_delta = change of the isoform's share of its gene's TPM"]
        yield tsv_header(self.provenance, title="isoformer variant scores", notes=notes) + "\t".join(columns) + "\n"
        for _, meta, arrays in self._journal.iter_chunks():
            delta = arrays["alt"].astype(np.float32) - arrays["ref"].astype(np.float32) if len(meta["rows"]) else None
            for index, row in enumerate(meta["rows"]):
                fields = [_text(value, name) for name, value in zip(TABLE_FIELDS, row)]
                numbers = [_text(float(value), "") for block in
                           (delta[index], arrays["ref"][index], arrays["alt"][index], arrays["share_delta"][index])
                           for value in block]
                yield "\t".join(fields + numbers) + "\n"

    def _build_tsv(self, path):
        _write_text(path, self._lines(), self.target.endswith(".gz"))

    def _build_h5ad(self, path):
        rows, blocks = [], {name: [] for name in ("ref", "alt", "dna", "dna_rna", "share_delta")}
        for _, meta, arrays in self._journal.iter_chunks():
            rows.extend(meta["rows"])
            for name in blocks:
                blocks[name].append(np.asarray(arrays[name], dtype=np.float32).reshape(-1, len(self.tissues)))
        stacked = {name: np.concatenate(parts) if parts else np.zeros((0, len(self.tissues)), np.float32)
                   for name, parts in blocks.items()}
        delta = stacked["alt"] - stacked["ref"]
        with h5py.File(path, "w") as handle:
            h5ad.write_anndata_root(handle)
            h5ad.write_array(handle, "X", delta)
            layers = handle["layers"]
            for name, values in (("ref", stacked["ref"]), ("alt", stacked["alt"]), ("delta", delta),
                                 ("alt_dna", stacked["dna"]), ("alt_dna_rna", stacked["dna_rna"]),
                                 ("share_delta", stacked["share_delta"])):
                h5ad.write_array(layers, name, values)
            columns = {}
            for position, name in enumerate(TABLE_FIELDS):
                values = [row[position] for row in rows]
                if name in TABLE_INT_FIELDS:
                    columns[name] = np.array(values, dtype=np.int64)
                elif name in TABLE_FLOAT_FIELDS:
                    columns[name] = np.array([np.nan if value is None else value for value in values], np.float64)
                else:
                    columns[name] = [str(value) for value in values]
            index = [f"{row[0]}:{row[5]}:{row[8]}" for row in rows]
            h5ad.write_dataframe(handle, "obs", index, columns)
            h5ad.write_dataframe(handle, "var", self.tissues, {})
            uns = handle.create_group("uns")
            h5ad.set_encoding(uns, "dict")
            h5ad.write_mapping(uns, "provenance", self.provenance)


class AltTriplesWriter(JournalWriter):
    """``--alt-triples``: every alternative triple scored, TSV (plain or .gz), built at the end."""

    def __init__(self, target, provenance, resume=False):
        self.target = target
        self.provenance = provenance
        self._open_journal({"layout": "isoformer alternative triples", "fields": list(ALT_TRIPLE_FIELDS),
                            "provenance": provenance}, resume)

    def write_chunk(self, records, rows, alleles=()):
        """Append one chunk: ``records`` VCF records, its rows (dicts of ALT_TRIPLE_FIELDS) and each row's
        allele ordinal (for a shard's provenance; not written)."""
        self._check_open()
        self._append(records, {"rows": [[row[name] for name in ALT_TRIPLE_FIELDS] for row in rows],
                               "alleles": list(alleles)}, {})

    def _lines(self):
        notes = ["window_start, window_end: the alternative DNA window, 0-based half-open on the alternative "
                 "genome; rna, protein: what the model was given ('' = none)"]
        yield tsv_header(self.provenance, title="isoformer alternative triples", notes=notes) \
            + "\t".join(ALT_TRIPLE_FIELDS) + "\n"
        for _, meta, _ in self._journal.iter_chunks():
            for row in meta["rows"]:
                yield "\t".join(_text(value, name) for name, value in zip(ALT_TRIPLE_FIELDS, row)) + "\n"

    def _build(self, path):
        self.provenance = shard_row_provenance(self.provenance, self._journal, ALT_TRIPLE_FIELDS)
        _write_text(path, self._lines(), self.target.endswith(".gz"))


def shard_row_provenance(provenance, journal, fields):
    """A shard's table or alternative-triples provenance with the ``units`` and ``order`` of its shard entry
    (:mod:`isoformer_cli.formats.variant_shards`) from the rows of ``journal``: a unit is a run of rows with
    the same record and ALT, its ordinal the allele ordinal of its first row. Unchanged without a shard
    entry."""
    entry = provenance.get(SHARD_KEY)
    if entry is None:
        return provenance
    record, alt = fields.index("record"), fields.index("alt")
    ordinals, previous = [], None
    for _, meta, _ in journal.iter_chunks():
        if len(meta["alleles"]) != len(meta["rows"]):
            raise ValueError("a shard's variant rows need their allele ordinals")
        for row, allele in zip(meta["rows"], meta["alleles"]):
            if (row[record], row[alt]) != previous:
                ordinals.append(allele)
                previous = (row[record], row[alt])
    return dict(provenance, **{SHARD_KEY: dict(entry, units=len(ordinals), order=encode_order(ordinals))})


def read_variant_table_h5(path):
    """A variant table written as HDF5: ``(tissues, rows, arrays, provenance)`` with ``rows`` lists of
    TABLE_FIELDS values (NaN where a float is undefined) and ``arrays`` ``ref``, ``alt``, ``dna``,
    ``dna_rna``, ``share_delta`` (``(n_rows, n_tissues)`` float32), as :class:`VariantTableWriter` takes
    them. OSError, KeyError or ValueError when the file is not one."""
    with h5py.File(path, "r") as handle:
        _, columns = h5ad.read_dataframe(handle["obs"])
        tissues, _ = h5ad.read_dataframe(handle["var"])
        layers = handle["layers"]
        arrays = {name: layers[layer][()].astype(np.float32, copy=False)
                  for name, layer in (("ref", "ref"), ("alt", "alt"), ("dna", "alt_dna"), ("dna_rna", "alt_dna_rna"),
                                      ("share_delta", "share_delta"))}
        provenance = h5ad.read_mapping(handle["uns/provenance"])
    rows = [list(values) for values in zip(*(columns[name] for name in TABLE_FIELDS))]
    return tissues, rows, arrays, provenance


def _text(value, name):
    if value is None:
        return "NA"
    if isinstance(value, float):
        return VALUE_FORMAT % value if math.isfinite(value) else "NA"
    text = str(value)
    if "\t" in text or "\n" in text:
        raise OutputError(f"{name} value {text!r} holds a tab or newline, which a TSV table cannot hold")
    return text


def _write_text(path, lines, compress):
    """Write text lines to ``path``, gzip-compressed (reproducibly: no name, no time) when asked."""
    with open(path, "wb") as raw:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as stream:
                for line in lines:
                    stream.write(line.encode("utf-8"))
        else:
            for line in lines:
                raw.write(line.encode("utf-8"))


def table_kind(target):
    """OutputError unless ``target`` names a table this command writes (TSV or HDF5)."""
    if not target.endswith(TABLE_SUFFIXES):
        raise OutputError(f"{target}: unknown table format; name it .tsv, .tsv.gz, .h5 or .h5ad")


def vcf_kind(target):
    """OutputError unless ``target`` is ``-`` or a VCF name (.vcf, .vcf.gz, .vcf.bgz) or a direct target."""
    if target == STDOUT or target.endswith(VCF_SUFFIXES) or classify_output(target).is_direct:
        return
    raise OutputError(f"{target}: the output is a VCF; name it .vcf or .vcf.gz (bgzip), or - for standard output")
