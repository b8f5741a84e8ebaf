"""Prediction tables (transcripts x tissues): streaming writers for TSV and AnnData HDF5, and a reader.

The predict engine opens one writer, hands it results chunk by chunk in annotation order, then
calls ``finish()``::

    writer = open_prediction_writer("out.h5ad", tissues, provenance, resume=args.resume)
    with writer:
        for obs_rows, values in engine_chunks(skip=writer.completed_rows):
            writer.write_chunk(obs_rows, values)        # values: float32 (n_rows, n_tissues)

The format follows the target's name: ``-`` (standard output), ``.tsv`` and ``.tsv.gz`` give TSV;
``.h5`` and ``.h5ad`` give HDF5 in AnnData's layout. Units and provenance come from the
``provenance`` dict (:mod:`isoformer_cli.formats.provenance`).

TSV layout (UTF-8, ``\\n`` line ends)::

    # isoformer predictions, format 1
    # units: log(TPM+1); values printed with %.6g
    # WARNING: DEMO checkpoint ... (only for the bundled demo checkpoint)
    # provenance: {"checkpoint_id": ..., "command_line": ..., ...}     (one line of JSON)
    transcript_id  gene_id  gene_name  <tissue 1> ... <tissue T>  flags
    ENST...        ENSG...  AXIN1      0.912345   ... 1.23457     window_padded,internal_stop

Header lines start with ``#``; read the table with ``pandas.read_csv(path, sep="\\t",
comment="#")`` or R's ``read.delim(path, comment.char="#")``, which works because no column
holds a ``#`` (identifiers from GTF/GFF3 and our flag names never contain one; a row that would
is refused). ``flags`` is a comma-separated list, empty when there is none. Values are float32
printed with ``%.6g`` (six significant digits), so a table is reproducible byte for byte.
A ``.tsv.gz`` file is a series of gzip members (the header, then one per 1,000 rows): standard
gzip readers (``zcat``, Python, R, pandas) read it as one stream; the member boundaries are what
lets ``--resume`` cut a torn end.

HDF5 layout (AnnData; ``anndata.read_h5ad`` opens it):

* ``X``: float32 (n_transcripts, n_tissues), the predictions;
* ``obs``: one row per transcript, index = transcript_id, columns gene_id, gene_name, biotype,
  chrom, strand (strings), tss, window_start, window_end (int64, 0-based genomic, half-open
  window, TSS = the 0-based position of the transcript's first base), flags (string);
* ``var``: index = the tissue names, in the checkpoint's order;
* ``uns["provenance"]``: the provenance dict.

Resuming (``resume=True``) continues from the temporary file a killed run left beside the
target: TSV keeps every complete line (``.tsv``) or gzip member (``.tsv.gz``); HDF5 keeps every
complete journal frame (see :mod:`isoformer_cli.formats.streaming`) and builds the ``.h5ad`` at
``finish()``. The finished file is byte-identical to an uninterrupted run's, whatever the chunk
sizes. A temporary file written by another run (other tissues, checkpoint, inputs, command line)
is refused; the caller must therefore record the command line without ``--resume``
(:func:`isoformer_cli.formats.provenance.recorded_command_line` does). Standard output cannot
resume. ``resume=True`` with no temporary file starts from the beginning.
"""

import collections
from collections.abc import Sequence
from typing import Any
import contextlib
import json
import logging
import os
import sys
import zlib

import h5py
import numpy as np

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.genomics.compressed import compressed_read_errors, open_text
from isoformer_cli.formats import h5ad
from isoformer_cli.formats.atomic import STDOUT, replace_into_place
from isoformer_cli.formats.provenance import FORMAT_VERSION, demo_warning
from isoformer_cli.formats.streaming import (
    JournalWriter,
    PartialFileWriter,
    canonical_json,
    fsync_file,
    refuse_other_run,
    refuse_resume_of_direct,
)
from isoformer_cli.formats.targets import classify_output, open_direct, resumable_partial_path

log = logging.getLogger(__name__)

TSV_SUFFIXES = (".tsv", ".tsv.gz")
HDF5_SUFFIXES = (".h5", ".h5ad")
VALUE_FORMAT = "%.6g"
ROWS_PER_GZIP_MEMBER = 1000
GZIP_LEVEL = 6

# Per-transcript annotation columns (obs). TSV carries the first three and flags.
OBS_STRING_FIELDS = ("transcript_id", "gene_id", "gene_name", "biotype", "chrom", "strand", "flags")
OBS_INT_FIELDS = ("tss", "window_start", "window_end")
OBS_FIELDS = ("transcript_id", "gene_id", "gene_name", "biotype", "chrom", "strand",
              "tss", "window_start", "window_end", "flags")
TSV_ID_FIELDS = ("transcript_id", "gene_id", "gene_name")
TSV_FIELDS = TSV_ID_FIELDS + ("flags",)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

Predictions = collections.namedtuple("Predictions", "obs tissues values provenance")
Predictions.__doc__ = """A prediction table read back.

obs: list of one dict per transcript (TSV: transcript_id, gene_id, gene_name, flags; HDF5: all
    of OBS_FIELDS); tissues: list of tissue names; values: float32 (n_transcripts, n_tissues);
    provenance: the provenance dict ({} when the file has none).
"""


def obs_row(triple):
    """The obs dict of one :class:`isoformer_cli.genomics.records.Triple` (keys: OBS_FIELDS)."""
    transcript = triple.transcript
    return {
        "transcript_id": transcript.transcript_id,
        "gene_id": transcript.gene_id,
        "gene_name": transcript.gene_name,
        "biotype": transcript.biotype,
        "chrom": triple.genome_chrom,  # the genome FASTA's name, as in triples tables
        "strand": transcript.strand,
        "tss": triple.tss,
        "window_start": triple.window_start,
        "window_end": triple.window_end,
        "flags": ",".join(triple.flags),
    }


def output_format(target: str) -> str:
    """``"tsv"`` or ``"h5ad"`` for an output path; OutputError otherwise.

    The name decides; a target without a known suffix that is written directly (``-``, a FIFO,
    ``/dev/null``, ``/dev/fd/N``) is TSV.
    """
    if target == STDOUT or target.endswith(TSV_SUFFIXES):
        return "tsv"
    if target.endswith(HDF5_SUFFIXES):
        return "h5ad"
    if classify_output(target).is_direct:
        return "tsv"
    accepted = ", ".join(TSV_SUFFIXES + HDF5_SUFFIXES)
    raise OutputError(
        f"{target}: unknown output format; name the file with one of {accepted}, or - for standard output"
    )


def open_prediction_writer(target: str, tissues: Sequence[str], provenance: dict[str, Any] | None,
                           resume: bool = False) -> "TsvPredictionWriter | H5adPredictionWriter":
    """Open the streaming writer for ``target`` (format from its name; see the module docstring).

    Args:
        target: output path or ``-`` for standard output.
        tissues: tissue names in the checkpoint's output order (the columns of ``values``).
        provenance: dict from :func:`isoformer_cli.formats.provenance.build_provenance`; its
            ``units`` and ``demo`` keys are stated in the output.
        resume: continue from the temporary file of a killed run of the same command.

    Returns a writer with ``completed_rows``, ``write_chunk(obs_rows, values)``, ``finish()``,
    ``abort()`` and ``close()`` (see :class:`isoformer_cli.formats.streaming.StreamingWriter`).
    Raises OutputError for an unknown suffix, an unwritable folder, ``resume`` on standard
    output, or a temporary file left by a different run.
    """
    kind = output_format(target)
    if resume and target == STDOUT:
        raise OutputError("--resume needs an output file (-o FILE): standard output cannot be resumed")
    refuse_resume_of_direct(classify_output(target), resume)
    if kind == "tsv":
        return TsvPredictionWriter(target, tissues, provenance, resume)
    return H5adPredictionWriter(target, tissues, provenance, resume)


def _check_chunk(obs_rows, values, n_tissues, fields):
    """Validate one chunk; returns ``values`` as a C-contiguous float32 (n_rows, n_tissues) array."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape != (len(obs_rows), n_tissues):
        raise ValueError(f"values have shape {values.shape}; expected ({len(obs_rows)}, {n_tissues})")
    for row in obs_rows:
        missing = [field for field in fields if field not in row]
        if missing:
            raise ValueError(f"obs row {row.get('transcript_id', row)!r} lacks {', '.join(missing)}")
    return values


def _flags_text(flags):
    return flags if isinstance(flags, str) else ",".join(flags)


# ----------------------------------------------------------------------------------------- TSV


def tsv_header(provenance, title="isoformer predictions", notes=None):
    """The ``#`` comment lines that start a TSV table (title, units, demo warning, provenance).

    ``notes`` replace the default units line (used by the gene summary). Ends with a newline.
    """
    units = provenance.get("units", "unknown")
    lines = [f"# {title}, format {FORMAT_VERSION}"]
    lines += [f"# {note}" for note in (notes or [f"units: {units}; values printed with {VALUE_FORMAT}"])]
    warning = demo_warning(provenance)
    if warning:
        lines.append(f"# WARNING: {warning}")
    lines.append(f"# provenance: {canonical_json(provenance)}")
    return "\n".join(lines) + "\n"


def _tsv_columns(tissues):
    return list(TSV_ID_FIELDS) + list(tissues) + ["flags"]


def parse_tsv_header_lines(lines):
    """``(provenance, columns)`` from a table's leading lines (``#`` lines then the column line)."""
    provenance, columns = {}, None
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("# provenance: "):
            provenance = json.loads(line[len("# provenance: "):])
        elif not line.startswith("#"):
            columns = line.split("\t")
            break
    return provenance, columns


class TsvPredictionWriter(PartialFileWriter):
    """TSV writer for ``-``, ``.tsv`` and ``.tsv.gz`` (layout in the module docstring)."""

    def __init__(self, target, tissues, provenance, resume=False):
        self.target = target
        self.tissues = list(tissues)
        self.provenance = provenance
        self.columns = _tsv_columns(self.tissues)
        self._header = tsv_header(provenance) + "\t".join(self.columns) + "\n"
        self._gzip = target.endswith(".gz")
        self._pending = []  # .tsv.gz lines not yet in a complete gzip member
        self._stream = None
        self._direct = None  # an ExitStack holding a direct target's open stream
        self.completed_rows = 0
        self.written_rows = 0
        self._partial = None
        if target == STDOUT:
            sys.stdout.write(self._header)
            return
        output = classify_output(target)
        if output.is_direct:
            # A FIFO, a device or a descriptor: rows go straight to it, as to standard output.
            self._direct = contextlib.ExitStack()
            self._stream = self._direct.enter_context(open_direct(output))
            header = self._header.encode("utf-8")
            self._write_bytes(_gzip_member(header) if self._gzip else header)
            return
        self._take_lock(output)
        try:
            self._open_partial(output, resume)
        except BaseException:
            self._release_lock()
            raise

    def _open_partial(self, output, resume):
        target = self.target
        self._partial = resumable_partial_path(output)
        kept = self._scan_partial() if resume and os.path.exists(self._partial) else None
        try:
            if kept is None:
                if os.path.exists(self._partial) and not resume:
                    log.warning("replacing the partial output %s of an earlier run (use --resume to continue it)",
                                self._partial)
                self._stream = open(self._partial, "wb")
                header = self._header.encode("utf-8")
                self._stream.write(_gzip_member(header) if self._gzip else header)
                self._stream.flush()
            else:
                offset, self.completed_rows = kept
                os.truncate(self._partial, offset)
                self._stream = open(self._partial, "ab")
                log.info("resuming %s: %d rows already written", target, self.completed_rows)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write the temporary file {self._partial}: {exc.strerror}") from exc
        self.written_rows = self.completed_rows

    # -- resume

    def _identity(self, provenance, columns):
        return {"columns": columns, "provenance": provenance}

    def _adopt_or_refuse(self, found_header):
        """Continue a partial output whose header (bytes, through the column line) differs from this run's:
        keep that header when it is the same run spelled another way (the finished file is then the
        interrupted run's), else raise the OutputError naming what differs."""
        try:
            text = found_header.decode("utf-8")
            found = self._identity(*parse_tsv_header_lines(text.splitlines()))
            if not text.endswith("\n") or found["columns"] is None:
                found = None  # no complete column line: not a header this tool wrote
        except (UnicodeDecodeError, ValueError):
            found = None
        found = refuse_other_run(self.target, self._partial, found, self._identity(self.provenance, self.columns))
        self.provenance, self._header = found["provenance"], text
        return found_header

    def _damaged(self, row_number):
        return OutputError(
            f"{self.target}: cannot resume: the partial output {self._partial} is damaged at data row "
            f"{row_number}; rerun without --resume to start over"
        )

    def _check_line(self, line, row_number):
        if not line.endswith(b"\n") or line.count(b"\t") != len(self.columns) - 1:
            raise self._damaged(row_number)

    def _scan_partial(self):
        """``(bytes to keep, complete rows)`` of the existing temporary file, or None to start afresh."""
        header = self._header.encode("utf-8")
        if self._gzip:
            return self._scan_gzip_partial(header)
        with open(self._partial, "rb") as stream:
            found = stream.read(len(header))
            if found != header:
                if header.startswith(found):
                    return None  # killed while writing the header
                stream.seek(0)
                header = self._adopt_or_refuse(_leading_bytes(stream))
                stream.seek(len(header))
            offset, rows = len(header), 0
            for line in stream:
                if not line.endswith(b"\n"):
                    break  # the torn last line of a killed run
                self._check_line(line, rows + 1)
                offset += len(line)
                rows += 1
        return offset, rows

    def _scan_gzip_partial(self, header):
        members = _complete_gzip_members(self._partial)
        first = next(members, None)
        if first is None:
            return None
        offset, text = first
        if text != header:
            self._adopt_or_refuse(text)
        rows, short_member_seen = 0, False
        for end, text in members:
            lines = text.splitlines(keepends=True)
            # Only the last member, written by finish(), may be short: a kill between it and
            # the rename leaves it complete.
            if short_member_seen or not 0 < len(lines) <= ROWS_PER_GZIP_MEMBER:
                raise self._damaged(rows + 1)
            short_member_seen = len(lines) < ROWS_PER_GZIP_MEMBER
            for line in lines:
                self._check_line(line, rows + 1)
                rows += 1
            offset = end
        return offset, rows

    # -- writing

    def write_chunk(self, obs_rows, values):
        """Append rows: ``obs_rows`` dicts (TSV_FIELDS at least), ``values`` (n_rows, n_tissues)."""
        self._check_open()
        values = _check_chunk(obs_rows, values, len(self.tissues), TSV_FIELDS)
        lines = [_tsv_line(row, row_values) for row, row_values in zip(obs_rows, values.tolist())]
        self.written_rows += len(lines)
        if self.target == STDOUT:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        elif self._gzip:
            self._pending.extend(lines)
            while len(self._pending) >= ROWS_PER_GZIP_MEMBER:
                member_lines = self._pending[:ROWS_PER_GZIP_MEMBER]
                del self._pending[:ROWS_PER_GZIP_MEMBER]
                self._write_bytes(_gzip_member("".join(member_lines).encode("utf-8")))
        else:
            self._write_bytes("".join(lines).encode("utf-8"))

    def _write_bytes(self, data):
        try:
            self._stream.write(data)
            # Flushed to the kernel: a kill -9 from here on cannot lose these rows.
            self._stream.flush()
        except BrokenPipeError:
            raise  # the reader of a pipe went away: the command line's business, not an output error
        except OSError as exc:
            raise OutputError(f"{self.target}: cannot write: {exc.strerror}") from exc

    def _finish(self):
        if self.target == STDOUT:
            sys.stdout.flush()
            return
        if self._pending:
            self._write_bytes(_gzip_member("".join(self._pending).encode("utf-8")))
            self._pending = []
        self._close()
        if self._partial is not None:
            fsync_file(self._partial)
            replace_into_place(self._partial, self.target)


def _tsv_line(row, row_values):
    fields = [str(row[field]) for field in TSV_ID_FIELDS] + [_flags_text(row["flags"])]
    for field in fields:
        if "\t" in field or "\n" in field or "#" in field:
            raise OutputError(
                f"transcript {row['transcript_id']!r}: field {field!r} contains a tab, newline or '#', "
                "which a TSV table cannot hold; rename it in the annotation"
            )
    values_text = "\t".join([VALUE_FORMAT % value for value in row_values])
    return f"{fields[0]}\t{fields[1]}\t{fields[2]}\t{values_text}\t{fields[3]}\n"


def _gzip_member(data):
    # A complete gzip stream with mtime 0 and no file name: the same bytes for the same data.
    return zlib.compress(data, level=GZIP_LEVEL, wbits=31)


def _complete_gzip_members(path):
    """Yield ``(end offset, decompressed bytes)`` of each complete, intact gzip member in order."""
    with open(path, "rb") as stream:
        block_start, block = 0, b""
        decompressor, parts = zlib.decompressobj(wbits=31), []
        while True:
            if not block:
                block = stream.read(1 << 20)
                if not block:
                    return  # end of file inside a member (torn) or exactly after one
            try:
                parts.append(decompressor.decompress(block))
            except zlib.error:
                return  # damaged bytes: stop before them
            if decompressor.eof:
                used = len(block) - len(decompressor.unused_data)
                end = block_start + used
                yield end, b"".join(parts)
                block, block_start = decompressor.unused_data, end
                decompressor, parts = zlib.decompressobj(wbits=31), []
            else:
                block_start += len(block)
                block = b""


def _leading_bytes(stream, limit=1 << 20):
    """The ``#`` lines and the column line at the start of a binary stream, as bytes."""
    lines = []
    for line in stream:
        lines.append(line)
        if not line.startswith(b"#") or sum(map(len, lines)) > limit:
            break
    return b"".join(lines)


# ---------------------------------------------------------------------------------------- HDF5


class H5adPredictionWriter(JournalWriter):
    """AnnData HDF5 writer for ``.h5`` / ``.h5ad``: journal while streaming, HDF5 at ``finish()``."""

    def __init__(self, target, tissues, provenance, resume=False):
        self.target = target
        self.tissues = list(tissues)
        self.provenance = provenance
        identity = {
            "layout": "isoformer predictions h5ad",
            "tissues": self.tissues,
            "obs_fields": list(OBS_FIELDS),
            "provenance": provenance,
        }
        self._open_journal(identity, resume)

    def write_chunk(self, obs_rows, values):
        """Append rows: ``obs_rows`` dicts with OBS_FIELDS, ``values`` (n_rows, n_tissues)."""
        self._check_open()
        values = _check_chunk(obs_rows, values, len(self.tissues), OBS_FIELDS)
        obs = {field: [str(row[field]) for row in obs_rows] for field in OBS_STRING_FIELDS if field != "flags"}
        obs["flags"] = [_flags_text(row["flags"]) for row in obs_rows]
        obs.update({field: [int(row[field]) for row in obs_rows] for field in OBS_INT_FIELDS})
        self._append(len(obs_rows), {"obs": obs}, {"X": values})

    def _build(self, path):
        """Write the AnnData file from the journal in one deterministic pass."""
        n_rows = self._journal.rows
        obs = {field: [] for field in OBS_FIELDS}
        with h5py.File(path, "w") as handle:
            h5ad.write_anndata_root(handle)
            matrix = h5ad.create_array(handle, "X", (n_rows, len(self.tissues)), np.float32)
            start = 0
            for rows, meta, arrays in self._journal.iter_chunks():
                if rows:
                    matrix[start:start + rows] = arrays["X"]
                for field in OBS_FIELDS:
                    obs[field].extend(meta["obs"][field])
                start += rows
            columns = {field: obs[field] for field in OBS_FIELDS[1:]}
            for field in OBS_INT_FIELDS:
                columns[field] = np.array(obs[field], dtype=np.int64)
            h5ad.write_dataframe(handle, "obs", obs["transcript_id"], columns)
            h5ad.write_dataframe(handle, "var", self.tissues, {})
            uns = handle.create_group("uns")
            h5ad.set_encoding(uns, "dict")
            h5ad.write_mapping(uns, "provenance", self.provenance)


# -------------------------------------------------------------------------------------- reader


def read_predictions(path: str) -> Predictions:
    """Read a prediction table written by isoformer (TSV, TSV.gz or HDF5): a :data:`Predictions`.

    The format is recognised from the file's first bytes, not its name.
    """
    try:
        with open(path, "rb") as stream:
            magic = stream.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the predictions: {exc.strerror}") from exc
    if magic == _HDF5_MAGIC:
        return _read_h5ad(path)
    return _read_tsv(path)


def _read_tsv(path):
    header_lines, obs, rows = [], [], []
    with open_text(path, "prediction table", newline="\n") as stream, \
            compressed_read_errors(path, "prediction table"):
        for line in stream:
            header_lines.append(line)
            if not line.startswith("#"):
                break
        try:
            provenance, columns = parse_tsv_header_lines(header_lines)
        except ValueError as exc:
            raise InputError(f"{path}: the '# provenance:' header line is not valid JSON: {exc}") from exc
        if not columns or columns[:3] != list(TSV_ID_FIELDS) or columns[-1] != "flags":
            raise InputError(
                f"{path}: not an isoformer prediction table: the column line must start with "
                f"{' '.join(TSV_ID_FIELDS)} and end with flags"
            )
        tissues = columns[3:-1]
        line_number = len(header_lines)
        for line in stream:
            line_number += 1
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(columns):
                raise InputError(
                    f"{path}:{line_number}: expected {len(columns)} tab-separated fields, found {len(fields)}"
                )
            try:
                rows.append([float(value) for value in fields[3:-1]])
            except ValueError as exc:
                raise InputError(f"{path}:{line_number}: a tissue value is not a number ({exc})") from exc
            obs.append(dict(zip(TSV_ID_FIELDS, fields[:3]), flags=fields[-1]))
    values = np.array(rows, dtype=np.float32).reshape(len(rows), len(tissues))
    # Every data line is one row, so row k is on line len(header_lines) + k + 1.
    _refuse_non_finite(values, obs, tissues, lambda row: f"{path}:{len(header_lines) + row + 1}")
    return Predictions(obs, tissues, values, provenance)


def _refuse_non_finite(values, obs, tissues, where):
    """InputError for the first NaN or infinite value; ``where(row)`` names its place in the file."""
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = (int(k) for k in bad[0])
        raise InputError(f"{where(row)}: the value of transcript {obs[row]['transcript_id']} in tissue "
                         f"{tissues[column]!r} is {values[row, column]}, not a finite number; predictions must be "
                         "numbers")


def _read_h5ad(path):
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("encoding-type") != "anndata" or "X" not in handle:
                raise InputError(f"{path}: not an AnnData prediction file (no anndata encoding or no X)")
            index, columns = h5ad.read_dataframe(handle["obs"])
            tissues, _ = h5ad.read_dataframe(handle["var"])
            values = handle["X"][()].astype(np.float32, copy=False)
            provenance = h5ad.read_mapping(handle["uns/provenance"]) if "uns/provenance" in handle else {}
    except (OSError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the HDF5 prediction table, it is truncated or damaged ({exc}); "
                         "write it again") from None
    obs = [dict({"transcript_id": transcript_id}, **{name: column[i] for name, column in columns.items()})
           for i, transcript_id in enumerate(index)]
    _refuse_non_finite(values, obs, tissues, lambda row: f"{path}: X row {row + 1}")
    return Predictions(obs, tissues, values, provenance)
