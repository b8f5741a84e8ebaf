"""The candidate settings ``isoformer models calibrate`` tries, and predicting under all of them in one pass.

The official IsoFormer leaves three settings unpublished (``CALIBRATED_FIELDS``): the order of the two
cross-attention blocks, the head's activation and the DNA bins that are pooled. None of them changes a weight,
so one pass of the encoders serves every candidate: :class:`CandidatePredictor` encodes each distinct input of
a chunk once (as ``predict`` does), then fuses each row once per fusion order, pools once per window and runs
the head once per activation (``IsoformerModel.predict_under_settings``).

The grid (:func:`candidate_settings`), for a model with N DNA positions (896 Enformer bins at full size):

* fusion orders: every one of ``FUSION_ORDERS`` when the model has both an RNA and a protein block (otherwise
  the order changes nothing and only the configured one is tried);
* head activations: every one of ``HEAD_ACTIVATIONS``;
* pool windows (DNA query stream only): all positions (= fractions 0..1, the reading of the official
  ``pool_window_start=0, pool_window_end=1`` as fractions); central fractions 1/2, 1/4, 1/8 and the upstream /
  downstream halves; windows of 1, 2, 4, 8, 16, 32, 64 and 128 positions centred on the TSS position N // 2
  (1 position = ``0..1`` relative to the TSS); and the first position (``0..1`` counted from 0). Windows that
  select the same positions of N are tried once (the first one listed names them).
"""

import json
from dataclasses import dataclass

import numpy as np
import torch

from isoformer_cli.errors import InputError
from isoformer_cli.inference.engine import ChunkPredictor
from isoformer_cli.models.network.aggregation import window_range
from isoformer_cli.models.network.configuration import CALIBRATED_FIELDS, FUSION_ORDERS, HEAD_ACTIVATIONS

#: Central fractions of the positions tried, and the two halves (start, end).
FRACTION_WINDOWS = ((0.0, 1.0), (0.25, 0.75), (0.375, 0.625), (0.4375, 0.5625), (0.0, 0.5), (0.5, 1.0))
#: Sizes (positions) of the windows centred on the TSS position.
TSS_WINDOW_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Candidate:
    """One combination of the calibrated fields (``settings``: field -> value, every one of CALIBRATED_FIELDS)."""

    fusion_order: str
    head_activation: str
    pool_window_start: int | float | None
    pool_window_end: int | float | None
    pool_window_reference: str

    @property
    def settings(self) -> dict:
        return {name: getattr(self, name) for name in CALIBRATED_FIELDS}

    def window_label(self) -> str:
        """The pool window in words: ``all``, ``tss[-2,2)``, ``fraction[0.25,0.75)``, ``absolute[0,1)``."""
        if self.pool_window_start is None and self.pool_window_end is None:
            return "all"
        return f"{self.pool_window_reference}[{_bound(self.pool_window_start)},{_bound(self.pool_window_end)})"

    def label(self) -> str:
        return f"fusion_order={self.fusion_order} head_activation={self.head_activation} pool={self.window_label()}"


def _bound(value):
    return "" if value is None else f"{value:g}"


def _windows(config):
    """``[(start, end, reference)]`` of the pool windows tried, one per distinct set of positions."""
    if not config.has_dna:
        return [(config.pool_window_start, config.pool_window_end, config.pool_window_reference)]
    length = config.dna_bins
    offered = [(None, None, "tss")]
    offered += [(start, end, "fraction") for start, end in FRACTION_WINDOWS]
    offered += [(-(size // 2), size - size // 2, "tss") for size in TSS_WINDOW_SIZES]
    offered += [(0, 1, "absolute")]
    # The configured window too, so that calibrating never discards what a user set by hand.
    offered.append((config.pool_window_start, config.pool_window_end, config.pool_window_reference))
    seen, windows = set(), []
    for start, end, reference in offered:
        try:
            positions = window_range(length, start, end, reference)
        except ValueError:
            continue
        if positions not in seen:
            seen.add(positions)
            windows.append((start, end, reference))
    return windows


def candidate_settings(config) -> list[Candidate]:
    """Every :class:`Candidate` tried for a model of configuration ``config`` (see the module docstring).

    InputError for an aggregation other than cross-attention: those are paper ablations this tool trains
    itself, whose settings are their own.
    """
    if config.aggregation != "cross-attention":
        raise InputError(
            f"calibration looks for the unpublished settings of the official architecture (aggregation "
            f"cross-attention); this checkpoint uses aggregation {config.aggregation!r}, whose settings are the "
            "ones it was trained with"
        )
    both_blocks = config.query_modality == "dna" and config.has_rna and config.has_protein
    orders = FUSION_ORDERS if both_blocks else (config.fusion_order,)
    return [Candidate(order, activation, start, end, reference)
            for order in orders for start, end, reference in _windows(config) for activation in HEAD_ACTIVATIONS]


class CandidatePredictor(ChunkPredictor):
    """A :class:`~isoformer_cli.inference.engine.ChunkPredictor` whose :meth:`predict` returns, per chunk, the
    predictions of every candidate: float32 ``(n_rows, n_candidates, n_tissues)``.

    Args: those of ChunkPredictor, and ``candidates`` (a list of :class:`Candidate`).
    """

    def __init__(self, model, device, precision, limits, candidates):
        super().__init__(model, device, precision, limits)
        self.candidates = list(candidates)
        self._settings = [candidate.settings for candidate in self.candidates]

    def predict(self, chunk, modality_embeddings=False):
        with torch.inference_mode():
            dna, rna, protein = self.encode(chunk)

            def fuse(inputs):
                # (S, B, T) -> (B, S, T): the rows first, as fuse_rows wants them.
                return (self.model.predict_under_settings(self._settings, **inputs).transpose(0, 1),)

            (per_row,) = self.fuse_rows(chunk, dna, rna, protein, fuse)
            return torch.stack(per_row).float().cpu().numpy()


def candidates_json(candidates, scores) -> str:
    """The whole table as JSON (for the checkpoint's provenance): one object per candidate, ranked."""
    rows = [dict(candidate.settings, pool=candidate.window_label(), **{
        key: (None if not np.isfinite(value) else round(float(value), 6)) for key, value in score.items()})
        for candidate, score in zip(candidates, scores)]
    return json.dumps(rows, separators=(",", ":"))
