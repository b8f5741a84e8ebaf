"""What ``--resume`` needs beyond the weights, as named tensors (safetensors) and JSON; nothing is pickled.

* :func:`optimizer_state_tensors` / :func:`load_optimizer_state`: AdamW's moments and step counts;
* :func:`capture_rng` / :func:`restore_rng`: every random generator of the process.
"""

import random

import numpy as np
import torch

from isoformer_cli.errors import InputError


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
