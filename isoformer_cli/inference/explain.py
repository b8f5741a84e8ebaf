"""Gradient attributions of one isoform's prediction to every input position, and its cross-attention weights.

The attributed function is the model's prediction of one tissue (or the mean over tissues) as a function of
each encoder's per-position input representation ``e`` (``SequenceEncoder.attribution_layer``): the one-hot DNA
window for Enformer (channels A, C, G, T; N is the zero vector), the token embeddings of the RNA (NT-v2) and of
the protein (ESM-2). The token ids fed to the model are always the real ones; a forward hook replaces the
layer's output by the point of the integration path, so everything the model computes from the ids themselves
(ESM's token-dropout scale, the padding masks) is the real input's along the whole path, and the function is
the model's own at ``e = e(x)``.

Methods (per input position ``i`` of a modality, ``c`` its channels, ``b`` the baseline):

* ``integrated-gradients``: ``A_i = sum_c (x_ic - b_ic) * integral_0^1 df/de_ic (b + a (x - b)) da``, the integral
  by Gauss-Legendre quadrature with ``steps`` nodes. The path runs from the joint baseline of all modalities at
  once (DNA all N, RNA and protein tokens all ``<mask>``; special tokens unchanged), so the attributions of
  every modality together sum to ``f(x) - f(b)``: the completeness error reported is
  ``sum_i A_i - (f(x) - f(b))``.
* ``saliency``: gradient times input relative to the baseline, ``A_i = sum_c (x_ic - b_ic) * df/de_ic (x)``; for
  the DNA (baseline zero) the one-hot input times the gradient, i.e. the gradient at the observed base.

Steps are batched: one forward + backward pass runs several steps of the isoform at once, as many as the memory
plan allows (:func:`~isoformer_cli.inference.memory_plan.gradient_steps_per_batch`); an out-of-memory batch is
split in halves. Gradients are taken in float32 at the hooked layers (under ``--precision bf16`` the model
runs under autocast), and accumulated in float64.

Cross-attention weights (:func:`cross_attention_weights`) are computed explicitly from the blocks' query and
key projections, ``softmax(q k^T / sqrt(d))`` per head with the key padding mask, on the real input: the
model's own forward keeps its fused attention kernel, which never forms the weights.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from isoformer_cli.inference.batching import OutOfMemoryRetry
from isoformer_cli.inference.memory_plan import gradient_steps_per_batch
from isoformer_cli.runtime.device import autocast_context, is_out_of_memory

log = logging.getLogger(__name__)

METHODS = ("integrated-gradients", "saliency")
DEFAULT_STEPS = 50
MEAN_TARGET = "mean"


@dataclass
class Explanation:
    """Attributions of one isoform.

    Attributes:
        prediction: the target at the real input ``f(x)`` (checkpoint units).
        baseline: the target at the baseline ``f(b)``.
        positions: ``{modality: (L,) float64}`` attribution of each model input position (tokens for RNA and
            protein, ``<cls>``/``<eos>`` included with 0; DNA bases for Enformer).
        completeness_error: ``sum of all attributions - (f(x) - f(b))`` (integrated gradients; None for
            saliency, which makes no such claim).
        steps: integration steps (1 for saliency); steps_per_batch: how many ran per pass.
    """

    prediction: float
    baseline: float
    positions: dict = field(default_factory=dict)
    completeness_error: float | None = None
    steps: int = 1
    steps_per_batch: int = 1


class _Replace:
    """Forward hook: records the layer's output; returns ``value`` instead when one is set."""

    def __init__(self, layer):
        self.value = None
        self.handle = layer.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        if self.value is None:
            return None
        return self.value.to(output.dtype)


def target_of(predictions, tissue_index):
    """``(B,)``: one tissue's column of ``predictions`` (B, T), or their mean when ``tissue_index`` is None."""
    if predictions.dtype != torch.float64:  # bf16 under autocast: the target in float32; a float64 model keeps it
        predictions = predictions.float()
    if tissue_index is None:
        return predictions.mean(dim=-1)
    return predictions[:, tissue_index]


def quadrature(steps):
    """Gauss-Legendre nodes ``a`` in (0, 1) and weights summing to 1, ``steps`` of each (float64)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


class Explainer:
    """Attributes predictions of one model on one device.

    Args:
        model: an ``IsoformerModel`` (put in eval mode; its parameters get no gradients here).
        device, precision: as the run's (``"fp32"`` or ``"bf16"``).
        budget: the run's ``MemoryBudget`` (sizes the step batches).
    """

    def __init__(self, model, device, precision, budget):
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.config = model.config
        self.device = device
        self.precision = precision
        self.budget = budget
        release = torch.cuda.empty_cache if device.type == "cuda" else (lambda: None)
        self.retry = OutOfMemoryRetry(is_out_of_memory, release)

    def _encoder(self, modality):
        return self.config.encoder(modality), getattr(self.model, f"{modality}_encoder")

    def _ids(self, inputs, copies):
        """Model keyword arguments: each modality's ids ``(copies, L)`` on the device."""
        arguments = {}
        for modality, ids in inputs.items():
            tensor = torch.as_tensor(ids, dtype=torch.long, device=self.device)[None].expand(copies, -1)
            arguments[f"{modality}_input_ids"] = tensor.contiguous()
        return arguments

    def _forward(self, inputs, values, tissue_index):
        """Target ``(B,)`` with each modality's hooked layer output replaced by ``values[modality]`` (B, L, C)."""
        copies = next(iter(values.values())).shape[0]
        hooks = {}
        try:
            for modality, value in values.items():
                encoder, module = self._encoder(modality)
                hooks[modality] = _Replace(encoder.attribution_layer(module))
                hooks[modality].value = value
            with autocast_context(self.device, self.precision):
                output = self.model(**self._ids(inputs, copies))
            return target_of(output.predictions, tissue_index)
        finally:
            for hook in hooks.values():
                hook.handle.remove()

    def embeddings(self, inputs):
        """``({modality: e(x) (L, C)}, {modality: e(b) (L, C)})`` in float32 (float64 for a float64 model)."""
        real, reference = {}, {}
        for modality, ids in inputs.items():
            encoder, module = self._encoder(modality)
            baseline = encoder.attribution_baseline(self.config, np.asarray(ids))
            with torch.no_grad():
                for store, values in ((real, ids), (reference, baseline)):
                    tensor = torch.as_tensor(values, dtype=torch.long, device=self.device)[None]
                    embedded = encoder.attribution_embedding(module, tensor)[0]
                    # Half-precision weights are integrated in float32; a float64 model (checks) keeps float64.
                    store[modality] = embedded if embedded.dtype == torch.float64 else embedded.float()
        return real, reference

    def explain(self, inputs, tissue_index=None, method="integrated-gradients", steps=DEFAULT_STEPS):
        """Attributions of one isoform (see the module docstring).

        Args:
            inputs: ``{modality: (L,) int64 token ids}`` of the modalities the isoform has (its model inputs as
                the tokenizers write them; a missing protein is left out).
            tissue_index: the target tissue's column, or None for the mean over tissues.
        """
        real, reference = self.embeddings(inputs)
        with torch.no_grad():
            prediction = float(self._forward(inputs, {m: v[None] for m, v in real.items()}, tissue_index)[0])
            baseline = float(self._forward(inputs, {m: v[None] for m, v in reference.items()}, tissue_index)[0])
        if method == "saliency":
            alphas, weights = np.ones(1), np.ones(1)
        else:
            alphas, weights = quadrature(steps)
        lengths = {modality: len(ids) for modality, ids in inputs.items()}
        per_batch = gradient_steps_per_batch(self.config, lengths, self.device, self.precision, self.budget,
                                             len(alphas))
        totals = {modality: torch.zeros_like(value, dtype=torch.float64) for modality, value in real.items()}

        def run(batch):
            dtype = next(iter(real.values())).dtype
            alpha = torch.as_tensor(alphas[batch], dtype=dtype, device=self.device)[:, None, None]
            points = {m: (reference[m][None] + alpha * (real[m] - reference[m])[None]).requires_grad_(True)
                      for m in real}
            with torch.enable_grad():
                target = self._forward(inputs, points, tissue_index)
                grads = torch.autograd.grad(target.sum(), [points[m] for m in real])
            weight = torch.as_tensor(weights[batch], dtype=torch.float64, device=self.device)[:, None, None]
            return {m: (grad.double() * weight).sum(0) for m, grad in zip(real, grads)}

        order = list(range(len(alphas)))
        for start in range(0, len(order), per_batch):
            for part in self.retry.map(run, order[start:start + per_batch]):
                for modality, value in part.items():
                    totals[modality] += value
        positions = {m: ((real[m] - reference[m]).double() * totals[m]).sum(-1).cpu().numpy() for m in real}
        error = None
        if method != "saliency":
            error = float(sum(value.sum() for value in positions.values()) - (prediction - baseline))
        return Explanation(prediction=prediction, baseline=baseline, positions=positions, completeness_error=error,
                           steps=len(alphas), steps_per_batch=per_batch)

    def target_at(self, inputs, values, tissue_index=None):
        """The target with the hooked layers' outputs set to ``values`` ``{modality: (L, C)}`` (modalities left
        out keep the real input): for checks by finite differences."""
        real, _ = self.embeddings(inputs)
        real.update(values)
        with torch.no_grad():
            return float(self._forward(inputs, {m: v[None] for m, v in real.items()}, tissue_index)[0])

    def cross_attention_weights(self, inputs):
        """``{modality: (n_heads, N_query, L_key) float32}`` attention weights of each cross-attention block
        (``rna``, ``protein``) on the real input, or ``{}`` when the model fuses without cross-attention."""
        aggregation = self.model.aggregation
        blocks = {modality: getattr(aggregation, f"{modality}_cross_attention", None) for modality in ("rna", "protein")}
        blocks = {modality: block for modality, block in blocks.items() if block is not None and modality in inputs}
        captured, handles = {}, []

        def capture(modality):
            def hook(module, args, output):
                hidden, context, mask = args[:3]
                query = module._split_heads(module.query(hidden)).float()
                key = module._split_heads(module.key(context)).float()
                scores = query @ key.transpose(-1, -2) / module.head_dim ** 0.5
                scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
                captured[modality] = torch.softmax(scores, dim=-1)[0].cpu().numpy()
            return hook

        try:
            for modality, block in blocks.items():
                handles.append(block.register_forward_hook(capture(modality)))
            with torch.no_grad(), autocast_context(self.device, self.precision):
                self.model(**self._ids(inputs, 1))
        finally:
            for handle in handles:
                handle.remove()
        return captured
