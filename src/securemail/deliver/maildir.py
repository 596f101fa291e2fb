"""Delivery into Maildir folders the node hosts: ``root/<domain>/<local>/{tmp,new,cur}``.

Theory of operation (the Maildir protocol, as qmail's maildir(5) describes it): write the
message to ``tmp/``, fsync it, hard-link it into ``new/`` and fsync ``new/``; only then is
it durable and 250 is returned (deliveries into one folder at the same time share its
fsync: :mod:`securemail.deliver.folder_sync`). A message delivered with IMAP keywords
(``$SecureMail`` for verified SecureMail) is linked into ``cur/`` instead, named
``<name>,S=<size>:2,<letters>`` with the letters the mailbox's ``dovecot-keywords`` file
gives the keywords (see :mod:`securemail.deliver.keywords`), as Dovecot's LDA does for mail
stored with flags.

The file name starts with a name derived from the message key and the recipient, not from
the clock, so a second delivery of the same key finds the file in ``new/`` or ``cur/``
(whatever flags a client gave it since) and writes nothing. The caller may say that no
copy can be there (a FRESH key, see :class:`securemail.deliver.target.Target`): then the
folders are not listed. ``os.link`` never replaces an existing name, so two concurrent
deliveries of one key store one file. A message stays in ``new/`` or ``cur/`` only if it
was fully written and synced: a failure removes what this delivery made. ``,S=<size>`` is
the stored size, as Dovecot writes it, so the quota scan (:mod:`securemail.deliver.quota`)
need not stat every file.

With ``accounts`` (the mailbox accounts of a mail service provider), an address is
delivered to its account's primary mailbox (aliases included), an address no account has
is 550 5.1.1, and a message that would take the account past its quota is 452 4.2.2
"Mailbox full": temporary, so the queue keeps it and it goes in once the user makes room.

The stored form is what Postfix's virtual(8) writes: ``Return-Path:`` (RFC 5321 §4.4) and
``Delivered-To:`` added on top, LF line ends. With a ``seal`` (a node that serves the
mailboxes to people), the seal line goes on top of that (:mod:`securemail.deliver.seal`),
computed for the mailbox the message lands in (the account's primary address) and the
``origin`` the caller gave.

Security: the recipient address is untrusted input that becomes a path. Only
``<domain>/<local>`` below ``root`` is ever written: a part that is empty, starts with a
dot, holds ``/``, ``\\``, ``..``, NUL or another control character is refused (550 5.1.3).
Folders are 0700 and files 0600. A missing ``root`` is a temporary failure, never created
here: it may be an unmounted volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from securemail.accounts.model import Mailboxes
from securemail.deliver.folder_sync import FolderSyncs
from securemail.deliver.keywords import keyword_letters
from securemail.deliver.quota import mailbox_usage
from securemail.deliver.seal import MailboxSeal, Origin
from securemail.deliver.target import StoreUncertainError
from securemail.durable import fsync_dir
from securemail.replies import Reply

_STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
_MAX_LOCAL, _MAX_DOMAIN = 64, 253  # octets, RFC 5321 §4.5.3.1.1 and §4.5.3.1.2
_SUFFIX = ".securemail"
_UNAVAILABLE = "store-unavailable"  # any name without "/" and ":" is a valid Maildir name


class MaildirTarget:
    """See :class:`securemail.deliver.target.Target`. Exactly-once per key and recipient.

    With ``accounts``, mail goes to the mailbox of the account holding the address (see the
    module doc). Otherwise, with ``create_mailboxes`` False, a recipient needs a mailbox
    already on disk or an entry in ``mailboxes`` (addresses, compared lower-cased); others
    get 550 5.1.1.
    """

    keeps_one_copy = True  # the file's name is derived from the key

    def __init__(
        self,
        root: Path,
        *,
        create_mailboxes: bool = True,
        mailboxes: frozenset[str] | None = None,
        accounts: Mailboxes | None = None,
        seal: MailboxSeal | None = None,
    ) -> None:
        self._root = Path(root)
        self._seal = seal
        self._create = create_mailboxes
        self._mailboxes = None if mailboxes is None else frozenset(m.lower() for m in mailboxes)
        self._accounts = accounts
        self._syncs = FolderSyncs(fsync_dir)  # one fsync for the links made meanwhile

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),
    ) -> dict[str, Reply]:
        if not key or any(c not in "0123456789abcdefABCDEF" for c in key):
            raise ValueError("the message key must be hexadecimal")
        wanted = list(dict.fromkeys(recipients))
        store = _Store(mail_from, body, key.lower(), frozenset(keywords), origin, frozenset(fresh))
        return await asyncio.to_thread(self._deliver_all, store, wanted)

    def _deliver_all(self, store: _Store, wanted: list[str]) -> dict[str, Reply]:
        return {rcpt: self._deliver_one(store, rcpt) for rcpt in wanted}

    def _deliver_one(self, store: _Store, rcpt: str) -> Reply:
        found = self._mailbox_for(rcpt)
        if isinstance(found, Reply):
            return found
        mailbox, owner, quota = found
        name = message_name(store.key, rcpt)
        try:
            make_mailbox(mailbox)
            # A FRESH key was never handed to a store (securemail.queue.dedup): no copy can
            # be here, and listing new/ and cur/ costs more the fuller the mailbox is.
            if rcpt in store.fresh or not stored(mailbox, name):
                content = _stored_form(store.mail_from, rcpt, store.body)
                if self._seal is not None:
                    content = self._seal.stamp(owner, store.origin, content)
                if quota is not None and mailbox_usage(mailbox) + len(content) > quota:
                    return _mailbox_full(rcpt, quota)
                letters = keyword_letters(mailbox, store.keywords) if store.keywords else ""
                self._store(mailbox, name, content, letters)
        except OSError as error:
            return _storage_failure(error)
        return Reply(250, "2.0.0", "Delivered", "", f"{rcpt} {name}")

    def _mailbox_for(self, rcpt: str) -> tuple[Path, str, int | None] | Reply:
        """The Maildir ``rcpt`` is delivered to, whose it is (the address it is named after)
        and its quota, or the refusal."""
        mailbox = mailbox_path(self._root, rcpt)
        if mailbox is None:
            return Reply(550, "5.1.3", "Bad mailbox address", "bad-address", repr(rcpt))
        if not self._root.is_dir():  # checked first: an unmounted volume is not "no such user"
            detail = f"{self._root} missing"
            return Reply(451, "4.3.0", "Mailbox temporarily unavailable", _UNAVAILABLE, detail)
        if self._accounts is None:
            if not self._known(rcpt, mailbox):
                return Reply(550, "5.1.1", "No such mailbox", "no-such-mailbox", rcpt)
            return mailbox, rcpt.lower(), None
        account = self._accounts.mailbox_for(rcpt)
        primary = None if account is None else mailbox_path(self._root, account.primary)
        if account is None or primary is None:
            return Reply(550, "5.1.1", "No such mailbox", "no-such-mailbox", rcpt)
        return primary, account.primary.lower(), account.quota

    def _known(self, rcpt: str, mailbox: Path) -> bool:
        if self._create or (mailbox / "new").is_dir():
            return True
        return self._mailboxes is not None and rcpt.lower() in self._mailboxes

    def _store(self, mailbox: Path, name: str, content: bytes, letters: str) -> None:
        """tmp → fsync → link into new (cur with keywords) → fsync that folder.

        On failure (OSError) nothing stays in new/ or cur/: a link whose folder could not
        be synced is removed, and its removal synced. If even that fails, whether the
        message is in the store is unknown: StoreUncertainError. A temporary file that
        cannot be removed is left in tmp/ (not mail: readers clean tmp/), never a failure.
        """
        tmp = mailbox / "tmp" / f"{name}.{os.getpid()}.{secrets.token_hex(8)}"
        sized = f"{name},S={len(content)}"
        final = mailbox / "cur" / f"{sized}:2,{letters}" if letters else mailbox / "new" / sized
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o600)
            try:
                self._write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            if _link_new(tmp, final):
                self._sync_new(final)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _sync_new(self, final: Path) -> None:
        try:
            self._sync_folder(final.parent)
        except OSError as error:
            try:
                final.unlink(missing_ok=True)  # not known durable: the retry stores it again
                self._sync_folder(final.parent)  # and its removal cannot come back
            except OSError:
                raise StoreUncertainError(_storage_failure(error)) from error
            raise

    def _sync_folder(self, folder: Path) -> None:
        """fsync ``folder`` after a link into it, shared with the deliveries into it at the
        same time (:mod:`securemail.deliver.folder_sync`: each returns only once a sync that
        started after its link succeeded). The other I/O step tests override."""
        self._syncs.sync(folder)

    def _write(self, fd: int, content: bytes) -> None:
        """Write all of ``content`` to ``fd`` (the one I/O step tests override to fake ENOSPC)."""
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class _Store:
    """What one delivery stores, the same for each recipient."""

    mail_from: str
    body: bytes
    key: str
    keywords: frozenset[str]
    origin: Origin
    fresh: frozenset[str]  # recipients whose key was reserved FRESH (see Target)


def mailbox_path(root: Path, address: str) -> Path | None:
    """``root/<domain>/<local>`` for ``address`` (lower-cased), or None if unsafe as a path."""
    local, at, domain = address.lower().rpartition("@")
    if not at or not _safe_part(local, _MAX_LOCAL) or not _safe_part(domain, _MAX_DOMAIN):
        return None
    return root / domain / local


def message_name(key: str, rcpt: str) -> str:
    """The file name of message ``key`` for ``rcpt``: stable, so a redelivery can be seen."""
    digest = hashlib.sha256(f"{key}\0{rcpt.lower()}".encode()).hexdigest()
    return digest[:40] + _SUFFIX


def stored(mailbox: Path, name: str) -> bool:
    """Whether message ``name`` is in ``new/`` or ``cur/``, under any ``,S=`` or ``:2,`` suffix.

    Every delivery asks, so the folders are searched as one string (in C) rather than
    entry by entry in Python: the cost grew with the mailbox (file names hold no newline:
    the names we write are hexadecimal, and a Maildir file name never has one).
    """
    for folder in ("new", "cur"):
        listing = "\n" + "\n".join(os.listdir(mailbox / folder)) + "\n"
        if any(f"\n{name}{end}" in listing for end in ("\n", ":", ",")):
            return True
    return False


def _safe_part(part: str, limit: int) -> bool:
    if not part or part.startswith(".") or ".." in part or len(part.encode()) > limit:
        return False
    return not any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in part)


def make_mailbox(mailbox: Path) -> None:
    """Create ``mailbox`` (and its domain folder) with tmp/, new/ and cur/ if missing, 0700."""
    if all(os.path.isdir(os.path.join(mailbox, sub)) for sub in ("tmp", "new", "cur")):
        return  # every delivery asks: three stats, not five failing mkdirs and exceptions
    for folder in (mailbox.parent, mailbox, mailbox / "tmp", mailbox / "new", mailbox / "cur"):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        fsync_dir(folder.parent)  # the new folder's name is durable before mail goes in


def _link_new(tmp: Path, final: Path) -> bool:
    """Link ``tmp`` to ``final``; False if a concurrent delivery of this key got there first."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    return True


def _stored_form(mail_from: str, rcpt: str, body: bytes) -> bytes:
    trace = f"Return-Path: <{_header_safe(mail_from)}>\nDelivered-To: {_header_safe(rcpt)}\n"
    return trace.encode() + body.replace(b"\r\n", b"\n")


def _header_safe(text: str) -> str:
    return "".join(c for c in text if ord(c) >= 32 and ord(c) != 127)


def _mailbox_full(rcpt: str, quota: int) -> Reply:
    detail = f"{rcpt}: the message would take the mailbox past its quota of {quota} octets"
    return Reply(452, "4.2.2", "Mailbox full", "mailbox-full", detail)


def _storage_failure(error: OSError) -> Reply:
    detail = f"{error.strerror or error} ({errno.errorcode.get(error.errno or 0, '?')})"
    if error.errno in _STORAGE_ERRORS:
        return Reply(452, "4.3.1", "Insufficient system storage", _UNAVAILABLE, detail)
    return Reply(451, "4.3.0", "Mailbox temporarily unavailable", _UNAVAILABLE, detail)
