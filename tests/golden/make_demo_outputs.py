"""Write the demo checkpoint's predictions and fused embeddings on both example datasets (numeric goldens).

Run from the repository root after a change that is MEANT to change the model's numbers (a new demo
checkpoint, a new architecture detail); `tests/test_demo_golden.py` compares every run against these files:

    python tests/golden/make_demo_outputs.py

Writes `tests/golden/demo.NAME.predictions.tsv` (the prediction table without its provenance line) and
`tests/golden/demo.NAME.fused.npz` (transcript ids and the fused embeddings, float32).
"""

import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

GOLDEN = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(GOLDEN)), "example_data")
DATASETS = {
    "hg38_chr16": ("hg38_chr16_186964-397118.fa", "hg38_chr16_186964-397118.refGene.gtf"),
    "mm10_chr9": ("chr9.4M.fa.gz", "chr9.4M.gtf.gz"),
}


def isoformer(*args):
    subprocess.run([sys.executable, "-m", "isoformer_cli", "-q", *args], check=True)


def main():
    with tempfile.TemporaryDirectory() as scratch:
        for name, (fasta, annotation) in DATASETS.items():
            inputs = ["--genome", os.path.join(EXAMPLES, fasta), "--annotation", os.path.join(EXAMPLES, annotation),
                      "--checkpoint", "demo"]
            table = os.path.join(scratch, f"{name}.tsv")
            isoformer("predict", *inputs, "-o", table)
            with open(table) as source, open(os.path.join(GOLDEN, f"demo.{name}.predictions.tsv"), "w") as out:
                out.writelines(line for line in source if not line.startswith("# provenance:"))
            embeddings = os.path.join(scratch, f"{name}.h5")
            isoformer("embed", *inputs, "-o", embeddings)
            with h5py.File(embeddings) as handle:
                np.savez_compressed(os.path.join(GOLDEN, f"demo.{name}.fused.npz"),
                                    transcript_id=np.array(list(handle["transcript_id"].asstr()[()]), dtype=str),
                                    fused=handle["fused"][()])


if __name__ == "__main__":
    main()
