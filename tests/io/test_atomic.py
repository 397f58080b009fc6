"""Atomic writes: a killed process never leaves a half-written file or folder (io/atomic.py)."""

from __future__ import annotations

import pytest

from siso_lib.io.atomic import remove_leftovers, replace_folder, write_text


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with replace_folder(folder) as staging:
        (staging / "new.txt").write_text("new")
        (staging / "sub").mkdir()
        (staging / "sub" / "deep.txt").write_text("deep")
    assert sorted(p.name for p in folder.rglob("*")) == ["deep.txt", "new.txt", "sub"]
    assert [p.name for p in tmp_path.iterdir()] == ["eval"], "no staging or old folder is left"
    with pytest.raises(RuntimeError):
        with replace_folder(folder) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed while writing")
    assert sorted(p.name for p in folder.rglob("*")) == ["deep.txt", "new.txt", "sub"] and [p.name for p in tmp_path.iterdir()] == ["eval"]


def test_leftovers_of_a_crash_are_removed(tmp_path):
    for name in (".run.x1.partial", ".run.abcd.old"):
        (tmp_path / name).mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / ".keep").write_text("a file, not a leftover folder")
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "run"]
    write_text(tmp_path / "note.txt", "x")
    assert (tmp_path / "note.txt").read_text() == "x" and not list(tmp_path.glob(".note*"))
