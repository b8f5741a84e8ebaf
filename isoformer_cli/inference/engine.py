"""Running IsoFormer over prepared chunks: each distinct input encoded once, then fused per row.

Stages for one :class:`~isoformer_cli.inference.prepare.PreparedChunk`:

1. encode every distinct DNA window, RNA and protein of the chunk, each padded to the next multiple of
   64 positions (:func:`~isoformer_cli.inference.batching.padded_length`), in batches of inputs of one
   padded length under each encoder's budget of input positions (from the run's memory plan,
   :mod:`~isoformer_cli.inference.memory_plan`, or ``--max-tokens``);
2. fuse and predict per row (isoform), in batches of rows whose inputs have the same padded shapes (DNA
   bins, RNA and protein positions, which modalities are present) and whose cost ``rows x (DNA positions
   + RNA tokens + protein tokens)`` stays under the fusion budget, each row gathering the encoder
   outputs of its own inputs.

Batch invariance: an input's padded length depends on the input alone, and rows lacking a modality always
take the same path (the model skips that fusion block), so a transcript's numbers do not depend on which
other transcripts share its chunk or batch. Padding to the batch's longest input would change them in the
last bits: masked positions still change the length, and so the summation order, of attention's
reductions. This is what makes ``--shard K/N`` runs merge
into exactly the file one run writes, and ``--chunk-size``, ``--max-memory`` and out-of-memory retries
leave the numbers alone. It holds on the CPU, where a linear layer's rows do not depend on the number of
rows once that number is safe (``safe_row_count``); on CUDA, cuBLAS chooses kernels by batch size, so there
the numbers agree to float tolerance.
Two CPU kernel choices break it and are avoided by filling small batches up with copies of their first item
(results dropped): oneDNN convolves a batch of one input with other bits than the same input in a larger
batch (seen on the tiny Enformer stem), so an encoder batch holds at least two inputs whenever the budget
allows two; and a linear layer over few rows (``safe_row_count``). Runs compared must share the budget
(``--max-memory`` or the same free memory) for this reason. Measured in fp32, the CPU's default; bf16
on the CPU goes through other oneDNN kernels and is not claimed invariant.

Because the encoders see each distinct input once, isoforms sharing a TSS or a protein cost
one DNA or protein encoding, not several; the result equals the plain per-isoform forward pass
(up to floating-point summation order). On out-of-memory a batch is split in halves and retried.
"""

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from isoformer_cli.inference.batching import (
    DEFAULT_MAX_TOKENS,
    OutOfMemoryRetry,
    padded_length,
    same_shape_batches,
)
from isoformer_cli.inference.memory_plan import MemoryPlan
from isoformer_cli.runtime.device import autocast_context, is_out_of_memory

log = logging.getLogger(__name__)

# Matrix row counts whose rows come out of a CPU linear layer with the same bits as in any larger input:
# 4, 8, and every count from 12 on. Under 12, the last (count mod 4) rows come from another kernel with another
# summation order (measured for widths 30 to 768 against a 256-row reference). Smaller batches are therefore
# filled up with copies of their first item, whose results are dropped (module docstring: batch invariance).
# A fusion batch has one matrix row per transcript at the head, an encoder batch one per token.
SAFE_ROW_COUNTS_BELOW_12 = (4, 8)


def safe_row_count(rows):
    """The smallest matrix row count at least ``rows`` that is 4, 8 or 12 and more (see above)."""
    if rows >= 12:
        return rows
    return next(count for count in (*SAFE_ROW_COUNTS_BELOW_12, 12) if count >= rows)



@dataclass
class ChunkResult:
    """Model outputs of one chunk, rows in the chunk's order.

    Attributes:
        predictions: ``(n_rows, n_tissues)`` float32, in the checkpoint's target units.
        fused: ``(n_rows, D)`` float32 pooled fused embedding (the head's input).
        modality_pooled: with ``modality_embeddings``: ``{"dna"|"rna"|"protein": (means, present)}``,
            means ``(n_rows, width)`` float32 over each encoder's real positions (zeros where a
            row lacks the modality) and ``present`` ``(n_rows,)`` bool.
    """

    predictions: np.ndarray
    fused: np.ndarray
    modality_pooled: Optional[dict] = None


class ChunkPredictor:
    """Runs a model over :class:`PreparedChunk` objects.

    Args:
        model: an ``IsoformerModel`` in eval mode on ``device``.
        device: ``torch.device``.
        precision: ``"fp32"`` or ``"bf16"``.
        limits: batch limits, a :class:`~isoformer_cli.inference.memory_plan.MemoryPlan` (padded input
            positions per encoder batch and fused positions per fusion batch), or an int: one budget of padded
            positions for every batch (``--max-tokens``).
    """

    def __init__(self, model, device, precision="fp32", limits=DEFAULT_MAX_TOKENS):
        self.model = model
        self.config = model.config
        self.device = device
        self.precision = precision
        if isinstance(limits, int):
            limits = MemoryPlan(positions_per_batch={modality: limits for modality in self.config.modalities},
                                fusion_positions=limits)
        self.limits = limits
        release = torch.cuda.empty_cache if device.type == "cuda" else (lambda: None)
        self.retry = OutOfMemoryRetry(is_out_of_memory, release)
        self.encoded_inputs = 0

    def budget(self, modality=None):
        """Padded positions per batch of ``modality`` (None: the fusion), halved once for every out-of-memory
        split so far."""
        limit = self.limits.fusion_positions if modality is None else self.limits.positions_per_batch[modality]
        return max(1, limit >> self.retry.halvings)

    def predict(self, chunk, modality_embeddings=False):
        """Encode the distinct inputs of ``chunk``, then fuse and predict every row."""
        with torch.inference_mode():
            return self._predict(chunk, modality_embeddings)

    def _predict(self, chunk, modality_embeddings):
        dna, rna, protein = self.encode(chunk)

        def fuse(inputs):
            output = self.model.fuse_and_predict(**inputs)
            return output.predictions, output.pooled_embeddings

        predictions, fused = self.fuse_rows(chunk, dna, rna, protein, fuse)
        result = ChunkResult(
            predictions=torch.stack(predictions).float().cpu().numpy(),
            fused=torch.stack(fused).float().cpu().numpy(),
        )
        if modality_embeddings:
            result.modality_pooled = self._modality_pooled(chunk, dna, rna, protein)
        return result

    def encode(self, chunk):
        """``(dna, rna, protein)``: the encoder outputs of the chunk's distinct inputs, each input encoded once
        (DNA items are ``(states (N, D), mask (N,) or None)``, RNA and protein items ``(L, E)`` states); an
        absent modality of the model is an empty list. Counted in ``encoded_inputs``."""
        config = self.config
        dna = self._encode_all("dna", chunk.dna_tokens, self._encode_dna_batch) if config.has_dna else []
        rna = self._encode_all("rna", chunk.rna_tokens, self._encode_rna_batch) if config.has_rna else []
        protein = self._encode_all("protein", chunk.protein_tokens, self._encode_protein_batch) \
            if config.has_protein else []
        self.encoded_inputs += len(dna) + len(rna) + len(protein)
        return dna, rna, protein

    def fuse_rows(self, chunk, dna, rna, protein, fuse):
        """``fuse(inputs)`` over every row of ``chunk``, in fusion batches; returns, per output of ``fuse``, a list
        with one tensor per row (chunk order).

        ``inputs`` are the keyword arguments of ``IsoformerModel.fuse_and_predict`` for one batch (rows gathering
        their inputs' encoder outputs from :meth:`encode`); ``fuse`` returns a tuple of tensors whose first axis
        is the batch's rows.
        """
        n_rows = len(chunk)
        cost = [
            (dna[chunk.dna_of_row[row]][0].shape[0] if chunk.dna_of_row[row] >= 0 else 0)
            + (rna[chunk.rna_of_row[row]].shape[0] if chunk.rna_of_row[row] >= 0 else 0)
            + (protein[chunk.protein_of_row[row]].shape[0] if chunk.protein_of_row[row] >= 0 else 0)
            for row in range(n_rows)
        ]
        shapes = [self._row_shape(chunk, row, dna, rna, protein) for row in range(n_rows)]
        outputs = None
        for batch in same_shape_batches(shapes, cost, self.budget()):
            for part in self.retry.map(
                    lambda rows: self._fuse_batch(rows, chunk, dna, rna, protein, shapes[rows[0]], fuse), batch):
                for row, *values in part:
                    if outputs is None:
                        outputs = [[None] * n_rows for _ in values]
                    for kept, value in zip(outputs, values):
                        kept[row] = value
        return outputs

    # -------------------------------------------------------------------------------------------
    # Encoder stage: distinct inputs -> per-input tensors (kept on the device).
    def _padded(self, modality, length, outputs=False):
        """The length an input (``outputs``: an encoder output) of ``length`` positions of ``modality`` is padded
        to in every batch: see :func:`~isoformer_cli.inference.batching.padded_length`."""
        encoder = self.config.encoder(modality)
        longest = encoder.max_input_length(self.config)
        if outputs:
            longest = encoder.output_length(self.config, longest)
        return padded_length(length, longest)

    def _encode_all(self, modality, token_arrays, encode_batch):
        """Encode every array of ``token_arrays``; returns per-input outputs in the same order."""
        outputs = [None] * len(token_arrays)
        padded = [self._padded(modality, len(array)) for array in token_arrays]
        for batch in same_shape_batches(padded, padded, self.budget(modality)):
            # The budget is read at each call: after an out-of-memory split it is halved, and a lone input
            # is then no longer doubled.
            for part in self.retry.map(
                    lambda items: self._encode_filled(token_arrays, items, padded[items[0]], encode_batch,
                                                      self.budget(modality)), batch):
                for index, output in part:
                    outputs[index] = output
        return outputs

    @staticmethod
    def _encode_filled(token_arrays, items, length, encode_batch, budget):
        """``encode_batch`` over ``items`` (inputs padded to ``length``), filled with copies of the first input
        (their outputs dropped) up to a safe number of token rows (:func:`safe_row_count`), and up to two
        inputs when the budget holds two (module docstring: batch invariance)."""
        fewest = len(items)
        while safe_row_count(fewest * length) != fewest * length:
            fewest += 1
        if 2 * length <= budget:
            fewest = max(fewest, 2)
        copies = fewest - len(items)
        filled = list(items) + [items[0]] * copies
        return encode_batch([token_arrays[i] for i in filled], filled, length)[:len(items)]

    def _row_shape(self, chunk, row, dna, rna, protein):
        """What decides the shapes of a row's fusion inputs: DNA bins (and whether they carry a mask), and the
        padded lengths of its RNA and protein encoder outputs (0: absent). Rows of one fusion batch share it."""
        dna_shape = None
        if len(dna) and chunk.dna_of_row[row] >= 0:
            states, mask = dna[chunk.dna_of_row[row]]
            dna_shape = (states.shape[0], mask is None)
        rna_length = self._padded("rna", rna[chunk.rna_of_row[row]].shape[0], outputs=True) \
            if len(rna) and chunk.rna_of_row[row] >= 0 else 0
        protein_length = self._padded("protein", protein[chunk.protein_of_row[row]].shape[0], outputs=True) \
            if len(protein) and chunk.protein_of_row[row] >= 0 else 0
        return dna_shape, rna_length, protein_length

    def _batch(self, modality, arrays, length):
        """``(input_ids, mask or None)`` on the device, collated (padded to ``length``) by the modality's
        encoder."""
        input_ids, mask = self.config.encoder(modality).collate(arrays, self.config, length)
        return input_ids.to(self.device), None if mask is None else mask.to(self.device)

    def _encode_dna_batch(self, arrays, indices, length):
        input_ids, mask = self._batch("dna", arrays, length)
        with autocast_context(self.device, self.precision):
            embeddings, bin_mask = self.model.encode_dna(input_ids, mask)
        return [
            (index, (embeddings[row], None if bin_mask is None else bin_mask[row]))
            for row, index in enumerate(indices)
        ]

    def _encode_rna_batch(self, arrays, indices, length):
        input_ids, mask = self._batch("rna", arrays, length)
        with autocast_context(self.device, self.precision):
            hidden = self.model.encode_rna(input_ids, mask)
        return [(index, hidden[row, : len(arrays[row])]) for row, index in enumerate(indices)]

    def _encode_protein_batch(self, arrays, indices, length):
        input_ids, mask = self._batch("protein", arrays, length)
        with autocast_context(self.device, self.precision):
            hidden = self.model.encode_protein(input_ids, mask)
        return [(index, hidden[row, : len(arrays[row])]) for row, index in enumerate(indices)]

    # -------------------------------------------------------------------------------------------
    # Fusion stage: rows gather their inputs' encoder outputs.
    def _fuse_batch(self, rows, chunk, dna, rna, protein, shape, fuse):
        """``fuse`` over ``rows`` (all of fusion shape ``shape``, see :meth:`_row_shape`):
        ``[(row, *outputs of the row)]``."""
        real = len(rows)
        rows = list(rows) + [rows[0]] * (safe_row_count(real) - real)
        config = self.config
        dna_embeddings = dna_mask = None
        if config.has_dna:
            items = [dna[chunk.dna_of_row[row]] for row in rows]
            dna_embeddings, dna_mask = _pad_states([embedding for embedding, _ in items],
                                                   [mask for _, mask in items])
        _, rna_length, protein_length = shape
        rna_embeddings, rna_mask, has_rna = _gather_optional(rows, chunk.rna_of_row, rna, self.device, rna_length)
        protein_embeddings, protein_mask, has_protein = _gather_optional(rows, chunk.protein_of_row, protein,
                                                                         self.device, protein_length)
        inputs = dict(
            dna_embeddings=dna_embeddings, dna_mask=dna_mask,
            rna_embeddings=rna_embeddings, rna_attention_mask=rna_mask,
            protein_embeddings=protein_embeddings, protein_attention_mask=protein_mask,
            has_rna=has_rna if config.has_rna else None,
            has_protein=has_protein if config.has_protein else None,
        )
        with autocast_context(self.device, self.precision):
            outputs = fuse(inputs)
        return [(row, *(output[position] for output in outputs)) for position, row in enumerate(rows[:real])]

    def _modality_pooled(self, chunk, dna, rna, protein):
        """Per modality ``(means (n_rows, width), present (n_rows,) bool)``: each encoder's output
        averaged over its real positions (zeros where the row lacks the modality)."""
        config = self.config
        pooled = {}
        dna_means = [states[mask].mean(0) if mask is not None else states.mean(0) for states, mask in dna]
        for name, means, of_row in (
            ("dna", dna_means, chunk.dna_of_row),
            ("rna", [states.mean(0) for states in rna], chunk.rna_of_row),
            ("protein", [states.mean(0) for states in protein], chunk.protein_of_row),
        ):
            if name not in config.modalities:
                continue
            width = config.encoder(name).width(config)
            # Every modality of the model gets its entry, even when no row of the chunk has it (a
            # chunk of non-coding RNAs has no protein): all rows absent then.
            rows = np.zeros((len(chunk), width), dtype=np.float32)
            present = of_row >= 0
            if means:
                rows[present] = torch.stack(means).float().cpu().numpy()[of_row[present]]
            pooled[name] = (rows, present)
        return pooled


def _pad_states(states, masks):
    """Stack per-input states ``(L_i, E)`` into ``(B, L, E)`` zero-padded, and a ``(B, L)`` mask
    (None when every input has the same length and no mask of its own)."""
    longest = max(state.shape[0] for state in states)
    if all(state.shape[0] == longest for state in states) and all(mask is None for mask in masks):
        return torch.stack(states), None
    batch = states[0].new_zeros((len(states), longest, states[0].shape[-1]))
    mask = torch.zeros((len(states), longest), dtype=torch.bool, device=states[0].device)
    for row, (state, own_mask) in enumerate(zip(states, masks)):
        batch[row, : state.shape[0]] = state
        mask[row, : state.shape[0]] = True if own_mask is None else own_mask
    return batch, mask


def _gather_optional(rows, of_row, outputs, device, length):
    """States padded to ``length`` positions, key mask and presence flags of an optional modality for ``rows``.

    Returns ``(None, None, has)`` when no row of the batch has the modality, so the model skips
    that fusion block outright; rows without it get one masked zero position otherwise (the engine's
    fusion batches never mix the two, see :meth:`ChunkPredictor._row_shape`).
    """
    has = torch.tensor([of_row[row] >= 0 for row in rows], dtype=torch.bool, device=device)
    if not bool(has.any()) or not outputs:
        return None, None, has
    width = outputs[0].shape[-1]
    empty = outputs[0].new_zeros((1, width))
    states = [outputs[of_row[row]] if of_row[row] >= 0 else empty for row in rows]
    longest = max([length] + [state.shape[0] for state in states])
    batch = outputs[0].new_zeros((len(rows), longest, width))
    mask = torch.zeros((len(rows), longest), dtype=torch.bool, device=device)
    for position, (row, state) in enumerate(zip(rows, states)):
        batch[position, : state.shape[0]] = state
        if of_row[row] >= 0:
            mask[position, : state.shape[0]] = True
    return batch, mask, has
