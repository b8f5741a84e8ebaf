"""Training machinery for ``isoformer finetune``: adapting a checkpoint, freezing, optimiser, schedule, state.

* :func:`adapt_modalities` / :func:`fit_head`: the model a run trains, derived from the starting checkpoint
  (a modality subset for the paper's ablations; the head's outputs matched to the expression table's tissues,
  or a new output layer with ``--new-head``).
* :func:`parse_freeze` / :func:`freeze`: ``--freeze NAME`` freezes an encoder (``dna``, ``rna``, ``protein``,
  or ``encoders`` for all three); ``--freeze NAME:K`` freezes all of it but its last K layers (the layers
  after the embeddings and, for Enformer, after the convolution tower stay trainable, with whatever
  follows them: the final LayerNorm, Enformer's final pointwise block). Frozen modules run in eval mode
  (no dropout), so they are fixed feature extractors.
* BatchNorm (Enformer's convolution tower) always uses the checkpoint's running statistics during
  fine-tuning (its scale and shift still train): micro-batches of one or two 196-kb windows give noisy
  batch statistics, and with batch statistics the result would depend on how a step is split into
  micro-batches and processes.
* :func:`enable_activation_checkpointing`: every encoder layer recomputes its activations in the backward
  pass (``torch.utils.checkpoint``, non-reentrant) instead of storing them; for the official preset.
* :func:`build_optimizer` / :func:`learning_rate`: AdamW (weight decay on matrices only, not on biases
  and norms), linear warm-up then cosine decay to zero, computed from the step number alone, so the
  schedule's whole state is one integer.
* :func:`optimizer_state_tensors` / :func:`load_optimizer_state`, :func:`capture_rng` / :func:`restore_rng`:
  what ``--resume`` needs, as named tensors (safetensors) and JSON; nothing is pickled.
"""

import copy
import difflib
import hashlib
import logging
import math
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.models.checkpoint import build_model, checkpoint_state, fill_module
from isoformer_cli.models.configuration import ALL_MODALITIES, IsoformerConfig

log = logging.getLogger(__name__)

FREEZE_ALL = "encoders"
FREEZE_NAMES = ALL_MODALITIES + (FREEZE_ALL,)
# Parameters IsoFormer's forward never uses: ESM's contact-prediction head (EsmModel always builds it).
UNUSED_PARAMETER_PREFIXES = ("protein_encoder.contact_head.",)


def derive_seed(seed, *parts):
    """A 63-bit seed from the run seed and labels (``derive_seed(0, "dropout", 12, 3)``), stable across
    platforms and Python versions."""
    text = ":".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


# ---------------------------------------------------------------------------------------------
# The model a run trains
# ---------------------------------------------------------------------------------------------


def adapt_modalities(model, modalities, source):
    """The model restricted to ``modalities`` (a subset of the checkpoint's), sharing no storage with it.

    The query stream (DNA, else RNA, else protein) must stay the same, because the head's input width
    depends on it. Returns ``model`` itself when ``modalities`` is None or equal to the checkpoint's.
    """
    config = model.config
    if modalities is None:
        return model
    wanted = IsoformerConfig(modalities=modalities).modalities  # canonical order, validated
    if wanted == list(config.modalities):
        return model
    missing = [name for name in wanted if name not in config.modalities]
    if missing:
        raise InputError(
            f"--modalities {','.join(wanted)}: the checkpoint {source} has no {', '.join(missing)} encoder (it has "
            f"{','.join(config.modalities)}); build a checkpoint with them using isoformer init"
        )
    reduced = copy.deepcopy(config)
    reduced.modalities = wanted
    reduced.validate()
    if reduced.query_modality != config.query_modality:
        raise InputError(
            f"--modalities {','.join(wanted)}: without {config.query_modality} the fused stream becomes "
            f"{reduced.query_modality}, which the checkpoint's head was not built for; start from a checkpoint "
            f"made with isoformer init --modalities {','.join(wanted)}"
        )
    smaller = build_model(reduced, initialise=False)
    names = set(smaller.state_dict())
    state = {name: tensor.clone() for name, tensor in checkpoint_state(model).items() if name in names}
    fill_module(smaller, state, f"{source} (restricted to {','.join(wanted)})")
    log.info("training the %s modalities of %s (left out: %s)", ",".join(wanted), source,
             ",".join(name for name in config.modalities if name not in wanted))
    return smaller


def fit_head(model, tissues: Sequence[str], new_head=False, seed=0, bias=None):
    """Match the head to the expression table's ``tissues``; returns the output column of each tissue.

    Without ``new_head`` every tissue must be one of the checkpoint's outputs (the loss then covers those
    columns only). With ``new_head`` ``head.output`` is replaced by a fresh Linear(hidden, len(tissues))
    (weights Normal(0, initializer_range) from ``seed``, bias ``bias`` (T,) when given, e.g. the training
    means, else 0) and ``config.tissues`` becomes ``tissues``.
    """
    config = model.config
    tissues = list(tissues)
    if new_head:
        hidden = model.head.output.in_features
        generator = torch.Generator().manual_seed(derive_seed(seed, "new-head"))
        output = nn.Linear(hidden, len(tissues), device=model.head.output.weight.device)
        with torch.no_grad():
            output.weight.copy_(torch.randn(len(tissues), hidden, generator=generator) * config.initializer_range)
            output.bias.copy_(torch.as_tensor(bias, dtype=torch.float32) if bias is not None
                              else torch.zeros(len(tissues)))
        model.head.output = output
        config.tissues = tissues
        config.validate()
        log.info("new head: %d outputs for the expression table's tissues", len(tissues))
        return list(range(len(tissues)))
    known = list(config.tissues)
    missing = [tissue for tissue in tissues if tissue not in known]
    if missing:
        hints = []
        for tissue in missing[:3]:
            close = difflib.get_close_matches(tissue, known, n=1)
            hints.append(f"{tissue!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InputError(
            f"{len(missing)} tissue(s) of the expression table are not outputs of the checkpoint: "
            f"{', '.join(hints)}{' ...' if len(missing) > 3 else ''}; rename the columns to the checkpoint's "
            "tissues (isoformer inspect lists them) or train a new output layer with --new-head"
        )
    return [known.index(tissue) for tissue in tissues]


# ---------------------------------------------------------------------------------------------
# Freezing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeSpec:
    """Freeze ``encoder``; all of it (``trainable_layers`` None) or all but its last ``trainable_layers``."""

    encoder: str
    trainable_layers: Optional[int] = None

    def __str__(self):
        return self.encoder if self.trainable_layers is None else f"{self.encoder}:{self.trainable_layers}"


def parse_freeze(values: Sequence[str]) -> List[FreezeSpec]:
    """``["dna", "rna:2,protein"]`` -> FreezeSpecs, one per encoder (``encoders`` expands to all three).

    InputError for an unknown name, a bad layer count, or an encoder named twice.
    """
    specs = {}
    for value in values:
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, _, count = item.partition(":")
            if name not in FREEZE_NAMES:
                raise InputError(f"--freeze {item}: unknown encoder {name!r}; use {', '.join(FREEZE_NAMES)}, "
                                 "optionally with :K to keep the last K layers trainable")
            trainable = None
            if count:
                if not count.isdigit():
                    raise InputError(f"--freeze {item}: K in NAME:K must be a whole number of layers")
                trainable = int(count)
            for encoder in (ALL_MODALITIES if name == FREEZE_ALL else (name,)):
                if encoder in specs:
                    raise InputError(f"--freeze names the {encoder} encoder twice")
                specs[encoder] = FreezeSpec(encoder, trainable)
    return [specs[name] for name in ALL_MODALITIES if name in specs]


def encoder_parts(model, encoder):
    """``(before, layers, after)`` module lists of one encoder: embeddings (or Enformer's stem and
    convolution tower), the stack of layers, and what follows the stack."""
    module = getattr(model, f"{encoder}_encoder", None)
    if module is None:
        raise InputError(f"--freeze {encoder}: the model has no {encoder} encoder "
                         f"(modalities: {','.join(model.config.modalities)})")
    if encoder == "dna" and model.config.dna_encoder_type == "enformer":
        enformer = module.enformer
        return [enformer.stem, enformer.conv_tower], list(enformer.transformer), [enformer.final_pointwise]
    if encoder == "dna":
        module = module.nucleotide_transformer
    return [module.embeddings], list(module.encoder.layer), [module.encoder.emb_layer_norm_after]


def freeze(model, specs: Sequence[FreezeSpec]) -> List[nn.Module]:
    """Turn off gradients of the frozen parts; returns the frozen modules (to keep in eval mode).

    Also freezes parameters the forward never uses (ESM's contact head), so that every trainable
    parameter gets a gradient.
    """
    frozen = []
    for spec in specs:
        before, layers, after = encoder_parts(model, spec.encoder)
        if spec.trainable_layers is None:
            parts = before + layers + after
        else:
            if spec.trainable_layers > len(layers):
                raise InputError(f"--freeze {spec}: the {spec.encoder} encoder has only {len(layers)} layers")
            parts = before + layers[: len(layers) - spec.trainable_layers]
        for part in parts:
            part.requires_grad_(False)
        frozen += parts
    for name, parameter in model.named_parameters():
        if name.startswith(UNUSED_PARAMETER_PREFIXES):
            parameter.requires_grad_(False)
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise InputError("--freeze leaves nothing to train")
    return frozen


def plain_batchnorm(model):
    """Replace ``SyncBatchNorm`` layers by ``BatchNorm1d`` with the same tensors; returns how many.

    enformer-pytorch builds SyncBatchNorm whenever a process group is active (under torchrun). Fine-tuning
    keeps BatchNorm statistics frozen (eval mode), where both layers compute the same thing, and
    DistributedDataParallel refuses SyncBatchNorm on CPU.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.SyncBatchNorm):
                plain = nn.BatchNorm1d(child.num_features, eps=child.eps, momentum=child.momentum,
                                       affine=child.affine, track_running_stats=child.track_running_stats,
                                       device=child.weight.device if child.affine else None)
                plain.load_state_dict(child.state_dict())
                plain.requires_grad_(any(p.requires_grad for p in child.parameters()))
                setattr(parent, name, plain)
                replaced += 1
    return replaced


def set_train_mode(model, frozen_modules):
    """Training mode, except frozen modules and every BatchNorm (see the module docstring)."""
    model.train()
    for module in frozen_modules:
        module.eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def parameter_counts(model):
    """``(trainable, total)`` parameter counts."""
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    return trainable, total


# ---------------------------------------------------------------------------------------------
# Activation checkpointing
# ---------------------------------------------------------------------------------------------


def _checkpointed(forward):
    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def enable_activation_checkpointing(model):
    """Recompute every encoder layer's activations in the backward pass; returns the number of layers.

    The layer modules keep their names (only their ``forward`` is wrapped), so checkpoints are unchanged.
    """
    count = 0
    for encoder in ALL_MODALITIES:
        if getattr(model, f"{encoder}_encoder", None) is None:
            continue
        _, layers, _ = encoder_parts(model, encoder)
        for layer in layers:
            layer.forward = _checkpointed(layer.forward)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Optimiser and schedule
# ---------------------------------------------------------------------------------------------


def trainable_parameters(model):
    """``[(name, parameter)]`` of the parameters that train, in model order."""
    return [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]


def build_optimizer(named_parameters, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    """AdamW with two groups: matrices (and embeddings) decay, 1-D parameters (biases, norms) do not."""
    decay = [parameter for _, parameter in named_parameters if parameter.ndim >= 2]
    no_decay = [parameter for _, parameter in named_parameters if parameter.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach=False: the same per-parameter arithmetic on every device count, for reproducibility.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def learning_rate(step, base_lr, warmup_steps, total_steps):
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up over ``warmup_steps`` steps to
    ``base_lr``, then half a cosine down to 0 at ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr


def fill_missing_gradients(parameters):
    """Give a zero gradient to trainable parameters that got none this step (a batch without proteins, say).

    AdamW skips parameters without a gradient but updates those with a zero one (moments decay, weight
    decay applies); DistributedDataParallel hands zeros to parameters unused on one process. Filling in
    zeros everywhere makes one process and many do the same arithmetic.
    """
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)


# ---------------------------------------------------------------------------------------------
# Resumable state
# ---------------------------------------------------------------------------------------------


def optimizer_state_tensors(optimizer, named_parameters):
    """``{"<parameter name>/<state key>": tensor}`` of the AdamW state (``step``, ``exp_avg``, ``exp_avg_sq``)."""
    tensors = {}
    for name, parameter in named_parameters:
        for key, value in optimizer.state.get(parameter, {}).items():
            if not torch.is_tensor(value):
                raise TypeError(f"optimizer state {key} of {name} is not a tensor")
            tensors[f"{name}/{key}"] = value.detach().to("cpu").contiguous()
    return tensors


def load_optimizer_state(optimizer, named_parameters, tensors, source):
    """Put tensors from :func:`optimizer_state_tensors` back; CheckpointError-style InputError when the
    parameter set differs (the run folder does not belong to this configuration)."""
    index_of = {}
    position = 0
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            index_of[id(parameter)] = position
            position += 1
    names = {name for name, _ in named_parameters}
    saved = {key.rsplit("/", 1)[0] for key in tensors}
    if saved - names:
        raise InputError(f"{source}: optimizer state for parameters this run does not train "
                         f"({sorted(saved - names)[0]}, ...); the run folder belongs to another configuration")
    state = {}
    for name, parameter in named_parameters:
        entries = {key.rsplit("/", 1)[1]: tensor for key, tensor in tensors.items() if key.rsplit("/", 1)[0] == name}
        if entries:
            state[index_of[id(parameter)]] = entries
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def capture_rng():
    """``(tensors, plain)``: this process's random generator states as tensors and JSON values."""
    numpy_state = np.random.get_state()
    tensors = {
        "torch_cpu": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = state
    python_state = random.getstate()
    plain = {
        "numpy": [numpy_state[0], int(numpy_state[2]), int(numpy_state[3]), float(numpy_state[4])],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }
    return tensors, plain


def restore_rng(tensors, plain):
    """Restore what :func:`capture_rng` captured (CUDA states only for devices present)."""
    torch.set_rng_state(tensors["torch_cpu"])
    kind, position, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), position, has_gauss, cached))
    version, state, gauss = plain["python"]
    random.setstate((version, tuple(state), gauss))
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            key = f"torch_cuda_{index}"
            if key in tensors:
                torch.cuda.set_rng_state(tensors[key], index)
