"""The README's flag table says what isoformer_cli/genomics/flags.py says, flag for flag."""

import os
import re

from isoformer_cli.genomics.flags import FLAG_DESCRIPTIONS, INVALID_FLAGS, format_flags, parse_flags

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| (.*) \|$")


def readme_flag_table(text):
    """``{flag: meaning}`` of the table under the README's flags-table marker, in its order."""
    lines = text.splitlines()
    start = next(number for number, line in enumerate(lines) if line.startswith("<!-- flags table"))
    assert lines[start + 1:start + 3] == ["| flag | meaning |", "| --- | --- |"], "the flag table lost its header"
    table = {}
    for line in lines[start + 3:]:
        match = _ROW.match(line)
        if not match:
            break
        table[match.group(1)] = match.group(2)
    return table


def expected_rows():
    return "\n".join(f"| `{flag}` | {meaning} |" for flag, meaning in FLAG_DESCRIPTIONS.items())


def test_readme_flag_table_equals_flag_descriptions():
    with open(README, encoding="utf-8") as handle:
        table = readme_flag_table(handle.read())
    assert table == FLAG_DESCRIPTIONS and list(table) == list(FLAG_DESCRIPTIONS), (
        "README.md's flag table differs from FLAG_DESCRIPTIONS; replace its rows with:\n" + expected_rows())


def test_table_reader_sees_a_changed_wording():
    changed = "<!-- flags table -->\n| flag | meaning |\n| --- | --- |\n| `no_cds` | something else |\n\ntext\n"
    assert readme_flag_table(changed) == {"no_cds": "something else"}
    assert readme_flag_table(changed) != {"no_cds": FLAG_DESCRIPTIONS["no_cds"]}


def test_invalid_flags_are_described():
    assert INVALID_FLAGS <= set(FLAG_DESCRIPTIONS)


def test_format_and_parse_flags_round_trip():
    assert format_flags(["no_cds", "window_padded", "no_cds"]) == "no_cds,window_padded"
    assert parse_flags("no_cds,window_padded") == ("no_cds", "window_padded")
    assert parse_flags("  ") == ()
