"""Shared fixtures and markers of the test suite.

Markers (registered in setup.cfg, ``--strict-markers``):

* ``oracle(*tools)``: compares against external tools (gffread, samtools, bedtools, bcftools, tabix, bgzip,
  CrossMap); the test is skipped, naming what is missing, when any of ``tools`` cannot be found.
* ``slow``: opt-in (``-m slow``); ``gpu``: needs CUDA (tests/test_gpu.py skips without it).
"""

import click
import pytest

from isoformer_cli.cli import main as cli_main

from cli_helpers import tool_path


def pytest_runtest_setup(item):
    tools = [tool for marker in item.iter_markers("oracle") for tool in marker.args]
    missing = sorted({tool for tool in tools if tool_path(tool) is None})
    if missing:
        pytest.skip(f"oracle tools not installed: {', '.join(missing)}")


@pytest.fixture()
def failing_command():
    """Temporarily register ``isoformer fail-for-test``, which raises ``failing_command["exception"]``."""
    raised = {}

    @click.command("fail-for-test")
    def fail_for_test():
        raise raised["exception"]

    cli_main.cli.add_command(fail_for_test)
    yield raised
    cli_main.cli.commands.pop("fail-for-test")
