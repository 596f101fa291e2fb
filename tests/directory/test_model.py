"""The directory's rules and the look-ups a gateway makes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from securemail.directory import (
    Contact,
    Directory,
    Endpoint,
    KeyPair,
    Member,
    ModelError,
    UpstreamQueue,
    spki_pin,
)
from securemail.directory.model import certificate_pin
from securemail.pki.authority import issue
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, member_of


def test_owner_lookup_is_exact_and_case_insensitive(first: Directory) -> None:
    """Domains match exactly, whatever their case; sub-domains are not owned implicitly."""
    owner = first.owner_of("Ministry.GOVT.nz")
    assert owner is not None and owner.org_id == "ministry"
    assert first.owner_of("sub.ministry.govt.nz") is None
    assert first.owner_of("example.com") is None
    assert first.owner_of("not a domain") is None


def test_domain_claimed_by_two_members_refused(pki: Pki) -> None:
    """A document in which two members claim one domain is refused as a whole."""
    agency = member_of(pki.agency, "agency")
    thief = dataclasses.replace(
        member_of(pki.ministry, "ministry"), domains=("ministry.govt.nz", "agency.govt.nz")
    )
    with pytest.raises(ModelError, match=r"agency.govt.nz is claimed by both agency and ministry"):
        Directory(FEDERATION, 1, NOW, NOW + timedelta(days=7), (agency, thief))


def test_signer_may_sign_only_for_its_own_domains(pki: Pki, first: Directory) -> None:
    """The agency's certificate signs for agency.govt.nz, not for ministry.govt.nz."""
    assert first.may_sign_for(pki.agency.certificate, "agency.govt.nz")
    assert not first.may_sign_for(pki.agency.certificate, "ministry.govt.nz")
    assert not first.may_sign_for(pki.agency.certificate, "unknown.govt.nz")


def test_suspended_member_gets_no_mail_and_signs_nothing(pki: Pki) -> None:
    """A suspended member has no encryption certificate and its signatures are not accepted."""
    suspended = member_of(pki.agency, "agency", status="suspended")
    directory = Directory(FEDERATION, 1, NOW, NOW + timedelta(days=7), (suspended,))
    assert directory.encryption_certificate("agency.govt.nz", NOW) is None
    assert not directory.may_sign_for(pki.agency.certificate, "agency.govt.nz")


def test_next_encryption_certificate_is_used_once_published(pki: Pki) -> None:
    """During rollover senders encrypt to the published next certificate once it is valid."""
    later = issue(pki.ca, "next", now=NOW + timedelta(days=1), domains=["agency.govt.nz"])
    member = dataclasses.replace(
        member_of(pki.agency, "agency"),
        encryption=KeyPair(pki.agency.certificate, later.certificate),
    )
    directory = Directory(FEDERATION, 1, NOW, NOW + timedelta(days=7), (member,))
    assert directory.encryption_certificate("agency.govt.nz", NOW) == pki.agency.certificate
    in_two_days = NOW + timedelta(days=2)
    assert directory.encryption_certificate("agency.govt.nz", in_two_days) == later.certificate


def test_tls_pin_identifies_the_peer(pki: Pki, first: Directory) -> None:
    """Only the pinned key is the ministry's TLS certificate."""
    assert first.is_peer_tls("ministry.govt.nz", pki.ministry.certificate)
    assert not first.is_peer_tls("ministry.govt.nz", pki.agency.certificate)


def test_certificate_pin_is_the_spki_pin_of_the_der(pki: Pki) -> None:
    """The pin of a DER certificate, asked twice, is its key's pin; DER that is no
    certificate is refused every time it is asked."""
    for cert in (pki.agency.certificate, pki.ministry.certificate, pki.agency.certificate):
        assert certificate_pin(cert.public_bytes(serialization.Encoding.DER)) == spki_pin(cert)
    for _ in range(2):
        with pytest.raises(ValueError):
            certificate_pin(b"0 not a certificate")


@pytest.mark.parametrize(
    ("email", "phone"),
    [
        ("jane.smith@agency.govt.nz", "+64 4 000 0000"),
        ("securemail@agency.govt.nz", "04 000 0000"),
        ("securemail", "+64 4 000 0000"),
    ],
)
def test_contact_must_be_a_role_not_a_person(email: str, phone: str) -> None:
    """Personal addresses and local phone formats are refused (no PII in the directory)."""
    with pytest.raises(ModelError):
        Contact(email, phone)


def test_region_and_roles_required(pki: Pki) -> None:
    """A member without a region, or with an unknown role, is refused."""
    member = member_of(pki.agency, "agency")
    with pytest.raises(ModelError, match="region"):
        dataclasses.replace(member, region="")
    with pytest.raises(ModelError, match="roles"):
        dataclasses.replace(member, roles=("relay",))


def test_json_round_trip_and_unknown_fields(first: Directory) -> None:
    """to_json/from_json round-trip; an unknown field is refused, not ignored."""
    data = first.to_json()
    assert Directory.from_json(data) == first
    data["members"][0]["extra"] = "x"
    with pytest.raises(ModelError, match="unknown fields"):
        Directory.from_json(data)


def test_endpoint_parsing() -> None:
    """HOST:PORT and HOST parse; a bad port is refused."""
    assert Endpoint.parse("mx.agency.govt.nz:2525") == Endpoint("mx.agency.govt.nz", 2525)
    assert Endpoint.parse("mx.agency.govt.nz") == Endpoint("mx.agency.govt.nz", 25)
    with pytest.raises(ModelError):
        Endpoint.parse("mx.agency.govt.nz:http")


def test_upstream_queues_round_trip_after_the_endpoints(pki: Pki) -> None:
    """A member's upstream queues survive JSON, in order; a member without any writes no
    field, so documents made before upstream queues existed read and digest as before."""
    queues = (
        UpstreamQueue("queue.gsp.co.nz", 2525, ("sha256:" + "B" * 43 + "=",), "NZ", "gsp"),
        UpstreamQueue("10.0.0.9", 25, ("sha256:" + "C" * 43 + "=",), "NZ", "federation"),
    )
    member = dataclasses.replace(member_of(pki.agency, "agency"), upstream=queues)
    assert Member.from_json(member.to_json()) == member
    plain = member_of(pki.ministry, "ministry")
    assert "upstream_queues" not in plain.to_json()
    assert Member.from_json(plain.to_json()) == plain


@pytest.mark.parametrize(
    ("region", "pins", "operator", "message"),
    [
        ("AU", ("sha256:x",), "gsp", "region must be NZ"),
        ("NZ", (), "gsp", "tls_pins"),
        ("NZ", ("md5:x",), "gsp", "tls_pins"),
        ("NZ", ("sha256:x",), "Not An Id", "operator"),
    ],
)
def test_upstream_queue_rules(
    region: str, pins: tuple[str, ...], operator: str, message: str
) -> None:
    """An upstream queue is in NZ, has sha256 pins of its own and names its operator."""
    with pytest.raises(ModelError, match=message):
        UpstreamQueue("queue.gsp.co.nz", 25, pins, region, operator)


def test_upstream_operator_known_by_the_queue_pin_of_active_members_only(pki: Pki) -> None:
    """The peer listener lets in an upstream queue by its pin, naming its operator, while
    the member it queues for is active."""
    pin = "sha256:" + "D" * 43 + "="
    queue = UpstreamQueue("queue.gsp.co.nz", 25, (pin,), "NZ", "gsp")
    agency = dataclasses.replace(member_of(pki.agency, "agency"), upstream=(queue,))
    active = Directory(FEDERATION, 1, NOW, NOW + timedelta(days=1), (agency,))
    assert active.upstream_operator(pin) == "gsp"
    assert active.upstream_operator(spki_pin(pki.agency.certificate)) is None
    suspended = dataclasses.replace(agency, status="suspended")
    assert Directory(FEDERATION, 1, NOW, NOW, (suspended,)).upstream_operator(pin) is None
