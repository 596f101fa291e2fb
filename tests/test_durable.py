"""The one atomic write: private by default whatever the umask, all or nothing, never over
a name that must be new."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from securemail.durable import write_atomic, write_new


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes no bits away, so only the code decides the modes."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_written_files_are_0600_unless_asked_and_leave_nothing_behind(tmp_path: Path) -> None:
    """write_atomic and write_new make 0600 files by default, the given mode otherwise, and
    leave no temporary file in the folder."""
    write_atomic(tmp_path / "a", b"secret")
    write_new(tmp_path / "b", b"secret")
    write_atomic(tmp_path / "c", b"public", mode=0o644)
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "b"), _mode(tmp_path / "c")) == (
        0o600,
        0o600,
        0o644,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]


def test_write_atomic_replaces_and_write_new_refuses(tmp_path: Path) -> None:
    """write_atomic replaces what is there (a reader sees old or new); write_new refuses an
    existing name, a dangling link included, and changes nothing."""
    path = tmp_path / "f"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        write_new(path, b"other")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "link", b"other")
    assert path.read_bytes() == b"new" and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "link"]
