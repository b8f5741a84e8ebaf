"""Cost of ``isoformer models calibrate`` against one ``isoformer predict`` over the same rows.

    python benchmarks/calibrate.py                    # tiny preset (the bundled demo checkpoint), human example
    python benchmarks/calibrate.py --repeat 3 --copies 4

Calibrating encodes each distinct input once, like predict, and then runs only the fusion (once per fusion
order), the pooling and the head's first layer (once per window) and the head's output layer (once per
candidate). Target: calibrate <= 1.5x predict's wall time. Both run in this process on the same triples (the
human example's annotation, replicated ``--copies`` times under new transcript ids so the encoders have
something to do), the labels being predict's own output. Best of ``--repeat`` runs each.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from isoformer_cli.app.calibrate import CalibrateConfig, run_calibrate  # noqa: E402
from isoformer_cli.app.predict import PredictConfig, run_predict  # noqa: E402
from isoformer_cli.formats.predictions import read_predictions  # noqa: E402
from isoformer_cli.genomics.expression import ExpressionInput  # noqa: E402
from isoformer_cli.runtime.options import RuntimeOptions  # noqa: E402
from isoformer_cli.triples.source import TripleSource  # noqa: E402

GENOME = os.path.join(ROOT, "example_data", "hg38_chr16_186964-397118.fa")
GTF = os.path.join(ROOT, "example_data", "hg38_chr16_186964-397118.refGene.gtf")


def replicated_annotation(folder, copies):
    """The human example's GTF ``copies`` times, each copy's transcripts (and genes) renamed."""
    lines = open(GTF, encoding="utf-8").read().splitlines()
    path = os.path.join(folder, f"human_x{copies}.gtf")
    with open(path, "w", encoding="utf-8") as out:
        for copy in range(copies):
            for line in lines:
                out.write(line.replace('_id "', f'_id "c{copy}_') + "\n")
    return path


def timed(function, repeat):
    best, result = None, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="demo", help="checkpoint to calibrate (default: the tiny demo)")
    parser.add_argument("--copies", type=int, default=3, help="copies of the human example's transcripts")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each command; the best is reported")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    runtime = RuntimeOptions(device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        source = TripleSource(genome=GENOME, annotation=replicated_annotation(folder, args.copies))
        predictions = os.path.join(folder, "labels.h5")

        def predict():
            if os.path.exists(predictions):
                os.remove(predictions)
            return run_predict(PredictConfig(source=source, checkpoint=args.checkpoint, runtime=runtime,
                                             output=predictions))

        predict_seconds, rows = timed(predict, args.repeat)
        table = read_predictions(predictions)
        labels = os.path.join(folder, "labels.tsv")
        with open(labels, "w", encoding="utf-8") as out:
            out.write("transcript_id\t" + "\t".join(table.tissues) + "\n")
            for row, values in zip(table.obs, table.values):
                out.write(row["transcript_id"] + "\t" + "\t".join("%.9g" % value for value in values) + "\n")
        counter = iter(range(args.repeat))

        def calibrate():
            return run_calibrate(CalibrateConfig(
                checkpoint=args.checkpoint, source=source, expression=ExpressionInput(labels, values="log1p"),
                output=os.path.join(folder, f"calibrated{next(counter)}"), runtime=runtime, min_spearman=-1.0))

        calibrate_seconds, result = timed(calibrate, args.repeat)
    ratio = calibrate_seconds / predict_seconds
    print(f"rows: {rows}; candidates: {len(result.candidates)}; distinct inputs encoded: {result.encoded_inputs}")
    print("command\tseconds\ttranscripts/s")
    print(f"predict\t{predict_seconds:.2f}\t{rows / predict_seconds:.1f}")
    print(f"calibrate\t{calibrate_seconds:.2f}\t{rows / calibrate_seconds:.1f}")
    print(f"calibrate / predict: {ratio:.2f}x (target <= 1.5x): {'met' if ratio <= 1.5 else 'NOT met'}")
    print(f"best: {result.best.label()}")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
