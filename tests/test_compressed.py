"""The one plain-or-gzip opener (genomics/compressed.py): content decides, errors name the file and its role."""

import gzip

import pytest

from isoformer_cli.errors import AnnotationError, InputError
from isoformer_cli.genomics import compressed
from isoformer_cli.genomics.compressed import compressed_read_errors, is_gzip_file, open_binary, open_text


@pytest.mark.parametrize("name", ["table.tsv", "table.tsv.gz", "misnamed.gz", "misnamed.tsv"])
def test_the_first_bytes_decide_not_the_name(tmp_path, name):
    path = tmp_path / name
    text = "a\tb\r\nc\td\n"
    data = text.encode()
    zipped = name in ("table.tsv.gz", "misnamed.tsv")
    path.write_bytes(gzip.compress(data) if zipped else data)
    assert is_gzip_file(str(path)) is zipped
    with open_text(str(path), "table") as stream:
        assert stream.read() == text  # newline="" keeps \r\n
    with open_text(str(path), "table", newline=None) as stream:
        assert stream.readlines() == ["a\tb\n", "c\td\n"]
    with open_binary(str(path), "table") as stream:
        assert stream.read() == data


def test_threaded_and_plain_gzip_agree(tmp_path, monkeypatch):
    path = tmp_path / "big.gz"
    data = b"".join(b"line %d\n" % number for number in range(50_000))
    path.write_bytes(gzip.compress(data))
    with open_binary(str(path), "table", threaded=True) as stream:
        threaded = stream.read()
    monkeypatch.setattr(compressed, "_igzip_threaded", None)
    with open_binary(str(path), "table", threaded=True) as stream:
        assert stream.read() == threaded == data


def test_missing_folder_and_unreadable_name_the_file_and_role(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"none\.tsv: expression table not found$"):
        open_text(str(tmp_path / "none.tsv"), "expression table")
    with pytest.raises(AnnotationError, match=r": is a folder, not an annotation file$"):
        open_text(str(tmp_path), "annotation file", error=AnnotationError)
    with pytest.raises(InputError, match=r": is a folder, not a sample table$"):
        open_binary(str(tmp_path), "sample table")
    path = tmp_path / "locked.tsv"
    path.write_text("x\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(compressed, "open", refuse, raising=False)  # root ignores chmod: refuse the open
    with pytest.raises(InputError, match=r"locked\.tsv: permission denied; make the table readable \(chmod \+r\)"):
        open_text(str(path), "table")
    assert is_gzip_file(str(path)) is False


def test_damaged_gzip_and_non_utf8_are_input_errors(tmp_path):
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"x" * 10_000)[:-12])
    with pytest.raises(InputError, match=r"cut\.gz: the table is truncated or corrupt .*gzip -t"):
        with open_text(str(cut), "table") as stream, compressed_read_errors(str(cut), "table"):
            stream.read()
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match=r"latin\.tsv: the table is not UTF-8 text \(byte 3"):
        with open_text(str(latin), "table") as stream, compressed_read_errors(str(latin), "table"):
            stream.read()
    with open_text(str(latin), "table", errors="replace") as stream:
        assert stream.read() == "caf\ufffd\n"
