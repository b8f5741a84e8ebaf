"""Reproducibility: deterministic kernels, and seeds derived from a run seed and labels.

A seed derived with :func:`derive_seed` depends only on its labels (``derive_seed(0, "dropout", 12, 3)``), so
the same step of a run draws the same random numbers on one process or many, and after a resume.
"""

import hashlib
import os

import torch


def derive_seed(seed, *parts):
    """A 63-bit seed from the run seed and labels (``derive_seed(0, "dropout", 12, 3)``), stable across
    platforms and Python versions."""
    text = ":".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def make_deterministic(seed=0):
    """Ask torch for deterministic kernels (slower on GPU) and seed every generator."""
    # cuBLAS needs this workspace setting before the first CUDA matmul to be deterministic.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
