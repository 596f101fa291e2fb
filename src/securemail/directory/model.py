"""The directory's data: members, their domains, endpoints, certificates and contacts.

Immutable values with a strict JSON mapping (:meth:`Directory.from_json` refuses unknown
or missing fields) and the look-ups a gateway needs: who owns a domain, which certificate to
encrypt to, whether a signer may sign for a From: domain, whether a TLS certificate is the
peer's. A document in which two members claim one domain is refused as a whole.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

FORMAT = "securemail-directory/1"
ROLES = ("gateway", "msp", "gsp")
STATUSES = ("active", "suspended")
# "inner-binary": the member's gateway reads a binary inner signed entity (profile §1);
# without it, senders use base64, which every S/MIME stack reads. "sealed-for": the
# member's gateway signs sealedFor on every message (profile §2.1), so a message signed by it
# without the attribute is refused whatever the receiver's [peer] unsealed says.
CAPABILITIES = (
    "aes256-gcm",
    "aes128-gcm",
    "aes256-cbc",
    "aes128-cbc",
    "rsa-oaep",
    "ecdh",
    "inner-binary",
    "sealed-for",
)
# RFC 2142 mailbox names and common role words: contacts are roles, never persons
ROLE_MAILBOXES = frozenset(
    {
        "postmaster",
        "hostmaster",
        "abuse",
        "security",
        "noc",
        "support",
        "helpdesk",
        "servicedesk",
        "it",
        "itsupport",
        "admin",
        "administrator",
        "gateway",
        "securemail",
        "mail",
        "mailadmin",
        "operations",
        "ops",
        "contact",
        "enquiries",
        "info",
        "records",
    }
)
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_PHONE = re.compile(r"^\+[0-9][0-9 ]{6,20}$")


class ModelError(ValueError):
    """A directory value that breaks a rule; the message says which."""


def normalise_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ModelError(f"not a domain name: {domain!r}")
    return value


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _cert(value: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode(value, validate=True))
    except ValueError as exc:
        raise ModelError(f"certificate: {exc}") from None


def spki_pin(cert: x509.Certificate) -> str:
    """``sha256:`` + base64 of the SHA-256 of the SubjectPublicKeyInfo (as in RFC 7469)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@lru_cache(maxsize=256)
def certificate_pin(der: bytes) -> str:
    """:func:`spki_pin` of a DER certificate; raises ValueError if ``der`` is not one.

    Remembered for the last 256 certificates: a peer shows the same certificate on every
    TLS session and its pin is asked at each session's MAIL and for each message, while
    parsing the DER and writing out the key is most of the work. The pin is a function of
    the DER alone, so a remembered pin is the pin (no trust decision is cached here: the
    caller still looks it up in the directory it holds now).
    """
    return spki_pin(x509.load_der_x509_certificate(der))


@dataclass(frozen=True)
class Contact:
    """A generic role address and phone number: never a person (the seed's PII rule)."""

    email: str
    phone: str

    def __post_init__(self) -> None:
        local, at, domain = self.email.partition("@")
        if not at or local.lower() not in ROLE_MAILBOXES:
            roles = ", ".join(sorted(ROLE_MAILBOXES))
            raise ModelError(f"contact e-mail must be a role address ({roles}@domain)")
        normalise_domain(domain)
        if not _PHONE.match(self.phone):
            raise ModelError("contact phone must be international: +64 4 000 0000")


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 25

    def __post_init__(self) -> None:
        if not _is_ipv4(self.host):  # an IPv4 literal (loopback tests, private links) or a name
            normalise_domain(self.host)
        if not 1 <= self.port <= 65535:
            raise ModelError(f"port {self.port} out of range")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, _, port = text.rpartition(":")
        if not host:
            return cls(text.lower())
        try:
            return cls(host.lower(), int(port))
        except ValueError:
            raise ModelError(f"endpoint must be HOST:PORT, got {text!r}") from None


@dataclass(frozen=True)
class UpstreamQueue:
    """A queue that takes a member's mail while its gateway is away (profile §11.1).

    Reached like a gateway (STARTTLS, a chain to the anchor, a leaf key in ``tls_pins``),
    in New Zealand only, run by ``operator`` (the org id of the member, its gateway
    service provider or the federation operator). It holds the ciphertext and never has
    the member's keys.
    """

    host: str
    port: int
    tls_pins: tuple[str, ...]
    region: str
    operator: str

    def __post_init__(self) -> None:
        Endpoint(self.host, self.port)  # the same host and port rules
        if not self.tls_pins or any(not p.startswith("sha256:") for p in self.tls_pins):
            raise ModelError(f"upstream queue {self.host}: tls_pins must list sha256: pins")
        if self.region != "NZ":
            raise ModelError(f"upstream queue {self.host}: region must be NZ")
        if not _ORG_ID.match(self.operator):
            raise ModelError(f"upstream queue {self.host}: operator must be an org id")

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "tls_pins": list(self.tls_pins),
            "region": self.region,
            "operator": self.operator,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpstreamQueue:
        _keys(data, {"host", "port", "tls_pins", "region", "operator"}, "upstream queue")
        return cls(
            str(data["host"]),
            _int(data["port"]),
            tuple(data["tls_pins"]),
            str(data["region"]),
            str(data["operator"]),
        )


@dataclass(frozen=True)
class KeyPair:
    """A current certificate and, during rollover, the next one."""

    current: x509.Certificate
    next: x509.Certificate | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "current": _b64(self.current),
            "next": None if self.next is None else _b64(self.next),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyPair:
        _keys(data, {"current", "next"}, "certificate pair")
        return cls(_cert(data["current"]), None if data["next"] is None else _cert(data["next"]))

    def all(self) -> tuple[x509.Certificate, ...]:
        return (self.current,) if self.next is None else (self.current, self.next)


@dataclass(frozen=True)
class Member:
    """One member organisation as the directory describes it."""

    org_id: str
    name: str
    domains: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    tls_pins: tuple[str, ...]
    signing: KeyPair
    encryption: KeyPair
    capabilities: tuple[str, ...]
    region: str
    roles: tuple[str, ...]
    contact: Contact
    status: str = "active"
    accredited_on: date | None = None
    last_conformance_test: date | None = None
    upstream: tuple[UpstreamQueue, ...] = ()  # tried in order after ``endpoints``

    def __post_init__(self) -> None:
        if not _ORG_ID.match(self.org_id):
            raise ModelError(f"org id {self.org_id!r}: lower-case letters, digits, hyphens")
        if not self.name.strip():
            raise ModelError("member name is empty")
        if not self.domains:
            raise ModelError(f"member {self.org_id} has no domain")
        object.__setattr__(self, "domains", tuple(normalise_domain(d) for d in self.domains))
        if len(set(self.domains)) != len(self.domains):
            raise ModelError(f"member {self.org_id} lists a domain twice")
        if not self.region or not re.fullmatch(r"[A-Z]{2}", self.region):
            raise ModelError("region is required: an ISO 3166 country code such as NZ")
        if not self.roles or any(r not in ROLES for r in self.roles):
            raise ModelError(f"roles must be among {', '.join(ROLES)}")
        if self.status not in STATUSES:
            raise ModelError(f"status must be one of {', '.join(STATUSES)}")
        unknown = set(self.capabilities) - set(CAPABILITIES)
        if unknown:
            raise ModelError(f"unknown capabilities: {', '.join(sorted(unknown))}")

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def in_new_zealand(self) -> bool:
        return self.region == "NZ"

    def to_json(self) -> dict[str, Any]:
        upstream = (
            {"upstream_queues": [u.to_json() for u in self.upstream]} if self.upstream else {}
        )
        return {
            "org_id": self.org_id,
            "name": self.name,
            "domains": list(self.domains),
            "endpoints": [{"host": e.host, "port": e.port} for e in self.endpoints],
            "tls_pins": list(self.tls_pins),
            "certificates": {
                "signing": self.signing.to_json(),
                "encryption": self.encryption.to_json(),
            },
            "capabilities": list(self.capabilities),
            "region": self.region,
            "roles": list(self.roles),
            "status": self.status,
            "accredited_on": _date_json(self.accredited_on),
            "last_conformance_test": _date_json(self.last_conformance_test),
            "contact": {"email": self.contact.email, "phone": self.contact.phone},
        } | upstream

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        if not isinstance(data, dict):
            raise ModelError("member must be an object")
        # "upstream_queues" is optional: documents written before it stay valid, unchanged
        upstream = data.get("upstream_queues", [])
        if not isinstance(upstream, list):
            raise ModelError("upstream_queues must be a list")
        _keys(
            {k: v for k, v in data.items() if k != "upstream_queues"},
            {
                "org_id",
                "name",
                "domains",
                "endpoints",
                "tls_pins",
                "certificates",
                "capabilities",
                "region",
                "roles",
                "status",
                "accredited_on",
                "last_conformance_test",
                "contact",
            },
            "member",
        )
        certs = data["certificates"]
        _keys(certs, {"signing", "encryption"}, "certificates")
        _keys(data["contact"], {"email", "phone"}, "contact")
        return cls(
            org_id=data["org_id"],
            name=data["name"],
            domains=tuple(data["domains"]),
            endpoints=tuple(Endpoint(e["host"], e["port"]) for e in data["endpoints"]),
            tls_pins=tuple(data["tls_pins"]),
            signing=KeyPair.from_json(certs["signing"]),
            encryption=KeyPair.from_json(certs["encryption"]),
            capabilities=tuple(data["capabilities"]),
            region=data["region"],
            roles=tuple(data["roles"]),
            status=data["status"],
            accredited_on=_date(data["accredited_on"]),
            last_conformance_test=_date(data["last_conformance_test"]),
            contact=Contact(data["contact"]["email"], data["contact"]["phone"]),
            upstream=tuple(UpstreamQueue.from_json(u) for u in upstream),
        )


@dataclass(frozen=True)
class HistoryEntry:
    serial: int
    digest: str


@dataclass(frozen=True)
class Directory:
    """One version of the directory: serial, the chain of earlier versions, members, CRLs."""

    federation: str
    serial: int
    issued_at: datetime
    next_update: datetime
    members: tuple[Member, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    history: tuple[HistoryEntry, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.serial < 1:
            raise ModelError("serial must be at least 1")
        serials = [h.serial for h in self.history]
        if serials != sorted(set(serials)) or (serials and serials[-1] >= self.serial):
            raise ModelError("history must list earlier serials in increasing order")
        if self.serial > 1 and (not serials or serials[-1] != self.serial - 1):
            raise ModelError("history must end with the previous serial")
        ids = [m.org_id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ModelError("two members share an org id")
        owners: dict[str, str] = {}
        for member in self.members:
            for domain in member.domains:
                if domain in owners:
                    raise ModelError(
                        f"domain {domain} is claimed by both {owners[domain]} and {member.org_id}"
                    )
                owners[domain] = member.org_id

    @property
    def previous_digest(self) -> str | None:
        return self.history[-1].digest if self.history else None

    @cached_property
    def _by_domain(self) -> dict[str, Member]:
        return {d: m for m in self.members for d in m.domains}

    def member(self, org_id: str) -> Member | None:
        return next((m for m in self.members if m.org_id == org_id), None)

    def owner_of(self, domain: str) -> Member | None:
        """The member that owns ``domain`` (exact match, case-insensitive), if any."""
        try:
            return self._by_domain.get(normalise_domain(domain))
        except ModelError:
            return None

    def encryption_certificate(self, domain: str, now: datetime) -> x509.Certificate | None:
        """The certificate to encrypt to for ``domain``: the published next one once valid
        (so receivers that rolled over get new mail under the new key), else the current.
        None for non-members, suspended members and expired certificates."""
        member = self.owner_of(domain)
        if member is None or not member.active:
            return None
        for cert in reversed(member.encryption.all()):
            if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return cert
        return None

    def may_sign_for(self, signer: x509.Certificate, from_domain: str) -> bool:
        """Whether ``signer`` is a signing certificate of the active member owning the domain."""
        member = self.owner_of(from_domain)
        return (
            member is not None
            and member.active
            and any(signer == cert for cert in member.signing.all())
        )

    def is_peer_tls(self, domain: str, cert: x509.Certificate) -> bool:
        """Whether a TLS server certificate matches a pin of the member owning ``domain``."""
        member = self.owner_of(domain)
        return member is not None and spki_pin(cert) in member.tls_pins

    def upstream_operator(self, pin: str) -> str | None:
        """The operator of an active member's upstream queue whose key is ``pin``: that queue
        forwards the member's mail to it, as a client of its peer listener."""
        for member in self.members:
            for queue in member.upstream if member.active else ():
                if pin in queue.tls_pins:
                    return queue.operator
        return None

    def is_stale(self, now: datetime) -> bool:
        return now > self.next_update

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "federation": self.federation,
            "serial": self.serial,
            "issued_at": _time_json(self.issued_at),
            "next_update": _time_json(self.next_update),
            "history": [{"serial": h.serial, "digest": h.digest} for h in self.history],
            "crls": [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in self.crls
            ],
            "members": [m.to_json() for m in sorted(self.members, key=lambda m: m.org_id)],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Directory:
        _keys(
            data,
            {
                "format",
                "federation",
                "serial",
                "issued_at",
                "next_update",
                "history",
                "crls",
                "members",
            },
            "directory",
        )
        if data["format"] != FORMAT:
            raise ModelError(f"format {data['format']!r} is not {FORMAT}")
        try:
            crls = tuple(
                x509.load_der_x509_crl(base64.b64decode(c, validate=True)) for c in data["crls"]
            )
        except ValueError as exc:
            raise ModelError(f"CRL: {exc}") from None
        return cls(
            federation=data["federation"],
            serial=_int(data["serial"]),
            issued_at=_time(data["issued_at"]),
            next_update=_time(data["next_update"]),
            members=tuple(Member.from_json(m) for m in data["members"]),
            crls=crls,
            history=tuple(
                HistoryEntry(_int(h["serial"]), str(h["digest"])) for h in data["history"]
            ),
        )


def _keys(data: Any, expected: set[str], what: str) -> None:
    if not isinstance(data, dict):
        raise ModelError(f"{what} must be an object")
    if set(data) != expected:
        extra, missing = set(data) - expected, expected - set(data)
        raise ModelError(f"{what}: unknown fields {sorted(extra)}, missing {sorted(missing)}")


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"expected an integer, got {value!r}")
    return value


def _time_json(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any) -> datetime:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ModelError(f"time must be YYYY-MM-DDTHH:MM:SSZ, got {value!r}") from None


def _date_json(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date(value: Any) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ModelError(f"date must be YYYY-MM-DD, got {value!r}") from None
