import pytest

from vaelab.io.atomic import atomic_write, atomic_write_text


def test_atomic_write_replaces(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_crash_mid_write_keeps_previous_file(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "good")
    with pytest.raises(RuntimeError), atomic_write(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert p.read_text() == "good"
    assert [x.name for x in tmp_path.iterdir()] == ["f.txt"]


def test_written_files_get_normal_permissions(tmp_path):
    import os

    p = tmp_path / "f.txt"
    atomic_write_text(p, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~mask
