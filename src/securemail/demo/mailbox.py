"""The demo's view from a person's mail client: log in over IMAP and read the SecureMail mail.

What any IMAP client would do with the provider's settings: STARTTLS (checking the node's
certificate against the CA that issued it), LOGIN, SELECT INBOX, then find the verified
SecureMail messages by their ``$SecureMail`` keyword and read their verification headers.
"""

from __future__ import annotations

import email
import imaplib
import re
from dataclasses import dataclass

from securemail.demo.exchange import client_tls
from securemail.demo.federation import Clients

KEYWORD = "$SecureMail"
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


@dataclass(frozen=True)
class Seen:
    """One message as the client sees it: its flags and the headers a person would check."""

    flags: tuple[str, ...]
    message_id: str
    subject: str
    status: str  # X-SecureMail-Status, added by the receiving gateway


def read_inbox(clients: Clients, address: str, *, timeout: float = 30.0) -> list[Seen]:
    """The messages in ``address``'s INBOX that carry the ``$SecureMail`` keyword.

    Blocking (imaplib): run it in a thread when the nodes share the caller's event loop.
    """
    with imaplib.IMAP4("127.0.0.1", clients.imap_port, timeout=timeout) as imap:
        imap.starttls(ssl_context=client_tls(clients))
        imap.login(address, clients.passwords[address])
        imap.select("INBOX", readonly=True)
        _, found = imap.uid("SEARCH", "KEYWORD", KEYWORD)
        uids = found[0].decode().split() if found and found[0] else []
        return [_fetch(imap, uid) for uid in uids]


def _fetch(imap: imaplib.IMAP4, uid: str) -> Seen:
    _, data = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER])")
    part = next(p for p in data if isinstance(p, tuple))
    flags = _FLAGS.search(part[0])
    header = email.message_from_bytes(part[1])
    return Seen(
        flags=tuple(flags.group(1).decode().split()) if flags else (),
        message_id=" ".join(str(header.get("Message-ID", "")).split()),
        subject=" ".join(str(header.get("Subject", "")).split()),
        status=" ".join(str(header.get("X-SecureMail-Status", "")).split()),
    )
