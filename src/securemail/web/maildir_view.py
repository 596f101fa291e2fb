"""An account's Maildir as the webmail sees it: folders, messages, flags, moves and the Sent copy.

Theory of operation (Maildir++, as Dovecot and pymap lay it out): the account's Maildir is
INBOX; each other folder is a sub-Maildir ``.Name`` (``.Archive.2024`` for nesting) holding
its own ``tmp/ new/ cur/`` and ``dovecot-keywords``. A message file is named
``<unique>[,S=<size>]`` in ``new/``, ``<unique>[,S=<size>]:2,<flags>`` in ``cur/``: upper-case
letters are system flags (``S`` seen, ``T`` trashed...), lower-case letters are keywords
whose meaning is per folder (:mod:`securemail.deliver.keywords`). A message is named in URLs
by its unique part plus size (everything before ``:``), which a rename never changes.

Security: folder and message names come from the browser. A folder is only ever one found
by listing the Maildir; a message only one found by listing its folder; no name from a
request is joined into a path. Reads are capped (:data:`MAX_MESSAGE`), listings bounded.
New files are written tmp → fsync → rename, 0600, as delivery writes them; the copy of
mail sent is sealed (:mod:`securemail.deliver.seal`) as the gateway's.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from securemail.deliver import folders as special
from securemail.deliver.keywords import keyword_letters, read_keywords
from securemail.deliver.seal import MailboxSeal, Origin
from securemail.durable import fsync_dir

INBOX = "INBOX"
SENT, DRAFTS, TRASH = special.SENT, special.DRAFTS, special.TRASH
# the folder list's order: INBOX, the special-use folders as mail programs list them, the rest
_ORDER = (INBOX, special.DRAFTS, special.SENT, special.ARCHIVE, special.JUNK, special.TRASH)
MAX_MESSAGE = 32 * 1024 * 1024  # octets read of one message; larger ones are refused
MAX_LISTED = 500  # newest messages searched in one folder
PAGE = 100  # messages per page of a folder's list
_NAME = re.compile(r"[A-Za-z0-9._,=+-]{1,200}")
_FOLDER = re.compile(r"\.[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,200}")


class MessageTooLargeError(ValueError):
    """A message over :data:`MAX_MESSAGE` octets: not read into memory."""


@dataclass(frozen=True)
class Folder:
    """One mail folder: ``name`` as people read it (``INBOX``, ``Sent``, ``Archive/2024``)."""

    name: str
    path: Path


@dataclass(frozen=True)
class Stored:
    """One message file: its stable ``key``, where it is, and its flags and keywords."""

    key: str
    path: Path
    flags: str  # system flag letters, e.g. "RS"
    keywords: frozenset[str]
    size: int
    mtime: float

    @property
    def seen(self) -> bool:
        return "S" in self.flags


def folders(root: Path) -> list[Folder]:
    """INBOX and every ``.Name`` sub-Maildir of ``root``: INBOX, Drafts, Sent, Archive,
    Junk, Trash, then the others by name."""
    found = [Folder(INBOX, root)]
    if not root.is_dir():
        return found
    for entry in os.scandir(root):
        path = Path(entry.path)
        if _FOLDER.fullmatch(entry.name) and not path.is_symlink() and (path / "cur").is_dir():
            found.append(Folder(entry.name[1:].replace(".", "/"), path))
    rank = {name: index for index, name in enumerate(_ORDER)}
    return sorted(found, key=lambda f: (rank.get(f.name, len(rank)), f.name))


def prepare(root: Path) -> None:
    """The account's Maildir with its special-use folders, made if missing (as IMAP does)."""
    special.ensure_special_folders(root)


def folder(root: Path, name: str) -> Folder | None:
    """The folder called ``name`` if it exists (found by listing, never by joining)."""
    return next((f for f in folders(root) if f.name == name), None)


def ensure_folder(root: Path, name: str) -> Folder:
    """The folder ``name`` (a plain word such as ``Sent``), created if missing."""
    if name == INBOX:
        special.ensure_special_folders(root)
        return Folder(INBOX, root)
    return Folder(name, special.ensure_folder(root, name))


def messages(where: Folder) -> list[Stored]:
    """The newest :data:`MAX_LISTED` messages of ``where``, newest first."""
    return newest(where, 0, MAX_LISTED)[0]


def newest(
    where: Folder, offset: int, limit: int, *, oldest: bool = False
) -> tuple[list[Stored], int]:
    """``limit`` messages of ``where`` after the newest (or ``oldest``) ``offset``, in that
    order, and how many the folder holds."""
    found = messages_all(where)
    found.sort(key=lambda s: (s.mtime, s.key), reverse=not oldest)
    return found[offset : offset + limit], len(found)


def _stored(entry: os.DirEntry[str], known: dict[int, str]) -> Stored | None:
    key, _, info = entry.name.partition(":")
    if not _NAME.fullmatch(key) or not entry.is_file(follow_symlinks=False):
        return None
    letters = info[2:] if info.startswith("2,") else ""
    keywords = frozenset(
        known[ord(c) - 97] for c in letters if c.islower() and ord(c) - 97 in known
    )
    status = entry.stat(follow_symlinks=False)
    flags = "".join(sorted(c for c in letters if c.isupper()))
    return Stored(key, Path(entry.path), flags, keywords, status.st_size, status.st_mtime)


def find(where: Folder, key: str) -> Stored | None:
    """The message ``key`` in ``where`` (found by listing), or None."""
    if not _NAME.fullmatch(key):
        return None
    return next((s for s in messages_all(where) if s.key == key), None)


def messages_all(where: Folder) -> list[Stored]:
    """Every message of ``where`` in no particular order (for look-ups by key)."""
    known = {index: word for word, index in read_keywords(where.path).items()}
    found = []
    for sub in ("new", "cur"):
        try:
            with os.scandir(where.path / sub) as entries:
                found += [s for e in entries if (s := _stored(e, known)) is not None]
        except FileNotFoundError:
            continue
    return found


def read(stored: Stored) -> bytes:
    """The message's bytes; :class:`MessageTooLargeError` past :data:`MAX_MESSAGE`."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(stored.path, flags), "rb") as file:
        data = file.read(MAX_MESSAGE + 1)
    if len(data) > MAX_MESSAGE:
        raise MessageTooLargeError(f"{stored.key} is over {MAX_MESSAGE} octets")
    return data


def read_head(stored: Stored, limit: int = 64 * 1024) -> bytes:
    """The first ``limit`` octets of the message: enough for its header in a listing."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(stored.path, flags), "rb") as file:
        return file.read(limit)


def mark_seen(where: Folder, stored: Stored) -> Stored:
    """Add the ``S`` flag: the file moves to ``cur/`` as ``key:2,<flags and keywords>``."""
    if stored.seen:
        return stored
    letters = _letters(where, stored, stored.flags + "S")
    target = where.path / "cur" / f"{stored.key}:2,{letters}"
    os.rename(stored.path, target)
    return Stored(stored.key, target, _upper(letters), stored.keywords, stored.size, stored.mtime)


def move(source: Folder, stored: Stored, destination: Folder) -> None:
    """Move the message into ``destination``, keeping its flags and keywords (re-lettered)."""
    if source.path == destination.path:
        return
    letters = _letters(destination, stored, stored.flags)
    target = destination.path / "cur" / f"{stored.key}:2,{letters}"
    if target.exists():
        raise FileExistsError(f"{stored.key} is already in {destination.name}")
    os.rename(stored.path, target)
    fsync_dir(target.parent)


def _letters(where: Folder, stored: Stored, flags: str) -> str:
    """Flag letters then keyword letters of ``where``, each sorted (Maildir wants ASCII order)."""
    lower = keyword_letters(where.path, stored.keywords) if stored.keywords else ""
    return "".join(sorted(set(flags))) + "".join(sorted(lower))


def _upper(letters: str) -> str:
    return "".join(c for c in letters if c.isupper())


def store(where: Folder, message: bytes, *, flags: str = "S", seal: Sealing | None = None) -> str:
    """Write ``message`` into ``where`` (LF line ends, as delivery stores; sealed with
    ``seal`` if given); return its key."""
    content = message.replace(b"\r\n", b"\n")
    if seal is not None:
        content = seal.stamp(content)
    key = f"{secrets.token_hex(20)}.web,S={len(content)}"
    tmp = where.path / "tmp" / f"{key}.{os.getpid()}"
    final = where.path / "cur" / f"{key}:2,{flags}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(final.parent)
    return key


@dataclass(frozen=True)
class Sealing:
    """The node's mailbox seal as one mailbox uses it: its owner and the origin to stamp."""

    seal: MailboxSeal
    mailbox: str  # the account's primary address
    origin: Origin = Origin.SENT

    def stamp(self, content: bytes) -> bytes:
        return self.seal.stamp(self.mailbox, self.origin, content)

    def origin_of(self, stored: Stored) -> Origin | None:
        """The seal's origin of ``stored`` for this mailbox (None: not the gateway's)."""
        return self.seal.origin_of_file(self.mailbox, stored.path)
