"""Embedding files for ``isoformer embed``: HDF5, streamed through a resumable journal.

Layout (plain HDF5; read with h5py, or :func:`read_embeddings`)::

    attrs  format = "isoformer embeddings", format_version = 1,
           provenance = the provenance dict as JSON text (json.loads(f.attrs["provenance"])),
           warning = the DEMO checkpoint warning (only for the bundled demo checkpoint)
    /transcript_id    (n,)      UTF-8 strings, in annotation order
    /fused            (n, D)    float32, the pooled fused embedding the prediction head reads
    /<modality>       (n, D_m)  float32, per-modality pooled embedding (dna, rna, protein), when asked
    /has_<modality>   (n,)      bool, whether the transcript has that modality; rows without it are NaN

Streaming, atomic rename and ``--resume`` work as for prediction tables (see
:mod:`isoformer_cli.formats.streaming`): chunks go to a journal beside the target, the HDF5 file
is built in one deterministic pass at ``finish()``, and a resumed run gives the same bytes.
"""

import collections
from typing import Any
import json

import h5py
import numpy as np

from isoformer_cli.errors import InputError, OutputError
from isoformer_cli.formats.atomic import STDOUT
from isoformer_cli.formats.h5ad import STRING_DTYPE
from isoformer_cli.formats.provenance import FORMAT_VERSION, demo_warning
from isoformer_cli.formats.streaming import JournalWriter, canonical_json
from isoformer_cli.formats.targets import classify_output

SUFFIXES = (".h5", ".hdf5")
MODALITIES = ("dna", "rna", "protein")
FORMAT_NAME = "isoformer embeddings"

Embeddings = collections.namedtuple("Embeddings", "transcript_ids fused modalities provenance")
Embeddings.__doc__ = """An embedding file read back.

transcript_ids: list of str (n); fused: float32 (n, D); modalities: {name: (values float32
(n, D_m), has bool (n,))}; provenance: dict.
"""


def open_embedding_writer(target: str, fused_dim: int, provenance: dict[str, Any] | None,
                          modality_dims: dict[str, int] | None = None, resume: bool = False) -> "EmbeddingWriter":
    """Open the streaming embedding writer for ``target`` (``.h5`` or ``.hdf5``).

    Args:
        fused_dim: D, the width of the fused embedding.
        provenance: dict from :func:`isoformer_cli.formats.provenance.build_provenance`.
        modality_dims: ``{modality: D_m}`` for the per-modality embeddings to store, modality in
            MODALITIES; None or empty stores only ``fused``.
        resume: continue from the temporary file of a killed run of the same command.
    """
    if target == STDOUT:
        raise OutputError("embeddings are HDF5 and need an output file (-o FILE.h5), not standard output")
    if not target.endswith(SUFFIXES) and not classify_output(target).is_direct:
        raise OutputError(f"{target}: unknown embedding format; name the file with one of {', '.join(SUFFIXES)}")
    return EmbeddingWriter(target, fused_dim, provenance, modality_dims or {}, resume)


class EmbeddingWriter(JournalWriter):
    """Journal-backed HDF5 embedding writer (see the module docstring)."""

    def __init__(self, target, fused_dim, provenance, modality_dims, resume=False):
        unknown = sorted(set(modality_dims) - set(MODALITIES))
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; expected some of {MODALITIES}")
        self.target = target
        self.fused_dim = int(fused_dim)
        self.provenance = provenance
        # Fixed order whatever the caller's dict order, so the file layout is always the same.
        self.modality_dims = {name: int(modality_dims[name]) for name in MODALITIES if name in modality_dims}
        identity = {
            "layout": FORMAT_NAME,
            "fused_dim": self.fused_dim,
            "modality_dims": self.modality_dims,
            "provenance": provenance,
        }
        self._open_journal(identity, resume)

    def write_chunk(self, transcript_ids, fused, modalities=None):
        """Append rows.

        Args:
            transcript_ids: n strings.
            fused: float (n, D).
            modalities: ``{modality: (values (n, D_m), has (n,) bool)}`` for every modality the
                writer was opened with; values of rows whose ``has`` is False are stored as NaN.
        """
        self._check_open()
        n_rows = len(transcript_ids)
        arrays = {"fused": _matrix(fused, n_rows, self.fused_dim, "fused")}
        modalities = modalities or {}
        if set(modalities) != set(self.modality_dims):
            raise ValueError(
                f"chunk has modalities {sorted(modalities)}; the writer expects {sorted(self.modality_dims)}"
            )
        for name, dim in self.modality_dims.items():
            values, has = modalities[name]
            values = _matrix(values, n_rows, dim, name).copy()
            has = np.asarray(has, dtype=bool)
            if has.shape != (n_rows,):
                raise ValueError(f"has_{name} has shape {has.shape}; expected ({n_rows},)")
            # Whatever the engine left in rows without the modality, the file holds NaN there.
            values[~has] = np.nan
            arrays[name] = values
            arrays[f"has_{name}"] = has
        self._append(n_rows, {"transcript_id": [str(tid) for tid in transcript_ids]}, arrays)

    def _build(self, path):
        n_rows = self._journal.rows
        transcript_ids = []
        with h5py.File(path, "w") as handle:
            handle.attrs["format"] = FORMAT_NAME
            handle.attrs["format_version"] = FORMAT_VERSION
            handle.attrs["provenance"] = canonical_json(self.provenance)
            warning = demo_warning(self.provenance)
            if warning:
                handle.attrs["warning"] = f"WARNING: {warning}"
            datasets = {
                "fused": handle.create_dataset("fused", (n_rows, self.fused_dim), np.float32, track_times=False)
            }
            for name, dim in self.modality_dims.items():
                datasets[name] = handle.create_dataset(name, (n_rows, dim), np.float32, track_times=False)
                datasets[f"has_{name}"] = handle.create_dataset(f"has_{name}", (n_rows,), bool, track_times=False)
            start = 0
            for rows, meta, arrays in self._journal.iter_chunks():
                if rows:
                    for name, dataset in datasets.items():
                        dataset[start:start + rows] = arrays[name]
                transcript_ids.extend(meta["transcript_id"])
                start += rows
            ids = handle.create_dataset("transcript_id", (n_rows,), STRING_DTYPE, track_times=False)
            if n_rows:
                ids[...] = np.array(transcript_ids, dtype=object)


def _matrix(values, n_rows, dim, name):
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.shape != (n_rows, dim):
        raise ValueError(f"{name} embeddings have shape {values.shape}; expected ({n_rows}, {dim})")
    return values


def read_embeddings(path: str) -> Embeddings:
    """Read an embedding file written by isoformer: an :data:`Embeddings`."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: cannot open the embeddings as HDF5: {exc}") from exc
    with handle:
        if handle.attrs.get("format") != FORMAT_NAME:
            raise InputError(f"{path}: not an isoformer embedding file (attribute format is not {FORMAT_NAME!r})")
        transcript_ids = list(handle["transcript_id"].asstr()[()])
        fused = handle["fused"][()]
        modalities = {
            name: (handle[name][()], handle[f"has_{name}"][()]) for name in MODALITIES if name in handle
        }
        provenance = json.loads(handle.attrs["provenance"])
    return Embeddings(transcript_ids, fused, modalities, provenance)
