"""Peak memory of whole ``isoformer`` runs, for ``benchmarks/predict.py --memory``.

Every measurement is a subprocess whose peak resident memory is read with ``os.wait4`` (``ru_maxrss`` of
that child alone), so nothing the benchmark itself holds is counted.

Two tables:

* tiny preset (the bundled demo checkpoint) on the mouse example annotation replicated 1x, 20x and 200x
  under new transcript ids, at default settings: peak RSS must stay under 1 GB at every size;
* official preset (random weights from ``isoformer init --preset official``, or ``--official-checkpoint``) on
  four human coding isoforms at default settings, against one full-length isoform's forward pass
  (``benchmarks/model_forward.py --only official-fp32``, the same process-level peak): the run may peak at
  no more than 1.2x the single forward; then the same run under ``--max-memory 4G`` must either stay under
  4 GB or refuse before loading the model.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "example_data")
MOUSE_GENOME = os.path.join(EXAMPLES, "chr9.4M.fa.gz")
MOUSE_GTF = os.path.join(EXAMPLES, "chr9.4M.gtf.gz")
HUMAN_GENOME = os.path.join(EXAMPLES, "hg38_chr16_186964-397118.fa")
HUMAN_GTF = os.path.join(EXAMPLES, "hg38_chr16_186964-397118.refGene.gtf")

TINY_TARGET_MB = 1024
OFFICIAL_TARGET_RATIO = 1.2
OFFICIAL_CAP = "4G"
OFFICIAL_CAP_MB = 4096


def isoformer(*arguments):
    return [sys.executable, "-m", "isoformer_cli", "-q", *arguments]


def run_measured(command):
    """``(exit code, wall seconds, peak RSS in MB, stdout text, stderr text)`` of ``command``.

    The child's output goes to files, so the parent never blocks on a full pipe while it waits with
    ``os.wait4``, which returns the peak RSS of that child alone.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (process.returncode, seconds, usage.ru_maxrss / 1024, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def replicated_gtf(folder, copies, source=MOUSE_GTF):
    """A GTF holding ``copies`` copies of ``source`` one after the other, transcript ids prefixed ``copyN_``
    (gene ids too, so each copy is a gene of its own)."""
    opener = gzip.open if source.endswith(".gz") else open
    with opener(source, "rt") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    path = os.path.join(folder, f"{os.path.basename(source).split('.')[0]}_x{copies}.gtf")
    with open(path, "w") as out:
        for copy in range(copies):
            for line in lines:
                out.write(line.replace('transcript_id "', f'transcript_id "copy{copy}_')
                          .replace('gene_id "', f'gene_id "copy{copy}_'))
    return path


def data_rows(path):
    with open(path) as handle:
        return sum(1 for line in handle if not line.startswith(("#", "transcript_id")))


def tiny_rows(folder, copies_list):
    """``[(copies, isoforms, wall s, peak MB)]`` of ``isoformer predict --checkpoint demo`` at default settings."""
    rows = []
    for copies in copies_list:
        gtf = replicated_gtf(folder, copies)
        output = os.path.join(folder, f"tiny_x{copies}.tsv")
        code, seconds, peak, _, stderr = run_measured(isoformer(
            "predict", "--checkpoint", "demo", "--genome", MOUSE_GENOME, "--annotation", gtf, "-o", output))
        if code != 0:
            sys.exit(f"predict (tiny, {copies}x) failed with exit {code}:\n{stderr}")
        rows.append((copies, data_rows(output), seconds, peak))
    return rows


def coding_transcripts(gtf, count):
    """The first ``count`` transcript ids of ``gtf`` that have a CDS, in file order."""
    found = []
    pattern = re.compile(r'transcript_id "([^"]+)"')
    with open(gtf) as handle:
        for line in handle:
            fields = line.split("\t")
            if len(fields) > 8 and fields[2] == "CDS":
                transcript = pattern.search(fields[8]).group(1)
                if transcript not in found:
                    found.append(transcript)
                    if len(found) == count:
                        break
    return found


def official_checkpoint(folder, given=None):
    """``given``, or a folder of random official-preset weights written by ``isoformer init`` (seconds)."""
    if given:
        return given, 0.0
    path = os.path.join(folder, "official")
    code, seconds, _, _, stderr = run_measured(isoformer("init", "--preset", "official", "-o", path))
    if code != 0:
        sys.exit(f"isoformer init --preset official failed with exit {code}:\n{stderr}")
    return path, seconds


def single_forward():
    """``benchmarks/model_forward.py --only official-fp32``: its JSON result plus the child's peak RSS (MB)."""
    code, seconds, peak, stdout, stderr = run_measured(
        [sys.executable, os.path.join(HERE, "model_forward.py"), "--only", "official-fp32"])
    if code != 0:
        sys.exit(f"model_forward.py --only official-fp32 failed with exit {code}:\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mb"] = peak
    result["wall_s"] = seconds
    return result


def official_rows(folder, checkpoint=None, isoforms=4):
    """The official-preset measurements: the single forward, the predict run, and the run under the cap."""
    checkpoint, init_seconds = official_checkpoint(folder, checkpoint)
    transcripts = ",".join(coding_transcripts(HUMAN_GTF, isoforms))
    common = ("predict", "--checkpoint", checkpoint, "--genome", HUMAN_GENOME, "--annotation", HUMAN_GTF,
              "--transcripts", transcripts)
    forward = single_forward()
    output = os.path.join(folder, "official.tsv")
    code, seconds, peak, _, stderr = run_measured(isoformer(*common, "-o", output))
    if code != 0:
        sys.exit(f"predict (official) failed with exit {code}:\n{stderr}")
    run = dict(isoforms=data_rows(output), wall_s=seconds, peak_mb=peak)
    capped_output = os.path.join(folder, "official_capped.tsv")
    code, seconds, peak, _, stderr = run_measured(isoformer(*common, "--max-memory", OFFICIAL_CAP,
                                                            "-o", capped_output))
    capped = dict(exit=code, wall_s=seconds, peak_mb=peak, message=stderr.strip().splitlines()[-1] if stderr.strip()
                  else "", written=os.path.exists(capped_output))
    return dict(init_s=init_seconds, forward=forward, run=run, capped=capped)


def print_tiny(rows):
    print("M1. Peak RSS of `isoformer predict --checkpoint demo` (tiny preset), mouse annotation replicated, "
          "default settings")
    print(f"{'copies':>6} {'isoforms':>8} {'wall s':>8} {'isoforms/s':>10} {'peak RSS MB':>12}")
    for copies, isoforms, seconds, peak in rows:
        print(f"{copies:>6} {isoforms:>8} {seconds:>8.1f} {isoforms / seconds:>10.1f} {peak:>12.0f}")
    worst = max(peak for *_, peak in rows)
    verdict = "met" if worst <= TINY_TARGET_MB else "MISSED"
    print(f"target: <= {TINY_TARGET_MB} MB at every size: {verdict} (largest {worst:.0f} MB; "
          f"{rows[-1][0]}x / {rows[0][0]}x = {rows[-1][3] / rows[0][3]:.2f})\n")


def print_official(result):
    forward, run, capped = result["forward"], result["run"], result["capped"]
    print("M2. Official preset (random weights), CPU fp32, human example")
    print(f"{'measurement':<34} {'isoforms':>8} {'wall s':>8} {'s/isoform':>10} {'peak RSS MB':>12}")
    print(f"{'one forward (model_forward.py)':<34} {1:>8} {forward['wall_s']:>8.1f} {forward['forward_s']:>10.1f} "
          f"{forward['peak_mb']:>12.0f}")
    print(f"{'isoformer predict':<34} {run['isoforms']:>8} {run['wall_s']:>8.1f} "
          f"{run['wall_s'] / run['isoforms']:>10.1f} {run['peak_mb']:>12.0f}")
    ratio = run["peak_mb"] / forward["peak_mb"]
    verdict = "met" if ratio <= OFFICIAL_TARGET_RATIO else "MISSED"
    print(f"peak ratio predict / one forward: {ratio:.2f} (target <= {OFFICIAL_TARGET_RATIO}: {verdict}); "
          f"one forward's wall includes building the model ({forward['build_s']:.1f} s), predict's includes "
          "loading the checkpoint")
    if capped["exit"] == 0:
        verdict = "met" if capped["peak_mb"] <= OFFICIAL_CAP_MB else "MISSED"
        print(f"--max-memory {OFFICIAL_CAP}: ran, peak {capped['peak_mb']:.0f} MB in {capped['wall_s']:.1f} s "
              f"(must stay under {OFFICIAL_CAP_MB} MB: {verdict})")
    else:
        upfront = capped["wall_s"] < 0.5 * run["wall_s"] and not capped["written"]
        print(f"--max-memory {OFFICIAL_CAP}: refused with exit {capped['exit']} after {capped['wall_s']:.1f} s, "
              f"peak {capped['peak_mb']:.0f} MB, {'nothing written' if not capped['written'] else 'OUTPUT WRITTEN'}"
              f" ({'up front' if upfront else 'NOT up front'}):")
        print(f"  {capped['message']}")
    print()
