"""The demo's scripted exchange: real SMTP into the nodes, and checks of what arrived.

Each scripted message is submitted over SMTP: to its organisation's internal relay
listener, as the organisation's own mail server would, or, for the mail service provider's
people, to the submission port after STARTTLS and a login, as their mail client would. The
demo then waits until it lies in the recipient's Maildir with the receiving gateway's
verdict, and reads the hop trail from both nodes' queue events.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosmtplib

from securemail.demo.federation import Clients, NodeSetup


@dataclass(frozen=True)
class Script:
    """One scripted message and what must come of it."""

    title: str
    node: str  # the node whose relay listener takes it
    mail_from: str
    to: tuple[str, ...]
    subject: str
    author: str = ""  # the From: field, when it differs from the envelope sender
    # "verified": delivered and verified; "refused-at-rcpt"; "refused-at-data"; "bounced"
    expect: str = "verified"
    signer: str = ""  # the org that must be named as verified signer
    receipt: bool = False  # ask for a signed delivery receipt ("request a return receipt")
    login: bool = False  # a person's client: submission port, STARTTLS, AUTH as mail_from

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
        login=True,
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
        expect="refused-at-data",
        login=True,
    ),
    Script(
        "the agency's internal mail server relays a forged From: (no login to catch it)",
        "agency",
        "aroha.ngata@agency.govt.nz",
        ("hemi.walker@securemail.provider.nz",),
        "Your refund is ready",
        author="refunds@gsp.co.nz",
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
    """Submit over SMTP (relay listener, or submission with a login); the reply or refusal."""
    try:
        _, reply = await aiosmtplib.send(
            message,
            sender=script.mail_from,
            recipients=list(script.to),
            hostname="127.0.0.1",
            timeout=60,
            **_client_settings(node, script),
        )
    except aiosmtplib.SMTPRecipientsRefused as refused:
        return " ".join(f"{r.code} {r.message}" for r in refused.recipients)
    except aiosmtplib.SMTPResponseException as error:
        return f"{error.code} {error.message}"
    except aiosmtplib.SMTPException as error:
        return f"refused: {error}"
    return f"250 {reply}"


def _client_settings(node: NodeSetup, script: Script) -> dict[str, Any]:
    if not script.login:
        return {"port": node.relay_port, "start_tls": False}
    if node.clients is None:
        raise ValueError(f"node {node.name} takes no logins")
    return {
        "port": node.clients.submission_port,
        "start_tls": True,
        "tls_context": client_tls(node.clients),
        "username": script.mail_from,
        "password": node.clients.passwords[script.mail_from],
    }


def client_tls(clients: Clients) -> ssl.SSLContext:
    """What a person's mail client checks: the node's certificate chain and name."""
    return ssl.create_default_context(cafile=str(clients.ca))


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
