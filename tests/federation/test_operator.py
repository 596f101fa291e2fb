"""The operator's pure operations: admission, CSR checks, updates, rollover, CRLs, versions."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securemail.config.node import parse_config
from securemail.directory import Accepted, Member, check_succession, digest, spki_pin
from securemail.federation import FederationError, FederationReason
from securemail.federation.issuing import requested_key, revocation_list
from securemail.federation.node import node_files
from securemail.federation.operator import (
    Admission,
    Application,
    Changes,
    admit,
    build_version,
    check_members,
    set_status,
    update,
)
from securemail.federation.store import Revocation
from securemail.pki.authority import Issued, issue
from securemail.smime import SignerIdentity, oids
from tests.conftest import NOW, Pki
from tests.directory.conftest import member_of

FEDERATION = "SecureMail Test Federation"
APPLICATION = Application(
    org_id="health",
    name="Test Health Board",
    domains=("health.govt.nz", "Health.example.nz"),
    endpoints=("mx1.health.govt.nz:25", "mx2.health.govt.nz:2525"),
    region="NZ",
    contact_email="securemail@health.govt.nz",
    contact_phone="+64 4 000 0000",
    roles=("gateway",),
)

CsrKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def make_csr(key: CsrKey, *, tamper: bool = False) -> bytes:
    """A DER CSR signed by ``key``; with ``tamper``, its signature's last byte is flipped."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever the member asks")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)
    der = csr.public_bytes(serialization.Encoding.DER)
    return der[:-1] + bytes([der[-1] ^ 1]) if tamper else der


@pytest.fixture(scope="module")
def member_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def admitted(pki: Pki, member_key: ec.EllipticCurvePrivateKey) -> Admission:
    """A member admitted from CSRs (the same P-256 key for S/MIME and TLS, to keep it cheap)."""
    csr = make_csr(member_key)
    application = dataclasses.replace(APPLICATION, csr=csr, tls_csr=csr)
    return admit(application, pki.ca, [member_of(pki.agency, "agency")], NOW)


@pytest.fixture(scope="module")
def operator_identity(pki: Pki) -> Issued:
    return issue(
        pki.ca,
        "SecureMail directory signing",
        now=NOW,
        usage="signing",
        extended_key_usage=(x509.ObjectIdentifier(oids.EKU_DIRECTORY_SIGNING),),
    )


T = TypeVar("T", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[T]) -> T:
    return cert.extensions.get_extension_for_class(kind).value


def test_admission_from_csr_certifies_the_members_key(
    admitted: Admission, member_key: ec.EllipticCurvePrivateKey, pki: Pki
) -> None:
    """From a CSR, the S/MIME and TLS certificates carry the member's key; no key is made."""
    member = admitted.member
    assert admitted.generated == {}
    for cert in (member.signing.current, member.encryption.current, admitted.tls_certificate):
        assert cert.public_key() == member_key.public_key()
        assert cert.issuer == pki.ca.certificate.subject
    assert member.tls_pins == (spki_pin(admitted.tls_certificate),)
    assert member.domains == ("health.govt.nz", "health.example.nz")


def test_admission_certificate_profiles(admitted: Admission) -> None:
    """Signing: digitalSignature; encryption: keyAgreement (EC); TLS: serverAuth and
    clientAuth (mutual TLS between gateways) and the hosts."""
    member = admitted.member
    signing, encryption = member.signing.current, member.encryption.current
    assert _ext(signing, x509.KeyUsage).digital_signature
    assert not _ext(signing, x509.KeyUsage).key_agreement
    assert _ext(encryption, x509.KeyUsage).key_agreement
    assert not _ext(encryption, x509.KeyUsage).digital_signature
    for cert in (signing, encryption):
        assert list(_ext(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        san = _ext(cert, x509.SubjectAlternativeName)
        assert san.get_values_for_type(x509.DNSName) == list(member.domains)
        assert san.get_values_for_type(x509.RFC822Name) == ["gateway@health.govt.nz"]
    tls = admitted.tls_certificate
    assert list(_ext(tls, x509.ExtendedKeyUsage)) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    names = _ext(tls, x509.SubjectAlternativeName).get_values_for_type(x509.DNSName)
    assert names == ["mx1.health.govt.nz", "mx2.health.govt.nz"]


def test_admission_without_csr_makes_separate_keys(pki: Pki) -> None:
    """Without CSRs, signing, encryption and TLS keys are made, each matching its certificate."""
    admission = admit(APPLICATION, pki.ca, [], NOW)
    member, made = admission.member, admission.generated
    assert set(made) == {"signing", "encryption", "tls"}
    assert made["signing"].public_key() == member.signing.current.public_key()
    assert made["encryption"].public_key() == member.encryption.current.public_key()
    assert made["tls"].public_key() == admission.tls_certificate.public_key()
    assert made["signing"].public_key() != made["encryption"].public_key()


def test_domain_owned_by_another_member_refused(pki: Pki) -> None:
    """A domain another member already owns is refused as a domain conflict naming the owner."""
    application = dataclasses.replace(APPLICATION, domains=("health.govt.nz", "AGENCY.govt.nz"))
    with pytest.raises(FederationError) as refused:
        admit(application, pki.ca, [member_of(pki.agency, "agency")], NOW)
    assert refused.value.reason is FederationReason.DOMAIN_CONFLICT
    assert "agency.govt.nz belongs to agency" in refused.value.detail


def test_existing_org_id_refused(pki: Pki) -> None:
    """A second member with an org id already in use is refused."""
    application = dataclasses.replace(APPLICATION, org_id="agency")
    with pytest.raises(FederationError) as refused:
        admit(application, pki.ca, [member_of(pki.agency, "agency")], NOW)
    assert refused.value.reason is FederationReason.MEMBER_EXISTS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contact_email": "jane.doe@health.govt.nz"}, "must be a role address"),
        ({"region": ""}, "region is required"),
        ({"region": "New Zealand"}, "region is required"),
        ({"endpoints": ("mx.health.govt.nz:99999",)}, "HOST:PORT"),
        ({"endpoints": ()}, "needs an endpoint"),
        ({"org_id": "Health Board"}, "lower-case"),
        ({"capabilities": ("des-cbc",)}, "unknown capabilities"),
        ({"name": "N" * 65}, "over 64 characters"),
    ],
)
def test_invalid_application_refused_by_the_model(
    pki: Pki, change: dict[str, object], message: str
) -> None:
    """Applications the directory model would not carry are refused, saying which rule."""
    with pytest.raises(FederationError) as refused:
        admit(dataclasses.replace(APPLICATION, **change), pki.ca, [], NOW)  # type: ignore[arg-type]
    assert refused.value.reason is FederationReason.MEMBER_INVALID
    assert message in refused.value.detail


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda: make_csr(rsa.generate_private_key(65537, 1024)),  # noqa: S505 - the point
            FederationReason.WEAK_KEY,
        ),
        (
            lambda: make_csr(ec.generate_private_key(ec.SECP256K1())),
            FederationReason.UNSUPPORTED_KEY,
        ),
        (lambda: make_csr(ed25519.Ed25519PrivateKey.generate()), FederationReason.UNSUPPORTED_KEY),
        (
            lambda: make_csr(ec.generate_private_key(ec.SECP384R1()), tamper=True),
            FederationReason.CSR_SIGNATURE_INVALID,
        ),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", FederationReason.CSR_MALFORMED),
    ],
    ids=["rsa-1024", "secp256k1", "ed25519", "bad-signature", "garbage"],
)
def test_unacceptable_csr_refused(make: Callable[[], bytes], reason: FederationReason) -> None:
    """Weak keys, other curves and algorithms, bad signatures and garbage are each refused."""
    with pytest.raises(FederationError) as refused:
        requested_key(make())
    assert refused.value.reason is reason


def test_csr_in_pem_accepted(member_key: ec.EllipticCurvePrivateKey) -> None:
    """A PEM CSR gives its public key, as a DER one does."""
    pem = x509.load_der_x509_csr(make_csr(member_key)).public_bytes(serialization.Encoding.PEM)
    assert requested_key(pem) == member_key.public_key()


def test_rollover_next_then_promote(pki: Pki, admitted: Admission) -> None:
    """A next encryption certificate is recorded beside the current one, then promoted over it."""
    new_key = ec.generate_private_key(ec.SECP384R1())
    member = admitted.member
    rolled, issued = update(
        member, Changes(next_encryption_csr=make_csr(new_key)), [member], pki.ca, NOW
    )
    assert [use for use, _ in issued] == ["encryption"]
    assert rolled.encryption.current == member.encryption.current
    assert rolled.encryption.next == issued[0][1]
    assert issued[0][1].public_key() == new_key.public_key()
    assert rolled.signing == member.signing
    promoted, _ = update(rolled, Changes(promote_next=True), [rolled], None, NOW)
    assert promoted.encryption.current == issued[0][1]
    assert promoted.encryption.next is None


def test_promote_without_next_refused(admitted: Admission) -> None:
    """Promoting when no next certificate was issued is refused."""
    with pytest.raises(FederationError) as refused:
        update(admitted.member, Changes(promote_next=True), [], None, NOW)
    assert refused.value.reason is FederationReason.NO_NEXT_CERTIFICATE


def test_update_fields_and_refusals(pki: Pki, admitted: Admission) -> None:
    """Dates and contact change; an unchanged record and another member's domain are refused."""
    member = admitted.member
    changed, issued = update(
        member,
        Changes(contact_phone="+64 9 111 1111", accredited_on=date(2026, 11, 1)),
        [],
        None,
        NOW,
    )
    assert issued == []
    assert changed.contact.phone == "+64 9 111 1111"
    assert changed.contact.email == member.contact.email
    assert changed.accredited_on == date(2026, 11, 1)
    with pytest.raises(FederationError) as same:
        update(member, Changes(name=member.name), [], None, NOW)
    assert same.value.reason is FederationReason.NO_CHANGE
    with pytest.raises(FederationError) as taken:
        update(
            member,
            Changes(domains=("agency.govt.nz",)),
            [member_of(pki.agency, "agency")],
            None,
            NOW,
        )
    assert taken.value.reason is FederationReason.DOMAIN_CONFLICT


def test_reinstating_a_member_with_revoked_certificates_refused(admitted: Admission) -> None:
    """A suspended member whose current certificate is revoked cannot be made active."""
    member = set_status(admitted.member, "suspended", set())
    with pytest.raises(FederationError) as twice:
        set_status(member, "suspended", set())
    assert twice.value.reason is FederationReason.NO_CHANGE
    revoked = {member.signing.current.serial_number}
    with pytest.raises(FederationError) as refused:
        set_status(member, "active", revoked)
    assert refused.value.reason is FederationReason.CERTIFICATE_REVOKED
    assert set_status(member, "active", set()).active


def test_revocation_list_carries_dates_reasons_and_number(pki: Pki) -> None:
    """Each entry keeps its date; key compromise is stated, unspecified left off (RFC 5280)."""
    revocations = [
        Revocation(0x1234, "agency", NOW - timedelta(days=1), "key-compromise"),
        Revocation(0x5678, None, NOW, "unspecified"),
    ]
    crl = revocation_list(pki.ca, revocations, number=7, now=NOW)
    assert crl.is_signature_valid(pki.ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.next_update_utc == NOW + timedelta(days=7)
    compromised = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert compromised is not None
    assert compromised.revocation_date_utc == NOW - timedelta(days=1)
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    plain = crl.get_revoked_certificate_by_serial_number(0x5678)
    assert plain is not None
    assert len(plain.extensions) == 0


def _version(
    pki: Pki,
    operator: Issued,
    previous: bytes | None,
    members: list[Member],
    revoked: list[Revocation],
) -> bytes:
    return build_version(
        previous,
        federation=FEDERATION,
        members=members,
        crl=revocation_list(pki.ca, revoked, number=1, now=NOW),
        operator=SignerIdentity(operator.certificate, operator.private_key),
        anchor=pki.ca.certificate,
        now=NOW,
        validity=timedelta(days=7),
    ).document


def test_versions_chain(pki: Pki, operator_identity: Issued) -> None:
    """Each built version names its predecessor's digest, so gateways accept the succession."""
    first = _version(pki, operator_identity, None, [], [])
    second = build_version(
        first,
        federation=FEDERATION,
        members=[member_of(pki.agency, "agency")],
        crl=revocation_list(pki.ca, [], number=2, now=NOW),
        operator=SignerIdentity(operator_identity.certificate, operator_identity.private_key),
        anchor=pki.ca.certificate,
        now=NOW,
        validity=timedelta(days=7),
    )
    assert second.directory.serial == 2
    assert second.directory.previous_digest == digest(first)
    assert check_succession(Accepted(1, digest(first)), second.directory, second.digest)


def test_version_signed_by_a_revoked_operator_is_not_published(
    pki: Pki, operator_identity: Issued
) -> None:
    """The self-check refuses a version whose own CRL revokes the signer, as gateways would."""
    serial = operator_identity.certificate.serial_number
    revoked = [Revocation(serial, None, NOW - timedelta(minutes=1), "superseded")]
    with pytest.raises(FederationError) as refused:
        _version(pki, operator_identity, None, [], revoked)
    assert refused.value.reason is FederationReason.SELF_CHECK_FAILED
    assert "directory-untrusted-signer" in refused.value.detail


def test_member_warnings(admitted: Admission) -> None:
    """Active members with a revoked or soon-expiring current certificate are pointed out."""
    member = admitted.member
    revoked = {member.signing.current.serial_number}
    assert check_members([member], revoked, NOW) == ["health: signing certificate is revoked"]
    late = NOW + timedelta(days=710)
    assert check_members([member], set(), late) == [
        f"health: {use} certificate expires {member.signing.current.not_valid_after_utc.date()}"
        for use in ("signing", "encryption")
    ]
    assert check_members([dataclasses.replace(member, status="suspended")], revoked, NOW) == []


def test_node_files(pki: Pki, admitted: Admission, tmp_path: Path) -> None:
    """node.toml is a valid node configuration (odd names too) with paths relative to it."""
    member = dataclasses.replace(admitted.member, name='The "Quoted" \\ Board')
    files = node_files(
        dataclasses.replace(admitted, member=member),
        federation="Test\tFederation",
        anchor=pki.ca.certificate,
        directory=tmp_path / "FED" / "directory.json",
        passphrase=b"unused: no key was made here",
    )
    assert not any(name.startswith("keys/") for name in files)
    config = parse_config(tomllib.loads(files["node.toml"].decode()), tmp_path)
    [org] = config.organisations
    assert (org.org_id, org.domains) == ("health", ("health.govt.nz", "health.example.nz"))
    assert org.keys == tmp_path.resolve()
    assert config.federation == "Test\tFederation"
    assert config.directory == str((tmp_path / "FED" / "directory.json").resolve())
    assert config.peer.port == member.endpoints[0].port
    relative = {
        "certs/tls.pem": config.tls_certificate,
        "certs/federation-ca.pem": config.anchor,
    }
    for name, path in relative.items():
        assert path == tmp_path.resolve() / name
        assert name in files
    assert files["certs/signing.pem"] == member.signing.current.public_bytes(
        serialization.Encoding.PEM
    )
    assert files["certs/federation-ca.pem"] == pki.ca.certificate_pem()
