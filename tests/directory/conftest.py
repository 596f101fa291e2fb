"""A federation operator identity and a two-member directory, made for the tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography import x509

from securemail.directory import (
    Contact,
    Directory,
    Endpoint,
    KeyPair,
    Member,
    next_version,
    spki_pin,
)
from securemail.pki.authority import Issued, issue
from securemail.smime import SignerIdentity, oids
from tests.conftest import NOW, Org, Pki

FEDERATION = "SecureMail Test Federation"


@dataclass(frozen=True)
class Operator:
    issued: Issued

    @property
    def signer(self) -> SignerIdentity:
        return SignerIdentity(self.issued.certificate, self.issued.private_key)


@pytest.fixture(scope="session")
def operator(pki: Pki) -> Operator:
    """The federation operator's directory-signing identity, issued by the test root."""
    return Operator(
        issue(
            pki.ca,
            "SecureMail directory",
            now=NOW,
            usage="signing",
            extended_key_usage=(x509.ObjectIdentifier(oids.EKU_DIRECTORY_SIGNING),),
        )
    )


def member_of(org: Org, org_id: str, *, status: str = "active") -> Member:
    return Member(
        org_id=org_id,
        name=f"Test organisation {org_id}",
        domains=(org.domain,),
        endpoints=(Endpoint(f"mx.{org.domain}"),),
        tls_pins=(spki_pin(org.certificate),),
        signing=KeyPair(org.certificate),
        encryption=KeyPair(org.certificate),
        capabilities=("aes256-gcm", "rsa-oaep"),
        region="NZ",
        roles=("gateway",),
        contact=Contact(f"securemail@{org.domain}", "+64 4 000 0000"),
        status=status,
    )


@pytest.fixture(scope="session")
def first(pki: Pki) -> Directory:
    """Serial 1: the agency and the ministry."""
    return next_version(
        None,
        None,
        federation=FEDERATION,
        members=(member_of(pki.agency, "agency"), member_of(pki.ministry, "ministry")),
        crls=(pki.crl,),
        now=NOW,
    )
