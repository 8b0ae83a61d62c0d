"""Atomic writes: complete file or none, ordinary permissions, no temporary left behind."""

from __future__ import annotations

import stat

import pytest

from M2DiffSlicer.atomic import FILE_MODE, atomic_path, temp_path_beside, write_text_atomic


def test_text_write_replaces_the_file_and_leaves_only_it(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    write_text_atomic(target, "a,b\r\n1,2\n")
    assert target.read_bytes() == b"a,b\r\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_written_files_get_ordinary_permissions_not_mkstemp_private_ones(tmp_path):
    target = write_text_atomic(tmp_path / "report.json", "{}")
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "enhanced.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temp:
        temp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["enhanced.nii.gz"]


def test_temporary_path_is_hidden_beside_the_destination_with_its_extensions(tmp_path):
    temp = temp_path_beside(tmp_path / "enhanced.nii.gz")
    assert temp.parent == tmp_path
    assert temp.name.startswith(".enhanced.nii.gz.") and temp.name.endswith(".nii.gz")
