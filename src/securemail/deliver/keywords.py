"""IMAP keywords on Maildir messages: the ``dovecot-keywords`` file that gives each a letter.

The format is Dovecot's, which pymap's maildir backend reads too: one line per keyword,
``<index> <keyword>``, index 0 meaning letter ``a`` up to 25 for ``z``. A message carries a
keyword when its letter is in the info part of its file name (``cur/<name>:2,Sa``).
Letters are never reassigned (stored messages already carry them), so the file is only
appended to; a keyword that finds all 26 letters taken gets none.

Concurrency: the file is changed only while holding ``dovecot-uidlist.lock``, the dot-lock
Dovecot and pymap take before they change a mailbox's index files, and it is replaced by
rename after an fsync, so a reader sees the old or the new file, never half of one.

Security: keywords come from this node's code, never from mail; anything that is not an
IMAP atom (RFC 3501 §9 ``flag-keyword``) is refused as a caller bug.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from securemail.durable import fsync_dir

KEYWORDS_FILE = "dovecot-keywords"
_LOCK_FILE = "dovecot-uidlist.lock"
_LETTERS = 26
_LOCK_WAIT = 5.0  # seconds before giving up: the delivery is retried later
_LOCK_STALE = 600.0  # seconds; a lock this old was left by a crash (pymap's limit too)
_ATOM_SPECIALS = frozenset('(){ %*"\\]')


def keyword_letters(mailbox: Path, keywords: Iterable[str]) -> str:
    """The info letters for ``keywords`` in ``mailbox``, defining the ones not yet known.

    Raises OSError when the file cannot be written and TimeoutError (an OSError) when the
    lock stays taken: both mean "try the delivery later".
    """
    wanted = sorted(set(keywords))
    for keyword in wanted:
        if not is_keyword(keyword):
            raise ValueError(f"not an IMAP keyword: {keyword!r}")
    known = read_keywords(mailbox)
    if any(k.lower() not in known for k in wanted):
        with _uidlist_lock(mailbox):
            known = read_keywords(mailbox)
            missing = [k for k in wanted if k.lower() not in known]
            if missing:
                known = _append(mailbox, known, missing)
    return "".join(sorted(chr(ord("a") + known[k.lower()]) for k in wanted if k.lower() in known))


def read_keywords(mailbox: Path) -> dict[str, int]:
    """Keyword (lower-cased) to index, as the file in ``mailbox`` has them; {} if none."""
    try:
        text = (mailbox / KEYWORDS_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    known: dict[str, int] = {}
    for line in text.splitlines():
        index, _, keyword = line.strip().partition(" ")
        if index.isdigit() and int(index) < _LETTERS and keyword:
            known.setdefault(keyword.strip().lower(), int(index))
    return known


def is_keyword(text: str) -> bool:
    """Whether ``text`` is an IMAP keyword (an atom, not a ``\\`` system flag)."""
    return bool(text) and all(32 < ord(c) < 127 and c not in _ATOM_SPECIALS for c in text)


def _append(mailbox: Path, known: dict[str, int], missing: list[str]) -> dict[str, int]:
    """Write the file again with ``missing`` on free indices; return the new mapping."""
    path = mailbox / KEYWORDS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    free = iter(i for i in range(_LETTERS) if i not in known.values())
    added = dict(zip((k.lower() for k in missing), free, strict=False))
    spelled = {k.lower(): k for k in missing}
    lines += [f"{index} {spelled[k]}" for k, index in added.items()]
    tmp = mailbox / "tmp" / f"{KEYWORDS_FILE}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(tmp, flags, 0o600), "wb") as file:
            file.write("".join(f"{line}\n" for line in lines).encode())
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(mailbox)
    return {**known, **added}


@contextmanager
def _uidlist_lock(mailbox: Path) -> Iterator[None]:
    """Hold the mailbox's ``dovecot-uidlist.lock`` dot-lock (created exclusively)."""
    lock = mailbox / _LOCK_FILE
    deadline = time.monotonic() + _LOCK_WAIT
    delay = 0.005
    while True:
        try:
            os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            _remove_if_stale(lock)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{lock} held for over {_LOCK_WAIT:.0f}s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _remove_if_stale(lock: Path) -> None:
    try:
        if time.time() - lock.stat().st_mtime > _LOCK_STALE:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        return
