"""The demo's scripted exchange: real SMTP into the nodes, and checks of what arrived.

Each scripted message is submitted over SMTP to its organisation's internal relay
listener, as the organisation's own mail server would. The demo then waits until it lies in
the recipient's Maildir with the receiving gateway's verdict, and reads the hop trail from
both nodes' queue events.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiosmtplib

from securemail.demo.federation import NodeSetup


@dataclass(frozen=True)
class Script:
    """One scripted message and what must come of it."""

    title: str
    node: str  # the node whose relay listener takes it
    mail_from: str
    to: tuple[str, ...]
    subject: str
    author: str = ""  # the From: field, when it differs from the envelope sender
    expect: str = "verified"  # "verified": delivered and verified; "refused-at-rcpt"; "bounced"
    signer: str = ""  # the org that must be named as verified signer
    receipt: bool = False  # ask for a signed delivery receipt ("request a return receipt")

    def message(self, n: int, now: datetime) -> bytes:
        author = self.author or self.mail_from
        domain = author.rpartition("@")[2]
        lines = [f"Disposition-Notification-To: {author}"] if self.receipt else []
        lines += [
            f"From: {author}",
            f"To: {', '.join(self.to)}",
            f"Subject: {self.subject}",
            f"Date: {email.utils.format_datetime(now)}",
            f"Message-ID: {self.message_id(n, domain)}",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            "Kia ora,",
            "",
            f"This is demo message {n}: {self.title}.",
            "",
            "Ngā mihi",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    @staticmethod
    def message_id(n: int, domain: str) -> str:
        return f"<demo-{n}@{domain}>"


SCRIPTS: Sequence[Script] = (
    Script(
        "agency to a citizen at the mail service provider",
        "agency",
        "aroha.ngata@agency.govt.nz",
        ("hemi.walker@securemail.provider.nz",),
        "[IN-CONFIDENCE] Your benefit review",
        signer="agency",
        receipt=True,
    ),
    Script(
        "the citizen replies to the agency",
        "provider",
        "hemi.walker@securemail.provider.nz",
        ("aroha.ngata@agency.govt.nz",),
        "Re: [IN-CONFIDENCE] Your benefit review",
        signer="provider",
    ),
    Script(
        "a business behind a gateway service provider writes to two members at once",
        "gsp",
        "accounts@harbourbuilders.co.nz",
        ("aroha.ngata@agency.govt.nz", "hemi.walker@securemail.provider.nz"),
        "Invoice 2026-114 for the wharf repairs",
        signer="harbour",
    ),
    Script(
        "the agency answers the business (GSP node, second organisation)",
        "agency",
        "procurement@agency.govt.nz",
        ("accounts@harbourbuilders.co.nz",),
        "Re: Invoice 2026-114 for the wharf repairs",
        signer="agency",
    ),
    Script(
        "the provider's user forges an agency From: address",
        "provider",
        "hemi.walker@securemail.provider.nz",
        ("aroha.ngata@agency.govt.nz",),
        "Urgent: change of bank account",
        author="minister@agency.govt.nz",
        expect="bounced",
    ),
    Script(
        "the agency writes to a domain outside SecureMail (no smarthost configured)",
        "agency",
        "aroha.ngata@agency.govt.nz",
        ("someone@example.com",),
        "Hello",
        expect="refused-at-rcpt",
    ),
)


async def submit(node: NodeSetup, script: Script, message: bytes) -> str:
    """Submit over SMTP to the node's relay listener; the reply line, or the refusal."""
    try:
        _, reply = await aiosmtplib.send(
            message,
            sender=script.mail_from,
            recipients=list(script.to),
            hostname="127.0.0.1",
            port=node.relay_port,
            start_tls=False,
            timeout=60,
        )
    except aiosmtplib.SMTPRecipientsRefused as refused:
        return " ".join(f"{r.code} {r.message}" for r in refused.recipients)
    except aiosmtplib.SMTPException as error:
        return f"refused: {error}"
    return f"250 {reply}"


def head(message: bytes) -> bytes:
    """The header block of a stored message (Maildir files have LF or CRLF line ends)."""
    return re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]


def find_delivered(mailbox: Path, message_id: str) -> bytes | None:
    """The delivered message carrying ``message_id`` in ``mailbox``, if it arrived."""
    needle = f"Message-ID: {message_id}".encode().lower()
    for folder in ("new", "cur"):
        path = mailbox / folder
        if not path.is_dir():
            continue
        for item in path.iterdir():
            data = item.read_bytes()
            if needle in head(data).lower():
                return data
    return None


async def wait_for(mailbox: Path, message_id: str, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = find_delivered(mailbox, message_id)
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    return None


def header(message: bytes, name: str) -> str:
    """The first value of a header field (unfolded), or ""."""
    parsed = email.message_from_bytes(head(message) + b"\n\n")
    value = parsed.get(name)
    return "" if value is None else " ".join(str(value).split())
