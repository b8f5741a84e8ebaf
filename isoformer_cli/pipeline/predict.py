"""``isoformer predict`` and ``isoformer embed`` as plain functions.

One pass: triples stream from the annotation (or a triples table) in chunks, DataLoader workers
fetch DNA windows and tokenise, the engine encodes each distinct input once and predicts each
isoform, and the writer streams rows in input order into a temporary file that becomes the
output only when the run completes (``--resume`` continues a killed run's temporary file).
Under ``torchrun`` the chunks are shared out among ranks and rank 0 writes everything.
"""

import contextlib
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader

import numpy as np

from isoformer_cli.errors import CheckpointError, InputError, IsoformerError, OutputError
from isoformer_cli.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from isoformer_cli.outputs.atomic import STDOUT, check_writable
from isoformer_cli.outputs.collisions import refuse_shared_files
from isoformer_cli.outputs.embeddings import open_embedding_writer
from isoformer_cli.outputs.gene_summary import write_gene_summary
from isoformer_cli.outputs.locks import lock_outputs
from isoformer_cli.outputs.predictions import (
    VALUE_FORMAT,
    open_prediction_writer,
    output_format,
    read_predictions,
)
from isoformer_cli.outputs.targets import classify_output
from isoformer_cli.outputs.provenance import PREDICTION_UNITS, build_provenance, demo_warning
from isoformer_cli.outputs.streaming import refuse_resume_of_direct
from isoformer_cli.pipeline import distributed
from isoformer_cli.pipeline.device import make_deterministic, resolve_device
from isoformer_cli.pipeline.engine import DEFAULT_MAX_TOKENS, ChunkPredictor
from isoformer_cli.pipeline.prepare import ChunkDataset, TokenizerSettings
from isoformer_cli.pipeline.sources import TripleSource
from isoformer_cli.progress import configure_progress, progress

log = logging.getLogger(__name__)

DEMO_CHECKPOINT_NAME = "demo"
DEMO_MARKER = "DEMO_CHECKPOINT"
MODEL_DIR_VARIABLE = "ISOFORMER_MODEL_DIR"
DEFAULT_CHUNK_SIZE = 256


@dataclass
class RunConfig:
    """Options shared by ``predict`` and ``embed`` (the CLI fills it; tests build it directly).

    Attributes:
        source: where the triples come from (:class:`~isoformer_cli.pipeline.sources.TripleSource`
            without ``dna_length``: the checkpoint decides the window length).
        checkpoint: a checkpoint folder, a name inside ``model_dir``, or ``demo``.
        model_dir: folder of named checkpoints (default: ``$ISOFORMER_MODEL_DIR``).
        output: output path (``-`` for stdout, TSV only).
        device, precision, deterministic: see :mod:`isoformer_cli.pipeline.device`.
        max_tokens: token budget per batch (see :mod:`isoformer_cli.pipeline.engine`).
        chunk_size: transcripts per chunk (the unit of sharing, writing and resuming).
        num_workers: DataLoader worker processes preparing chunks (0: in the main process).
        resume: continue the temporary file of a killed run.
        dedupe: encode each distinct input once (off only for checks and benchmarks).
        rna_truncation, protein_truncation: tokenizer truncation policies.
        command_args: the command-line arguments to record in the provenance.
    """

    source: TripleSource
    checkpoint: Optional[str] = None
    model_dir: Optional[str] = None
    output: str = STDOUT
    device: str = "auto"
    precision: str = "fp32"
    deterministic: bool = False
    max_tokens: int = DEFAULT_MAX_TOKENS
    chunk_size: int = DEFAULT_CHUNK_SIZE
    num_workers: int = 0
    resume: bool = False
    dedupe: bool = True
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    command_args: Tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))


@dataclass
class PredictConfig(RunConfig):
    """``isoformer predict``: ``gene_summary`` is an optional per-gene usage table path."""

    gene_summary: Optional[str] = None


@dataclass
class EmbedConfig(RunConfig):
    """``isoformer embed``: ``modalities`` also writes each encoder's pooled embedding."""

    modalities: bool = False


def demo_checkpoint_path():
    """Folder of the demo checkpoint shipped inside the package (tiny preset, random weights)."""
    return str(resources.files("isoformer_cli") / "data" / "demo_checkpoint")


def resolve_checkpoint(checkpoint, model_dir=None):
    """Folder of the checkpoint named by ``--checkpoint`` (see :class:`RunConfig`).

    Never touches the network: a name is only looked up inside the model folder.
    """
    if not checkpoint:
        raise InputError(
            "no model given: use --checkpoint DIR (a folder written by isoformer init/convert/finetune), "
            f"--checkpoint NAME with --model-dir or ${MODEL_DIR_VARIABLE}, or --checkpoint demo for the "
            "bundled demo (not biological predictions)"
        )
    if checkpoint == DEMO_CHECKPOINT_NAME:
        return demo_checkpoint_path()
    if os.path.isdir(checkpoint):
        return checkpoint
    model_dir = model_dir or os.environ.get(MODEL_DIR_VARIABLE)
    if model_dir and os.sep not in checkpoint:
        candidate = os.path.join(model_dir, checkpoint)
        if os.path.isdir(candidate):
            return candidate
        available = sorted(name for name in os.listdir(model_dir) if os.path.isdir(os.path.join(model_dir, name))) \
            if os.path.isdir(model_dir) else []
        raise CheckpointError(
            f"checkpoint {checkpoint!r} is not in the model folder {model_dir} "
            f"(it holds: {', '.join(available) or 'nothing'})"
        )
    raise CheckpointError(
        f"{checkpoint}: checkpoint folder not found; give the folder written by isoformer init/convert/finetune"
        + ("" if model_dir else f", or a name inside --model-dir / ${MODEL_DIR_VARIABLE}")
    )


def is_demo_checkpoint(folder):
    return os.path.exists(os.path.join(folder, DEMO_MARKER))


def checkpoint_files(checkpoint, model_dir=None):
    """``(option, path)`` of the files of ``--checkpoint``, for the same-file check of outputs.

    Empty when the checkpoint does not resolve: that error is reported when it is loaded.
    """
    try:
        folder = resolve_checkpoint(checkpoint, model_dir)
    except IsoformerError:
        return []
    return [("--checkpoint", os.path.join(folder, name)) for name in (CONFIG_FILE, WEIGHTS_FILE)]


def writes_outputs():
    """False on the ranks of a torchrun job other than 0, which compute but never write."""
    return int(os.environ.get("RANK", "0")) == 0


def _check_outputs(config, outputs):
    """Before anything is read: no output is an input or another output, and each can be written."""
    inputs = config.source.input_files() + checkpoint_files(config.checkpoint, config.model_dir)
    refuse_shared_files(inputs, outputs)
    for path in outputs.values():
        if path:
            check_writable(path)
    if config.resume and config.output == STDOUT:
        raise OutputError("--resume needs an output file (-o FILE): standard output cannot be resumed")
    if config.resume:
        refuse_resume_of_direct(classify_output(config.output), resume=True)


class _Run:
    """State shared by predict and embed: model, device, process group, data loader."""

    def __init__(self, config):
        self.config = config
        if config.chunk_size < 1:
            raise InputError(f"--chunk-size must be at least 1, not {config.chunk_size}")
        if config.max_tokens < 1:
            raise InputError(f"--max-tokens must be at least 1, not {config.max_tokens}")
        if config.num_workers < 0:
            raise InputError(f"--num-workers must be 0 or more, not {config.num_workers}")
        self.device = resolve_device(config.device)
        self.group = distributed.init_process_group(self.device.type)
        if not self.group.is_main:
            configure_progress(False)  # one progress bar per run, drawn by rank 0
        if self.group.is_distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.group.local_rank)
        if config.deterministic:
            make_deterministic()
        self.checkpoint_dir = resolve_checkpoint(config.checkpoint, config.model_dir)
        self.demo = is_demo_checkpoint(self.checkpoint_dir)
        self.model = load_checkpoint(self.checkpoint_dir, device=self.device)
        if self.demo and self.group.is_main:
            log.warning("using the bundled DEMO checkpoint: random weights, its numbers are NOT "
                        "biological predictions")
        model_config = self.model.config
        self.source = _with_dna_length(config.source, model_config)
        self.settings = TokenizerSettings.for_model_config(model_config, config.rna_truncation,
                                                           config.protein_truncation)
        self.predictor = ChunkPredictor(self.model, self.device, config.precision, config.max_tokens)

    def provenance(self, units):
        inputs = {"genome": self.source.genome}
        inputs["annotation" if self.source.annotation else "triples"] = self.source.label
        return build_provenance(list(self.config.command_args), self.checkpoint_dir, inputs,
                                units=units, demo=self.demo)

    def chunks(self, start_row):
        """This rank's prepared chunks, in order (errors from workers re-raised here)."""
        dataset = ChunkDataset(self.source, self.settings, self.config.chunk_size, start_row=start_row,
                               rank=self.group.rank, world_size=self.group.world_size, dedupe=self.config.dedupe)
        loader = DataLoader(dataset, batch_size=None, num_workers=self.config.num_workers,
                            collate_fn=lambda chunk: chunk)
        for chunk in loader:
            yield chunk

    def rounds(self, start_row, compute):
        """Apply ``compute`` to every chunk and yield ``(chunk, result)`` in chunk order.

        Distributed: each round, every rank computes its next chunk and all results are
        exchanged, so rank 0 can write them in order. An error on any rank is raised on all.
        """
        mine = iter(self.chunks(start_row))
        while True:
            chunk = next(mine, None)
            outcome = None
            if chunk is not None:
                if chunk.error is not None:
                    outcome = ("error", chunk.error)
                else:
                    outcome = ("ok", chunk, compute(chunk))
            gathered = distributed.all_gather(self.group, outcome)
            if all(item is None for item in gathered):
                return
            for item in gathered:
                if item is not None and item[0] == "error":
                    raise item[1]
            for item in sorted((item for item in gathered if item is not None), key=lambda item: item[1].index):
                yield item[1], item[2]


def units_label(target_units):
    """How outputs state the model's target units ("log1p_tpm" is written log(TPM+1))."""
    return PREDICTION_UNITS if target_units == "log1p_tpm" else target_units


def _with_dna_length(source, model_config):
    """The source with the model's DNA window length (the checkpoint decides it)."""
    return dataclasses.replace(source, dna_length=model_config.dna_length)


def _writing(writer):
    """The writer as a context manager (finish / keep for --resume / remove), or nothing."""
    return writer if writer is not None else contextlib.nullcontext()


def run_predict(config):
    """Predict expression for every selected transcript; returns the number of rows written.

    Raises the typed errors of the inputs, checkpoint and outputs; after an error no output
    exists at the target path (after Ctrl-C or SIGTERM the temporary file is kept for --resume).
    The outputs are checked first (none may be an input: see
    :func:`isoformer_cli.outputs.collisions.refuse_shared_files`) and locked for the whole run.
    """
    _check_outputs(config, {"-o/--output": config.output, "--gene-summary": config.gene_summary})
    output_format(config.output)  # an unknown suffix fails before anything is loaded
    with lock_outputs(config.output, config.gene_summary) if writes_outputs() else contextlib.nullcontext():
        return _predict(config)


def _predict(config):
    run = _Run(config)
    completed = False
    try:
        tissues = list(run.model.config.tissues)
        provenance = run.provenance(units_label(run.model.config.target_units))
        writer = open_prediction_writer(config.output, tissues, provenance, config.resume) \
            if run.group.is_main else None
        start_row = distributed.broadcast_from_main(run.group, writer.completed_rows if writer else 0)
        if start_row:
            log.info("resuming %s after the %d rows already written", config.output, start_row)
        rows = start_row
        # A direct output (stdout, FIFO, device) cannot be read back for the gene summary: keep the rows.
        kept = [] if config.gene_summary and classify_output(config.output).is_direct else None
        with _writing(writer), progress(desc="predict", unit=" transcripts", initial=start_row) as bar:
            for chunk, result in run.rounds(start_row, run.predictor.predict):
                if writer is not None:
                    writer.write_chunk(chunk.obs, result.predictions)
                    if kept is not None:
                        kept.append((chunk.obs, result.predictions))
                rows += len(chunk)
                bar.update(len(chunk))
        if run.group.is_main:
            _report(config.output, rows, provenance, run)
            if config.gene_summary:
                if kept is None:
                    # Read back what was written, so a resumed run summarises exactly the same numbers.
                    table = read_predictions(config.output)
                    write_gene_summary(config.gene_summary, table.obs, table.tissues, table.values,
                                       table.provenance)
                else:
                    obs, values = _as_written(kept, output_format(config.output), len(tissues))
                    write_gene_summary(config.gene_summary, obs, tissues, values, provenance)
                log.info("wrote gene summary %s", config.gene_summary)
        completed = True
        return rows
    finally:
        distributed.shutdown(run.group, completed)


def _as_written(kept, kind, n_tissues):
    """The rows kept while writing, with values as a reader of the written table would see them."""
    obs = [row for chunk_obs, _ in kept for row in chunk_obs]
    values = np.concatenate([values for _, values in kept] + [np.zeros((0, n_tissues))]).astype(np.float32)
    if kind == "tsv":
        # The table holds the values printed with VALUE_FORMAT; summarise those, as after reading it back.
        values = np.array([[float(VALUE_FORMAT % value) for value in row] for row in values.tolist()],
                          dtype=np.float32).reshape(values.shape)
    return obs, values


def run_embed(config):
    """Write pooled fused (and optionally per-modality) embeddings of every selected transcript to HDF5."""
    _check_outputs(config, {"-o/--output": config.output})
    if config.output == STDOUT or not (config.output.endswith((".h5", ".hdf5"))
                                       or classify_output(config.output).is_direct):
        raise InputError(f"{config.output}: embeddings are written to HDF5; name the output FILE.h5")
    with lock_outputs(config.output) if writes_outputs() else contextlib.nullcontext():
        return _embed(config)


def _embed(config):
    run = _Run(config)
    completed = False
    try:
        model_config = run.model.config
        provenance = run.provenance(units=None)
        modality_dims = _modality_widths(model_config) if config.modalities else None
        writer = open_embedding_writer(config.output, model_config.query_size, provenance,
                                       modality_dims=modality_dims, resume=config.resume) \
            if run.group.is_main else None
        start_row = distributed.broadcast_from_main(run.group, writer.completed_rows if writer else 0)
        rows = start_row

        def compute(chunk):
            return run.predictor.predict(chunk, modality_embeddings=config.modalities)

        with _writing(writer), progress(desc="embed", unit=" transcripts", initial=start_row) as bar:
            for chunk, result in run.rounds(start_row, compute):
                if writer is not None:
                    writer.write_chunk([row["transcript_id"] for row in chunk.obs], result.fused,
                                       result.modality_pooled)
                rows += len(chunk)
                bar.update(len(chunk))
        if run.group.is_main:
            _report(config.output, rows, provenance, run)
        completed = True
        return rows
    finally:
        distributed.shutdown(run.group, completed)


def _modality_widths(model_config):
    """Width of each present encoder's output, for the per-modality embedding datasets."""
    widths = {}
    if model_config.has_dna:
        widths["dna"] = model_config.dna_embedding_size
    if model_config.has_rna:
        widths["rna"] = model_config.nt_hidden_size
    if model_config.has_protein:
        widths["protein"] = model_config.esm_hidden_size
    return widths


def _report(output, rows, provenance, run):
    log.info("%d transcripts written to %s (%d distinct inputs encoded)", rows,
             "standard output" if output == STDOUT else output, run.predictor.encoded_inputs)
    warning = demo_warning(provenance)
    if warning:
        log.warning(warning)
