"""Writing a node's accounts into the Dovecot passwd-files a running Dovecot reads.

Theory of operation: :func:`dovecot_users` finds each account's Maildir (the primary
address below its organisation's Maildir delivery root) and leaves out, with a reason,
accounts whose organisation delivers elsewhere. :func:`write_files` puts the texts of
:func:`~securemail.accounts.dovecot.export_users` in place while Dovecot may be reading
them. Dovecot re-reads a passwd-file when its size or its modification time in whole
seconds changed, at most once a second per file, so each file is

- written aside (``.<name>.<random>``, 0640, the directory's group: the group Dovecot's
  auth process reads as), fsynced, dated at least one whole second after the file it
  replaces (a same-size file replaced within the second would go unseen), and renamed
  over it, so a reader sees the old file or the new one, never half of one;
- replaced password slots first, the users file last, so that for the second Dovecot may
  pair files of two exports, an account removed from the password files is refused.

Security: the files decide who may read which Maildir. Password slot files beyond
``slots`` left by an earlier, larger export are removed, so a revoked secret cannot stay
valid in a slot Dovecot still reads. One export writes at a time (an exclusive ``flock``
on the directory), so two concurrent exports cannot interleave their files. Files are
created with ``O_EXCL | O_NOFOLLOW`` and never readable by others.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from securemail.accounts.dovecot import USERS_FILE, DovecotFiles, DovecotUser, password_file
from securemail.accounts.store import StoredSecrets
from securemail.config.node import Organisation
from securemail.deliver.maildir import mailbox_path

FILE_MODE = 0o640
_SLOT_FILE = re.compile(r"passwords\.(\d+)")


@dataclass(frozen=True)
class Selection:
    """The accounts to export and, one line each, those left out and why."""

    users: tuple[DovecotUser, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class Written:
    """What an export wrote: entries per file name (in writing order) and slot files removed."""

    entries: tuple[tuple[str, int], ...]
    removed: tuple[str, ...]


def dovecot_users(
    accounts: Iterable[StoredSecrets], organisations: Sequence[Organisation]
) -> Selection:
    """``accounts`` as Dovecot users, each with the Maildir its primary address delivers to."""
    users: list[DovecotUser] = []
    skipped: list[str] = []
    for item in accounts:
        account = item.account
        maildir = _maildir(account.primary, organisations)
        if isinstance(maildir, str):
            skipped.append(f"{account.name}: {maildir}")
            continue
        users.append(
            DovecotUser(
                account.name,
                maildir,
                item.password_hash,
                item.app_password_hashes,
                account.disabled,
            )
        )
    return Selection(tuple(users), tuple(skipped))


def _maildir(primary: str, organisations: Sequence[Organisation]) -> Path | str:
    """The Maildir of ``primary``, or why there is none."""
    domain = primary.rpartition("@")[2].lower()
    org = next((o for o in organisations if domain in o.domains), None)
    if org is None:
        return f"no organisation of this node has the domain {domain}"
    delivery = org.delivery
    if delivery.kind != "maildir" or delivery.path is None:
        return f"organisation {org.org_id} delivers by {delivery.kind}, not to a Maildir"
    path = mailbox_path(delivery.path, primary)
    return f"{primary} cannot name a Maildir" if path is None else path


def write_files(directory: Path, files: DovecotFiles) -> Written:
    """Replace the exported files in ``directory`` (which must exist), password slots first."""
    named = [(password_file(slot), text) for slot, text in enumerate(files.passwords)]
    with _locked(directory) as folder:
        group = os.fstat(folder).st_gid
        for name, text in named:
            _replace(directory, name, text, group)
        removed = _remove_slots_from(directory, len(files.passwords))
        _replace(directory, USERS_FILE, files.users, group)
        os.fsync(folder)
    entries = [(name, text.count("\n")) for name, text in named]
    entries.append((USERS_FILE, files.users.count("\n")))
    return Written(tuple(entries), removed)


@contextmanager
def _locked(directory: Path) -> Iterator[int]:
    """The directory, open and exclusively locked against another export."""
    folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(folder)


def _replace(directory: Path, name: str, text: str, group: int) -> None:
    """Write ``text`` aside, date it after the old ``name``, and rename it over that."""
    aside = directory / f".{name}.{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(aside, flags, 0o600), "wb") as file:
            if os.fstat(file.fileno()).st_gid != group:
                os.fchown(file.fileno(), -1, group)
            os.fchmod(file.fileno(), FILE_MODE)
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        _date_after(aside, directory / name)
        os.replace(aside, directory / name)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise


def _date_after(new: Path, old: Path) -> None:
    """Date ``new`` now, or one whole second after ``old`` if that is later."""
    try:
        previous = int(old.stat(follow_symlinks=False).st_mtime)
    except FileNotFoundError:
        return
    stamp = max(time.time(), previous + 1.0)
    os.utime(new, (stamp, stamp))


def _remove_slots_from(directory: Path, slots: int) -> tuple[str, ...]:
    """Remove ``passwords.N`` for every N >= ``slots``; the names removed."""
    removed = []
    for entry in os.scandir(directory):
        found = _SLOT_FILE.fullmatch(entry.name)
        if found and int(found.group(1)) >= slots:
            os.unlink(entry.path)
            removed.append(entry.name)
    return tuple(sorted(removed))
