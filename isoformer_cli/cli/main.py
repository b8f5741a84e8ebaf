"""The ``isoformer`` command group: global options, logging, and the one error boundary.

Exit codes (documented in the README and ``man isoformer``):

* 0 — success
* 1 — bad input data or a runtime error (one line on stderr; a traceback only with ``--debug``)
* 2 — usage error (unknown option, missing argument, invalid option value)
* 130 — interrupted (Ctrl-C or SIGTERM)
* 141 — standard output (or a pipe given as output) was closed by its reader (``| head``): the
  run stops quietly, as coreutils killed by SIGPIPE do (128 + 13)

Global options (``-q``, ``-v``, ``--debug``) may also follow the subcommand.

Each subcommand lives in its own module under ``isoformer_cli.cli.commands`` and is registered in
:data:`COMMAND_MODULES`; a command converts its options into plain values and calls one library
function, so tests can call the same function without click.
"""

import importlib
import logging
import os
import re
import signal
import sys
import threading
import traceback

import click

from isoformer_cli import __version__
from isoformer_cli.app.options import configure_progress
from isoformer_cli.errors import IsoformerError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`

# (module under isoformer_cli.cli.commands, click command attribute): one line per subcommand.
COMMAND_MODULES = [
    ("triples", "triples_command"),
    ("inspect", "inspect_command"),
    ("init", "init_command"),
    ("convert", "convert_command"),
    ("models", "models_command"),
    ("datasets", "datasets_command"),
    ("predict", "predict_command"),
    ("embed", "embed_command"),
    ("variants", "variants_command"),
    ("explain", "explain_command"),
    ("finetune", "finetune_command"),
    ("evaluate", "evaluate_command"),
    ("expression", "expression_command"),
    ("merge", "merge_command"),
]

log = logging.getLogger("isoformer_cli")


def configure_logging(verbosity):
    """Send the package's log records to stderr; ``verbosity`` -1 quiet, 0 normal, 1+ verbose."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("isoformer: %(levelname)s: %(message)s"))
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def _raise_keyboard_interrupt(signum, frame):
    # SIGTERM (a scheduler killing the job) takes the same clean-up path as Ctrl-C.
    raise KeyboardInterrupt


GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose", "--debug")
_REPEATED_VERBOSE = re.compile(r"^-v+$")


def hoist_global_options(group, argv):
    """``argv`` with the global flags given after the subcommand moved in front of it.

    ``isoformer triples ... -q`` then means ``isoformer -q triples ...``. Option values are left
    alone (the token after an option that takes a value is never moved), and so is everything
    after ``--``.
    """
    position = next((i for i, token in enumerate(argv) if token == "--" or not token.startswith("-")), None)
    if position is None or argv[position] == "--" or argv[position] not in group.commands:
        return argv
    command = group.commands[argv[position]]
    takes_value = {name for param in command.params if isinstance(param, click.Option)
                   and not param.is_flag and not param.count for name in param.opts + param.secondary_opts}
    moved, kept = [], []
    rest = argv[position + 1:]
    index = 0
    while index < len(rest):
        token = rest[index]
        if token == "--":
            kept.extend(rest[index:])
            break
        if token in GLOBAL_FLAGS or _REPEATED_VERBOSE.match(token):
            moved.append(token)
        else:
            kept.append(token)
            if token in takes_value and index + 1 < len(rest):
                kept.append(rest[index + 1])
                index += 1
        index += 1
    return argv[:position] + moved + [argv[position]] + kept


def _caused_by_broken_pipe(exc):
    while exc is not None:
        if isinstance(exc, BrokenPipeError):
            return True
        exc = exc.__cause__
    return False


class IsoformerGroup(click.Group):
    """A click group whose ``main`` is the single error boundary of the tool.

    It parses and invokes the command itself rather than through ``click.Command.main``, which
    would turn an ``EOFError`` into "Aborted", print a blank line before "interrupted" and exit 1
    on a broken pipe.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = hoist_global_options(self, list(sys.argv[1:] if args is None else args))
        prog_name = prog_name or "isoformer"
        debug = "--debug" in argv
        previous_sigterm = None
        if hasattr(signal, "SIGTERM") and _in_main_thread():
            previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._main_shell_completion(extra, prog_name, complete_var)
            with self.make_context(prog_name, argv, **extra) as ctx:
                result = self.invoke(ctx)
            # Data still buffered must reach its reader now, inside the boundary: a reader that went
            # away is then a broken pipe like any other, not a complaint at interpreter exit.
            sys.stdout.flush()
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (KeyboardInterrupt, click.Abort):
            click.echo("isoformer: interrupted", err=True)
            code = EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - the boundary must not print tracebacks by default
            code = _report(exc, debug)
        else:
            code = result if isinstance(result, int) else EXIT_OK
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
        sys.exit(code)


def _report(exc, debug):
    """Print the one line for the exception that stopped a command; returns the exit code."""
    if debug:
        traceback.print_exc()
    if _caused_by_broken_pipe(exc):
        # The reader of the output went away (``| head``): stop quietly, as coreutils do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, IsoformerError):
        click.echo(f"isoformer: error: {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, MemoryError):
        click.echo("isoformer: error: out of memory; use a smaller batch or fewer inputs", err=True)
        return EXIT_ERROR
    click.echo(f"isoformer: internal error: {type(exc).__name__}: {exc} "
               "(rerun with --debug for a traceback and report it)", err=True)
    return EXIT_ERROR


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def _silence_stdout():
    # Python would complain again when flushing stdout at exit; point it at /dev/null instead.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@click.group(cls=IsoformerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="isoformer")
@click.option("-v", "--verbose", count=True, help="More log messages on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr; no progress bars.")
@click.option("--debug", is_flag=True, help="Show a full traceback when an error stops the run.")
def cli(verbose, quiet, debug):
    """Isoform-level expression prediction with IsoFormer.

    Build DNA/RNA/protein triples from a genome FASTA and a GTF/GFF3 annotation, and predict
    transcript expression across human tissues. Logs go to stderr, data to stdout or files.

    Exit codes: 0 success, 1 bad input or runtime error, 2 usage error, 130 interrupted, 141 output
    closed by its reader (| head). Global options may also follow the command.
    """
    verbosity = -1 if quiet else (1 if (verbose or debug) else 0)
    configure_logging(verbosity)
    configure_progress(not quiet)


def _register_commands():
    for module_name, attribute in COMMAND_MODULES:
        module = importlib.import_module(f"isoformer_cli.cli.commands.{module_name}")
        cli.add_command(getattr(module, attribute))


_register_commands()


def main():
    """Console-script entry point."""
    cli.main()
