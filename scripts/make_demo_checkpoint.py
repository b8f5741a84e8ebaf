"""Write the demo checkpoint shipped in the package: the tiny preset with seeded random weights.

Its numbers are NOT biological predictions: it exists so `isoformer predict` runs offline on the
example data and shows the whole pipeline. Regenerate with:

    python scripts/make_demo_checkpoint.py isoformer_cli/data/demo_checkpoint
"""

import argparse
import pathlib

import torch

from isoformer_cli.models.checkpoint.save import save_checkpoint
from isoformer_cli.models.distribution.locate import DEMO_MARKER
from isoformer_cli.models.network.build import build_model
from isoformer_cli.models.network.configuration import IsoformerConfig

MARKER_TEXT = """\
DEMO checkpoint of isoformer: the `tiny` preset with random weights (seed 0).
Its outputs are NOT biological predictions. It exists so that `isoformer predict` runs offline
on example_data/ and exercises the whole pipeline. Use a real checkpoint for analysis
(`isoformer convert` for the official IsoFormer weights, `isoformer init` + finetune for your own).
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(IsoformerConfig.from_preset("tiny"))
    save_checkpoint(model, args.folder, overwrite=args.force, metadata={"demo": "true"})
    (args.folder / DEMO_MARKER).write_text(MARKER_TEXT)
    print(f"wrote {args.folder} ({sum(p.numel() for p in model.parameters()):,} parameters)")


if __name__ == "__main__":
    main()
