"""The federation CA at work: check members' certificate requests, issue, and build the CRL.

Security: certificate requests come from members and are untrusted. A request contributes
its public key only (subject and names come from the federation's record); its signature
must verify (proof of possession) and its key must meet the profile (RSA >= 2048 bits,
P-256/384/521). A key made here for a member (no CSR given) is handed back to the caller,
never stored by this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from securemail.directory import Member
from securemail.federation import FederationError, FederationReason
from securemail.federation.store import Revocation, Store
from securemail.pki.authority import Issued, generate_key, issue_for_key
from securemail.smime import keys

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
CRL_DAYS = 7
# RFC 5280 §5.3.1 reason codes an operator may give; "unspecified" is left off the CRL entry
REVOCATION_REASONS: dict[str, x509.ReasonFlags | None] = {
    "unspecified": None,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
}


def requested_key(csr_data: bytes) -> PublicKey:
    """The public key of a CSR (PEM or DER) whose signature verifies and key is allowed."""
    try:
        if b"-----BEGIN" in csr_data:
            csr = x509.load_pem_x509_csr(csr_data)
        else:
            csr = x509.load_der_x509_csr(csr_data)
        key = csr.public_key()
    except UnsupportedAlgorithm as exc:
        raise FederationError(FederationReason.UNSUPPORTED_KEY, f"CSR key: {exc}") from None
    except ValueError as exc:
        raise FederationError(FederationReason.CSR_MALFORMED, f"CSR: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < keys.MIN_RSA_BITS:
            raise FederationError(
                FederationReason.WEAK_KEY,
                f"CSR has an RSA key of {key.key_size} bits; at least {keys.MIN_RSA_BITS}",
            )
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise FederationError(FederationReason.UNSUPPORTED_KEY, f"CSR key {type(key).__name__}")
    elif not isinstance(key.curve, keys.EC_CURVES):
        raise FederationError(
            FederationReason.UNSUPPORTED_KEY, f"CSR curve {key.curve.name}; P-256, P-384 or P-521"
        )
    if not csr.is_signature_valid:
        raise FederationError(FederationReason.CSR_SIGNATURE_INVALID, "the CSR signature is bad")
    return key


def member_key(csr: bytes | None, use: str, generated: dict[str, keys.PrivateKey]) -> PublicKey:
    """The key to certify for ``use``: the CSR's, or a new one made here into ``generated``."""
    if csr is not None:
        return requested_key(csr)
    generated[use] = generate_key()
    return generated[use].public_key()


def issue_smime(
    ca: Issued, member: Member, key: PublicKey, use: str, now: datetime
) -> x509.Certificate:
    """A member's S/MIME signing or encryption certificate for ``key``."""
    return issue_for_key(
        ca,
        member.org_id,
        key,
        now=now,
        organisation=member.name,
        domains=member.domains,
        emails=[f"gateway@{member.domains[0]}"],
        usage="signing" if use == "signing" else "encryption",
    )


def issue_tls(ca: Issued, member: Member, key: PublicKey, now: datetime) -> x509.Certificate:
    """A member's TLS certificate for ``key``, naming its endpoints' hosts: for its peer
    listener (serverAuth) and for its relay client, which peers ask for it (clientAuth:
    mutual TLS, only members get in)."""
    return issue_for_key(
        ca,
        member.org_id,
        key,
        now=now,
        organisation=member.name,
        domains=list(dict.fromkeys(e.host for e in member.endpoints)),
        usage="both",  # RSA: digitalSignature + keyEncipherment; EC: + keyAgreement
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    )


def revocation_list(
    ca: Issued,
    revocations: Iterable[Revocation],
    *,
    number: int,
    now: datetime,
    days: int = CRL_DAYS,
) -> x509.CertificateRevocationList:
    """The federation's CRL: every revocation with its date and reason (RFC 5280 §5)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    for revocation in revocations:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(revocation.serial)
            .revocation_date(revocation.revoked_at)
        )
        flag = REVOCATION_REASONS[revocation.reason]
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.private_key, hashes.SHA256())


def next_revocation_list(
    store: Store, ca: Issued, revocations: list[Revocation], now: datetime, days: int
) -> x509.CertificateRevocationList:
    """The next CRL: its number one above the current one's (RFC 5280 §5.2.3)."""
    current = store.crl()
    number = 0
    if current is not None:
        number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return revocation_list(ca, revocations, number=number + 1, now=now, days=days)
