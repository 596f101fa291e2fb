"""mbsync (isync 1.4) as a real IMAP client: pull a server's folders into a local Maildir.

Theory of operation: a configuration is written from scratch for one account (host, port,
STARTTLS or IMAPS, the CA file that must verify the server, user and password) and one
channel that pulls every folder (``Patterns *``, ``Sync Pull``, ``Create Near``) into a
local Maildir with Maildir++ sub-folders. mbsync never writes to the server this way. The
result is every message the local Maildir then holds, by folder, with mbsync's output.

Security: only the CA file given is trusted (``SystemCertificates no``), so a sync fails
unless the server's certificate chains to it and names the host. Configuration values are
quoted; one holding a line break is refused, since it would start a new statement. The
configuration holds the password and is 0600.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SYNC_TIMEOUT = 60.0  # seconds; bounds a hang, not a slow machine
Tls = Literal["STARTTLS", "IMAPS"]


class MbsyncError(RuntimeError):
    """mbsync failed; the text has its exit status and its output."""


@dataclass(frozen=True)
class ImapAccount:
    """Where and as whom mbsync logs in; ``ca_file`` must verify the server's certificate."""

    host: str
    port: int
    tls: Tls
    ca_file: Path
    user: str
    password: str


@dataclass(frozen=True)
class Synced:
    """What a sync left in the local Maildir: message contents by folder, and mbsync's output."""

    folders: dict[str, list[bytes]]
    output: str


def sync_mailbox(account: ImapAccount, maildir: Path, work: Path) -> Synced:
    """Pull every folder of ``account`` into ``maildir``; the config goes in ``work``.

    Raises MbsyncError with mbsync's output when it exits with an error.
    """
    maildir.mkdir(parents=True, exist_ok=True)
    config = work / "mbsyncrc"
    config.touch(mode=0o600)
    config.write_text(_config(account, maildir))
    command = ["mbsync", "--verbose", "--config", str(config), "--all"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise MbsyncError(f"mbsync exited {done.returncode}:\n{output}")
    return Synced(_messages(maildir), output)


def _config(account: ImapAccount, maildir: Path) -> str:
    return f"""\
IMAPAccount server
Host {_quoted(account.host)}
Port {account.port}
User {_quoted(account.user)}
Pass {_quoted(account.password)}
SSLType {account.tls}
SystemCertificates no
CertificateFile {_quoted(str(account.ca_file))}

IMAPStore far
Account server

MaildirStore near
Path {_quoted(str(maildir) + "/")}
Inbox {_quoted(str(maildir / "INBOX"))}
SubFolders Verbatim

Channel pull
Far :far:
Near :near:
Patterns *
Sync Pull
Create Near
SyncState *
"""


def _quoted(value: str) -> str:
    """A double-quoted isync configuration value (backslash escapes ``\\`` and ``"``)."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"an mbsync configuration value holds a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _messages(maildir: Path) -> dict[str, list[bytes]]:
    """Message contents of every Maildir folder below ``maildir``, in file-name order."""
    folders: dict[str, list[bytes]] = {}
    for cur in sorted(maildir.rglob("cur")):
        folder = cur.parent
        files = [*(folder / "new").glob("*"), *cur.glob("*")]
        name = folder.relative_to(maildir).as_posix()
        folders[name] = [path.read_bytes() for path in sorted(files, key=lambda p: p.name)]
    return folders
