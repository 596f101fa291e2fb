"""Where a recipient's mail goes: the one pure routing decision of the sending gateway.

``route`` takes the verified directory, the sending organisation, the recipient's domain,
whether a smarthost is configured, the message's label and the organisation's and node's
policy, and returns a Route with a reason code. Nothing here does I/O or reads the clock.
Every caller (the relay listener at RCPT time, the outbound worker at send time, ``policy
explain``) asks the same function, so they cannot disagree. "Labelled" below means the
organisation's policy says the label may travel only inside SecureMail
(:meth:`OrgPolicy.requires_securemail`: ``secure_from`` and above).

Decisions, in order (the first that applies):
    labelled, node outside NZ and not allowed -> refuse (node-offshore)        issue 7 §3
    no directory yet                       -> defer   (no-directory)
    sender organisation not an active member -> defer (sender-not-a-member)
    not a member, labelled                 -> refuse  (label-requires-securemail) fail closed
    not a member, smarthost configured     -> smarthost (not-a-member)
    not a member, no smarthost             -> refuse  (not-a-member)
    domain owned by a suspended member     -> refuse  (member-suspended)   fail closed
    labelled, member's region not allowed  -> refuse  (region-not-allowed)  issue 7 §3
    domain owned by an active member       -> member  (encrypt to its current certificate)
        ... but no valid certificate        -> defer   (no-certificate)     never plaintext
        ... but no endpoint or TLS pin      -> defer   (no-endpoint)

A member route lists its hops (:func:`hops`): the member's endpoints, then its upstream
queues (profile §11.1), each with the pins its TLS key must match; a sender tries them in
that order and stops at the first that answers.

The node check comes first because it depends on nothing but the node: an offshore node
must not hold labelled mail at all, not even while it waits for a directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from cryptography import x509

from securemail.directory.model import Directory, Member
from securemail.policy.model import NodePolicy, OrgPolicy
from securemail.smime.algorithms import CipherName
from securemail.smime.labels import SecurityLabel

HOME_REGION = "NZ"  # the seed's rule: SecureMail mail is stored in New Zealand


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
    NODE_OFFSHORE = "node-offshore"
    LABEL_REQUIRES_SECUREMAIL = "label-requires-securemail"
    REGION_NOT_ALLOWED = "region-not-allowed"


@dataclass(frozen=True)
class Hop:
    """One place a member's mail may be handed to: an endpoint of its gateway, or one of its
    upstream queues (``operator`` set), reached with STARTTLS and one of ``pins``."""

    host: str
    port: int
    pins: tuple[str, ...]
    operator: str | None = None  # who runs the upstream queue; None for the gateway

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def primary_hops(member: Member) -> tuple[Hop, ...]:
    """The member's own gateway endpoints, pinned to its ``tls_pins``."""
    return tuple(Hop(e.host, e.port, member.tls_pins) for e in member.endpoints)


def hops(member: Member) -> tuple[Hop, ...]:
    """Where a sender tries the member's mail, in order: its endpoints, then its upstream
    queues (each pinned to its own key)."""
    upstream = tuple(Hop(q.host, q.port, q.tls_pins, q.operator) for q in member.upstream)
    return primary_hops(member) + upstream


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
    RouteReason.NODE_OFFSHORE: (
        "this node is declared outside New Zealand and its operator has not allowed"
        " labelled mail to pass through it"
    ),
    RouteReason.LABEL_REQUIRES_SECUREMAIL: (
        "the message's label may travel only inside SecureMail and the domain is not"
        " in the SecureMail directory: it is never sent in the clear"
    ),
    RouteReason.REGION_NOT_ALLOWED: (
        "the member's declared region is not one the sending organisation allows for labelled mail"
    ),
}
_NO_ORG_POLICY = OrgPolicy()
_NO_NODE_POLICY = NodePolicy()


def choose_cipher(member: Member) -> CipherName:
    """AES-256-GCM unless the directory says the peer only does CBC (ARCHITECTURE §5)."""
    for cipher in ("aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"):
        if cipher in member.capabilities:
            return cipher
    return "aes256-cbc"


def choose_inner_encoding(member: Member) -> Literal["binary", "base64"]:
    """Base64 unless the directory says the peer reads a binary inner entity (profile §1)."""
    return "binary" if "inner-binary" in member.capabilities else "base64"


def route(
    domain: str,
    *,
    sender_org: str,
    directory: Directory | None,
    smarthost: bool,
    now: datetime,
    label: SecurityLabel | None = None,
    org_policy: OrgPolicy = _NO_ORG_POLICY,
    node_policy: NodePolicy = _NO_NODE_POLICY,
) -> Route:
    """Decide how mail from ``sender_org`` labelled ``label`` to ``domain`` leaves this node."""
    domain = domain.lower().rstrip(".")
    labelled = org_policy.requires_securemail(label)
    if labelled and not _may_hold_labelled(node_policy):
        return Route(RouteKind.REFUSE, RouteReason.NODE_OFFSHORE, domain)
    if directory is None:
        return Route(RouteKind.DEFER, RouteReason.NO_DIRECTORY, domain)
    sender = directory.member(sender_org)
    if sender is None or not sender.active:
        return Route(RouteKind.DEFER, RouteReason.SENDER_NOT_MEMBER, domain)
    member = directory.owner_of(domain)
    if member is None:
        return _outside(domain, labelled=labelled, smarthost=smarthost)
    if not member.active:
        return Route(RouteKind.REFUSE, RouteReason.MEMBER_SUSPENDED, domain, member)
    if labelled and member.region not in org_policy.allowed_regions:
        return Route(RouteKind.REFUSE, RouteReason.REGION_NOT_ALLOWED, domain, member)
    return _to_member(domain, member, directory, now)


def _may_hold_labelled(node: NodePolicy) -> bool:
    """A node declared outside New Zealand holds labelled mail only if its operator says so."""
    return node.region.upper() == HOME_REGION or node.allow_offshore_labelled


def _outside(domain: str, *, labelled: bool, smarthost: bool) -> Route:
    """A domain outside SecureMail: labelled mail never goes there (no silent plaintext)."""
    if labelled:
        return Route(RouteKind.REFUSE, RouteReason.LABEL_REQUIRES_SECUREMAIL, domain)
    kind = RouteKind.SMARTHOST if smarthost else RouteKind.REFUSE
    return Route(kind, RouteReason.NOT_A_MEMBER, domain)


def _to_member(domain: str, member: Member, directory: Directory, now: datetime) -> Route:
    """An active member: encrypt to its certificate, or wait until it can be reached securely."""
    certificate = directory.encryption_certificate(domain, now)
    if certificate is None:
        return Route(RouteKind.DEFER, RouteReason.NO_CERTIFICATE, domain, member)
    if not member.endpoints or not member.tls_pins:
        return Route(RouteKind.DEFER, RouteReason.NO_ENDPOINT, domain, member)
    return Route(
        RouteKind.MEMBER, RouteReason.MEMBER, domain, member, certificate, choose_cipher(member)
    )
