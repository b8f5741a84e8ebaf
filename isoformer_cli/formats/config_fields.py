"""Type checks for the JSON settings files the tool reads back.

A checkpoint's ``config.json`` or a fine-tuning run's ``training_state.json`` edited by hand (or
written by another tool) may hold a value of the wrong type: ``"nt_hidden_size": "768"``. Caught
here, that is bad input naming the file and the key; unchecked, it surfaces deep inside the model
as an internal error. Types are named the JSON way ("an integer", "a list of strings").
"""

import json

from isoformer_cli.errors import InputError

# kind -> (test, name in messages)
KINDS = {
    "integer": (lambda value: isinstance(value, int) and not isinstance(value, bool), "an integer"),
    "number": (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool), "a number"),
    "boolean": (lambda value: isinstance(value, bool), "true or false"),
    "string": (lambda value: isinstance(value, str), "a string"),
    "strings": (lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
                "a list of strings"),
    "list": (lambda value: isinstance(value, list), "a list"),
    "object": (lambda value: isinstance(value, dict), "an object"),
    "null": (lambda value: value is None, "null"),
}


def kinds_of_default(default):
    """The accepted kinds of a field whose default value is ``default`` (None: an optional integer)."""
    if isinstance(default, bool):
        return ("boolean",)
    if isinstance(default, int):
        return ("integer",)
    if isinstance(default, float):
        return ("number",)
    if isinstance(default, str):
        return ("string",)
    if isinstance(default, (list, tuple)):
        return ("strings",)
    if isinstance(default, dict):
        return ("object",)
    return ("integer", "null")


def check_field_types(fields, expected, source, error=InputError, refuse_unknown=False):
    """Raise ``error`` naming ``source`` and the key for the first value of a wrong type.

    Args:
        fields: the parsed JSON object.
        expected: ``{key: kinds}`` (kinds from :data:`KINDS`); keys not listed are not checked,
            or refused with ``refuse_unknown``.
        source: the file, for messages.
    """
    if refuse_unknown:
        unknown = sorted(set(fields) - set(expected))
        if unknown:
            raise error(f"{source}: unknown key {unknown[0]!r}; the file was written by another version or "
                        "edited by hand (remove the key)")
    for key, value in fields.items():
        kinds = expected.get(key)
        if kinds is None or any(KINDS[kind][0](value) for kind in kinds):
            continue
        wanted = " or ".join(KINDS[kind][1] for kind in kinds)
        raise error(f"{source}: {key!r} must be {wanted}, not {_shown(value)}; fix the value")


def _shown(value):
    """``value`` as JSON (``null``, ``true``, ``[1, 2]``), shortened, with its JSON kind."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = ("a string" if isinstance(value, str) else "a boolean" if isinstance(value, bool)
            else "null" if value is None else "a list" if isinstance(value, list)
            else "an object" if isinstance(value, dict) else "a number")
    return text if kind == "null" else f"{text} ({kind})"
