"""An account's IMAP folders: pymap's Maildir backend, where ``$SecureMail`` is the gateway's alone.

Theory of operation. pymap's ``MailboxSet`` and ``MailboxData`` serve the Maildir++ folders;
these subclasses change only how the keyword ``$SecureMail`` (verified SecureMail, set by
the gateway at delivery) behaves, so that no mail client can plant it (THREATS.md K,
"Planted trust"):

- it is listed in FLAGS but never in PERMANENTFLAGS, so clients know it and know they may
  not set it; a STORE of it (``+FLAGS``, ``-FLAGS`` or ``FLAGS``) leaves it as it was, and
  APPEND drops it;
- a message shows it only while the file's mailbox seal (:mod:`securemail.deliver.seal`)
  checks for this account with origin ``delivered``: a file that carries the keyword's
  letter but was written or changed by anyone else shows without it;
- COPY and MOVE between the account's folders keep a sealed message's keyword, and
  translate every keyword to the destination folder's own letters (pymap copies the letters
  as they are, though each folder's ``dovecot-keywords`` may give them other meanings). COPY
  writes the file's octets unchanged, so the copy keeps its seal.

Every folder gets ``$SecureMail`` defined when it is created (and at login for folders made
by others), so clients see the keyword before the first verified message arrives.

Security: a client chooses folder names, flags and messages, never a path or a seal. The
checks run on pymap's event loop; a check is remembered per file, so a folder is hashed
once per process, not at every command (measured in tests/imap/test_planted.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import IO, Any

from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import MailboxData, MailboxSet, Maildir, Message
from pymap.backend.maildir.uidlist import Record, UidList
from pymap.flags import FlagOp
from pymap.interfaces.message import CachedMessage
from pymap.mailbox import MailboxSnapshot
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import ObjectId
from pymap.parsing.specials.flag import Flag

from securemail.deliver.keywords import keyword_letters
from securemail.deliver.seal import MailboxSeal, Origin
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.durable import PRIVATE_FILE, fsync_dir

KEYWORD = Flag(SECUREMAIL_KEYWORD.encode())


class PrivateMaildir(Maildir):
    """pymap's Maildir (the stdlib's), whose new message files are 0600 like delivery's:
    the stdlib creates them 0666 less the umask."""

    def _create_tmp(self) -> IO[bytes]:
        created: IO[bytes] = super()._create_tmp()  # type: ignore[misc]
        os.fchmod(created.fileno(), PRIVATE_FILE)
        return created


class SealedFolders(MailboxSet):
    """pymap's Maildir++ folders of one account, each a :class:`SealedFolder`."""

    def __init__(
        self, inbox: Maildir, layout: MaildirLayout[Any], seal: MailboxSeal, owner: str
    ) -> None:
        super().__init__(inbox, layout)
        self._folder_layout = layout
        self._seal, self._owner = seal, owner
        self._folders: dict[str, SealedFolder] = {}

    async def add_mailbox(self, name: str) -> ObjectId:
        """As pymap's; a folder that exists is a ValueError, which pymap's session answers
        ``NO [ALREADYEXISTS]`` (pymap's own KeyError would end the connection)."""
        try:
            mailbox_id = await super().add_mailbox(name)
        except KeyError:
            raise ValueError(f"{name} exists") from None
        folder = Path(self._folder_layout.get_path(name, self.delimiter))
        await asyncio.to_thread(keyword_letters, folder, [SECUREMAIL_KEYWORD])
        return mailbox_id

    async def get_mailbox(self, name: str) -> MailboxData:
        """As pymap's, with :class:`SealedFolder` for each folder."""
        if name == "INBOX":
            maildir = self._inbox_maildir
        else:
            try:
                maildir = self._folder_layout.get_folder(name, self.delimiter)
            except FileNotFoundError as error:
                raise KeyError(name) from error
        folder = self._folders.get(name)
        if folder is None:
            path = self._folder_layout.get_path(name, self.delimiter)
            async with UidList.with_init(path) as uidl:
                mailbox_id = ObjectId(uidl.global_uid)
            folder = SealedFolder(mailbox_id, maildir, path, self._seal, self._owner)
            self._folders[name] = folder
        return await folder.reset()


class SealedFolder(MailboxData):
    """One folder; ``$SecureMail`` as the module doc says."""

    def __init__(
        self, mailbox_id: ObjectId, maildir: Maildir, path: str, seal: MailboxSeal, owner: str
    ) -> None:
        super().__init__(mailbox_id, maildir, path)
        self._seal, self._owner = seal, owner

    @property
    def permanent_flags(self) -> frozenset[Flag]:
        return super().permanent_flags - {KEYWORD}

    async def snapshot(self) -> MailboxSnapshot:
        return _Snapshot.of(await super().snapshot(), KEYWORD in self.maildir_flags.keywords)

    async def append(self, append_msg: AppendMessage, *, recent: bool = False) -> Message:
        kept = dataclasses.replace(append_msg, flag_set=append_msg.flag_set - {KEYWORD})
        return await super().append(kept, recent=recent)

    async def update(
        self, uid: int, cached_msg: CachedMessage, flag_set: frozenset[Flag], mode: FlagOp
    ) -> Message:
        wanted = flag_set - {KEYWORD}
        if mode is FlagOp.REPLACE and KEYWORD in cached_msg.permanent_flags:
            wanted |= {KEYWORD}  # shown, so sealed: a FLAGS replace keeps it
        return self._checked(await super().update(uid, cached_msg, wanted, mode))

    async def get(self, uid: int, cached_msg: CachedMessage) -> Message:
        return self._checked(await super().get(uid, cached_msg))

    async def messages(self) -> AsyncIterable[Message]:
        async for message in super().messages():
            yield self._checked(message)

    async def copy(self, uid: int, destination: MailboxData, *, recent: bool = False) -> int | None:
        """Copy the file's octets (so a sealed copy stays sealed), keywords re-lettered."""
        if not isinstance(destination, SealedFolder):
            return None  # every folder of a SealedFolders is one
        try:
            async with UidList.with_read(self._path) as uidl:
                record = uidl.get(uid)
            async with self.messages_lock.read_lock():
                path = self._path_of(record.key)
                info = destination.info_for(self._flags_of(path))
            async with destination.messages_lock.write_lock():
                name = destination.write_copy(path, info, "new" if recent else "cur")
        except (KeyError, FileNotFoundError):
            return None
        return await destination.record(record, name)

    async def move(self, uid: int, destination: MailboxData, *, recent: bool = False) -> int | None:
        """Rename the file into ``destination``, keywords re-lettered for it."""
        if not isinstance(destination, SealedFolder):
            return None
        try:
            async with UidList.with_read(self._path) as uidl:
                record = uidl.get(uid)
            async with destination.messages_lock.write_lock(), self.messages_lock.write_lock():
                path = self._path_of(record.key)
                name = f"{record.key}:{destination.info_for(self._flags_of(path))}"
                target = Path(destination.folder_path, "new" if recent else "cur", name)
                os.rename(path, target)
                fsync_dir(target.parent)
        except (KeyError, FileNotFoundError):
            return None
        return await destination.record(record, name)

    @property
    def folder_path(self) -> str:
        return self._path

    def info_for(self, flags: frozenset[Flag]) -> str:
        """The Maildir info (``2,<letters>``) of ``flags`` in this folder."""
        return "2," + "".join(sorted(self.maildir_flags.to_maildir(flags)))

    def write_copy(self, source: Path, info: str, subdir: str) -> str:
        """A new file in this folder with ``source``'s octets: tmp → fsync → link; its name."""
        unique = f"{time.time_ns()}.{secrets.token_hex(8)}.copy"
        tmp = Path(self._path, "tmp", unique)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with os.fdopen(os.open(tmp, flags, 0o600), "wb") as out, source.open("rb") as original:
                while chunk := original.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            name = f"{unique}:{info}"
            os.link(tmp, Path(self._path, subdir, name))
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(Path(self._path, subdir))
        return name

    async def record(self, source: Record, name: str) -> int:
        """Add ``name`` to this folder's uid list with ``source``'s ids; its new UID."""
        async with UidList.with_write(self._path) as uidl:
            new = Record(uidl.next_uid, source.fields, name)
            uidl.next_uid += 1
            uidl.set(new)
        return new.uid

    def _path_of(self, key: str) -> Path:
        return Path(self._maildir._join(self._maildir._lookup(key)))

    def _flags_of(self, path: Path) -> frozenset[Flag]:
        """The flags ``path``'s name gives in this folder, ``$SecureMail`` only if sealed."""
        _, _, info = path.name.partition(":")
        flags = self.maildir_flags.from_maildir(info[2:] if info.startswith("2,") else "")
        if KEYWORD in flags and not self._sealed(path):
            flags -= {KEYWORD}
        return flags

    def _sealed(self, path: Path) -> bool:
        return self._seal.origin_of_file(self._owner, path) is Origin.DELIVERED

    def _checked(self, message: Message) -> Message:
        """``message`` without ``$SecureMail`` unless its file is sealed as delivered."""
        if KEYWORD not in message.permanent_flags:
            return message
        try:
            path = self._path_of(message._key or "")
        except KeyError:
            path = None
        if path is None or not self._sealed(path):
            message.permanent_flags = message.permanent_flags - {KEYWORD}
        return message


class _Snapshot(MailboxSnapshot):
    """pymap's snapshot, with ``$SecureMail`` in FLAGS though not in PERMANENTFLAGS."""

    __slots__ = ["_shown"]
    _shown: frozenset[Flag]

    @classmethod
    def of(cls, snapshot: MailboxSnapshot, keyword: bool) -> _Snapshot:
        copy = cls(*_fields(snapshot))
        copy._shown = frozenset({KEYWORD}) if keyword else frozenset()
        return copy

    @property
    def flags(self) -> frozenset[Flag]:
        shown: frozenset[Flag] = super().flags | self._shown
        return shown


def _fields(snapshot: MailboxSnapshot) -> tuple[Any, ...]:
    return (
        snapshot.mailbox_id,
        snapshot.readonly,
        snapshot.uid_validity,
        snapshot.permanent_flags,
        snapshot.session_flags,
        snapshot.exists,
        snapshot.recent,
        snapshot.unseen,
        snapshot.first_unseen,
        snapshot.next_uid,
    )
