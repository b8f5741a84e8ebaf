"""What kind of isoformer output a file is, from its first bytes and header, never from its name.

=======================  ===================================
kind                     recognised by
=======================  ===================================
triples table            ``# provenance:`` + the triples columns
prediction table         ``# isoformer predictions``
gene summary             ``# isoformer gene summary``
HDF5 prediction file     AnnData with ``X`` and ``obs/flags``
embedding file           HDF5 ``format`` attribute
variant VCF              ``##fileformat=VCF`` + ``##isoformer_provenance``
variant table            ``# isoformer variant scores``
HDF5 variant table       AnnData with ``layers/alt_dna_rna``
alternative triples      ``# isoformer alternative triples``
=======================  ===================================

Text outputs may be gzip-compressed (BGZF included). :func:`recognise_output` returns the kind, the
provenance and, for text, the leading lines up to and including the column line (or ``#CHROM``).
"""

import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py

from isoformer_cli.errors import InputError
from isoformer_cli.formats import h5ad
from isoformer_cli.formats.embeddings import FORMAT_NAME as EMBEDDINGS_FORMAT
from isoformer_cli.formats.embeddings import SUFFIXES as EMBEDDING_SUFFIXES
from isoformer_cli.formats.triples_table import COLUMNS as TRIPLES_COLUMNS
from isoformer_cli.formats.triples_table import PROVENANCE_PREFIX
from isoformer_cli.formats.variants import VCF_SUFFIXES
from isoformer_cli.genomics.compressed import compressed_read_errors, open_text

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
VCF_PROVENANCE_PREFIX = "##isoformer_provenance="

TRIPLES, PREDICTIONS_TSV, GENE_SUMMARY, PREDICTIONS_H5, EMBEDDINGS = (
    "triples table", "prediction table", "gene summary", "HDF5 prediction file", "embedding file")
VARIANT_VCF, VARIANT_TABLE_TSV, VARIANT_TABLE_H5, ALT_TRIPLES = (
    "variant VCF", "variant table", "HDF5 variant table", "alternative triples table")
TEXT_KINDS = (TRIPLES, PREDICTIONS_TSV, GENE_SUMMARY)
VARIANT_KINDS = (VARIANT_VCF, VARIANT_TABLE_TSV, VARIANT_TABLE_H5, ALT_TRIPLES)
VARIANT_TEXT_KINDS = (VARIANT_VCF, VARIANT_TABLE_TSV, ALT_TRIPLES)
#: The file names each kind is written as.
OUTPUT_SUFFIXES = {TRIPLES: (".tsv", ".tsv.gz"), PREDICTIONS_TSV: (".tsv", ".tsv.gz"),
                   GENE_SUMMARY: (".tsv", ".tsv.gz"), PREDICTIONS_H5: (".h5", ".h5ad"),
                   EMBEDDINGS: EMBEDDING_SUFFIXES, VARIANT_VCF: VCF_SUFFIXES, VARIANT_TABLE_TSV: (".tsv", ".tsv.gz"),
                   VARIANT_TABLE_H5: (".h5", ".h5ad"), ALT_TRIPLES: (".tsv", ".tsv.gz")}
_TITLES = {"# isoformer predictions": PREDICTIONS_TSV, "# isoformer gene summary": GENE_SUMMARY,
           "# isoformer variant scores": VARIANT_TABLE_TSV, "# isoformer alternative triples": ALT_TRIPLES}


@dataclass
class RecognisedOutput:
    """An output file: ``path``, ``kind`` (one of the kinds above), ``provenance`` (``{}`` when it records
    none) and, for text kinds, ``header``: its leading lines, newline included, the column line last."""

    path: str
    kind: str
    provenance: dict[str, Any]
    header: tuple[str, ...] = field(default=())


def recognise_output(path: str, what: str = "shard") -> RecognisedOutput:
    """The kind, provenance and header of the output at ``path``.

    Args:
        path: the file.
        what: its role in messages.

    Raises:
        InputError: the file cannot be read, is damaged, or is none of the kinds above.
    """
    try:
        with open(path, "rb") as stream:
            magic = stream.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if magic == HDF5_MAGIC:
        return _recognise_hdf5(path, what)
    with open_output_text(path, what) as stream, compressed_read_errors(path, what):
        is_vcf = stream.readline().startswith("##fileformat=VCF")
    return _recognise_vcf(path, what) if is_vcf else _recognise_text(path, what)


def open_output_text(path: str, what: str = "shard") -> io.TextIOWrapper:
    """A text output, plain or gzip, with its lines as written (``\\n`` ends a line, nothing is translated)."""
    return open_text(path, what, newline="\n")


def body_lines(output: RecognisedOutput, what: str = "shard") -> Iterator[str]:
    """The lines after a text output's header, in file order (damage is an InputError naming the file)."""
    with open_output_text(output.path, what) as stream, compressed_read_errors(output.path, what):
        yield from itertools.islice(stream, len(output.header), None)


def _recognise_text(path: str, what: str) -> RecognisedOutput:
    header: list[str] = []
    with open_output_text(path, what) as stream, compressed_read_errors(path, what):
        for line in stream:
            header.append(line)
            if not line.startswith("#"):
                break
    provenance: dict[str, Any] = {}
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
                         "summary, HDF5 predictions, embeddings or variants output written with --shard)")
    return RecognisedOutput(path, kind, provenance, tuple(header))


def _recognise_hdf5(path: str, what: str) -> RecognisedOutput:
    try:
        with h5py.File(path, "r") as handle:
            anndata = handle.attrs.get("encoding-type") == "anndata"
            if anndata and "layers/alt_dna_rna" in handle and "uns/provenance" in handle:
                return RecognisedOutput(path, VARIANT_TABLE_H5, h5ad.read_mapping(handle["uns/provenance"]))
            if handle.attrs.get("format") == EMBEDDINGS_FORMAT:
                return RecognisedOutput(path, EMBEDDINGS, json.loads(handle.attrs["provenance"]))
            if anndata and "X" in handle and "obs/flags" in handle:
                # Only the provenance here: the values are read once, by whoever needs them.
                provenance = h5ad.read_mapping(handle["uns/provenance"]) if "uns/provenance" in handle else {}
                return RecognisedOutput(path, PREDICTIONS_H5, provenance)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the HDF5 {what}, it is truncated or damaged ({exc})") from None
    raise InputError(f"{path}: an HDF5 file, but neither isoformer predictions, embeddings nor a variant table")


def _recognise_vcf(path: str, what: str) -> RecognisedOutput:
    """A variant VCF: its header lines (up to ``#CHROM``) and the provenance of its ``##isoformer_provenance``."""
    header: list[str] = []
    provenance = None
    with open_output_text(path, what) as stream, compressed_read_errors(path, what):
        for line in stream:
            header.append(line)
            if line.startswith(VCF_PROVENANCE_PREFIX):
                try:
                    provenance = json.loads(line[len(VCF_PROVENANCE_PREFIX):])
                except ValueError as exc:
                    raise InputError(f"{path}: the ##isoformer_provenance line is not valid JSON ({exc})") from None
            if line.startswith("#CHROM") or not line.startswith("#"):
                break
    if provenance is None or not header[-1].startswith("#CHROM"):
        raise InputError(f"{path}: a VCF, but not one isoformer variants wrote (no ##isoformer_provenance line "
                         "before #CHROM)")
    return RecognisedOutput(path, VARIANT_VCF, provenance, tuple(header))
