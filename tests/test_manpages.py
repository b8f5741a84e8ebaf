"""The committed man pages must match the command line (regenerate with man/README.md's command)."""

import pathlib
import shutil
import subprocess

import pytest

MAN_DIR = pathlib.Path(__file__).resolve().parent.parent / "man"


def _without_date(text):
    # The first line (.TH) carries the generation date; everything else must match exactly.
    return text.split("\n", 1)[1]


@pytest.mark.skipif(shutil.which("click-man") is None, reason="click-man is not installed")
def test_man_pages_are_up_to_date(tmp_path):
    subprocess.run(["click-man", "--target", str(tmp_path), "isoformer"], check=True, capture_output=True)
    generated = {page.name: page.read_text() for page in tmp_path.glob("*.1")}
    committed = {page.name: page.read_text() for page in MAN_DIR.glob("*.1")}
    assert sorted(generated) == sorted(committed), "regenerate the man pages (see man/README.md)"
    for name, text in generated.items():
        assert _without_date(text) == _without_date(committed[name]), (
            f"man/{name} is out of date: regenerate the man pages (see man/README.md)"
        )
