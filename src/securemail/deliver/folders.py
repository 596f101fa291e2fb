"""The special-use folders every hosted mailbox has: Sent, Drafts, Trash, Junk and Archive.

Theory of operation. RFC 6154 lets an IMAP server tell clients which folder holds sent
mail, drafts and so on (``\\Sent``, ``\\Drafts``, ``\\Trash``, ``\\Junk``, ``\\Archive``), so
that Thunderbird, Apple Mail, Outlook, phones and the webmail all use the same folder
instead of each making its own ("Sent", "Sent Items", "Sent Messages"). Here the folder's
name is its use: ``.Sent``, ``.Drafts``, ``.Trash``, ``.Junk``, ``.Archive`` sub-Maildirs
(Maildir++, as Dovecot and pymap lay them out) of the account's Maildir, each subscribed
(many clients show only subscribed folders) and with ``$SecureMail`` defined in its
``dovecot-keywords``. :func:`ensure_special_folders` makes whichever are missing: when an
account is added (``securemail user add``), at each IMAP login and when the webmail opens,
so mailboxes made before this existed get them too.

Security: the names are this module's constants, never from a client. Folders are 0700
(:func:`securemail.deliver.maildir.make_mailbox`). The ``subscriptions`` file is replaced
whole by rename; a client's SUBSCRIBE racing the very first creation can lose its line
(the client subscribes again at its next start), never the file.
"""

from __future__ import annotations

from pathlib import Path

from securemail.deliver.keywords import keyword_letters
from securemail.deliver.maildir import make_mailbox
from securemail.deliver.target import SECUREMAIL_KEYWORD
from securemail.durable import write_atomic

SENT, DRAFTS, TRASH, JUNK, ARCHIVE = "Sent", "Drafts", "Trash", "Junk", "Archive"
SPECIAL_USE: dict[str, bytes] = {
    SENT: b"Sent",
    DRAFTS: b"Drafts",
    TRASH: b"Trash",
    JUNK: b"Junk",
    ARCHIVE: b"Archive",
}
"""Folder name to its RFC 6154 attribute (without the backslash)."""

SUBSCRIPTIONS = "subscriptions"  # pymap's and Dovecot's Maildir++ list of subscribed folders


def ensure_special_folders(root: Path) -> None:
    """Make ``root`` (the account's Maildir) and each missing special-use folder in it."""
    if all((root / f".{name}" / "cur").is_dir() for name in SPECIAL_USE):
        return
    make_mailbox(root)
    keyword_letters(root, [SECUREMAIL_KEYWORD])
    for name in SPECIAL_USE:
        ensure_folder(root, name)
    _subscribe(root, list(SPECIAL_USE))


def ensure_folder(root: Path, name: str) -> Path:
    """The sub-folder ``.name`` of ``root`` (a plain word), made if missing; its path."""
    if not (name.isascii() and name.isalpha() and 0 < len(name) <= 40):
        raise ValueError(f"not a simple folder name: {name!r}")
    make_mailbox(root)
    path = root / f".{name}"
    if not (path / "cur").is_dir():
        make_mailbox(path)
        (path / "maildirfolder").touch(mode=0o600)  # Maildir++: marks a sub-folder
        keyword_letters(path, [SECUREMAIL_KEYWORD])
    return path


def _subscribe(root: Path, names: list[str]) -> None:
    file = root / SUBSCRIPTIONS
    try:
        listed = file.read_text("utf-8").splitlines()
    except FileNotFoundError:
        listed = []
    kept = [line.strip() for line in listed if line.strip()]
    missing = [name for name in names if name not in kept]
    if missing:
        write_atomic(file, "".join(f"{line}\r\n" for line in kept + missing).encode("utf-8"))
