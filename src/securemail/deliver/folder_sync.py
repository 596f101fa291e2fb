"""Folder fsyncs shared by the deliveries that linked into one folder at about the same time.

Theory of operation (a group commit for directory entries). A Maildir delivery is durable
once its link into ``new/`` (or ``cur/``) is, and a link is durable once its folder was
fsynced after it was made: an fsync of a directory makes every change to its entries made
before the call durable. Deliveries running at once into one folder need not fsync it once
each. Each one, after its link, joins the *pending* round of its folder: a round that has
not started yet, so it will start after the link was made and will cover it. One thread at a
time runs a folder's round; whoever finds no round running starts the pending one, and
those that arrive meanwhile join the next. :meth:`FolderSyncs.sync` returns only once the
caller's own round succeeded, so a delivery answers 250 (and its attempt is recorded
delivered, which happens after that answer) only after the fsync that made its link
durable. A round that fails fails every delivery in it: each takes its own link back, and
none of them is recorded delivered.

Nothing is held across rounds but the counts of who waits; a folder no one waits on is
forgotten.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from pathlib import Path


class _Round:
    """One fsync of a folder, and the deliveries it covers."""

    __slots__ = ("error", "finished")

    def __init__(self) -> None:
        self.finished = False
        self.error: OSError | None = None


class _Folder:
    """A folder's pending round, the round running (if any), and how many wait on it."""

    __slots__ = ("pending", "running", "users")

    def __init__(self) -> None:
        self.pending = _Round()
        self.running: _Round | None = None
        self.users = 0


class FolderSyncs:
    """fsync of folders, shared by concurrent callers (see the module doc); thread-safe."""

    def __init__(self, fsync: Callable[[Path], None]) -> None:
        self._fsync = fsync
        self._changed = threading.Condition(threading.Lock())
        self._folders: dict[Path, _Folder] = {}

    def sync(self, folder: Path) -> None:
        """Return once an fsync of ``folder`` that started after this call succeeded; the
        OSError of that fsync if it failed."""
        with self._changed:
            state = self._folders.setdefault(folder, _Folder())
            state.users += 1
            mine = state.pending  # not started yet: it starts after this caller's link
            try:
                while not mine.finished:
                    if state.running is None:
                        self._run(folder, state)
                    else:
                        self._changed.wait()
            finally:
                state.users -= 1
                if not state.users:
                    del self._folders[folder]
        if mine.error is not None:
            raise OSError(mine.error.errno, mine.error.strerror, str(folder))

    def _run(self, folder: Path, state: _Folder) -> None:
        """Run the pending round of ``folder`` (called holding the lock; releases it while
        the fsync runs)."""
        running = state.running = state.pending
        state.pending = _Round()
        self._changed.release()
        try:
            self._fsync(folder)
        except OSError as error:
            running.error = error
        except BaseException:
            running.error = OSError(errno.EIO, "the folder fsync did not finish")
            raise
        finally:
            self._changed.acquire()
            running.finished = True
            state.running = None
            self._changed.notify_all()
