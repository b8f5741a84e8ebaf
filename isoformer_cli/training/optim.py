"""AdamW and its schedule: weight decay on matrices only, linear warm-up then cosine decay to zero.

The schedule is computed from the step number alone, so its whole state is one integer.
"""

import math

import torch


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
