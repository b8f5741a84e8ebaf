"""Outputs of ``isoformer explain`` in its folder DIR, built in a hidden partial folder and moved in at the end.

Files (TSVs start with ``#`` lines: title, units, provenance):

* ``summary.tsv``: one row per transcript, :data:`SUMMARY_FIELDS`;
* ``regions.tsv``: attribution summed per region and modality, :data:`REGION_FIELDS`;
* ``attention.tsv``: cross-attention weights per block, head and region, :data:`ATTENTION_FIELDS`;
* ``ism.tsv``: ``--method ism``: the table of ``isoformer variants --table`` for every SNV of the region;
* ``tracks/TRANSCRIPT.dna.bedGraph``, ``.rna.bedGraph`` (``.ism.bedGraph`` for ISM): one line per base,
  ``chrom start end value``, 0-based half-open genome coordinates, sorted by start; the RNA track only on the
  exonic bases the model reads. ``.bw`` beside each when pyBigWig is importable;
* ``attributions.h5``: ``/transcripts/ID/{dna,rna_tokens,rna,protein}`` (float64 attributions) with their
  coordinates (``dna_genome_position``, ``rna_genome_position``, ``rna_token_spans``), the attributes
  ``prediction``, ``baseline``, ``completeness_error``; ``/`` carries ``provenance`` (JSON). A transcript
  without protein has no ``protein`` dataset.

Nothing appears in DIR unless the run completes: a failed run removes its partial folder, and files of DIR
that the run does not write are left alone.
"""

import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile

import h5py
import numpy as np

from isoformer_cli.errors import OutputError
from isoformer_cli.formats.predictions import tsv_header
from isoformer_cli.formats.streaming import canonical_json

log = logging.getLogger(__name__)

SUMMARY_FIELDS = ("transcript_id", "gene_id", "gene_name", "chrom", "strand", "target", "method", "steps",
                  "prediction", "baseline", "dna_attribution", "rna_attribution", "protein_attribution",
                  "completeness_error")
REGION_FIELDS = ("transcript_id", "modality", "region", "positions", "attribution", "mean_attribution")
ATTENTION_FIELDS = ("transcript_id", "block", "head", "region", "start", "end", "weight")
NUMBER_FORMAT = "%.6g"
MISSING = "."


def number(value):
    """A value as the tables print it (``.`` for None or NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return NUMBER_FORMAT % value
    return str(value)


def have_bigwig():
    """True when pyBigWig is importable (bigWig tracks are written beside the bedGraphs)."""
    return importlib.util.find_spec("pyBigWig") is not None


def track_name(transcript_id):
    """A file-name-safe form of a transcript id."""
    return "".join(character if character.isalnum() or character in "._-" else "_" for character in transcript_id)


class ExplainFolder:
    """The output folder of one run: files are written under :meth:`path` (a hidden partial folder inside DIR)
    and moved into DIR by :meth:`finish`; :meth:`abort` removes them."""

    def __init__(self, target):
        self.target = target
        try:
            os.makedirs(target, exist_ok=True)
            self.partial = tempfile.mkdtemp(prefix=".explain-partial-", dir=target)
        except OSError as exc:
            raise OutputError(f"{target}: cannot create the output folder: {exc.strerror}") from exc
        self.written = []

    def path(self, name):
        """Where to build the output ``name`` (relative to DIR, e.g. ``tracks/T.dna.bedGraph``)."""
        full = os.path.join(self.partial, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        self.written.append(name)
        return full

    def finish(self):
        for name in self.written:
            final = os.path.join(self.target, name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(os.path.join(self.partial, name), final)
        shutil.rmtree(self.partial, ignore_errors=True)

    def abort(self):
        shutil.rmtree(self.partial, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.finish()
        else:
            self.abort()
        return False


def write_table(path, fields, rows, provenance, title, notes):
    """A TSV: the ``#`` header lines, the column line, one line per row dict."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(tsv_header(provenance, title=title, notes=notes))
        out.write("\t".join(fields) + "\n")
        for row in rows:
            out.write("\t".join(number(row.get(name)) for name in fields) + "\n")


def track_lines(chrom, positions, values):
    """bedGraph lines of per-base ``values`` at genomic ``positions`` (-1: not on the contig, skipped), sorted
    by position."""
    keep = positions >= 0
    positions, values = positions[keep], values[keep]
    order = np.argsort(positions, kind="stable")
    for position, value in zip(positions[order].tolist(), values[order].tolist()):
        yield f"{chrom}\t{position}\t{position + 1}\t{NUMBER_FORMAT % value}\n"


def write_track(folder, name, chrom, positions, values, description, chrom_sizes):
    """``tracks/NAME.bedGraph`` (and ``.bw`` with pyBigWig) of per-base values."""
    with open(folder.path(f"tracks/{name}.bedGraph"), "w", encoding="utf-8", newline="\n") as out:
        out.write(f'track type=bedGraph name="{name}" description="{description}"\n')
        out.writelines(track_lines(chrom, positions, values))
    if have_bigwig():
        import pyBigWig

        keep = positions >= 0
        order = np.argsort(positions[keep], kind="stable")
        starts, scores = positions[keep][order], values[keep][order]
        handle = pyBigWig.open(folder.path(f"tracks/{name}.bw"), "w")
        try:
            handle.addHeader(sorted(chrom_sizes.items()))
            if len(starts):
                handle.addEntries([chrom] * len(starts), starts.tolist(), ends=(starts + 1).tolist(),
                                  values=scores.astype(float).tolist())
        finally:
            handle.close()


class AttributionArrays:
    """``attributions.h5``, one group per transcript (see the module docstring)."""

    def __init__(self, path, provenance):
        self.handle = h5py.File(path, "w")
        self.handle.attrs["provenance"] = canonical_json(provenance)
        self.handle.attrs["format"] = "isoformer explain attributions 1"
        self.group = self.handle.create_group("transcripts")

    def add(self, transcript_id, arrays, attributes):
        group = self.group.create_group(transcript_id.replace("/", "_"))
        for name, values in arrays.items():
            group.create_dataset(name, data=values, compression="gzip" if np.size(values) > 4096 else None)
        for name, value in attributes.items():
            group.attrs[name] = json.dumps(value) if isinstance(value, (dict, list)) else \
                ("" if value is None else value)

    def close(self):
        with contextlib.suppress(Exception):
            self.handle.close()
