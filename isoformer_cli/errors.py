"""Typed exceptions raised by library code.

Every exception here carries a message meant for the user: it names the file, line or record
that is wrong and, where one exists, the fix. The command-line layer turns them into one line on
stderr and a non-zero exit code (see ``isoformer_cli.cli.main``); library callers can catch them
as the builtin exception they subclass.
"""

from collections.abc import Sequence


class IsoformerError(Exception):
    """Base class of every error the tool reports to the user without a traceback."""

    exit_code = 1


class InputError(IsoformerError, ValueError):
    """Bad input data: a malformed record, an inconsistent file, an unknown identifier."""


class AnnotationError(InputError):
    """A GTF/GFF3 annotation record cannot be used (names file and line or transcript)."""


class GenomeError(InputError):
    """A genome FASTA cannot be opened, indexed or queried (names file and contig)."""


class ContigError(InputError):
    """Contig names of two inputs do not match, even through the alias layer."""


class CheckpointError(IsoformerError, ValueError):
    """A model checkpoint is missing, corrupted or does not match its configuration."""


class DownloadError(IsoformerError, OSError):
    """Model files cannot be downloaded or fail verification (offline, network, size or checksum)."""


class OutputError(IsoformerError, OSError):
    """An output file cannot be written (unwritable folder, bad suffix, would overwrite)."""


class DeviceError(IsoformerError, RuntimeError):
    """The requested compute device is not available (for example CUDA asked for but absent)."""


def check_choice(option: str, value: object, choices: Sequence[str]) -> None:
    """The one check of a value against its choices: InputError ``--orf must be one of none, longest, not 'x'``.

    Args:
        option: the option (or field) as the user wrote it, e.g. ``--precision``.
        value: what was given.
        choices: the allowed values, in the order the message lists them.
    """
    if value not in choices:
        raise InputError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
