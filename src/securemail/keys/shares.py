"""Custodian shares of a key backup: SLIP-39 splitting, the share file text, and combining.

The archive key is split with SLIP-0039 into N mnemonics, any K of which recover it; each
becomes one share file (:func:`format_share`): what it is and how to keep it, then its
numbered words between :data:`BEGIN` and :data:`END`. :func:`combine_shares` takes share
files back (or the words alone, typed in), checks that they belong to one backup, and
recovers the key. The refusals of backup and restore, :class:`KeyBackupError`, live here
because both this module and :mod:`securemail.keys.backup` raise them.

Security: share files given to a restore are untrusted input. Each is checked against its
RS1024 checksum, and all of them against each other and the archive header (SLIP-39
identifier, threshold, stated backup id) before any combining; a refusal names the files,
never their words. Fewer than K shares reveal nothing about the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import shamir_mnemonic  # type: ignore[import-untyped]

from securemail.errors import SecureMailError

if TYPE_CHECKING:
    from securemail.keys.backup import Header

BEGIN = "-----BEGIN SECUREMAIL KEY SHARE-----"
END = "-----END SECUREMAIL KEY SHARE-----"


class Reason(StrEnum):
    """Why a key backup or restore was refused. Values are the CLI reason codes."""

    SPLIT_POLICY = "split-policy"
    NO_KEYS = "no-keys"
    SHARE_INVALID = "share-invalid"
    SHARES_MIXED = "shares-mixed"
    SHARES_INSUFFICIENT = "shares-insufficient"
    BACKUP_INTEGRITY = "backup-integrity"
    OUTPUT_EXISTS = "output-exists"


class KeyBackupError(SecureMailError[Reason]):
    """A refused backup or restore: a stable reason code plus a detail for the operator."""


def split_key(secret: bytes, shares: int, threshold: int) -> list[str]:
    """N SLIP-39 mnemonics of ``secret``, any ``threshold`` of which recover it."""
    if threshold == 1:  # SLIP-0039 makes 1-of-N as N one-member groups, any one of which suffices
        groups = shamir_mnemonic.generate_mnemonics(1, [(1, 1)] * shares, secret)
    else:
        groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], secret)
    return [str(mnemonic) for group in groups for mnemonic in group]


def share_identifier(mnemonic: str) -> int:
    """The SLIP-0039 identifier of a share: the same in every share of one split."""
    return int(shamir_mnemonic.Share.from_mnemonic(mnemonic).identifier)


def format_share(header: Header, number: int, mnemonic: str) -> str:
    """The text of share ``number``: what it is, how to keep it, and its numbered words."""
    words = mnemonic.split()
    rows = [
        "  ".join(f"{i:>2}. {word:<10}" for i, word in enumerate(words[at : at + 4], at + 1))
        for at in range(0, len(words), 4)
    ]
    if header.threshold == 1:
        alone = ["This share ALONE restores every private key: guard it as you would the keys."]
    else:
        alone = [
            "On its own this share reveals nothing about the keys;",
            f"any {header.threshold} custodians together can restore them.",
        ]
    return "\n".join(
        [
            f"SecureMail key backup: custodian share {number} of {header.shares}",
            "",
            f"Backup id: {header.backup_id}",
            f"Created:   {header.created}",
            f"Node:      {header.org_id or '(not recorded)'}",
            f"Restore:   any {header.threshold} of the {header.shares} shares, and the backup file",
            "",
            "You are a custodian of the private keys of a SecureMail gateway.",
            *alone,
            "- Keep it offline: print it, seal it, store it safely, and delete every",
            "  electronic copy once it is printed.",
            "- Hand it over only for a restore the key owner has authorised, and check",
            "  that the backup id above matches the backup file being restored.",
            "- If it is lost, or seen by anyone else, tell the key owner: a new backup",
            "  with new shares is then needed.",
            "",
            BEGIN,
            *(row.rstrip() for row in rows),
            END,
            "",
        ]
    )


@dataclass(frozen=True)
class _Given:
    """A share as given to restore, decoded: the SLIP-39 fields restore needs, typed."""

    name: str
    mnemonic: str
    identifier: int
    number: int
    threshold: int
    stated_backup_id: str | None


def _share_words(name: str, data: bytes) -> tuple[str, str | None]:
    """The mnemonic of a share file (between the markers, or the whole file if typed in)."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise KeyBackupError(Reason.SHARE_INVALID, f"{name}: not a text file") from None
    marks = [line.strip() for line in lines]
    stated = None
    if BEGIN in marks and END in marks[marks.index(BEGIN) :]:
        begin = marks.index(BEGIN)
        body = lines[begin + 1 : marks.index(END, begin)]
        ids = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Backup id:")]
        stated = ids[0] if ids else None
    else:
        body = lines
    words = [token for line in body for token in line.split() if not token.rstrip(".").isdigit()]
    return " ".join(words), stated


def _decode_share(name: str, data: bytes) -> _Given:
    mnemonic, stated = _share_words(name, data)
    try:
        share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError:
        detail = "the words fail the SLIP-39 checks (a word missing, mistyped or altered)"
        raise KeyBackupError(Reason.SHARE_INVALID, f"{name}: not a valid share: {detail}") from None
    one_member_groups = int(share.member_threshold) == 1  # how a 1-of-N split is made
    number = int(share.group_index if one_member_groups else share.index) + 1
    return _Given(
        name, mnemonic, int(share.identifier), number, int(share.member_threshold), stated
    )


def _check_same_backup(header: Header, given: Sequence[_Given]) -> None:
    sets: dict[int, list[str]] = {}
    for share in given:
        sets.setdefault(share.identifier, []).append(share.name)
    if len(sets) > 1:
        listing = "; ".join(", ".join(names) for names in sets.values())
        detail = f"the shares come from {len(sets)} different backups: {listing}"
        raise KeyBackupError(Reason.SHARES_MIXED, detail)
    strays = [
        share.name
        for share in given
        if share.identifier != header.identifier
        or share.threshold != header.threshold
        or share.stated_backup_id not in (None, header.backup_id)
    ]
    if strays:
        detail = f"{', '.join(strays)}: not shares of backup {header.backup_id}"
        raise KeyBackupError(Reason.SHARES_MIXED, detail)


def combine_shares(
    header: Header, shares: Sequence[tuple[str, bytes]]
) -> tuple[bytes, tuple[int, ...]]:
    """The archive key from (file name, content) shares, and the share numbers combined."""
    given = [_decode_share(name, data) for name, data in shares]
    _check_same_backup(header, given)
    distinct: dict[int, _Given] = {}
    for share in given:
        distinct.setdefault(share.number, share)
    if len(distinct) < header.threshold:
        numbers = ", ".join(str(n) for n in sorted(distinct)) or "none"
        detail = (
            f"{len(distinct)} distinct shares given (numbers: {numbers}); backup "
            f"{header.backup_id} needs any {header.threshold} of its {header.shares}"
        )
        raise KeyBackupError(Reason.SHARES_INSUFFICIENT, detail)
    used = tuple(sorted(distinct)[: header.threshold])
    try:
        key = bytes(shamir_mnemonic.combine_mnemonics([distinct[n].mnemonic for n in used]))
    except (shamir_mnemonic.MnemonicError, ValueError):
        names = ", ".join(distinct[n].name for n in used)
        detail = f"{names} do not combine: they are not all shares of one backup"
        raise KeyBackupError(Reason.SHARES_MIXED, detail) from None
    if len(key) != 32:
        raise KeyBackupError(Reason.SHARES_MIXED, "the shares hold no 256-bit archive key")
    return key, used
