"""Streaming outputs that survive a kill: the writer life cycle and the resumable chunk journal.

A streaming writer receives results chunk by chunk and keeps them in a temporary file beside the
target (:func:`isoformer_cli.formats.atomic.temporary_path_for`), holding the target's lock
(:mod:`isoformer_cli.formats.locks`) from opening to the end of its life cycle:

* ``finish()`` completes the output and renames it over the target; when that fails (disk full)
  the temporary file is kept, so ``--resume`` can finish it once the problem is fixed;
* ``abort()`` removes the temporary file (an error: leave nothing behind);
* ``close()`` only closes it, keeping it for ``--resume`` (Ctrl-C, SIGTERM from a scheduler);
* used as a context manager it finishes on a normal exit, closes on ``KeyboardInterrupt`` and
  aborts on any other exception.

On ``kill -9`` nothing runs: the temporary file stays, and the target path is never touched.
Direct targets (FIFOs, character devices, descriptors: see :mod:`isoformer_cli.formats.targets`)
keep their journal in the system's temporary folder instead, and cannot be resumed.

HDF5 files are not safe to append to and then kill, so HDF5 outputs stream into a *journal*, an
append-only file of checksummed frames, and build the HDF5 file in one pass at ``finish()``.
Journal layout, every integer little-endian::

    frame   = b"IFJ1" | payload length (uint64) | CRC-32 of payload (uint32) | payload
    frame 0 : the run identity, UTF-8 JSON (sorted keys)
    frame k : one chunk: a UTF-8 JSON line {"rows": n, "meta": {...}, "arrays": [[name, dtype, shape], ...]}
              then each array's bytes in C order, in the listed order

A frame cut short by a kill (short header, short payload, wrong CRC) and everything after it is
dropped on resume; every complete frame is kept.
"""

import contextlib
import json
import logging
import os
import struct
import zlib

import numpy as np

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.atomic import replace_into_place
from isoformer_cli.formats.locks import lock_target
from isoformer_cli.formats.run_identity import comparable_identity
from isoformer_cli.formats.targets import (
    BUILDING_SUFFIX,
    classify_output,
    create_temporary_file,
    resumable_partial_path,
)

log = logging.getLogger(__name__)

FRAME_MAGIC = b"IFJ1"
_FRAME_HEADER = struct.Struct("<4sQI")


def building_path_for(target):
    """A new hidden file, unique to this run, where a journal-backed writer builds the final file."""
    return create_temporary_file(classify_output(target), suffix=BUILDING_SUFFIX)


def refuse_resume_of_direct(target, resume):
    """OutputError for ``--resume`` on a target written directly (nothing of a killed run is kept)."""
    if resume and target.is_direct:
        raise OutputError(f"--resume needs an output file (-o FILE): {target.path} is {target.description()}, "
                          "which cannot be resumed")


def canonical_json(value):
    """Deterministic JSON text (sorted keys, ASCII) used for identities and provenance lines."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def _flatten(value, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, so a mismatch can name the nested key."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def same_run(found, expected):
    """True when a partial output's identity ``found`` (a dict, or None when unreadable) and this run's
    ``expected`` describe the same run: equal but for how the command line was spelled
    (:mod:`isoformer_cli.formats.run_identity`, the definition ``isoformer merge`` uses too)."""
    # Compared as JSON (a tuple in memory is a list in the file).
    expected = json.loads(canonical_json(expected))
    return isinstance(found, dict) and comparable_identity(found) == comparable_identity(expected)


def refuse_other_run(target, partial, found, expected):
    """Return ``found`` (the identity the resumed output keeps: the interrupted run's, so the finished file
    is the one an uninterrupted run writes) when it is the same run as ``expected``; else raise
    :func:`foreign_partial_error`."""
    if same_run(found, expected):
        return _in_order_of(found, expected)
    raise foreign_partial_error(target, partial, found, expected)


def _in_order_of(found, expected):
    """``found`` (read back from JSON, keys sorted) with the keys in the order of ``expected``, recursively, so
    that a file built from it (HDF5 attributes) is the one an uninterrupted run builds."""
    if not isinstance(found, dict) or not isinstance(expected, dict):
        return found
    keys = [key for key in expected if key in found] + [key for key in found if key not in expected]
    return {key: _in_order_of(found[key], expected.get(key)) for key in keys}


def foreign_partial_error(target, partial, found, expected):
    """The OutputError for a ``--resume`` whose temporary file was written by another run.

    ``found`` and ``expected`` are the two runs' identity dicts (``None`` when unreadable); they are
    compared as :func:`same_run` does, so only what makes them different runs is named.
    """
    if isinstance(found, dict):
        expected = json.loads(canonical_json(expected))
        old, new = _flatten(comparable_identity(found)), _flatten(comparable_identity(expected))
        differing = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        reason = f"it differs in {', '.join(differing)}" if differing else "its header differs"
    else:
        reason = "its header cannot be read"
    return OutputError(
        f"{target}: cannot resume: the partial output {partial} was written by a different run "
        f"({reason}); rerun with the original command to resume, or without --resume to start over"
    )


def fsync_file(path):
    """Flush a finished file to disk before it is renamed into place (power-loss safety)."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


class StreamingWriter:
    """Life cycle shared by the streaming writers (see the module docstring).

    Subclasses implement ``_finish``, ``_close`` and ``_remove_partial``; ``completed_rows`` is the
    number of rows already safely in the temporary file (non-zero only when resuming): the caller
    skips that many rows of its input, in output order, and writes the rest.
    """

    target = None
    completed_rows = 0
    _state = "open"
    _lock = None

    def _take_lock(self, output):
        """Hold the lock of ``output`` (an OutputTarget) until the writer is finished, aborted or closed."""
        self._lock = lock_target(output)

    def _release_lock(self):
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _check_open(self):
        if self._state != "open":
            raise ValueError(f"{self.target}: writer is already {self._state}")

    def finish(self):
        """Complete the output and move it to the target path."""
        self._check_open()
        try:
            self._finish()
        except BaseException:
            # The temporary file holds every row; keep it for --resume.
            self._state = "failed"
            self._close()
            raise
        finally:
            self._release_lock()
        self._state = "finished"
        log.debug("wrote %s", self.target)

    def abort(self):
        """Close and delete the temporary file; the target path is left as it was."""
        if self._state in ("finished", "aborted"):
            return
        try:
            self._close()
            self._remove_partial()
        finally:
            self._release_lock()
        self._state = "aborted"

    def close(self):
        """Close without finishing, keeping the temporary file for ``--resume``."""
        if self._state != "open":
            return
        try:
            self._close()
        finally:
            self._release_lock()
        self._state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close()
            # A warning, so that -q keeps the one thing to do next.
            log.warning("interrupted: partial output %s kept; rerun the same command with --resume to continue",
                        self.target)
        else:
            self.abort()
        return False


class PartialFileWriter(StreamingWriter):
    """A writer that streams into one file: ``_partial`` (the temporary file beside the target, None for
    standard output), opened as ``_stream``, or ``_direct`` (a device, FIFO or descriptor target written
    in place). Closing and removing are the same for every such format (TSV predictions, the VCF)."""

    _partial = None
    _stream = None
    _direct = None

    def _close(self):
        direct, self._direct = self._direct, None
        stream, self._stream = self._stream, None
        if direct is not None:
            direct.close()
        elif stream is not None:
            stream.close()

    def _remove_partial(self):
        if self._partial is not None and os.path.exists(self._partial):
            os.remove(self._partial)


class JournalWriter(StreamingWriter):
    """A streaming writer whose chunks go to a :class:`Journal`; ``finish()`` builds the file.

    Subclasses set ``target``, call :meth:`_open_journal` and :meth:`_append`, and implement
    ``_build(path)``, which writes the complete output file at ``path`` from
    ``self._journal.iter_chunks()``. Building is one pass over the journal in row order, so the
    result does not depend on how the rows were chunked or on an interruption.
    """

    def _open_journal(self, identity, resume):
        output = classify_output(self.target)
        refuse_resume_of_direct(output, resume)
        self._direct = output.is_direct
        if output.is_direct:
            # Nothing to resume later: a private journal in the system's temporary folder.
            self._journal = Journal(create_temporary_file(output), self.target, identity, resume=False)
            self.completed_rows = self.written_rows = 0
            return
        self._take_lock(output)
        partial = resumable_partial_path(output)
        if os.path.exists(partial) and not resume:
            log.warning("replacing the partial output %s of an earlier run (use --resume to continue it)", partial)
        try:
            self._journal = Journal(partial, self.target, identity, resume)
        except BaseException:
            self._release_lock()
            raise
        if self._journal.identity is not identity:
            # Resumed from the same run spelled another way: the file keeps the interrupted run's provenance.
            self.provenance = self._journal.identity.get("provenance", getattr(self, "provenance", None))
        self.completed_rows = self.written_rows = self._journal.rows
        if self.completed_rows:
            log.info("resuming %s: %d rows already written", self.target, self.completed_rows)

    def _append(self, rows, meta, arrays):
        try:
            self._journal.append(rows, meta, arrays)
        except OSError as exc:
            raise OutputError(
                f"{self.target}: cannot write the temporary file {self._journal.path}: {exc.strerror}"
            ) from exc
        self.written_rows += rows

    def _build(self, path):
        raise NotImplementedError

    def truncate_rows(self, rows):
        """Drop the rows after the first ``rows`` (see :meth:`Journal.truncate`)."""
        self._journal.truncate(rows)
        self.completed_rows = self.written_rows = rows

    def _finish(self):
        self._journal.close()
        building = building_path_for(self.target)
        try:
            self._build(building)
            fsync_file(building)
            replace_into_place(building, self.target)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.remove(building)
            if isinstance(exc, (OutputError, BrokenPipeError)):
                raise
            raise OutputError(f"{self.target}: cannot write the output: {exc}") from exc
        except BaseException:
            # The journal still holds every row (--resume rebuilds); the half-built file is of no use.
            with contextlib.suppress(FileNotFoundError):
                os.remove(building)
            raise
        self._journal.remove()

    def _close(self):
        self._journal.close()
        if self._direct:
            self._journal.remove()  # a direct target cannot be resumed: keep nothing

    def _remove_partial(self):
        self._journal.remove()


class Journal:
    """Append-only file of checksummed chunk frames (layout in the module docstring).

    Attributes:
        path: the journal file.
        rows: rows in the complete chunk frames.
        chunks: ``(payload offset, payload length)`` of each complete chunk frame, in order.
    """

    def __init__(self, path, target, identity, resume):
        self.path = path
        self.identity = identity  # the identity frame's: an interrupted run's of the same run on resume
        self.rows = 0
        self.chunks = []
        self.chunk_rows = []
        self._identity_end = None
        self._stream = None
        if resume and os.path.exists(path):
            end = self._scan_existing(target, identity)
        else:
            end = None
        try:
            if end is None:
                self._stream = open(path, "wb")
                self._write_frame(canonical_json(identity).encode("utf-8"))
                self._identity_end = self._stream.tell()
            else:
                os.truncate(path, end)
                self._stream = open(path, "ab")
        except OSError as exc:
            raise OutputError(f"{target}: cannot write the temporary file {path}: {exc.strerror}") from exc

    def _scan_existing(self, target, identity):
        """Index the complete frames of an existing journal; the byte offset to keep, or None.

        None means nothing usable was there (empty, or the identity frame itself was torn).
        """
        frames = list(_read_frames(self.path))
        if not frames:
            return None
        (offset, length), chunk_frames = frames[0], frames[1:]
        self._identity_end = offset + length
        with open(self.path, "rb") as stream:
            stream.seek(offset)
            found_text = stream.read(length)
            try:
                found = json.loads(found_text)
            except ValueError:
                found = None
            if found_text != canonical_json(identity).encode("utf-8"):
                self.identity = refuse_other_run(target, self.path, found, identity)
            for offset, length in chunk_frames:
                stream.seek(offset)
                rows = _chunk_header(stream.readline())["rows"]
                self.rows += rows
                self.chunk_rows.append(rows)
        self.chunks = chunk_frames
        last_offset, last_length = frames[-1]
        return last_offset + last_length

    def _write_frame(self, payload):
        self._stream.write(_FRAME_HEADER.pack(FRAME_MAGIC, len(payload), zlib.crc32(payload)))
        offset = self._stream.tell()
        self._stream.write(payload)
        # Flushed to the kernel: a kill -9 from here on cannot lose this frame.
        self._stream.flush()
        return offset

    def append(self, rows, meta, arrays):
        """Append one chunk of ``rows`` rows: JSON-able ``meta`` and named numpy ``arrays``."""
        arrays = [(name, np.ascontiguousarray(array)) for name, array in arrays.items()]
        header = {
            "rows": rows,
            "meta": meta,
            "arrays": [[name, array.dtype.str, list(array.shape)] for name, array in arrays],
        }
        payload = b"".join([canonical_json(header).encode("utf-8"), b"\n"] + [a.tobytes() for _, a in arrays])
        offset = self._write_frame(payload)
        self.chunks.append((offset, len(payload)))
        self.chunk_rows.append(rows)
        self.rows += rows

    def truncate(self, rows):
        """Keep only the chunks holding the first ``rows`` rows (which must end at a chunk boundary).

        Used when a run keeps two outputs in step (``isoformer variants``: the VCF and its table) and a
        kill came between writing one and the other: the one ahead is cut back to the other.
        """
        kept, total = 0, 0
        while kept < len(self.chunks) and total + self.chunk_rows[kept] <= rows:
            total += self.chunk_rows[kept]
            kept += 1
        if total != rows:
            raise ValueError(f"{self.path}: {rows} rows do not end at a chunk boundary")
        end = self._identity_end if kept == 0 else self.chunks[kept - 1][0] + self.chunks[kept - 1][1]
        self._stream.flush()
        self._stream.truncate(end)
        self._stream.seek(end)
        del self.chunks[kept:], self.chunk_rows[kept:]
        self.rows = rows

    def iter_chunks(self):
        """Yield ``(rows, meta, {name: array})`` for every complete chunk, in order."""
        with open(self.path, "rb") as stream:
            for offset, length in self.chunks:
                stream.seek(offset)
                payload = stream.read(length)
                newline = payload.index(b"\n")
                header = _chunk_header(payload[: newline + 1])
                arrays, position = {}, newline + 1
                for name, dtype, shape in header["arrays"]:
                    dtype = np.dtype(dtype)
                    count = int(np.prod(shape, dtype=np.int64))
                    arrays[name] = np.frombuffer(payload, dtype, count, position).reshape(shape)
                    position += count * dtype.itemsize
                yield header["rows"], header["meta"], arrays

    def close(self):
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def remove(self):
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def _chunk_header(line):
    return json.loads(line.decode("utf-8"))


def _read_frames(path):
    """Yield ``(payload offset, payload length)`` of each complete, intact frame of a journal."""
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        position = 0
        while position + _FRAME_HEADER.size <= size:
            magic, length, crc = _FRAME_HEADER.unpack(stream.read(_FRAME_HEADER.size))
            payload_offset = position + _FRAME_HEADER.size
            if magic != FRAME_MAGIC or payload_offset + length > size:
                return
            if zlib.crc32(stream.read(length)) != crc:
                return
            yield payload_offset, length
            position = payload_offset + length
