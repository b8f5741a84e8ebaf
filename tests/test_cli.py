"""The command group: global options, exit codes and the error boundary."""

import subprocess
import sys

from click.testing import CliRunner

from isoformer_cli import __version__
from isoformer_cli.cli import main as cli_main
from isoformer_cli.errors import AnnotationError


def test_version_option_prints_version_and_exits_zero():
    result = CliRunner().invoke(cli_main.cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_command_is_a_usage_error_with_exit_code_2():
    result = CliRunner().invoke(cli_main.cli, ["no-such-command"])
    assert result.exit_code == cli_main.EXIT_USAGE
    assert "No such command" in result.output


def test_library_error_prints_one_line_and_exits_1(failing_command):
    failing_command["exception"] = AnnotationError("genes.gtf:12: start 500 is after end 100")
    result = CliRunner().invoke(cli_main.cli, ["fail-for-test"])
    assert result.exit_code == cli_main.EXIT_ERROR
    assert result.output == "isoformer: error: genes.gtf:12: start 500 is after end 100\n"
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(failing_command):
    failing_command["exception"] = AnnotationError("bad record")
    result = CliRunner().invoke(cli_main.cli, ["--debug", "fail-for-test"])
    assert result.exit_code == cli_main.EXIT_ERROR
    assert "Traceback" in result.output


def test_unexpected_exception_is_reported_without_traceback(failing_command):
    failing_command["exception"] = ZeroDivisionError("division by zero")
    result = CliRunner().invoke(cli_main.cli, ["fail-for-test"])
    assert result.exit_code == cli_main.EXIT_ERROR
    assert "internal error: ZeroDivisionError" in result.output
    assert "--debug" in result.output
    assert "Traceback" not in result.output


def test_keyboard_interrupt_exits_130(failing_command):
    failing_command["exception"] = KeyboardInterrupt()
    result = CliRunner().invoke(cli_main.cli, ["fail-for-test"])
    assert result.exit_code == cli_main.EXIT_INTERRUPTED
    assert "interrupted" in result.output


def test_console_script_runs_as_a_module():
    completed = subprocess.run(
        [sys.executable, "-m", "isoformer_cli", "--version"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert __version__ in completed.stdout
