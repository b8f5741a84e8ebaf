"""The ``isoformer`` command group: global options, logging, and the one error boundary.

Exit codes (documented in the README and ``man isoformer``):

* 0 — success
* 1 — bad input data or a runtime error (one line on stderr; a traceback only with ``--debug``)
* 2 — usage error (unknown option, missing argument, invalid option value)
* 130 — interrupted (Ctrl-C or SIGTERM)

Each subcommand lives in its own module under ``isoformer_cli.cli.commands`` and is registered in
:data:`COMMAND_MODULES`; a command converts its options into plain values and calls one library
function, so tests can call the same function without click.
"""

import importlib
import logging
import os
import signal
import sys
import traceback

import click

from isoformer_cli import __version__
from isoformer_cli.errors import IsoformerError
from isoformer_cli.runtime.progress import configure_progress

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# (module under isoformer_cli.cli.commands, click command attribute): one line per subcommand.
COMMAND_MODULES = [
    ("triples", "triples_command"),
    ("inspect", "inspect_command"),
    ("init", "init_command"),
    ("convert", "convert_command"),
    ("predict", "predict_command"),
    ("embed", "embed_command"),
    ("finetune", "finetune_command"),
    ("evaluate", "evaluate_command"),
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


class IsoformerGroup(click.Group):
    """A click group whose ``main`` is the single error boundary of the tool."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        previous_sigterm = None
        if hasattr(signal, "SIGTERM") and _in_main_thread():
            previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            result = super().main(argv, prog_name or "isoformer", complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (KeyboardInterrupt, click.Abort):
            click.echo("isoformer: interrupted", err=True)
            code = EXIT_INTERRUPTED
        except IsoformerError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"isoformer: error: {exc}", err=True)
            code = exc.exit_code
        except BrokenPipeError:
            # The reader of stdout went away (``| head``): stop quietly, as coreutils do.
            _silence_stdout()
            code = EXIT_OK
        except MemoryError:
            if debug:
                traceback.print_exc()
            click.echo("isoformer: error: out of memory; use a smaller batch or fewer inputs", err=True)
            code = EXIT_ERROR
        except Exception as exc:  # noqa: BLE001 - the boundary must not print tracebacks by default
            if debug:
                traceback.print_exc()
            click.echo(
                f"isoformer: internal error: {type(exc).__name__}: {exc} "
                "(rerun with --debug for a traceback and report it)",
                err=True,
            )
            code = EXIT_ERROR
        else:
            code = result if isinstance(result, int) else EXIT_OK
        finally:
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
        sys.exit(code)


def _in_main_thread():
    import threading

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

    Exit codes: 0 success, 1 bad input or runtime error, 2 usage error, 130 interrupted.
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
