"""When two outputs come from the same run: the one definition that ``--resume`` and ``isoformer merge`` share.

Two provenances (:mod:`isoformer_cli.formats.provenance`) describe the same run when what determines the
output agrees, however it was asked for:

* every provenance key but the command line: the tool and format versions, the checkpoint id (its weights'
  SHA-256, whatever path or name reached it), the inputs' SHA-256 (whatever path named them), the units and
  the demo marks; and, when resuming, the shard entry (which transcripts the output holds);
* the *settings* of the recorded command line (:func:`comparable_command`): the command and its options as a
  set of (option, values) groups, so option order, ``--opt=value`` against ``--opt value`` and global flags
  before or after the command make no difference. Left out of the settings are the options that cannot change
  the output (:data:`NOT_SETTINGS`): how much is logged (``-q``, ``-v``, ``--debug``), ``--resume`` itself,
  the paths of inputs compared by checksum or checkpoint id, where the outputs go, and how the run computes
  (``--device``, ``--num-workers``, ``--max-memory``, ``--max-tokens``, ``--chunk-size``: the engine is
  batch-invariant, see :mod:`isoformer_cli.inference.engine`).

``isoformer merge`` compares shards of one split (:func:`run_difference` with ``merging=True``): their shard
entries and ``--shard`` differ by design, and a shard run on its own triples table stands for the sources that
table was built from. ``--resume`` (``merging=False``) compares the shard entry too, and keeps the options in
:data:`RESUME_UNITS`, which set where a partial output may be cut.

Paths that are not checksummed (``--contig-alias``, ``--genes @FILE``, ``--transcripts @FILE``) are settings
as written: the same file under another spelling counts as another run, the safe side.
"""

import json
import re
import shlex

# Global flags and the per-invocation switches: they change messages, never the output.
_MESSAGE_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--debug", "--resume"})
_REPEATED_VERBOSE = re.compile(r"^-v+$")
# Options that take no value, among those left out (so that the word after them is not taken as a value).
_FLAGS = _MESSAGE_FLAGS
# Input paths: the inputs themselves are compared by checksum (``inputs``), the checkpoint by its id.
INPUT_PATH_OPTIONS = frozenset({"--genome", "--annotation", "--triples", "-I", "--input", "--checkpoint",
                                "--model-dir"})
# Where the outputs go.
OUTPUT_OPTIONS = frozenset({"-o", "--output", "--gene-summary", "-O", "--table", "--alt-triples", "--fasta-prefix"})
# How the run computes, not what.
HOW_OPTIONS = frozenset({"--device", "--num-workers", "--max-memory", "--max-tokens", "--chunk-size"})
# The shard a run computes: recorded in the provenance's shard entry (compared on resume, not on merge).
SHARD_OPTION = "--shard"
NOT_SETTINGS = INPUT_PATH_OPTIONS | OUTPUT_OPTIONS | HOW_OPTIONS | {SHARD_OPTION}
# Options a resumed output depends on after all: ``variants`` keeps whole chunks of --chunk-size VCF records
# (its BGZF blocks end only there), so a resume must chunk as the interrupted run did.
RESUME_UNITS = {"variants": frozenset({"--chunk-size"})}

SHARD_KEY = "shard"


def _words(command_line):
    try:
        return shlex.split(command_line or "")
    except ValueError:  # an unbalanced quote: compare the text as it is
        return (command_line or "").split()


def comparable_command(command_line, keep=()):
    """The settings of a recorded command line: ``(command words, option groups)``.

    ``command words`` are the program and the (sub)command names; ``option groups`` the sorted tuples
    ``(option, value...)`` of every option given, ``--opt=value`` split, without the options of
    :data:`NOT_SETTINGS` (but those in ``keep``) and the message flags. Two command lines with equal settings
    ask for the same output.
    """
    words = _words(command_line)
    command, groups, current = [], [], None
    for word in words:
        is_option = word.startswith("-") and word != "-"
        if is_option:
            name, equals, value = word.partition("=") if word.startswith("--") else (word, "", "")
            if name in _FLAGS or _REPEATED_VERBOSE.match(name):
                current = None
                continue
            current = [name] + ([value] if equals else [])
            groups.append(current)
        elif current is not None:
            current.append(word)
        else:
            command.append(word)  # the program and command names (global flags take no value)
    dropped = NOT_SETTINGS - set(keep)
    kept = sorted(tuple(group) for group in groups if group[0] not in dropped)
    return tuple(command), tuple(kept)


def settings_text(command_line, keep=()):
    """:func:`comparable_command` as one line, for messages and identities."""
    command, groups = comparable_command(command_line, keep)
    return shlex.join([*command, *(word for group in groups for word in group)])


def _command_name(command_line):
    command, _ = comparable_command(command_line)
    return command[1] if len(command) > 1 else ""


def represented_inputs(provenance, merging):
    """The inputs a provenance stands for; merging, a shard run on a shard's triples table stands for the
    table's sources (and the genome), since the tables of two shards differ while their sources agree."""
    inputs = dict(provenance.get("inputs") or {})
    source = (provenance.get(SHARD_KEY) or {}).get("source") if merging else None
    if source is not None:
        inputs.pop("triples", None)
        inputs.update(source)
    return inputs


def _shown(value):
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def run_difference(first, other, merging=False):
    """What makes the provenances ``first`` and ``other`` come from different runs (a short phrase naming it),
    or None when they describe the same run (see the module docstring; ``merging``: shards of one split)."""
    mine, theirs = represented_inputs(first, merging), represented_inputs(other, merging)
    roles = sorted(role for role in set(mine) | set(theirs) if mine.get(role) != theirs.get(role))
    if roles:
        return f"its input {', '.join(roles)} differs (checksum)"
    ignored = {"command_line", "inputs"} | ({SHARD_KEY} if merging else set())
    for key in sorted((set(first) | set(other)) - ignored):
        if first.get(key) != other.get(key):
            return f"its {key.replace('_', ' ')} differs ({_shown(other.get(key))}, not {_shown(first.get(key))})"
    keep = () if merging else RESUME_UNITS.get(_command_name(first.get("command_line")), ())
    mine = comparable_command(first.get("command_line"), keep)
    theirs = comparable_command(other.get("command_line"), keep)
    if mine != theirs:
        shown = lambda settings: " ".join(word for group in settings[1] for word in group) or "none"  # noqa: E731
        if mine[0] != theirs[0]:
            return f"its command differs ({' '.join(theirs[0][1:])}, not {' '.join(mine[0][1:])})"
        return f"its options differ ({shown(theirs)}, not {shown(mine)})"
    return None


def comparable_identity(identity):
    """A resumable output's identity (a dict holding a provenance, under ``provenance`` or as itself) with the
    command line replaced by its settings for resuming (:func:`settings_text`), so that two identities of the
    same run compare equal, key by key."""
    if not isinstance(identity, dict):
        return identity
    if "provenance" in identity and isinstance(identity["provenance"], dict):
        return dict(identity, provenance=comparable_identity(identity["provenance"]))
    if "command_line" in identity:
        line = identity["command_line"]
        keep = RESUME_UNITS.get(_command_name(line), ())
        return dict(identity, command_line=settings_text(line, keep))
    return identity
