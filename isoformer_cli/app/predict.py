"""``isoformer predict`` and ``isoformer embed`` as plain functions (the CLI and tests call the same ones).

Each locates and checks its checkpoint once, checks its outputs, starts the run (device, process group), loads
the model and opens the genome (:class:`~isoformer_cli.inference.runner.ModelRunner`), opens its writer on rank 0 and hands both to the
runner's chunk loop. Results stream into a temporary file that becomes the output only when the run
completes (``--resume`` continues a killed run's temporary file).
"""

import contextlib
import dataclasses
import logging
import sys
from dataclasses import dataclass, field


import numpy as np

from isoformer_cli.app.outputs import check_outputs, locked, writing
from isoformer_cli.app.standard_input import spooled_standard_input
from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.formats.atomic import STDOUT
from isoformer_cli.formats.embeddings import open_embedding_writer
from isoformer_cli.formats.gene_summary import write_gene_summary
from isoformer_cli.formats.predictions import VALUE_FORMAT, open_prediction_writer, output_format, read_predictions
from isoformer_cli.formats.provenance import build_provenance, units_label
from isoformer_cli.formats.sharding import with_shard
from isoformer_cli.formats.targets import classify_output
from isoformer_cli.inference.runner import ModelRunner
from isoformer_cli.models.distribution.locate import locate_checkpoint
from isoformer_cli.models.network.tokenizers import TRUNCATION_POLICIES
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.runtime.setup import model_run
from isoformer_cli.triples.source import TripleSource, shard_ordinals, shard_source_inputs, source_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRunConfig:
    """Options shared by ``predict`` and ``embed``, validated once when built (InputError for a bad value).

    Attributes:
        source: where the triples come from (the checkpoint decides the window length).
        checkpoint: a checkpoint folder, a name inside ``model_dir``, or ``demo``.
        model_dir: folder of named checkpoints (default: ``$ISOFORMER_MODEL_DIR``).
        runtime: device, precision, determinism and workers.
        rna_truncation, protein_truncation: tokenizer policies (one of ``TRUNCATION_POLICIES``).
        max_tokens: padded input positions per batch, or None to derive the batches from the memory there is.
        chunk_size: transcripts per chunk (the unit of sharing, writing and resuming), or None for the default.
        resume: continue the temporary file of a killed run.
        dedupe: encode each distinct input once (off only for checks and benchmarks).
        command_args: the command-line arguments to record in the provenance.
    """

    source: TripleSource
    checkpoint: str | None = None
    model_dir: str | None = None
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    max_tokens: int | None = None
    chunk_size: int | None = None
    resume: bool = False
    dedupe: bool = True
    command_args: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))

    def __post_init__(self):
        if self.chunk_size is not None and self.chunk_size < 1:
            raise InputError(f"--chunk-size must be at least 1, not {self.chunk_size}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InputError(f"--max-tokens must be at least 1, not {self.max_tokens}")
        for option, value in (("--rna-truncation", self.rna_truncation),
                              ("--protein-truncation", self.protein_truncation)):
            check_choice(option, value, TRUNCATION_POLICIES)


@dataclass(frozen=True)
class PredictConfig(ModelRunConfig):
    """``isoformer predict``: ``output`` (``-``, ``.tsv``, ``.tsv.gz``, ``.h5``, ``.h5ad``) and an optional
    per-gene usage table ``gene_summary``."""

    output: str = STDOUT
    gene_summary: str | None = None


@dataclass(frozen=True)
class EmbedConfig(ModelRunConfig):
    """``isoformer embed``: ``output`` (HDF5); ``modalities`` also writes each encoder's pooled embedding."""

    output: str | None = None
    modalities: bool = False


def _open_runner(config, context, checked):
    """The :class:`ModelRunner` of ``config`` on this process (loads the checked checkpoint, opens the genome)."""
    return ModelRunner(context, checked, config.source, config.rna_truncation, config.protein_truncation,
                       config.max_tokens, config.chunk_size, num_workers=config.runtime.num_workers,
                       dedupe=config.dedupe)


def _provenance(config, runner, units):
    """The provenance of the outputs (rank 0 writes them; other ranks get None). A shard's records the ordinals
    of its rows, so ``isoformer merge`` can put the shards back in input order."""
    if not runner.group.is_main:
        return None
    inputs = {"genome": config.source.genome}
    inputs["annotation" if config.source.annotation else "triples"] = config.source.label
    provenance = build_provenance(list(config.command_args), runner.checkpoint_dir, inputs, units=units,
                                  demo=runner.demo, demo_derived=runner.demo_derived)
    shard = source_shard(runner.source)
    if shard is None:
        return provenance
    return with_shard(provenance, shard, shard_ordinals(runner.source, runner.genome),
                      source=shard_source_inputs(runner.source))


@contextlib.contextmanager
def _triples_from_file(config):
    """``config`` with ``--triples -`` replaced by a temporary copy of standard input (read twice: once for
    the provenance's checksum, once for the triples)."""
    with spooled_standard_input(config.source.triples, "--triples", ".tsv") as path:
        if path == config.source.triples:
            yield config
        else:
            yield dataclasses.replace(config, source=dataclasses.replace(config.source, triples=path))


def run_predict(config: PredictConfig) -> int:
    """Predict expression for every selected transcript; returns the number of rows written.

    Raises the typed errors of the inputs, checkpoint and outputs; after an error no output
    exists at the target path (after Ctrl-C or SIGTERM the temporary file is kept for --resume).
    The outputs are checked first (none may be an input: see
    :func:`isoformer_cli.formats.collisions.refuse_shared_files`) and locked for the whole run.
    """
    checked = locate_checkpoint(config.checkpoint, config.model_dir)
    check_outputs(config, {"-o/--output": config.output, "--gene-summary": config.gene_summary}, checked)
    output_format(config.output)  # an unknown suffix fails before anything is loaded
    with locked(config.output, config.gene_summary), _triples_from_file(config) as config:
        return _predict(config, checked)


def _predict(config, checked):
    with model_run(config.runtime) as context:
        runner = _open_runner(config, context, checked)
        model_config = runner.model.config
        provenance = _provenance(config, runner, units_label(model_config.target_units))
        tissues = list(model_config.tissues)
        writer = open_prediction_writer(config.output, tissues, provenance, config.resume) \
            if context.group.is_main else None
        # A direct output (stdout, FIFO, device) cannot be read back for the gene summary: keep the rows.
        kept = [] if config.gene_summary and classify_output(config.output).is_direct else None

        def write(out, chunk, result):
            out.write_chunk(chunk.obs, result.predictions)
            if kept is not None:
                kept.append((chunk.obs, result.predictions))

        with writing(writer):
            rows = runner.run(writer, runner.predictor.predict, write, "predict")
        if context.group.is_main:
            _report(config.output, rows, provenance, runner)
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
        return rows


def _as_written(kept, kind, n_tissues):
    """The rows kept while writing, with values as a reader of the written table would see them."""
    obs = [row for chunk_obs, _ in kept for row in chunk_obs]
    values = np.concatenate([values for _, values in kept] + [np.zeros((0, n_tissues))]).astype(np.float32)
    if kind == "tsv":
        # The table holds the values printed with VALUE_FORMAT; summarise those, as after reading it back.
        values = np.array([[float(VALUE_FORMAT % value) for value in row] for row in values.tolist()],
                          dtype=np.float32).reshape(values.shape)
    return obs, values


def run_embed(config: EmbedConfig) -> int:
    """Write pooled fused (and optionally per-modality) embeddings of every selected transcript to HDF5."""
    checked = locate_checkpoint(config.checkpoint, config.model_dir)
    check_outputs(config, {"-o/--output": config.output}, checked)
    if not config.output or config.output == STDOUT or not (config.output.endswith((".h5", ".hdf5"))
                                                            or classify_output(config.output).is_direct):
        raise InputError(f"{config.output}: embeddings are written to HDF5; name the output FILE.h5")
    with locked(config.output), _triples_from_file(config) as config:
        return _embed(config, checked)


def _embed(config, checked):
    with model_run(config.runtime) as context:
        runner = _open_runner(config, context, checked)
        model_config = runner.model.config
        provenance = _provenance(config, runner, units=None)
        modality_dims = None
        if config.modalities:
            modality_dims = {name: model_config.encoder(name).width(model_config) for name in model_config.modalities}
        writer = open_embedding_writer(config.output, model_config.query_size, provenance,
                                       modality_dims=modality_dims, resume=config.resume) \
            if context.group.is_main else None

        def compute(chunk):
            return runner.predictor.predict(chunk, modality_embeddings=config.modalities)

        def write(out, chunk, result):
            out.write_chunk([row["transcript_id"] for row in chunk.obs], result.fused, result.modality_pooled)

        with writing(writer):
            rows = runner.run(writer, compute, write, "embed")
        if context.group.is_main:
            _report(config.output, rows, provenance, runner)
        return rows


def _report(output, rows, provenance, runner):
    log.info("%d transcripts written to %s (%d distinct inputs encoded)", rows,
             "standard output" if output == STDOUT else output, runner.predictor.encoded_inputs)
