"""The one JSON-object reader (formats/json_file.py) and the one file checksum (formats/provenance.py)."""

import hashlib

import pytest

from isoformer_cli.errors import InputError
from isoformer_cli.formats.json_file import read_json_object
from isoformer_cli.formats.provenance import sha256_file, sha256_hex

FIX = "the run folder is damaged"


def test_reads_an_object(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"a": [1, 2], "b": null}\n')
    assert read_json_object(path, "run settings", FIX) == {"a": [1, 2], "b": None}


@pytest.mark.parametrize("content, message", [
    (None, r"run\.json: no such file \(the run settings is missing\); the run folder is damaged$"),
    (b'{\n  "a": 1,\n  oops\n}', r"run\.json:3:3: invalid JSON in the run settings \(Expecting property name .*\); "
                               r"the run folder is damaged$"),
    (b"[1, 2]", r"run\.json: the run settings must be a JSON object, not a list; the run folder is damaged$"),
    (b'{"a": "caf\xe9"}', r"run\.json: cannot read the run settings \(.*utf-8.*\); the run folder is damaged$"),
])
def test_every_failure_is_one_input_error_naming_file_role_and_fix(tmp_path, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_json_object(str(path), "run settings", FIX)


def test_a_folder_is_not_a_json_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_json_object(tmp_path, "manifest", "pull the model again")


def test_checksums(tmp_path):
    path = tmp_path / "x.bin"
    data = bytes(range(256)) * 5000  # more than one 1 MiB block
    path.write_bytes(data)
    assert sha256_hex(str(path)) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(InputError, match=r"nope\.bin: cannot read the file to checksum it"):
        sha256_file(str(tmp_path / "nope.bin"))
