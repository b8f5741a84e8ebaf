"""``isoformer datasets pull``: the official IsoFormer dataset, downloaded and converted into this tool's formats.

``pull isoformer-gtex`` brings ``transcript_expression/GTEx_final.csv`` (and ``normalization_values.csv``) of
the Hugging Face dataset ``InstaDeepAI/multi_omics_transcript_expression`` through the same downloader as
``models pull`` (:mod:`isoformer_cli.models.distribution.hub`: resumable, checksummed, offline-aware; repo type
dataset), or takes them from a local folder (``source``, the dataset's own layout), and converts them
(:mod:`isoformer_cli.triples.official_dataset`) into ``DATASET_DIR/NAME/``: triples tables (all and per split),
the expression matrix in log(TPM + 1), ``split.tsv`` and ``dataset.json``. The folder appears complete or not at
all. ``calibrate --dataset NAME --split validation`` then reads it (:func:`dataset_files`).
"""

import logging
import os
from dataclasses import dataclass

from isoformer_cli.errors import InputError
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.genomics.genome import Genome
from isoformer_cli.models.checkpoint.save import atomic_folder, check_folder_target
from isoformer_cli.models.distribution.hub import fetch_repository
from isoformer_cli.models.distribution.locate import dataset_dir_for
from isoformer_cli.models.distribution.registry import (
    KNOWN_DATASETS,
    OFFICIAL_DATASET_NORMALIZATION,
    OFFICIAL_DATASET_TABLE,
)
from isoformer_cli.models.distribution.store import check_name
from isoformer_cli.models.network.configuration import GTEX_TISSUES
from isoformer_cli.runtime.progress import progress_enabled
from isoformer_cli.triples.dna_window import DEFAULT_DNA_LENGTH
from isoformer_cli.triples.official_dataset import SPLITS, convert_dataset
from isoformer_cli.triples.source import TripleSource, iter_triples

log = logging.getLogger(__name__)

DOWNLOADS = ".downloads"


@dataclass(frozen=True)
class DatasetPullConfig:
    """Options of ``isoformer datasets pull``.

    Attributes:
        dataset: the registry name (``isoformer-gtex``).
        name: the folder name in the dataset folder (default: ``dataset``).
        dataset_dir: the dataset folder (default ``$ISOFORMER_DATASET_DIR`` or beside the model folder).
        source: a local folder holding the dataset's files in its own layout, instead of the hub.
        revision: branch, tag or commit of the dataset repository (``un-standardized-values``: raw labels).
        genome / annotation: optional, to compare the dataset's RNA with the RNA built from the annotation.
        dna_length: the DNA window of the triples tables (the model's own replaces it at run time).
        force: replace an existing converted dataset.
    """

    dataset: str
    name: str | None = None
    dataset_dir: str | None = None
    source: str | None = None
    revision: str | None = None
    genome: str | None = None
    annotation: str | None = None
    dna_length: int = DEFAULT_DNA_LENGTH
    force: bool = False

    def __post_init__(self):
        if self.dataset not in KNOWN_DATASETS:
            raise InputError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
        if bool(self.genome) != bool(self.annotation):
            raise InputError("--annotation and --genome go together (they build the RNA the dataset's is compared "
                             "with)")
        if self.source and self.revision:
            raise InputError("--revision chooses what to download; a --source folder is taken as it is")
        check_name(self.name or self.dataset)


def _source_files(folder):
    """``(table, normalization or None)`` in a local folder of the dataset's layout (or holding the two files)."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: no such folder (give the folder holding {OFFICIAL_DATASET_TABLE})")
    for table, normalization in ((OFFICIAL_DATASET_TABLE, OFFICIAL_DATASET_NORMALIZATION),
                                 (os.path.basename(OFFICIAL_DATASET_TABLE),
                                  os.path.basename(OFFICIAL_DATASET_NORMALIZATION))):
        path = os.path.join(folder, table)
        if os.path.isfile(path):
            extra = os.path.join(folder, normalization)
            return path, extra if os.path.isfile(extra) else None
    raise InputError(f"{folder}: unknown layout: no {OFFICIAL_DATASET_TABLE} (nor GTEx_final.csv) in it; give the "
                     "folder of the InstaDeepAI/multi_omics_transcript_expression dataset")


def _annotation_rna(config):
    """``{transcript id without version: RNA}`` built from the annotation (for the comparison)."""
    genome = Genome(config.genome)
    source = TripleSource(genome=config.genome, annotation=config.annotation, dna_length=config.dna_length)
    return {triple.transcript.transcript_id.split(".")[0]: triple.rna for triple in iter_triples(source, genome)}


def run_dataset_pull(config: DatasetPullConfig) -> str:
    """Download (or take) and convert the dataset; returns the folder written."""
    entry = KNOWN_DATASETS[config.dataset]
    root = dataset_dir_for(config.dataset_dir)
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, check_name(config.name or entry.name))
    if os.path.isdir(target) and os.listdir(target) and not config.force:
        raise InputError(f"{target} exists: {entry.name} is already pulled (--force replaces it)")
    check_folder_target(target, overwrite=config.force)
    log.info("%s: %s", entry.name, entry.description)
    log.info("licence: %s", entry.licence)
    with lock_outputs(folders=[target]):
        if config.source:
            table, normalization = _source_files(config.source)
            origin = {"source_folder": os.path.abspath(config.source)}
        else:
            folder = os.path.join(root, DOWNLOADS, entry.repository.folder_name)
            fetched = fetch_repository(entry.repository, folder, config.revision, progress=progress_enabled())
            table = fetched.files[OFFICIAL_DATASET_TABLE].path
            normal = fetched.files.get(OFFICIAL_DATASET_NORMALIZATION)
            normalization = normal.path if normal else None
            origin = {"pulled_from": f"{entry.repository.repo_id}@{fetched.commit or 'unknown commit'}",
                      "download": fetched.record()}
        annotation_rna = _annotation_rna(config) if config.annotation else None
        provenance = {"dataset": entry.name, **origin}
        with atomic_folder(target, overwrite=config.force) as partial:
            checks = convert_dataset(table, partial, GTEX_TISSUES, normalization=normalization,
                                     dna_length=config.dna_length, annotation_rna=annotation_rna,
                                     provenance=provenance)
    for line in checks.describe():
        log.info("%s", line)
    if checks.annotation_checked and checks.annotation_agree < checks.annotation_checked:
        log.warning("the dataset's RNA differs from the annotation's for %d transcripts: the dataset was built from "
                    "another annotation release", checks.annotation_checked - checks.annotation_agree)
    log.info("stored %s: use isoformer models calibrate CHECKPOINT --dataset %s --split validation --genome hg38.fa",
             target, os.path.basename(target))
    return target


@dataclass(frozen=True)
class DatasetFiles:
    """The files of a pulled dataset that one split is read from: ``triples`` (its triples table) and
    ``expression`` (the labels, log(TPM + 1): ``--values log1p``)."""

    triples: str
    expression: str


def dataset_files(name, split, dataset_dir=None) -> DatasetFiles:
    """The :class:`DatasetFiles` of split ``split`` (train, validation, test) of the pulled dataset ``name``."""
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    folder = os.path.join(dataset_dir_for(dataset_dir), check_name(name))
    triples, expression = os.path.join(folder, f"triples.{split}.tsv"), os.path.join(folder, "expression.tsv")
    if not (os.path.isfile(triples) and os.path.isfile(expression)):
        hint = f"isoformer datasets pull {name}" if name in KNOWN_DATASETS else "isoformer datasets pull NAME"
        raise InputError(f"{folder}: dataset {name!r} is not pulled (no {os.path.basename(triples)}); run: {hint}")
    return DatasetFiles(triples=triples, expression=expression)
