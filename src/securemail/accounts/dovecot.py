"""Mailbox accounts as Dovecot passwd-files, so a provider's Dovecot can serve hosted Maildirs.

Theory of operation: passwd-file(5) gives one entry per user, but an account may hold its
password and several app passwords. The secrets are therefore spread over ``slots``
password files: slot 0 holds each account's first secret (its password, or its first app
password when IMAP needs app passwords), slot 1 the next, and so on. The Dovecot
configuration (:func:`auth_config`) chains one passwd-file passdb per slot; a passdb that
does not know the user or finds the password wrong continues to the next (Dovecot 2.3's
default ``result_failure = continue``), and the first that matches logs the user in. A
wrong password therefore costs one argon2id verification per secret the account holds.

The users file is the userdb: uid and gid of the Maildir owner, ``home`` the account's
Maildir and ``userdb_mail=maildir:~``, so Dovecot reads Maildir++ folders there. The path
goes in ``home`` because that field is taken literally; extra fields are split at spaces
and expanded for ``%`` variables.

Hashes are argon2-cffi's argon2id PHC strings; Dovecot 2.3 verifies them under the
``{ARGON2ID}`` scheme prefix unchanged.

Security: the exported entries decide who may read which Maildir. A disabled account gets
no entry at all. An account whose ``password_hash`` is None (TOTP enrolled or strong
authentication required) gets only its app passwords, since IMAP cannot ask for a code.
Names and paths become passwd-file fields: anything that could end a field or a line
(``:``, control characters) is refused with ValueError, as are names Dovecot's default
``auth_username_chars`` would refuse and hashes that are not argon2id PHC strings. Names
are lower-cased because Dovecot looks users up by the lower-cased login name (``%Lu``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SCHEME = "ARGON2ID"
DEFAULT_SLOTS = 8
USERS_FILE = "users"
# Dovecot's default auth_username_chars; a login name outside it never reaches a passdb.
USERNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
_ARGON2ID = re.compile(r"\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


@dataclass(frozen=True)
class DovecotUser:
    """One account as Dovecot needs it: login name, Maildir, and argon2id hashes."""

    name: str
    maildir: Path
    password_hash: str | None
    app_password_hashes: tuple[str, ...]
    disabled: bool

    def secrets(self) -> tuple[str, ...]:
        """The hashes IMAP accepts for this account, the password (if any) first."""
        first = () if self.password_hash is None else (self.password_hash,)
        return first + self.app_password_hashes


@dataclass(frozen=True)
class DovecotFiles:
    """The exported texts: the userdb file and one passdb file per slot (slot 0 first)."""

    users: str
    passwords: tuple[str, ...]


def password_file(slot: int) -> str:
    """The file name of password slot ``slot``."""
    return f"passwords.{slot}"


def export_users(
    users: Sequence[DovecotUser], *, uid: int, gid: int, slots: int = DEFAULT_SLOTS
) -> DovecotFiles:
    """The passwd-file texts for ``users``; ValueError names the first entry refused.

    ``uid`` and ``gid`` own the Maildirs (the account SecureMail delivers as). An account
    with more secrets than ``slots`` is refused: it needs a configuration with more slots.
    """
    if uid <= 0 or gid <= 0:
        raise ValueError("Dovecot refuses mail access as root: uid and gid must be above 0")
    if slots < 1:
        raise ValueError("at least one password slot is needed")
    enabled = [user for user in users if not user.disabled]
    names = [_login_name(user.name) for user in enabled]
    _refuse_duplicates(names)
    user_lines: list[str] = []
    slot_lines: list[list[str]] = [[] for _ in range(slots)]
    for name, user in zip(names, enabled, strict=True):
        user_lines.append(f"{name}::{uid}:{gid}::{_maildir(user.maildir)}::userdb_mail=maildir:~")
        for slot, secret in enumerate(_checked_secrets(user, slots)):
            slot_lines[slot].append(f"{name}:{{{SCHEME}}}{secret}")
    return DovecotFiles(_lines(user_lines), tuple(_lines(lines) for lines in slot_lines))


def auth_config(directory: PurePosixPath, slots: int = DEFAULT_SLOTS) -> str:
    """The passdb chain and userdb for files exported into ``directory``."""
    if slots < 1:
        raise ValueError("at least one password slot is needed")
    passdbs = "".join(
        "passdb {\n"
        "  driver = passwd-file\n"
        f"  args = scheme={SCHEME} {directory / password_file(slot)}\n"
        "  result_failure = continue\n"
        "  result_internalfail = continue\n"
        "}\n"
        for slot in range(slots)
    )
    userdb = f"userdb {{\n  driver = passwd-file\n  args = {directory / USERS_FILE}\n}}\n"
    return passdbs + userdb


def _login_name(name: str) -> str:
    if not name:
        raise ValueError("an account name is empty")
    if any(c == ":" or not c.isprintable() for c in name):
        raise ValueError(f"account name {name!r} holds ':' or a control character")
    refused = sorted({c for c in name if c not in USERNAME_CHARS})
    if refused:
        shown = "".join(refused)
        raise ValueError(f"account name {name!r} holds {shown!r}, outside auth_username_chars")
    return name.lower()


def _refuse_duplicates(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two accounts are {name!r} once lower-cased")
        seen.add(name)


def _maildir(path: Path) -> str:
    text = str(path)
    if not path.is_absolute():
        raise ValueError(f"Maildir {text!r} is not an absolute path")
    if any(c == ":" or not c.isprintable() for c in text):
        raise ValueError(f"Maildir {text!r} holds ':' or a control character")
    return text


def _checked_secrets(user: DovecotUser, slots: int) -> tuple[str, ...]:
    secrets = user.secrets()
    if len(secrets) > slots:
        raise ValueError(f"account {user.name!r} has {len(secrets)} secrets but {slots} slots")
    for secret in secrets:
        if not _ARGON2ID.fullmatch(secret):
            raise ValueError(f"account {user.name!r} has a hash that is not argon2id PHC")
    return secrets


def _lines(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)
