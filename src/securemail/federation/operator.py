"""The federation operator's operations: found, admit, change, revoke and publish.

Theory of operation. The pure functions (:func:`admit`, :func:`update`, :func:`set_status`,
:func:`build_version`, and :func:`~securemail.federation.issuing.revocation_list` and
:func:`~securemail.federation.node.node_files` beside them) take values and return values;
the functions that take a :class:`~securemail.federation.store.Store` read what they need,
call them, and write the result under the store's lock. Nothing is written until every
check has passed. Members are validated by the directory model itself, so a record the
operator can save is one the directory can carry; :func:`build_version` then verifies its
own signed output as a gateway would before anything is published.

Security: certificate requests come from members and are untrusted; they are checked, and
certificates issued, by :mod:`~securemail.federation.issuing`. Keys made for a member are
written only to the member's node directory (:mod:`~securemail.federation.node`), and
never kept by the federation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from securemail.directory import (
    Accepted,
    Contact,
    Directory,
    DirectoryError,
    Endpoint,
    KeyPair,
    Member,
    ModelError,
    UpstreamQueue,
    check_succession,
    digest,
    next_version,
    parse,
    sign_document,
    spki_pin,
    verify_document,
)
from securemail.federation import FederationError, FederationReason
from securemail.federation.issuing import (
    CRL_DAYS,
    issue_smime,
    issue_tls,
    member_key,
    next_revocation_list,
    requested_key,
)
from securemail.federation.node import NodeTarget, write_node
from securemail.federation.store import Revocation, Store, serial_hex
from securemail.pki.authority import Issued, issue, make_root_ca
from securemail.smime import SignerIdentity, keys, oids

# What a SecureMail gateway does; an operator admitting another vendor's gateway lists what
# that gateway does instead (without sealed-for if it cannot sign sealedFor, profile §2.1).
DEFAULT_CAPABILITIES = ("aes256-gcm", "aes256-cbc", "rsa-oaep", "sealed-for")
MAX_NAME = 64  # ub-organization-name (RFC 5280): the name goes into certificate subjects
ROOT = "ca/root"
OPERATOR = "operator/directory-signer"


@dataclass(frozen=True)
class Application:
    """What a new member asks for; without a CSR the federation makes that key."""

    org_id: str
    name: str
    domains: tuple[str, ...]
    endpoints: tuple[str, ...]
    region: str
    contact_email: str
    contact_phone: str
    roles: tuple[str, ...]
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    csr: bytes | None = None
    tls_csr: bytes | None = None


@dataclass(frozen=True)
class Admission:
    """A new member's record, its TLS certificate, and the keys made here (by use)."""

    member: Member
    tls_certificate: x509.Certificate
    generated: Mapping[str, keys.PrivateKey]


@dataclass(frozen=True)
class Changes:
    """What update-member changes; None or empty leaves a field as it is."""

    name: str | None = None
    domains: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    contact_email: str | None = None
    contact_phone: str | None = None
    capabilities: tuple[str, ...] = ()
    accredited_on: date | None = None
    conformance_tested: date | None = None
    next_signing_csr: bytes | None = None
    next_encryption_csr: bytes | None = None
    promote_next: bool = False
    upstream: tuple[str, ...] = ()  # HOST:PORT,PIN,OPERATOR each; replaces the list
    no_upstream: bool = False  # remove every upstream queue

    @property
    def issues(self) -> bool:
        return self.next_signing_csr is not None or self.next_encryption_csr is not None


@dataclass(frozen=True)
class Version:
    """A signed directory version, checked as a gateway would check it."""

    directory: Directory
    document: bytes
    signature: bytes

    @property
    def digest(self) -> str:
        return digest(self.document)


@contextmanager
def _model() -> Iterator[None]:
    try:
        yield
    except ModelError as exc:
        raise FederationError(FederationReason.MEMBER_INVALID, str(exc)) from None


def admit(
    application: Application, ca: Issued, members: Iterable[Member], now: datetime
) -> Admission:
    """Validate a new member against the model and the others, then issue its certificates."""
    _check_name(application.name)
    with _model():
        draft = Member(
            org_id=application.org_id,
            name=application.name,
            domains=application.domains,
            endpoints=tuple(Endpoint.parse(e) for e in application.endpoints),
            tls_pins=(),
            signing=KeyPair(ca.certificate),  # placeholders until the checks have passed
            encryption=KeyPair(ca.certificate),
            capabilities=application.capabilities,
            region=application.region,
            roles=application.roles,
            contact=Contact(application.contact_email, application.contact_phone),
        )
    if not draft.endpoints:
        raise FederationError(FederationReason.MEMBER_INVALID, "a member needs an endpoint")
    others = list(members)
    if any(m.org_id == draft.org_id for m in others):
        raise FederationError(FederationReason.MEMBER_EXISTS, f"{draft.org_id} is a member")
    _check_domains(draft, others)
    generated: dict[str, keys.PrivateKey] = {}
    signing = issue_smime(
        ca, draft, member_key(application.csr, "signing", generated), "signing", now
    )
    encryption = issue_smime(
        ca, draft, member_key(application.csr, "encryption", generated), "encryption", now
    )
    tls = issue_tls(ca, draft, member_key(application.tls_csr, "tls", generated), now)
    member = dataclasses.replace(
        draft, tls_pins=(spki_pin(tls),), signing=KeyPair(signing), encryption=KeyPair(encryption)
    )
    return Admission(member, tls, generated)


def update(
    member: Member, changes: Changes, others: Iterable[Member], ca: Issued | None, now: datetime
) -> tuple[Member, list[tuple[str, x509.Certificate]]]:
    """The member after ``changes``, and the certificates issued for it (by use)."""
    fields: dict[str, Any] = {
        "name": changes.name or member.name,
        "domains": changes.domains or member.domains,
        "endpoints": member.endpoints,
        "capabilities": changes.capabilities or member.capabilities,
        "accredited_on": changes.accredited_on or member.accredited_on,
        "last_conformance_test": changes.conformance_tested or member.last_conformance_test,
    }
    _check_name(fields["name"])
    with _model():
        if changes.endpoints:
            fields["endpoints"] = tuple(Endpoint.parse(e) for e in changes.endpoints)
        if changes.upstream or changes.no_upstream:
            fields["upstream"] = tuple(parse_upstream(u) for u in changes.upstream)
        fields["contact"] = Contact(
            changes.contact_email or member.contact.email,
            changes.contact_phone or member.contact.phone,
        )
        updated = dataclasses.replace(member, **fields)
    _check_domains(updated, others)
    if changes.promote_next:
        updated = _promote(updated)
    issued: list[tuple[str, x509.Certificate]] = []
    for use, csr in (
        ("signing", changes.next_signing_csr),
        ("encryption", changes.next_encryption_csr),
    ):
        if csr is None:
            continue
        if ca is None:
            raise ValueError("issuing a next certificate needs the CA")
        cert = issue_smime(ca, updated, requested_key(csr), use, now)
        pair: dict[str, Any] = {use: KeyPair(getattr(updated, use).current, cert)}
        updated = dataclasses.replace(updated, **pair)
        issued.append((use, cert))
    if updated == member:
        raise FederationError(FederationReason.NO_CHANGE, f"{member.org_id} is unchanged")
    return updated, issued


def parse_upstream(text: str) -> UpstreamQueue:
    """``HOST:PORT,PIN,OPERATOR`` (the operator's org id) as an upstream queue in NZ."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ModelError(f"upstream queue must be HOST:PORT,PIN,OPERATOR, got {text!r}")
    endpoint = Endpoint.parse(parts[0])
    return UpstreamQueue(endpoint.host, endpoint.port, (parts[1],), "NZ", parts[2])


def set_status(member: Member, status: str, revoked: set[int]) -> Member:
    """The member suspended or reinstated; reinstating needs unrevoked current certificates."""
    if member.status == status:
        raise FederationError(FederationReason.NO_CHANGE, f"{member.org_id} is already {status}")
    if status == "active":
        for cert in (member.signing.current, member.encryption.current):
            if cert.serial_number in revoked:
                raise FederationError(
                    FederationReason.CERTIFICATE_REVOKED,
                    f"{member.org_id}'s certificate {serial_hex(cert.serial_number)} is revoked;"
                    " issue new ones first (update-member --next-*-csr, then --promote-next)",
                )
    return dataclasses.replace(member, status=status)


def build_version(
    previous: bytes | None,
    *,
    federation: str,
    members: Iterable[Member],
    crl: x509.CertificateRevocationList,
    operator: SignerIdentity,
    anchor: x509.Certificate,
    now: datetime,
    validity: timedelta,
) -> Version:
    """Sign the version after ``previous`` and check it exactly as a gateway would."""
    try:
        last = None if previous is None else parse(previous)
    except DirectoryError as error:
        raise FederationError(FederationReason.STORE_CORRUPT, str(error)) from None
    last_digest = None if previous is None else digest(previous)
    with _model():
        directory = next_version(
            last,
            last_digest,
            federation=federation,
            members=tuple(members),
            crls=(crl,),
            now=now,
            validity=validity,
        )
    document, signature = sign_document(directory, operator, now=now)
    accepted = None if last is None or last_digest is None else Accepted(last.serial, last_digest)
    try:
        verify_document(document, signature, anchors=[anchor], now=now, federation=federation)
        check_succession(accepted, directory, digest(document))
    except DirectoryError as error:
        raise FederationError(FederationReason.SELF_CHECK_FAILED, str(error)) from None
    return Version(directory, document, signature)


def check_members(members: Iterable[Member], revoked: set[int], now: datetime) -> list[str]:
    """Warnings about active members whose current certificates gateways will refuse."""
    warnings = []
    for member in (m for m in members if m.active):
        for use, cert in (
            ("signing", member.signing.current),
            ("encryption", member.encryption.current),
        ):
            if cert.serial_number in revoked:
                warnings.append(f"{member.org_id}: {use} certificate is revoked")
            elif cert.not_valid_after_utc < now + timedelta(days=30):
                expiry = cert.not_valid_after_utc.date().isoformat()
                warnings.append(f"{member.org_id}: {use} certificate expires {expiry}")
    return warnings


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise FederationError(
            FederationReason.MEMBER_INVALID, f"name over {MAX_NAME} characters (a subject field)"
        )


def _check_domains(member: Member, others: Iterable[Member]) -> None:
    for other in others:
        if other.org_id == member.org_id:
            continue
        for domain in member.domains:
            if domain in other.domains:
                raise FederationError(
                    FederationReason.DOMAIN_CONFLICT, f"{domain} belongs to {other.org_id}"
                )


def _promote(member: Member) -> Member:
    if member.signing.next is None and member.encryption.next is None:
        raise FederationError(
            FederationReason.NO_NEXT_CERTIFICATE, f"{member.org_id} has no next certificate"
        )
    signing, encryption = (
        pair if pair.next is None else KeyPair(pair.next)
        for pair in (member.signing, member.encryption)
    )
    return dataclasses.replace(member, signing=signing, encryption=encryption)


def init_federation(
    root: Path, name: str, passphrase: bytes, now: datetime, validity: timedelta
) -> Version:
    """Found a federation in ``root``: root CA, operator identity, version 1 (no members)."""
    staging = Store.stage(root)
    try:
        ca = make_root_ca(name, now=now, key_type="rsa3072")
        operator = issue(
            ca,
            "SecureMail directory signing",
            now=now,
            organisation=name,
            usage="signing",
            extended_key_usage=(x509.ObjectIdentifier(oids.EKU_DIRECTORY_SIGNING),),
        )
        staging.write_federation(name, now)
        staging.write_identity(ROOT, ca, passphrase)
        staging.write_identity(OPERATOR, operator, passphrase)
        staging.record_issued(operator.certificate, None, "directory-signing")
        staging.write_revocations([])
        version = _publish(staging, ca, operator, now, validity)
        staging.journal(now, "init", name=name)
        staging.move_to(root)
    except BaseException:
        staging.discard()
        raise
    return version


def add_member(
    store: Store,
    application: Application,
    passphrase: bytes,
    now: datetime,
    node: NodeTarget | None,
) -> Admission:
    """Admit a member: record it and its certificates, and write its node directory."""
    store.require()
    with store.lock():
        admission = admit(application, store.read_identity(ROOT, passphrase), store.members(), now)
        if admission.generated and node is None:
            raise ValueError("keys were generated: a node directory must receive them")
        if node is not None:
            write_node(store, admission, node)
        member = admission.member
        uses = (
            ("signing", member.signing.current),
            ("encryption", member.encryption.current),
            ("tls", admission.tls_certificate),
        )
        for use, cert in uses:
            store.record_issued(cert, member.org_id, use)
        store.write_member(member)
        store.journal(now, "add-member", org_id=member.org_id, serials=_serials(uses))
    return admission


def update_member(
    store: Store, org_id: str, changes: Changes, passphrase: bytes | None, now: datetime
) -> Member:
    """Change a member's record; issue next certificates for its new keys."""
    store.require()
    with store.lock():
        member = store.member(org_id)
        ca = None if passphrase is None else store.read_identity(ROOT, passphrase)
        updated, issued = update(member, changes, store.members(), ca, now)
        for use, cert in issued:
            store.record_issued(cert, org_id, use)
        store.write_member(updated)
        changed = [
            f.name
            for f in dataclasses.fields(Member)
            if getattr(updated, f.name) != getattr(member, f.name)
        ]
        store.journal(
            now, "update-member", org_id=org_id, changed=changed, serials=_serials(issued)
        )
    return updated


def change_status(store: Store, org_id: str, status: str, reason: str, now: datetime) -> Member:
    """Suspend or reinstate a member."""
    store.require()
    with store.lock():
        revoked = {r.serial for r in store.revocations()}
        member = set_status(store.member(org_id), status, revoked)
        store.write_member(member)
        store.journal(now, f"status-{status}", org_id=org_id, reason=reason)
    return member


def revoke(
    store: Store,
    *,
    org_id: str | None,
    serial: int | None,
    reason: str,
    passphrase: bytes,
    now: datetime,
) -> list[Revocation]:
    """Revoke one certificate, or all of a member's (and suspend it); re-issue the CRL."""
    store.require()
    with store.lock():
        revocations = store.revocations()
        owner, serials, member = _to_revoke(store, org_id, serial, {r.serial for r in revocations})
        added = [Revocation(s, owner, now, reason) for s in serials]
        ca = store.read_identity(ROOT, passphrase)
        store.write_crl(next_revocation_list(store, ca, revocations + added, now, CRL_DAYS))
        store.write_revocations(revocations + added)
        if member is not None and member.active:
            store.write_member(dataclasses.replace(member, status="suspended"))
        hexes = [serial_hex(s) for s in serials]
        store.journal(now, "revoke", org_id=owner, serials=hexes, reason=reason)
    return added


def _to_revoke(
    store: Store, org_id: str | None, serial: int | None, done: set[int]
) -> tuple[str | None, list[int], Member | None]:
    """(owner, serials to revoke, member to suspend) for ``revoke --org-id`` or ``--serial``."""
    if org_id is not None:
        member = store.member(org_id)
        serials = [
            i.certificate.serial_number
            for i in store.issued()
            if i.org_id == org_id and i.certificate.serial_number not in done
        ]
        if not serials and not member.active:
            raise FederationError(FederationReason.ALREADY_REVOKED, f"all of {org_id}'s")
        return org_id, serials, member
    if serial is None:
        raise ValueError("give an org id or a serial")
    found = store.issued_certificate(serial)
    if found is None:
        raise FederationError(FederationReason.UNKNOWN_SERIAL, f"{serial_hex(serial)} not issued")
    if serial in done:
        raise FederationError(FederationReason.ALREADY_REVOKED, serial_hex(serial))
    return found.org_id, [serial], None


def publish(
    store: Store, passphrase: bytes, now: datetime, validity: timedelta
) -> tuple[Version, list[str]]:
    """Sign and publish the next version; return it and warnings about its members."""
    store.require()
    with store.lock():
        ca = store.read_identity(ROOT, passphrase)
        operator = store.read_identity(OPERATOR, passphrase)
        version = _publish(store, ca, operator, now, validity)
        store.journal(now, "publish", serial=version.directory.serial, digest=version.digest)
    revoked = {r.serial for r in store.revocations()}
    return version, check_members(version.directory.members, revoked, now)


def _publish(
    store: Store, ca: Issued, operator: Issued, now: datetime, validity: timedelta
) -> Version:
    """Re-issue the CRL (valid at least as long as the version) and publish with it."""
    days = max(CRL_DAYS, validity.days)
    crl = next_revocation_list(store, ca, store.revocations(), now, days)
    latest = store.latest()
    version = build_version(
        None if latest is None else latest[0],
        federation=store.federation_name(),
        members=store.members(),
        crl=crl,
        operator=SignerIdentity(operator.certificate, operator.private_key),
        anchor=ca.certificate,
        now=now,
        validity=validity,
    )
    store.write_crl(crl)
    store.publish(version.directory.serial, version.document, version.signature)
    return version


def _serials(issued: Iterable[tuple[str, x509.Certificate]]) -> list[str]:
    return [serial_hex(cert.serial_number) for _, cert in issued]
