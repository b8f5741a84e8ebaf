"""Build the sdist and the wheel and check they are complete and built without warnings.

    python scripts/check_dist.py [--outdir DIR]

Runs `python -m build` (the wheel is built from the sdist, as PyPI users and conda-build do) and
fails when:
- the build prints any warning (setuptools deprecations, packages "that would be ignored", ...);
- the sdist misses a file that git tracks (except dot-files such as .ci/ and .gitignore, and
  recipe/, which names the sdist's own sha256): list it in MANIFEST.in;
- the wheel misses a man page (man/*.1 -> share/man/man1/, via setup.cfg [options.data_files]) or a
  file that the sdist has inside one of the wheel's top-level packages (package data).
Prints what each distribution holds. Needs `build` and `packaging` in the running Python.
"""

import argparse
import collections
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

from recipe_tools import REPO, Sdist, fail

WARNING = re.compile(r"(?i)\bwarn(ing)?s?\b|would be ignored")
# Lines that only name a file being copied (a file may be called warnings.py).
FILE_OPERATION = re.compile(r"^(adding|copying|creating|hard linking|removing|writing|reading) ")


def build(outdir):
    env = dict(os.environ)
    # Set by some shells and images: makes setuptools print "byte-compiling is disabled" warnings
    # that say nothing about the project.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO)],
        env=env, capture_output=True, text=True,
    )
    log = result.stdout + result.stderr
    (outdir / "build.log").write_text(log)
    if result.returncode != 0:
        print(log[-4000:], file=sys.stderr)
        fail(f"`python -m build` failed (full log: {outdir / 'build.log'})")
    warnings = [line for line in log.splitlines() if WARNING.search(line) and not FILE_OPERATION.match(line)]
    if warnings:
        print("\n".join(warnings), file=sys.stderr)
        fail(f"the build printed {len(warnings)} warning line(s) (full log: {outdir / 'build.log'}); fix setup.cfg, "
             "pyproject.toml or MANIFEST.in")
    sdists = sorted(outdir.glob("*.tar.gz"))
    wheels = sorted(outdir.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        fail(f"{outdir}: expected one sdist and one wheel, found {[p.name for p in sdists + wheels]}")
    print(f"build: sdist and wheel built with no warning ({len(log.splitlines())} log lines, {outdir / 'build.log'})")
    return sdists[0], wheels[0]


def tracked_files():
    if not (REPO / ".git").exists():
        return None
    result = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return [path for path in result.stdout.split("\0") if path and not path.startswith((".", "recipe/"))
            and (REPO / path).is_file()]


def summary(paths):
    counts = collections.Counter(p.split("/", 1)[0] if "/" in p else "(top)" for p in paths)
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def check_sdist(sdist):
    inside = {m.split("/", 1)[1] for m in sdist.members if "/" in m}
    tracked = tracked_files()
    if tracked is None:
        print("sdist: not a git checkout, completeness against git skipped")
    else:
        missing = sorted(set(tracked) - inside)
        if missing:
            fail(f"{sdist.path.name} misses {len(missing)} tracked file(s), e.g. {missing[:5]}: add them to MANIFEST.in")
    stray = sorted(p for p in inside if p.endswith((".pyc", ".fai", ".gzi")))
    if stray:
        fail(f"{sdist.path.name} carries generated files {stray[:5]}: exclude them in MANIFEST.in")
    size = sdist.path.stat().st_size / 1e6
    print(f"sdist: {sdist.path.name}, {size:.1f} MB, {len(inside)} files: {summary(inside)}"
          + ("" if tracked is None else f"; all {len(tracked)} tracked files present"))
    return inside


def check_wheel(wheel, sdist, sdist_files):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"{sdist.name.replace('-', '_')}-{sdist.version}.dist-info"
        top_level_name = f"{dist_info}/top_level.txt"
        top_level = archive.read(top_level_name).decode().split() if top_level_name in names else []
    if not top_level:
        fail(f"{wheel.name}: no top-level package recorded")
    for unwanted in ("tests", "benchmarks", "scripts"):
        if unwanted in top_level:
            fail(f"{wheel.name} installs a top-level '{unwanted}' package: narrow [options.packages.find] in setup.cfg")
    data = f"{sdist.name.replace('-', '_')}-{sdist.version}.data/data/"
    man_pages = sorted(p for p in sdist_files if re.fullmatch(r"man/[^/]+\.1", p))
    if not man_pages:
        fail(f"{sdist.path.name} has no man/*.1 pages")
    missing = [p for p in man_pages if data + "share/man/man1/" + p.split("/")[1] not in names]
    if missing:
        fail(f"{wheel.name} misses man pages {missing}: setup.cfg [options.data_files] must map "
             "share/man/man1 = man/*.1")
    package_files = sorted(p for p in sdist_files if p.split("/", 1)[0] in top_level and not p.endswith(".pyc"))
    missing = [p for p in package_files if p not in names]
    if missing:
        fail(f"{wheel.name} misses package files {missing[:5]}: check [options.package_data] in setup.cfg")
    size = wheel.stat().st_size / 1e6
    print(f"wheel: {wheel.name}, {size:.1f} MB, {len(names)} files: packages {top_level} "
          f"({len(package_files)} files, data included), {len(man_pages)} man pages in share/man/man1")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outdir", type=pathlib.Path, help="where to build (default: a new temporary folder)")
    args = parser.parse_args()
    outdir = args.outdir or pathlib.Path(tempfile.mkdtemp(prefix="isoformer-dist-"))
    outdir.mkdir(parents=True, exist_ok=True)
    for old in list(outdir.glob("*.tar.gz")) + list(outdir.glob("*.whl")):
        old.unlink()
    sdist_path, wheel_path = build(outdir)
    sdist = Sdist(sdist_path)
    sdist_files = check_sdist(sdist)
    check_wheel(wheel_path, sdist, sdist_files)
    print(f"dist: OK ({outdir})")


if __name__ == "__main__":
    main()
