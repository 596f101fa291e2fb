"""Durable files: the one atomic write (temporary file → fsync → rename → fsync the folder).

Theory of operation. A file is written under a random temporary name in its own folder,
created 0600 (``mkstemp``) so its content is never readable by others even for a moment,
given its final mode, fsynced, then renamed over the target (:func:`write_atomic`) or linked
to a name that must not exist yet (:func:`write_new`). Last the folder is fsynced: on Linux
a new name survives a crash only once its folder was (the file's own fsync covers its
content, not its name). A reader sees the old file or the new one, never half of one.

Security: the default mode is 0600, since most of what a node writes (evidence bundles
with the signed original, exports, keys) is cleartext or secret; pass ``mode`` to share.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def write_atomic(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` (see the module doc)."""
    tmp = _temporary(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """Create ``path`` with ``data``; FileExistsError if anything (a file, a link) is there."""
    tmp = _temporary(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """fsync ``folder`` itself, so the names it holds are on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path, data: bytes, mode: int) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)
