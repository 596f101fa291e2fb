"""Where a recipient's mail goes: the one pure routing decision of the sending gateway.

``route`` takes the verified directory, the sending organisation, the recipient's domain
and whether a smarthost is configured, and returns a Route with a reason code. Nothing here
does I/O or reads the clock. The classification and sovereignty rules (labels, regions)
extend this module; every caller (the relay listener at RCPT time, the outbound worker at
send time, ``policy explain``) asks the same function, so they cannot disagree.

Decisions, in order:
    no directory yet                       -> defer   (no-directory)
    sender organisation not an active member -> defer (sender-not-a-member)
    domain owned by a suspended member     -> refuse  (member-suspended)   fail closed
    domain owned by an active member       -> member  (encrypt to its current certificate)
        ... but no valid certificate        -> defer   (no-certificate)     never plaintext
        ... but no endpoint or TLS pin      -> defer   (no-endpoint)
    not a member, smarthost configured     -> smarthost (not-a-member)
    not a member, no smarthost             -> refuse  (not-a-member)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509

from securemail.directory.model import Directory, Member
from securemail.smime.algorithms import CipherName


class RouteKind(StrEnum):
    MEMBER = "member"
    SMARTHOST = "smarthost"
    DEFER = "defer"
    REFUSE = "refuse"


class RouteReason(StrEnum):
    MEMBER = "member"
    NOT_A_MEMBER = "not-a-member"
    MEMBER_SUSPENDED = "member-suspended"
    NO_CERTIFICATE = "no-certificate"
    NO_ENDPOINT = "no-endpoint"
    SENDER_NOT_MEMBER = "sender-not-a-member"
    NO_DIRECTORY = "no-directory"


@dataclass(frozen=True)
class Route:
    """The decision for one recipient domain; ``member`` and ``certificate`` for MEMBER."""

    kind: RouteKind
    reason: RouteReason
    domain: str
    member: Member | None = None
    certificate: x509.Certificate | None = None
    cipher: CipherName = "aes256-gcm"

    @property
    def explanation(self) -> str:
        return _EXPLANATIONS[self.reason]


_EXPLANATIONS = {
    RouteReason.MEMBER: "the domain belongs to a SecureMail member: signed and encrypted",
    RouteReason.NOT_A_MEMBER: "the domain is not in the SecureMail directory",
    RouteReason.MEMBER_SUSPENDED: "the domain's member is suspended from the federation",
    RouteReason.NO_CERTIFICATE: "the member has no valid encryption certificate right now",
    RouteReason.NO_ENDPOINT: "the member's directory entry has no gateway endpoint or TLS pin",
    RouteReason.SENDER_NOT_MEMBER: "this organisation is not an active member in the directory",
    RouteReason.NO_DIRECTORY: "no verified directory has been loaded yet",
}


def choose_cipher(member: Member) -> CipherName:
    """AES-256-GCM unless the directory says the peer only does CBC (ARCHITECTURE §5)."""
    for cipher in ("aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"):
        if cipher in member.capabilities:
            return cipher
    return "aes256-cbc"


def route(
    domain: str,
    *,
    sender_org: str,
    directory: Directory | None,
    smarthost: bool,
    now: datetime,
) -> Route:
    """Decide how mail from ``sender_org`` to a recipient in ``domain`` leaves this node."""
    domain = domain.lower().rstrip(".")
    if directory is None:
        return Route(RouteKind.DEFER, RouteReason.NO_DIRECTORY, domain)
    sender = directory.member(sender_org)
    if sender is None or not sender.active:
        return Route(RouteKind.DEFER, RouteReason.SENDER_NOT_MEMBER, domain)
    member = directory.owner_of(domain)
    if member is None:
        kind = RouteKind.SMARTHOST if smarthost else RouteKind.REFUSE
        return Route(kind, RouteReason.NOT_A_MEMBER, domain)
    if not member.active:
        return Route(RouteKind.REFUSE, RouteReason.MEMBER_SUSPENDED, domain, member)
    certificate = directory.encryption_certificate(domain, now)
    if certificate is None:
        return Route(RouteKind.DEFER, RouteReason.NO_CERTIFICATE, domain, member)
    if not member.endpoints or not member.tls_pins:
        return Route(RouteKind.DEFER, RouteReason.NO_ENDPOINT, domain, member)
    return Route(
        RouteKind.MEMBER, RouteReason.MEMBER, domain, member, certificate, choose_cipher(member)
    )
