"""Building an :class:`~isoformer_cli.models.network.modeling.IsoformerModel` from its configuration: randomly
initialised, without memory (``device="meta"``: shapes and counts only), or uninitialised for tensors that are
all overwritten next (loading a checkpoint, a reference encoder for a self-check).
"""

import contextlib

import torch

from isoformer_cli.errors import CheckpointError
from isoformer_cli.models.network.modeling import IsoformerModel

try:
    from transformers.initialization import no_init_weights
except ImportError:  # transformers 4.x: the switch moved in v5
    from transformers.modeling_utils import no_init_weights


def build_model(config, device=None, initialise=True):
    """A fresh :class:`IsoformerModel`; ``device="meta"`` builds it without memory (shapes and counts only).

    With ``initialise=False`` the random initialisation is skipped (parameters hold whatever memory held);
    use it only when every tensor is overwritten next, as :func:`load_checkpoint` does.
    """
    try:
        if device is not None:
            with torch.device(device):
                return IsoformerModel(config)
        if initialise:
            return IsoformerModel(config)
        with skip_weight_initialisation():
            return IsoformerModel(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build the model from this configuration: {exc}") from exc


@contextlib.contextmanager
def skip_weight_initialisation():
    """transformers' switch that turns every ``torch.nn.init`` call into a no-op (the location moved in v5).

    For modules whose every tensor is overwritten next: random initialisation of a full-size encoder
    costs tens of seconds on a CPU.
    """
    with no_init_weights():
        yield
