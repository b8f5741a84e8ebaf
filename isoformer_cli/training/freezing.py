"""Which parameters train, and how the frozen and trainable parts run.

* :func:`parse_freeze` / :func:`freeze`: ``--freeze NAME`` freezes an encoder (``dna``, ``rna``, ``protein``,
  or ``encoders`` for all three); ``--freeze NAME:K`` freezes all of it but its last K layers (the layers
  after the embeddings and, for Enformer, after the convolution tower stay trainable, with whatever
  follows them: the final LayerNorm, Enformer's final pointwise block). Each encoder says what its layers
  are (``SequenceEncoder.layer_groups``). Frozen modules run in eval mode (no dropout), so they are fixed
  feature extractors.
* BatchNorm (Enformer's convolution tower) always uses the checkpoint's running statistics during
  fine-tuning (its scale and shift still train): micro-batches of one or two 196-kb windows give noisy
  batch statistics, and with batch statistics the result would depend on how a step is split into
  micro-batches and processes.
* :func:`enable_activation_checkpointing`: every encoder layer recomputes its activations in the backward
  pass (``torch.utils.checkpoint``, non-reentrant) instead of storing them; for the official preset.
"""

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.models.network.configuration import ALL_MODALITIES

log = logging.getLogger(__name__)

FREEZE_ALL = "encoders"
FREEZE_NAMES = ALL_MODALITIES + (FREEZE_ALL,)
# Parameters IsoFormer's forward never uses: ESM's contact-prediction head (EsmModel always builds it).
UNUSED_PARAMETER_PREFIXES = ("protein_encoder.contact_head.",)


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
    convolution tower), the stack of layers, and what follows the stack (see ``SequenceEncoder.layer_groups``)."""
    module = getattr(model, f"{encoder}_encoder", None)
    if module is None:
        raise InputError(f"--freeze {encoder}: the model has no {encoder} encoder "
                         f"(modalities: {','.join(model.config.modalities)})")
    groups = model.config.encoder(encoder).layer_groups(module)
    return groups.before, groups.layers, groups.after


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

    enformer-pytorch (which older versions of the DNA encoder wrapped) builds SyncBatchNorm whenever a process
    group is active (under torchrun); our trunk builds plain BatchNorm, so this only matters for such modules. Fine-tuning
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


def enable_activation_checkpointing(model):
    """Recompute every encoder layer's activations in the backward pass (each encoder says which of its
    modules: ``SequenceEncoder.enable_activation_checkpointing``); returns the number of modules wrapped.

    The modules keep their names (only their ``forward`` is wrapped), so checkpoints are unchanged.
    """
    count = 0
    for modality in model.config.modalities:
        count += model.config.encoder(modality).enable_activation_checkpointing(getattr(model, f"{modality}_encoder"))
    return count
