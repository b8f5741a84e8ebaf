"""``isoformer models calibrate`` as a plain function: find the unpublished settings of a checkpoint from data.

The official IsoFormer release does not say three things its predictions depend on (the order of the two
cross-attention blocks, the head's activation, the DNA bins it pools: ``CALIBRATED_FIELDS``), and none of
them changes a weight. Given transcripts with the labels the weights were trained on, every candidate of
:func:`~isoformer_cli.inference.calibration.candidate_settings` is scored in one pass (the encoders run once
per distinct input; :class:`~isoformer_cli.inference.calibration.CandidatePredictor`), ranked by pooled
Spearman, then pooled R², and the checkpoint is written again with the best settings and the whole table in
its provenance (``settings_calibrated=true``, ``calibration``). When even the best candidate's pooled Spearman
is under ``min_spearman`` nothing is written: the architecture then differs in a way the candidates do not
cover, and choosing the least bad one would hide it.

Pooled scores compare every (transcript, tissue) pair at once, over the tissues the checkpoint and the
expression table share (by name).
"""

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from isoformer_cli.app.options import DEFAULT_MIN_SPEARMAN
from isoformer_cli.errors import InputError, check_choice
from isoformer_cli.evaluation.metrics import pearson, r_squared, spearman
from isoformer_cli.formats.collisions import refuse_shared_files
from isoformer_cli.formats.locks import lock_outputs
from isoformer_cli.genomics.expression import ExpressionInput
from isoformer_cli.genomics.transcript_match import match_transcripts, require_overlap
from isoformer_cli.inference.calibration import CandidatePredictor, candidate_settings, candidates_json
from isoformer_cli.inference.runner import ModelRunner
from isoformer_cli.models.checkpoint.calibration import CALIBRATED_KEY, CALIBRATION_KEY
from isoformer_cli.models.checkpoint.check import checkpoint_metadata
from isoformer_cli.models.checkpoint.save import check_folder_target, save_checkpoint
from isoformer_cli.models.distribution.locate import (
    is_demo_checkpoint,
    is_demo_derived,
    locate_checkpoint,
    mark_demo_derived,
    resolve_checkpoint,
)
from isoformer_cli.models.distribution.store import check_name, read_manifest, write_manifest
from isoformer_cli.models.network.tokenizers import TRUNCATION_POLICIES
from isoformer_cli.runtime.options import RuntimeOptions
from isoformer_cli.runtime.setup import model_run
from isoformer_cli.triples.source import TripleSource

log = logging.getLogger(__name__)

#: The message of a refusal (the issue's words), followed by the figures.
REFUSAL = "none of the candidate settings reproduces these labels; the architecture differs in a way they do not cover"
# Header keys of the source checkpoint that describe the writing run, not the checkpoint: written afresh.
_RUN_KEYS = ("format", "isoformer_version", "command_line")


@dataclass(frozen=True)
class CalibrateConfig:
    """Options of ``isoformer models calibrate``, validated once when built (InputError names the option).

    Attributes:
        checkpoint: the checkpoint to calibrate (a folder, a name in ``model_dir``, or ``demo``).
        source: the transcripts (annotation or triples table; the checkpoint sets the window length).
        expression: their labels (in the units the weights were trained on: log(TPM+1) averaged over donors).
        output: the new checkpoint folder; or ``in_place`` (a named model in the model folder, replaced
            atomically).
        min_spearman: refuse, writing nothing, when the best pooled Spearman is under this.
        force: replace a non-empty ``output``.
    """

    checkpoint: str
    source: TripleSource
    expression: ExpressionInput
    output: Optional[str] = None
    in_place: bool = False
    model_dir: Optional[str] = None
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    rna_truncation: str = "keep_start"
    protein_truncation: str = "keep_start"
    max_tokens: Optional[int] = None
    chunk_size: Optional[int] = None
    min_spearman: float = DEFAULT_MIN_SPEARMAN
    force: bool = False
    command_args: Tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv[1:]))

    def __post_init__(self):
        if self.in_place == bool(self.output):
            raise InputError("give -o/--output DIR (a new checkpoint folder) or --in-place (replace the named "
                             "model in the model folder), exactly one")
        if self.in_place:
            check_name(self.checkpoint)
        if self.force and self.in_place:
            raise InputError("--force replaces an existing -o/--output folder; --in-place needs no --force")
        if not -1.0 <= self.min_spearman <= 1.0:
            raise InputError(f"--min-spearman must be between -1 and 1, not {self.min_spearman}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise InputError(f"--chunk-size must be at least 1, not {self.chunk_size}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InputError(f"--max-tokens must be at least 1, not {self.max_tokens}")
        check_choice("--rna-truncation", self.rna_truncation, TRUNCATION_POLICIES)
        check_choice("--protein-truncation", self.protein_truncation, TRUNCATION_POLICIES)
        if self.source.triples == "-":
            raise InputError("--triples - (standard input) cannot be calibrated on: the checkpoint records its "
                             "inputs' paths; write the table to a file (isoformer triples -o FILE)")


@dataclass
class CalibrationResult:
    """What a calibration found: ``candidates`` ranked best first, with their ``scores`` (pooled ``spearman``,
    ``r2``, ``pearson``), the rows and tissues compared, the folder written (None when refused), and
    ``encoded_inputs`` (distinct inputs the encoders ran on)."""

    candidates: list
    scores: list
    rows: int
    tissues: list
    written: Optional[str]
    encoded_inputs: int

    @property
    def best(self):
        return self.candidates[0]

    def table(self) -> str:
        """The ranked table as TSV (what the command prints on stdout)."""
        lines = ["rank\tfusion_order\thead_activation\tpool_window\tspearman_pooled\tr2_pooled\tpearson_pooled"]
        for rank, (candidate, score) in enumerate(zip(self.candidates, self.scores), start=1):
            lines.append(f"{rank}\t{candidate.fusion_order}\t{candidate.head_activation}\t{candidate.window_label()}"
                         f"\t{_figure(score['spearman'])}\t{_figure(score['r2'])}\t{_figure(score['pearson'])}")
        return "\n".join(lines) + "\n"


def _figure(value):
    return "NA" if not np.isfinite(value) else f"{value:.6f}"


class _Collector:
    """The runner's 'writer': keeps each chunk's ids, genes and candidate predictions (nothing is resumed)."""

    completed_rows = 0

    def __init__(self):
        self.ids, self.genes, self.values = [], [], []

    def add(self, chunk, values):
        self.ids += [row["transcript_id"] for row in chunk.obs]
        self.genes += [row.get("gene_id") or row["transcript_id"] for row in chunk.obs]
        self.values.append(values)


def _target(config, checked):
    """The folder the calibrated checkpoint goes to, checked before anything is read."""
    if config.in_place:
        refuse_shared_files(config.source.input_files() + config.expression.input_files(), {},
                            output_folders={"--in-place": checked.folder})
        return checked.folder
    target = check_folder_target(config.output, config.force)
    refuse_shared_files(config.source.input_files() + config.expression.input_files() + checked.files(), {},
                        output_folders={"-o/--output": target})
    return target


def run_calibrate(config: CalibrateConfig) -> CalibrationResult:
    """Score every candidate, print nothing, write the best (or refuse); returns the :class:`CalibrationResult`.

    Raises InputError (bad inputs, too few labelled transcripts, an aggregation without unknowns, or the
    refusal of a poor best candidate: nothing is written then), and the typed errors of the inputs.
    """
    if config.in_place:
        # A name in the model folder, even where a folder of that name exists here.
        checked = locate_checkpoint(resolve_checkpoint(config.checkpoint, config.model_dir, names_only=True))
    else:
        checked = locate_checkpoint(config.checkpoint, config.model_dir)
    candidates = candidate_settings(checked.config)  # an aggregation without unknowns fails here
    target = _target(config, checked)
    with lock_outputs(folders=[target]):
        return _calibrate(config, checked, candidates, target)


def _calibrate(config, checked, candidates, target):
    with model_run(config.runtime) as context:
        runner = ModelRunner(context, checked, config.source, config.rna_truncation, config.protein_truncation,
                             config.max_tokens, config.chunk_size, num_workers=config.runtime.num_workers,
                             warn_uncalibrated=False)
        runner.predictor = CandidatePredictor(runner.model, context.device, context.precision, runner.plan,
                                              candidates)
        log.info("calibrating %s: %d candidate settings on the transcripts of %s", checked.folder, len(candidates),
                 config.source.label)
        collector = _Collector() if context.group.is_main else None
        runner.run(collector, runner.predictor.predict, lambda out, chunk, values: out.add(chunk, values),
                   "calibrate")
        result = None
        if context.group.is_main:
            result = _score(config, runner, collector, candidates)
            log.info("%d distinct inputs encoded for %d candidates", runner.predictor.encoded_inputs, len(candidates))
            result.encoded_inputs = runner.predictor.encoded_inputs
            _decide(config, checked, runner, result, target)
        return result


def _score(config, runner, collector, candidates):
    """Match the rows to the labels and rank the candidates."""
    if not collector.ids:
        raise InputError(f"{config.source.label}: no transcript selected; check the selection options")
    expression = config.expression.read(keep=collector.ids)
    for note in expression.notes:
        log.info("%s", note)
    match = match_transcripts(collector.ids, expression)
    require_overlap(match, expression, collector.ids, config.source.label)
    log.info("%s", match.describe(transcripts_label="selected transcripts"))
    kept = match.rows >= 0
    if int(kept.sum()) < 2:
        raise InputError(f"only {int(kept.sum())} selected transcript has labels in {expression.source}; "
                         "calibrating needs at least 2")
    model_tissues = list(runner.model.config.tissues)
    tissues = [name for name in expression.tissues if name in model_tissues]
    if not tissues:
        raise InputError(f"no tissue of {expression.source} ({', '.join(expression.tissues[:3])}, ...) is one the "
                         f"checkpoint predicts ({', '.join(model_tissues[:3])}, ...); tissue names must match exactly")
    predicted = np.concatenate(collector.values)[kept][:, :, [model_tissues.index(name) for name in tissues]]
    observed = expression.values[match.rows[kept]][:, [expression.tissues.index(name) for name in tissues]]
    flat_observed = observed.astype(np.float64).ravel()
    scores = []
    for index in range(len(candidates)):
        flat = predicted[:, index].astype(np.float64).ravel()
        scores.append({"spearman": spearman(flat, flat_observed), "r2": r_squared(flat_observed, flat),
                       "pearson": pearson(flat, flat_observed)})

    def key(index):
        score = scores[index]
        return tuple(-value if np.isfinite(value) else np.inf for value in (score["spearman"], score["r2"]))

    order = sorted(range(len(candidates)), key=key)
    return CalibrationResult(candidates=[candidates[i] for i in order], scores=[scores[i] for i in order],
                             rows=int(kept.sum()), tissues=tissues, written=None, encoded_inputs=0)


def _decide(config, checked, runner, result, target):
    """Write the best candidate's checkpoint, or refuse when it is poor."""
    best, score = result.best, result.scores[0]
    log.info("best of %d candidates on %d transcripts x %d tissues: %s (pooled Spearman %s, R2 %s)",
             len(result.candidates), result.rows, len(result.tissues), best.label(), _figure(score["spearman"]),
             _figure(score["r2"]))
    if not np.isfinite(score["spearman"]) or score["spearman"] < config.min_spearman:
        for line in result.table().splitlines()[:11]:
            log.warning("%s", line)
        raise InputError(f"{REFUSAL} (best: {best.label()}, pooled Spearman {_figure(score['spearman'])} < "
                         f"--min-spearman {config.min_spearman:g} on {result.rows} transcripts); nothing was written")
    runner.model.apply_settings(best.settings)
    metadata = {key: value for key, value in checkpoint_metadata(checked.weights).items() if key not in _RUN_KEYS}
    record = {
        "calibrated_from": os.path.abspath(checked.folder),
        "command_line": ["isoformer", *config.command_args],
        "transcripts": result.rows,
        "tissues": result.tissues,
        "inputs": {"genome": config.source.genome, "transcripts": config.source.label,
                   "expression": config.expression.path, "values": config.expression.values},
        "min_spearman": config.min_spearman,
        "best": best.settings,
        "ranked": "pooled Spearman, then pooled R2",
    }
    metadata[CALIBRATED_KEY] = "true"
    metadata[CALIBRATION_KEY] = json.dumps(record, separators=(",", ":"))
    metadata["calibration_table"] = candidates_json(result.candidates, result.scores)
    manifest = read_manifest(checked.folder)
    if manifest is not None:
        manifest = dict(manifest, calibration=record)
    demo = is_demo_checkpoint(checked.folder) or is_demo_derived(checked.folder)

    def on_written(partial):
        if demo:  # random-weight encoders stay marked as such
            mark_demo_derived(partial, checked.folder)
        if manifest is not None:
            write_manifest(partial, manifest)

    save_checkpoint(runner.model, target, overwrite=config.in_place or config.force, metadata=metadata,
                    on_written=on_written)
    result.written = target
