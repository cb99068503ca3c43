"""The one atomic writer: whole content or the old file, and no temporary file left behind."""

import os
import stat

import pytest

from tandem.schemas.files import atomic_write


def test_writes_text_and_bytes_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "out.json")
    atomic_write(path, "first\n")
    with open(path, "rb") as f:
        assert f.read() == b"first\n"
    atomic_write(path, b"\x00second")  # replaces an existing file
    with open(path, "rb") as f:
        assert f.read() == b"\x00second"
    assert os.listdir(tmp_path) == ["out.json"]


def test_file_mode_is_what_a_plain_open_gives(tmp_path):
    plain = tmp_path / "plain"
    with open(plain, "w") as f:
        f.write("x")
    atomic = tmp_path / "atomic"
    atomic_write(str(atomic), "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = str(tmp_path / "out.txt")
    atomic_write(path, "old")

    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, "caf\u00e9 \udc80", encoding="utf-8")  # a lone surrogate
    with open(path) as f:
        assert f.read() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_failed_replace_removes_the_temporary(tmp_path):
    target = tmp_path / "a_directory"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        atomic_write(str(target), "x")
    assert os.listdir(tmp_path) == ["a_directory"]


def test_gzip_by_name_and_by_magic_are_two_rules(tmp_path):
    import gzip

    from tandem.schemas.files import gzip_by_magic, gzip_by_name, tfrecord_compression

    assert gzip_by_name("a/data.tfrecord.gz") and gzip_by_name("x.csv.gz")
    assert not gzip_by_name("a/data.tfrecord") and not gzip_by_name("a.gz.txt")
    assert tfrecord_compression("s/part-0.gz") == "GZIP"
    assert tfrecord_compression("s/part-0.tfrecord") == ""

    packed = gzip.compress(b"payload")
    assert gzip_by_magic(packed[:2]) and gzip_by_magic(packed)
    assert not gzip_by_magic(b"") and not gzip_by_magic(b"\x1f") and not gzip_by_magic(b"ab")
    # The two rules differ on a file whose name and bytes disagree: each site keeps its own.
    assert gzip_by_name("plain.gz") and not gzip_by_magic(b"plain text")
    assert not gzip_by_name("packed.bin") and gzip_by_magic(packed)
