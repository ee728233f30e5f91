"""Atomic writes: readers see the old file or the new one; a failed write leaves no trace."""

import os

import pytest

from vlmrl.infra.files import atomic_write, atomic_write_text


def test_a_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "first")
    assert path.read_text() == "first" and (path.stat().st_mode & 0o777) == 0o644
    os.chmod(path, 0o600)
    atomic_write_text(path, "second")
    assert path.read_text() == "second" and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("kept\n")

    def half_then_fail(temp):
        temp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda temp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
