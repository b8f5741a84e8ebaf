"""Reading a JSON object from a file: the one reader of the settings, states and manifests the tool keeps.

Every failure is one :class:`~isoformer_cli.errors.InputError` naming the file (and, for invalid JSON, the
line and column), the file's role and the fix the caller gives.
"""

import json
import os
from typing import Any

from isoformer_cli.errors import InputError


def read_json_object(path: str | os.PathLike[str], what: str, fix: str) -> dict[str, Any]:
    """The JSON object (a ``dict``) held by ``path``.

    Args:
        path: the file.
        what: its role in messages ("run settings", "manifest").
        fix: what the user should do, ending each message ("the run folder is damaged; start a new run").

    Raises:
        InputError: the file is missing, unreadable, not UTF-8, not valid JSON, or holds something other
            than an object.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file (the {what} is missing); {fix}")
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON in the {what} ({exc.msg}); {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc}); {fix}") from None
    if not isinstance(content, dict):
        raise InputError(f"{path}: the {what} must be a JSON object, not a {type(content).__name__}; {fix}")
    return content
