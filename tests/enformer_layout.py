"""Files in enformer-pytorch's layout, written without enformer-pytorch (so the tests of ``init`` and ``convert``
run whether or not the reference library is installed; ``test_enformer_trunk.py`` checks this layout against the
real ``enformer_pytorch.Enformer`` when it is).

enformer-pytorch's ``Enformer`` registers ``stem``, ``conv_tower``, ``transformer`` and ``final_pointwise``, then
the same modules again inside its ``_trunk`` ``nn.Sequential`` at positions 1, 2, 4 and 6 (0, 3 and 5 are a
layout change, another and the crop: no tensors), and one ``Linear(2 dim, n) + Softplus`` head per species in
``_heads``. So its state dict names each trunk tensor twice, sharing storage.
"""

from __future__ import annotations

import json

from torch import nn

from isoformer_cli.models.conversion.encoders.enformer import library_fields
from isoformer_cli.models.network.encoders.enformer import build_trunk


class EnformerPytorchLayout(nn.Module):
    """Our trunk's modules registered the way enformer-pytorch registers them, plus species heads.

    ``state_dict()`` has the named keys, the ``_trunk.N.`` keys (the same tensors) and ``_heads.<species>.0.*``.
    """

    def __init__(self, trunk: nn.Module, species_heads: dict[str, int]):
        super().__init__()
        self.stem = trunk.stem
        self.conv_tower = trunk.conv_tower
        self.transformer = trunk.transformer
        self.final_pointwise = trunk.final_pointwise
        self._trunk = nn.Sequential(
            nn.Identity(), self.stem, self.conv_tower, nn.Identity(), self.transformer, nn.Identity(),
            self.final_pointwise,
        )
        width = trunk.output_size
        self._heads = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(width, count), nn.Softplus()) for name, count in species_heads.items()}
        )


def enformer_pytorch_module(config, species_heads: dict[str, int], trunk: nn.Module | None = None):
    """An `EnformerPytorchLayout` around ``trunk`` (default: a new random trunk for ``config``)."""
    return EnformerPytorchLayout(trunk if trunk is not None else build_trunk(config), species_heads)


def write_enformer_pytorch_config(folder, config, species_heads: dict[str, int]) -> None:
    """``folder/config.json`` as ``EnformerConfig.save_pretrained`` writes it (the fields ``init`` reads)."""
    fields = {**library_fields(config), "output_heads": dict(species_heads), "model_type": "enformer",
              "architectures": ["Enformer"]}
    (folder / "config.json").write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")

