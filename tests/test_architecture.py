"""The import-layer contracts of ``.importlinter`` hold and would catch an upward import, a cycle or a command
that skips ``app``; the module graph (imports inside functions included) has no cycle; and the front door
(``--version``, ``--help``, ``triples``, ``merge`` of text outputs) loads neither torch nor transformers."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports") or (
    str(pathlib.Path(sys.executable).parent / "lint-imports")
    if (pathlib.Path(sys.executable).parent / "lint-imports").exists() else None
)

needs_lint_imports = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed")


def lint(package_parent):
    """Run lint-imports on the package found under ``package_parent``, with the ``.importlinter`` found there
    (how CI runs it); returns the completed process."""
    environment = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin", "COLUMNS": "240"}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=package_parent, capture_output=True, text=True,
                          env=environment, timeout=120)


def planted_copy(tmp_path, relative, addition):
    """A copy of the package (and ``.importlinter``) under ``tmp_path`` with ``addition`` appended to the module
    at ``relative`` (a path inside the package); returns the folder holding the copy."""
    copy = tmp_path / "isoformer_cli"
    shutil.copytree(ROOT / "isoformer_cli", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    planted = copy / relative
    planted.write_text(planted.read_text() + addition)
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@needs_lint_imports
def test_the_package_keeps_its_import_contracts():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@needs_lint_imports
def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    folder = planted_copy(tmp_path, "genomics/genome.py",
                          "\nfrom isoformer_cli.models.network import configuration  # planted\n")
    result = lint(folder)
    assert result.returncode != 0
    assert "isoformer_cli.genomics is not allowed to import isoformer_cli.models" in result.stdout
    assert "isoformer_cli.genomics.genome -> isoformer_cli.models.network.configuration" in result.stdout


@needs_lint_imports
def test_an_enformer_pytorch_import_breaks_its_contract(tmp_path):
    """enformer-pytorch is the tests' reference only: a run-time import of it anywhere in the package fails CI."""
    folder = planted_copy(tmp_path, "models/network/encoders/enformer.py",
                          "\n\ndef _planted():\n    import enformer_pytorch  # planted\n")
    result = lint(folder)
    assert result.returncode != 0
    assert "enformer-pytorch is a test-only reference" in result.stdout
    assert "isoformer_cli.models.network.encoders.enformer -> enformer_pytorch" in result.stdout


# ---- the import graph, imports inside functions included ------------------------------------------------------

PACKAGE = ROOT / "isoformer_cli"


def module_graph(package_dir):
    """``{module: {modules it imports}}`` of every module under ``package_dir`` (a folder named like the package),
    from every ``import`` statement in the file, those inside functions included. Importing ``a.b.c`` also
    imports the packages ``a.b`` and ``a`` (their ``__init__``), except a module's own ancestors."""
    root_name = package_dir.name
    modules = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                named.add(module)
                named.update(f"{module}.{alias.name}" for alias in node.names)
        imported = set()
        for target in named:
            if not (target == root_name or target.startswith(root_name + ".")):
                continue
            while target not in modules:
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                ancestor = ".".join(parts[:end])
                if ancestor in modules and ancestor != name and not name.startswith(ancestor + "."):
                    imported.add(ancestor)
        graph[name] = imported
    return graph


def find_cycle(graph):
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state = {}
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [], [(start, iter(sorted(graph[start])))]
        state[start] = "open"
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
                path.pop()
            elif state.get(child) == "open":
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_package_has_no_import_cycle_counting_imports_inside_functions():
    cycle = find_cycle(module_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


#: An import inside a function that closes a cycle: tokenizers -> modeling -> ... -> tokenizers.
PLANTED_CYCLE = ("\n\ndef _planted():\n"
                 "    from isoformer_cli.models.network.modeling import IsoformerModel  # planted\n")


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    folder = planted_copy(tmp_path, "models/network/tokenizers.py", PLANTED_CYCLE)
    cycle = find_cycle(module_graph(folder / "isoformer_cli"))
    assert cycle is not None and "isoformer_cli.models.network.tokenizers" in cycle


@needs_lint_imports
def test_a_planted_cycle_breaks_the_contracts(tmp_path):
    result = lint(planted_copy(tmp_path, "models/network/tokenizers.py", PLANTED_CYCLE))
    assert result.returncode != 0
    assert "(imports in functions count) BROKEN" in result.stdout
    assert "No cycles are allowed in isoformer_cli.models.network." in result.stdout
    assert "- .tokenizers -> .modeling (1 import)" in result.stdout


@needs_lint_imports
def test_a_command_module_that_skips_app_breaks_the_cli_contract(tmp_path):
    result = lint(planted_copy(tmp_path, "cli/commands/inspect.py", "\n\ndef _planted():\n"
                               "    from isoformer_cli.models.checkpoint.summary import inspect_model  # planted\n"))
    assert result.returncode != 0
    assert "The command line reaches the package only through app (and errors) BROKEN" in result.stdout
    assert "isoformer_cli.cli.commands.inspect -> isoformer_cli.models.checkpoint.summary" in result.stdout
    assert "(imports in functions count) KEPT" in result.stdout  # not a cycle: only the cli contract catches it


# ---- the front door loads no ML stack -------------------------------------------------------------------------

EXAMPLES = ROOT / "example_data"
FRONT_DOOR_PROBE = """
import runpy, sys
sys.argv = ["isoformer", *sys.argv[1:]]
try:
    runpy.run_module("isoformer_cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted(name for name in ("torch", "transformers") if name in sys.modules)
sys.stderr.write("LOADED:" + ",".join(loaded) + "\\n")
sys.exit(code)
"""


def run_front_door(*args, cwd):
    environment = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-c", FRONT_DOOR_PROBE, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=environment, timeout=120)


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("triples", "--help"), ("predict", "--help"),
                                  ("models", "pull", "--help"), ("inspect", "--help")])
def test_the_front_door_imports_neither_torch_nor_transformers(args, tmp_path):
    result = run_front_door(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LOADED:\n" in result.stderr


def test_triples_and_a_merge_of_text_outputs_import_neither_torch_nor_transformers(tmp_path):
    genome, annotation = EXAMPLES / "hg38_chr16_186964-397118.fa", EXAMPLES / "hg38_chr16_186964-397118.refGene.gtf"
    shutil.copy(genome, tmp_path / "g.fa")
    shards = []
    for k in (1, 2):
        shards.append(tmp_path / f"part{k}.tsv")
        result = run_front_door("-q", "triples", "--genome", tmp_path / "g.fa", "--annotation", annotation,
                                "--shard", f"{k}/2", "-o", shards[-1], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr.endswith("LOADED:\n"), result.stderr
    result = run_front_door("-q", "merge", *shards, "-o", tmp_path / "all.tsv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("LOADED:\n"), result.stderr
    assert (tmp_path / "all.tsv").stat().st_size > 0
