"""Making a name in a folder durable: fsync the folder after a file was linked or renamed in.

On Linux a new name (``link``, ``rename``, ``mkdir``) survives a crash only once its folder
was fsynced; the file's own fsync covers its content, not its name.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """fsync ``folder`` itself, so the names it holds are on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
