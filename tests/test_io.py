"""Safe output (cpa.io): nothing half-written, nothing overwritten unless asked."""

import os

import pytest

from cpa import io as cio


def test_atomic_write_refuses_to_overwrite_unless_asked(tmp_path):
    p = tmp_path / "out.txt"
    cio.atomic_write(p, b"first")
    with pytest.raises(cio.OutputExistsError) as e:
        cio.atomic_write(p, b"second")
    assert "--force" in str(e.value)
    assert p.read_bytes() == b"first"
    cio.atomic_write(p, b"second", force=True)
    assert p.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left


def test_staging_skips_fsync_and_restores_it(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    cio.atomic_write(tmp_path / "a", b"a")
    assert len(synced) == 1
    with cio.staging():
        cio.atomic_write(tmp_path / "b", b"b")
        with cio.staging():
            cio.atomic_write(tmp_path / "c", b"c")
        cio.atomic_write(tmp_path / "d", b"d")
    assert len(synced) == 1  # none inside
    cio.atomic_write(tmp_path / "e", b"e")
    assert len(synced) == 2  # restored after
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c", "d", "e"]
    assert (tmp_path / "d").read_bytes() == b"d"
