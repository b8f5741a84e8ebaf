"""The model a fine-tuning run trains, derived from its starting checkpoint.

* :func:`adapt_modalities`: a modality subset of the checkpoint, for the paper's ablations;
* :func:`fit_head`: the head's outputs matched to the expression table's tissues, or a new output layer
  (``--new-head``).
"""

import copy
import difflib
import logging
from typing import Sequence

import torch
from torch import nn

from isoformer_cli.errors import InputError
from isoformer_cli.models.checkpoint.save import checkpoint_state
from isoformer_cli.models.checkpoint.weights import fill_module
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig
from isoformer_cli.runtime.determinism import derive_seed

log = logging.getLogger(__name__)


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
