"""The values the SMTP receive services share: settings, the received message, the seams.

``Admit`` and ``CheckRecipient`` are the two seams a listener calls out through; their
contracts are written on the Protocols. ``ReceiveReason`` is the stable code every refusal
of the receive services carries (``Reply.reason``).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from securemail.accounts.assurance import Submitted
from securemail.receive.door import Door
from securemail.receive.flow import InFlow
from securemail.replies import Reply

MIB = 1024 * 1024
ListenerName = Literal["peer", "relay", "ordinary", "submission"]
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")


class ReceiveReason(StrEnum):
    """Why a receive service refused a client, a command or a message."""

    RELAY_DENIED = "relay-denied"
    BAD_ADDRESS = "bad-address"
    NOT_PROTECTED = "not-protected"
    CLIENT_NOT_ALLOWED = "client-not-allowed"
    SENDER_NOT_ALLOWED = "sender-not-allowed"
    LOOP = "loop"
    TOO_BIG = "message-too-big"
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    LINE_TOO_LONG = "line-too-long"
    TLS_REQUIRED = "tls-required"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    TIMEOUT = "timeout"
    TLS_HANDSHAKE_TIMEOUT = "tls-handshake-timeout"
    PRE_MAIL_TIMEOUT = "pre-mail-timeout"
    SESSION_TOO_LONG = "session-too-long"
    QUARANTINE_QUOTA = "quarantine-quota"
    CLIENT_CERTIFICATE_REQUIRED = "client-certificate-required"
    NOT_A_MEMBER = "not-a-member"
    AUTH_UNAVAILABLE = "auth-unavailable"
    AUTH_REQUIRED = "auth-required"
    AUTH_FAILED = "auth-failed"
    NULL_SENDER = "null-sender"
    SENDER_NOT_OWNED = "sender-not-owned"
    FROM_NOT_OWNED = "from-not-owned"
    FROM_DISPLAY_ADDRESS = "from-display-address"
    ADMIT_FAILED = "admit-failed"
    INTERNAL = "internal-error"


@dataclass(frozen=True)
class ListenerSettings:
    """Where a listener binds and the limits it enforces on every session.

    ``timeout`` is the wait for each command (RFC 5321 §4.5.3.2.7: at least 5 minutes); the
    DATA transfer and the message's admission to the queue must also finish within it.
    ``tls`` is the server context for STARTTLS; the listener raises its minimum version to
    TLS 1.2 if it was lower. ``door`` shares the sessions out fairly (see receive.door);
    ``inflow`` slows new mail while the queue's workers are behind (see receive.flow).
    """

    host: str
    port: int
    hostname: str
    max_message_size: int = 25 * MIB
    max_recipients: int = 100
    max_connections: int = 100
    timeout: float = 300.0
    tls: ssl.SSLContext | None = None
    door: Door = field(default_factory=Door)
    inflow: InFlow | None = None  # the pause before MAIL while the workers are behind

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if _HOSTNAME.fullmatch(self.hostname) is None:
            raise ValueError(f"hostname must be a domain name: {self.hostname!r}")
        for name in ("max_message_size", "max_recipients", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")


@dataclass(frozen=True)
class Received:
    """One message as a listener accepted it, ready to be committed to the queue.

    ``body`` is the message exactly as received, every line end normalised to CRLF, with
    our ``Received:`` trace field prepended. ``mail_from`` is "" for the null path ``<>``.
    """

    listener: ListenerName
    client_address: str
    helo: str
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes
    tls: bool
    tls_version: str | None
    auth_user: str | None
    # How the mailbox holder logged in (submission and webmail only): signed by the
    # provider's gateway as the sender assurance (docs/profile.md §2.2).
    assurance: Submitted | None = None
    member: str | None = None  # peer listener: the member its TLS client certificate names


class Admit(Protocol):
    """Commits a received message to the durable queue and says what to answer.

    Contract: returns a 2xx reply only after the message is durable (the queue transaction
    committed); returns 4xx if it could not be stored, 5xx to refuse it. The reply is sent
    to the client verbatim as the answer to DATA. If the client goes away, the call may be
    cancelled: no 2xx was sent then, so rolling back or completing are both correct.
    Raising is treated as "could not be stored" (451 4.3.0).
    """

    async def __call__(self, received: Received) -> Reply: ...


class CheckRecipient(Protocol):
    """Decides whether the relay or submission listener takes a recipient from a sender.

    Contract: ``None`` accepts the recipient; a reply refuses it and is sent to the client
    verbatim (e.g. ``550 5.7.1`` for a domain outside the federation). Both addresses have
    already passed :func:`securemail.receive.envelope.check_envelope_address`; the sender
    is "" for ``<>``. Pure and fast: it runs once per RCPT command.
    """

    def __call__(self, mail_from: str, recipient: str) -> Reply | None: ...
