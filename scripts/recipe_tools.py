"""Shared helpers for the release scripts: read a built sdist, render recipe/meta.yaml.

Used by scripts/update_recipe.py, scripts/check_recipe.py, scripts/check_dist.py and
scripts/lower_bounds.py. Everything about the package (name, version, requirements, entry points)
is read from the built sdist's own metadata, so these scripts know nothing of the package layout.

Needs: jinja2, pyyaml and packaging (`pip install build jinja2 pyyaml packaging`).
"""

import configparser
import email.parser
import pathlib
import re
import sys
import tarfile
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipe" / "meta.yaml"

#: PyPI name -> conda-forge/bioconda name, where they differ. Every other name is the same on both.
CONDA_NAMES = {
    "torch": "pytorch",
    "isal": "python-isal",
    "matplotlib": "matplotlib-base",
    "huggingface-hub": "huggingface_hub",
}

#: conda-forge's global `python_min` (bioconda reads conda-forge's pinning); a recipe may raise it
#: with its own `{% set python_min = "..." %}`.
CHANNEL_PYTHON_MIN = "3.10"


def fail(message):
    """Print one error line and stop with exit status 1."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def canonical(name):
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Sdist:
    """What a built sdist says about itself: PKG-INFO, egg-info entry points, pyproject build requires."""

    def __init__(self, path):
        from packaging.requirements import Requirement

        self.path = pathlib.Path(path)
        if not self.path.is_file():
            fail(f"{self.path}: no such sdist; build one with `python -m build --sdist`")
        with tarfile.open(self.path) as tar:
            self.members = [m.name for m in tar.getmembers() if m.isfile()]
            if not self.members:
                fail(f"{self.path}: empty archive")
            self.root = self.members[0].split("/", 1)[0]
            self.pkg_info = email.parser.Parser().parsestr(self._read(tar, "PKG-INFO"))
            self.entry_points = configparser.ConfigParser()
            egg_entry_points = [m for m in self.members if m.endswith(".egg-info/entry_points.txt")]
            if egg_entry_points:
                self.entry_points.read_string(self._read(tar, egg_entry_points[0].split("/", 1)[1]))
            pyproject = tomllib.loads(self._read(tar, "pyproject.toml"))
        self.name = self.pkg_info["Name"]
        self.version = self.pkg_info["Version"]
        self.python_requires = self.pkg_info.get("Requires-Python", "")
        self.requirements = [Requirement(line) for line in self.pkg_info.get_all("Requires-Dist") or []]
        self.build_requires = [Requirement(r) for r in pyproject.get("build-system", {}).get("requires", [])]

    def _read(self, tar, relative):
        try:
            return tar.extractfile(f"{self.root}/{relative}").read().decode()
        except KeyError:
            fail(f"{self.path}: has no {relative}; is it a setuptools sdist?")

    def install_requires(self):
        """Requirements without a marker (install_requires), as packaging Requirement objects."""
        return [r for r in self.requirements if r.marker is None]

    def extra_requires(self, extra):
        """Requirements of one extra (the `extra == "NAME"` marker), markers dropped."""
        from packaging.requirements import Requirement

        chosen = []
        for requirement in self.requirements:
            if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}) and not (
                requirement.marker.evaluate({"extra": ""})
            ):
                plain = Requirement(str(requirement).split(";", 1)[0])
                chosen.append(plain)
        return chosen

    def console_scripts(self):
        """{'isoformer': 'module:function', ...} from the sdist's egg-info."""
        if not self.entry_points.has_section("console_scripts"):
            return {}
        return {name.strip(): target.strip() for name, target in self.entry_points.items("console_scripts")}


class PinCall:
    """Stands in for conda-build's pin_subpackage(): renders the same text and remembers its arguments."""

    calls = []

    def __init__(self, version):
        self.version = version

    def __call__(self, name, max_pin="x", min_pin="x.x.x.x.x.x", exact=False):
        PinCall.calls.append({"name": name, "max_pin": max_pin, "exact": exact})
        if exact:
            return f"{name} =={self.version}"
        parts = [int(p) if p.isdigit() else p for p in self.version.split(".")]
        depth = max_pin.count("x")
        upper = parts[:depth]
        upper[-1] = int(upper[-1]) + 1
        return f"{name} >={self.version},<{'.'.join(str(p) for p in upper)}.0a0"


def render_recipe(path=RECIPE, python="python", prefix="$PREFIX"):
    """Render a conda-build v0 meta.yaml (Jinja, then YAML) the way conda-build does for a noarch recipe.

    Undefined Jinja variables are errors. Returns (text, data)."""
    import jinja2
    import yaml

    path = pathlib.Path(path)
    if not path.is_file():
        fail(f"{path}: no recipe")
    source = path.read_text()
    version_match = re.search(r'{%\s*set\s+version\s*=\s*"([^"]+)"\s*%}', source)
    PinCall.calls = []
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    context = {
        "PYTHON": python,
        "PREFIX": prefix,
        "python_min": CHANNEL_PYTHON_MIN,
        "pin_subpackage": PinCall(version_match.group(1) if version_match else "0"),
        "environ": {},
    }
    try:
        text = env.from_string(source).render(**context)
    except jinja2.TemplateError as error:
        fail(f"{path}: Jinja does not render: {error}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        fail(f"{path}: rendered recipe is not valid YAML: {error}")
    if not isinstance(data, dict):
        fail(f"{path}: rendered recipe is not a YAML mapping")
    return text, data


def conda_spec(spec):
    """Split a conda MatchSpec 'name >=1,<2' into (name, '>=1,<2')."""
    parts = spec.split(None, 1)
    return parts[0], (parts[1].replace(" ", "") if len(parts) > 1 else "")


def pypi_to_conda(requirement):
    """A packaging Requirement as the conda spec the recipe must carry, e.g. 'pytorch >=2.13,<3'."""
    name = CONDA_NAMES.get(canonical(requirement.name), canonical(requirement.name))
    specifier = ",".join(sorted(str(s) for s in requirement.specifier))
    return f"{name} {specifier}".strip()
