"""Check that recipe/meta.yaml (bioconda, conda-build v0 format) is true to the package.

    python scripts/check_recipe.py [--sdist dist/isoformer-X.Y.Z.tar.gz] [--env DIR]
        [--constraints FILE] [--extra-requirement REQ ...] [--static-only]

Static checks (no install):
- the recipe renders: Jinja (undefined variables are errors) then YAML;
- its version is the sdist's; its source is PyPI's URL for that version with a sha256
  (scripts/update_recipe.py fills both from the sdist that is uploaded);
- `noarch: python`, the entry point equals the package's console script, `run_exports` is
  `pin_subpackage(name, max_pin="x.x")`;
- host is `python {{ python_min }}`, pip and pyproject.toml's build requirements; run is
  `python >={{ python_min }}` (python_min = setup.cfg's python_requires lower bound) and exactly
  install_requires under the PyPI -> conda name map in scripts/recipe_tools.py;
- the test section has imports and commands, and its source_files are in the sdist; about has
  home, a summary of at most 120 characters, license and a license_file that the sdist carries.

Test phase, standing in for conda-build's (skipped with --static-only): a fresh virtual
environment (--env, created anew) gets only the run and host requirements from PyPI (plus
--extra-requirement, if any; with --constraints to choose versions), the recipe's build script
installs the unpacked sdist (`pip install . --no-deps --no-build-isolation`), and the recipe's
test imports and commands run in a folder holding its source_files, with PREFIX set to the
environment, HF_HUB_OFFLINE=1 and no network (a new network namespace: `unshare -rn`).

Without --sdist, the sdist is built first with `python -m build --sdist` (needs `build`).
Exit status 0 when everything holds, 1 with one line per problem otherwise.
"""

import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from recipe_tools import RECIPE, REPO, PinCall, Sdist, canonical, conda_spec, fail, pypi_to_conda, render_recipe

PROBLEMS = []


def problem(message):
    PROBLEMS.append(message)
    print(f"  FAIL {message}")


def ok(message):
    print(f"  ok   {message}")


def build_sdist():
    outdir = pathlib.Path(tempfile.mkdtemp(prefix="isoformer-sdist-"))
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(outdir), str(REPO)],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-3000:] + result.stderr[-3000:], file=sys.stderr)
        fail("`python -m build --sdist` failed; pass --sdist PATH or install `build`")
    return next(outdir.glob("*.tar.gz"))


def specs_by_name(entries, where):
    """['pytorch >=2.13,<3', ...] -> {'pytorch': '<3,>=2.13'} with specifiers in a canonical order."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    result = {}
    for entry in entries or []:
        name, spec = conda_spec(str(entry))
        try:
            result[name] = ",".join(sorted(str(s) for s in SpecifierSet(spec)))
        except InvalidSpecifier:
            result[name] = spec  # a conda-only spelling (e.g. '3.11.*'): compared as written
    return result


def check_static(recipe, sdist):
    from packaging.specifiers import SpecifierSet

    print(f"recipe: {RECIPE.relative_to(REPO)} against {sdist.path.name}")
    package = recipe.get("package") or {}
    if package.get("name") != sdist.name:
        problem(f"package.name is {package.get('name')!r}, the sdist's is {sdist.name!r}")
    if str(package.get("version")) != sdist.version:
        problem(f"version {package.get('version')} differs from the package's {sdist.version}: "
                f"run scripts/update_recipe.py on the release sdist")
    else:
        ok(f"version {sdist.version} equals the package's")

    source = recipe.get("source") or {}
    expected_url = f"https://pypi.org/packages/source/{sdist.name[0]}/{sdist.name}/{sdist.name}-{sdist.version}.tar.gz"
    if source.get("url") != expected_url:
        problem(f"source.url is {source.get('url')!r}, expected PyPI's {expected_url}")
    sha = str(source.get("sha256", ""))
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        problem("source.sha256 is not a sha256: run scripts/update_recipe.py on the release sdist")
    else:
        ok(f"source: PyPI sdist URL and sha256 {sha[:12]}…")

    build = recipe.get("build") or {}
    if build.get("noarch") != "python":
        problem("build.noarch must be python")
    scripts = sdist.console_scripts()
    recipe_entry_points = {}
    for line in build.get("entry_points") or []:
        name, _, target = line.partition("=")
        recipe_entry_points[name.strip()] = target.strip()
    if recipe_entry_points != scripts:
        problem(f"build.entry_points {recipe_entry_points} differ from the package's console scripts {scripts}")
    else:
        ok(f"noarch: python; entry points {', '.join(f'{k} = {v}' for k, v in scripts.items())}")
    script = str(build.get("script", ""))
    if "--no-deps" not in script or "--no-build-isolation" not in script:
        problem("build.script must be `{{ PYTHON }} -m pip install . --no-deps --no-build-isolation -vvv`")
    pins = [c for c in PinCall.calls if c["name"] == sdist.name and c["max_pin"] == "x.x" and not c["exact"]]
    if not pins or len(build.get("run_exports") or []) != 1:
        problem('build.run_exports must be [{{ pin_subpackage(name, max_pin="x.x") }}]')
    else:
        ok(f"run_exports: {build['run_exports'][0]}")

    requirements = recipe.get("requirements") or {}
    lower = [s.version for s in SpecifierSet(sdist.python_requires) if s.operator == ">="]
    if not lower:
        problem(f"the package's python_requires {sdist.python_requires!r} has no lower bound")
        lower = ["?"]
    python_min = lower[0]
    expected_host = {"python": python_min, "pip": ""}
    expected_host.update(specs_by_name([pypi_to_conda(r) for r in sdist.build_requires], "pyproject.toml"))
    host = specs_by_name(requirements.get("host"), "host")
    host["python"] = host.get("python", "").lstrip("=")  # 'python 3.11' and 'python ==3.11' both pin
    if host != expected_host:
        problem(f"requirements.host {host} != python {{{{ python_min }}}} + pip + pyproject.toml's {expected_host}")
    else:
        ok("host: " + ", ".join(f"{n} {s}".strip() for n, s in expected_host.items()))

    run = specs_by_name(requirements.get("run"), "run")
    run_python = run.pop("python", None)
    if run_python != f">={python_min}":
        problem(f"run has python {run_python!r}; python_requires {sdist.python_requires!r} needs "
                f"`python >={{{{ python_min }}}}` with python_min {python_min} (set it at the top of the recipe)")
    else:
        ok(f"run: python >={python_min} (python_requires {sdist.python_requires})")
    expected_run = specs_by_name([pypi_to_conda(r) for r in sdist.install_requires()], "setup.cfg")
    if "setuptools" in run:
        problem("setuptools must not be a run requirement")
    for name in sorted(set(expected_run) | set(run)):
        if name not in run:
            problem(f"run lacks `{name} {expected_run[name]}` (from install_requires)")
        elif name not in expected_run:
            problem(f"run has `{name} {run[name]}`, which install_requires does not (name map: scripts/recipe_tools.py)")
        elif run[name] != expected_run[name]:
            problem(f"run has `{name} {run[name]}`, install_requires says `{expected_run[name]}`")
    if set(run) == set(expected_run) and all(run[n] == expected_run[n] for n in run):
        ok(f"run requirements equal install_requires under the name map ({len(run)} packages: "
           + ", ".join(f"{n} {s}" for n, s in sorted(run.items())) + ")")

    before = len(PROBLEMS)
    test = recipe.get("test") or {}
    members = {m.split("/", 1)[1] for m in sdist.members if "/" in m}
    if not test.get("imports") or not test.get("commands"):
        problem("test needs imports and commands")
    missing = [f for f in test.get("source_files") or [] if f not in members]
    if missing:
        problem(f"test.source_files {missing} are not in the sdist (MANIFEST.in)")
    about = recipe.get("about") or {}
    for field in ("home", "summary", "license", "license_file"):
        if not about.get(field):
            problem(f"about.{field} is missing")
    if len(str(about.get("summary", ""))) > 120:
        problem("about.summary is longer than 120 characters")
    if about.get("license_file") and about["license_file"] not in members:
        problem(f"about.license_file {about['license_file']} is not in the sdist")
    if about.get("license") and about["license"] != sdist.pkg_info.get("License-Expression", sdist.pkg_info.get("License")):
        problem(f"about.license {about['license']} differs from the package's licence metadata")
    if len(PROBLEMS) == before:
        ok(f"test: {len(test.get('imports') or [])} import(s), {len(test.get('commands') or [])} commands, "
           f"{len(test.get('source_files') or [])} source file(s); about: {about.get('license')}, {about.get('home')}")


def offline_prefix():
    """A command prefix that runs its command without network, and how it does so."""
    for prefix in (["unshare", "--user", "--map-root-user", "--net"], ["unshare", "--net"]):
        if shutil.which("unshare") and subprocess.run(prefix + ["true"], capture_output=True).returncode == 0:
            return prefix, f"`{' '.join(prefix)}` (a new network namespace with no interface but loopback)"
    fail("cannot run commands without network here: `unshare --user --map-root-user --net true` and "
         "`unshare --net true` both fail (enable unprivileged user namespaces, or run as root)")


def run_logged(command, env, cwd=None, label=None):
    start = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        print("\n".join("       | " + line for line in tail))
        problem(f"{label or shlex.join(command)} exited {result.returncode} ({seconds:.1f} s)")
        return False
    ok(f"{label or shlex.join(command)} ({seconds:.1f} s)")
    return True


def check_install(recipe_path, sdist, env_dir, constraints, extra_requirements):
    print(f"test phase: fresh environment {env_dir}")
    if env_dir.exists():
        shutil.rmtree(env_dir)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    requirements = [str(r) for r in sdist.install_requires()] + [str(r) for r in sdist.build_requires]
    requirements += extra_requirements
    if extra_requirements:
        print(f"  NOTE extra requirement(s) beyond the recipe's run requirements: {', '.join(extra_requirements)}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if constraints:
        pip += ["--constraint", str(constraints)]
    if not run_logged(pip + requirements, os.environ.copy(),
                      label=f"pip install {len(requirements)} run + host requirements"
                            + (f" (constraints {constraints})" if constraints else "")):
        return
    freeze = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True).stdout.split()
    wanted = {canonical(r.name) for r in sdist.install_requires()}
    print("  env  " + ", ".join(line for line in freeze if canonical(line.split("==")[0].split(" @ ")[0]) in wanted)
          + f" ({len(freeze)} packages in all)")

    work = env_dir / "recipe-test"
    with tarfile.open(sdist.path) as tar:
        tar.extractall(work, filter="data")
    source_dir = work / sdist.root
    _, recipe = render_recipe(recipe_path, python=str(python), prefix=str(env_dir))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", PREFIX=str(env_dir))
    if not run_logged(shlex.split(str(recipe["build"]["script"])), env, cwd=source_dir,
                      label=f"build script: {recipe['build']['script'].replace(str(python), '{{ PYTHON }}')}"):
        return

    test = recipe.get("test") or {}
    test_dir = work / "test"
    test_dir.mkdir()
    for relative in test.get("source_files") or []:
        target = test_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source_dir / relative, target)
    prefix, how = offline_prefix()
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HOME=str(work / "home"))
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    probe = ("import socket\ntry:\n    socket.create_connection(('pypi.org', 443), timeout=5)\n"
             "except OSError as error:\n    print(error)\nelse:\n    raise SystemExit('network reachable')")
    probe_result = subprocess.run(prefix + [str(python), "-c", probe], env=env, capture_output=True, text=True)
    if probe_result.returncode != 0:
        problem(f"the network is still reachable under {how}")
        return
    ok(f"network unavailable via {how}: connecting to pypi.org:443 fails ({probe_result.stdout.strip()}); "
       "HF_HUB_OFFLINE=1")
    for module in test.get("imports") or []:
        run_logged(prefix + [str(python), "-c", f"import {module}"], env, cwd=test_dir, label=f"import {module}")
    for command in test.get("commands") or []:
        run_logged(prefix + ["bash", "-e", "-o", "pipefail", "-c", command], env, cwd=test_dir, label=command)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=pathlib.Path, help="the built sdist (default: build one now)")
    parser.add_argument("--recipe", type=pathlib.Path, default=RECIPE, help="default: recipe/meta.yaml")
    parser.add_argument("--env", type=pathlib.Path, help="virtual environment to create anew for the test phase "
                        "(default: a temporary folder)")
    parser.add_argument("--constraints", type=pathlib.Path, help="pip constraints file for the test environment, "
                        "e.g. torch==2.13.0 or the lower bounds from scripts/lower_bounds.py")
    parser.add_argument("--extra-requirement", action="append", default=[], metavar="REQ",
                        help="also install REQ in the test environment (a stop-gap: the recipe must not need it)")
    parser.add_argument("--static-only", action="store_true", help="skip the install and test phase")
    args = parser.parse_args()

    sdist = Sdist(args.sdist or build_sdist())
    _, recipe = render_recipe(args.recipe)
    print(f"rendered: Jinja + YAML OK ({args.recipe})")
    check_static(recipe, sdist)
    if not args.static_only:
        env_dir = args.env or pathlib.Path(tempfile.mkdtemp(prefix="isoformer-recipe-env-"))
        check_install(args.recipe, sdist, env_dir.resolve(), args.constraints, args.extra_requirement)
    if PROBLEMS:
        print(f"recipe check: {len(PROBLEMS)} problem(s)")
        sys.exit(1)
    print("recipe check: OK")


if __name__ == "__main__":
    main()
