"""Envelope address checks: only plain dot-atom@domain mailboxes pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securemail.receive.envelope import check_envelope_address, domain_of

PLAIN = [
    "bob@agency.govt.nz",
    "first.last+tag@agency.govt.nz",
    "o'brien@council.govt.nz",
    "x@a-b.example",
]

TRICKS = {
    "@a,@b:u@c.example": "source route",
    "@b:u@c.example": "source route",
    "u%c.example@agency.govt.nz": "percent hack",
    "c.example!u@agency.govt.nz": "bang path",
    '"u@c.example"@agency.govt.nz': "quoted local part",
    "u\\@c@agency.govt.nz": "quoted local part",
    "u@[192.0.2.1]": "address literal",
    "u@c.example@agency.govt.nz": "several @ signs",
}

MALFORMED = [
    "bob",
    "bob@localhost",
    "bob@-agency.govt.nz",
    ".bob@agency.govt.nz",
    "bob..x@agency.govt.nz",
    "bob @agency.govt.nz",
    "a" * 65 + "@agency.govt.nz",
    "bob@" + "a" * 250 + ".nz",
    "",
]


@pytest.mark.parametrize("address", PLAIN)
def test_plain_mailboxes_pass(address: str) -> None:
    """Ordinary mailboxes are taken."""
    assert check_envelope_address(address) is None


@pytest.mark.parametrize("address", TRICKS, ids=TRICKS.values())
def test_routing_tricks_are_relay_refusals(address: str) -> None:
    """Each way of naming another host in the path is refused 550 5.7.1 with its name logged."""
    reply = check_envelope_address(address)
    assert reply is not None
    assert (reply.code, reply.status, reply.reason) == (550, "5.7.1", "bad-address")
    assert reply.detail == TRICKS[address]


@pytest.mark.parametrize("address", MALFORMED)
def test_malformed_addresses_are_syntax_refusals(address: str) -> None:
    """Text that is not a mailbox, or is too long, is refused 553 5.1.3."""
    reply = check_envelope_address(address)
    assert reply is not None
    assert (reply.code, reply.status, reply.reason) == (553, "5.1.3", "bad-address")


def test_non_ascii_needs_smtputf8() -> None:
    """A UTF-8 address is refused 553 5.6.7: SMTPUTF8 is not offered (RFC 6531)."""
    reply = check_envelope_address("bøb@agency.govt.nz")
    assert reply is not None and (reply.code, reply.status) == (553, "5.6.7")


def test_domain_of_is_lower_case() -> None:
    """The domain used for policy look-ups is lower case."""
    assert domain_of("Bob@Agency.GOVT.nz") == "agency.govt.nz"


@given(st.text(max_size=80))
def test_any_accepted_address_names_no_other_host(text: str) -> None:
    """Whatever passes has exactly one @, no route, quote, literal, % or ! in it."""
    if check_envelope_address(text) is None:
        assert text.count("@") == 1
        assert not set(text) & set('%!"\\[]:,<> ')
        assert text.isascii()
