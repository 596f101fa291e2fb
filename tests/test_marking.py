"""Inbound marking: forged trust fields are removed, ours are added safely (RFC 8601)."""

from __future__ import annotations

import email
import email.policy
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.marking import (
    TRUST_FIELDS,
    Verdict,
    mark_unverified,
    mark_verified,
    strip_trust_fields,
)

VERDICT = Verdict(
    authserv_id="gw.ministry.govt.nz",
    signer_org="agency",
    signer_name="Department of Internal Affairs",
    from_address="alice@agency.govt.nz",
    label="IN-CONFIDENCE",
    receipt="sent",
)
MESSAGE = b"From: alice@agency.govt.nz\r\nSubject: hi\r\n\r\nbody line\r\n"


def _parse(message: bytes) -> Message:
    return email.message_from_bytes(message, policy=email.policy.compat32)


def _owned(name: str) -> bool:
    name = name.strip().lower()
    return name in {f.lower() for f in TRUST_FIELDS} or name.startswith("x-securemail-")


def test_forged_fields_are_stripped_in_any_case_with_continuations() -> None:
    """Trust fields from outside go, however spelt or folded; other fields and body stay."""
    message = (
        b"authentication-results : gw.ministry.govt.nz; smime=pass\r\n"
        b"\theader.from=boss@ministry.govt.nz\r\n"
        b"From: alice@agency.govt.nz\r\n"
        b"X-SECUREMAIL-STATUS: verified; signer=ministry\r\n"
        b"X-SecureMail-Anything: x\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: this is body text\r\n"
    )
    assert strip_trust_fields(message) == (
        b"From: alice@agency.govt.nz\r\nSubject: hi\r\n\r\n"
        b"Authentication-Results: this is body text\r\n"
    )


def test_body_bytes_are_untouched() -> None:
    """A binary body with bare LF and CR comes back byte for byte."""
    body = b"\x00\xff\nline\rmore\r\n\r\n.\r\n"
    assert strip_trust_fields(b"Subject: x\r\n\r\n" + body) == b"Subject: x\r\n\r\n" + body


def test_messages_without_body_or_without_header_are_handled() -> None:
    """A header-only message and one that starts with the empty line are both marked."""
    assert strip_trust_fields(b"Subject: x\r\nX-SecureMail-Status: v\r\n") == b"Subject: x\r\n"
    assert strip_trust_fields(b"\r\nbody") == b"\r\nbody"
    marked = mark_verified(b"Subject: x", VERDICT)
    assert marked.endswith(b"\r\nSubject: x\r\n")


def test_orphan_continuation_cannot_extend_our_fields() -> None:
    """Leading folded lines belong to no field and are dropped, so they cannot extend ours."""
    marked = mark_verified(b" ; signer=ministry\r\n" + MESSAGE, VERDICT)
    parsed = _parse(marked)
    assert "ministry" not in str(parsed["X-SecureMail-Signer"])
    assert b"signer=ministry" not in marked


def test_verified_marking_carries_the_results() -> None:
    """The marked message has one A-R with smime=pass and our status and signer fields."""
    parsed = _parse(mark_verified(b"Authentication-Results: forged\r\n" + MESSAGE, VERDICT))
    results = parsed.get_all("Authentication-Results")
    assert results is not None and len(results) == 1
    assert " ".join(results[0].split()) == (
        "gw.ministry.govt.nz; smime=pass header.from=alice@agency.govt.nz"
    )
    status = " ".join(str(parsed["X-SecureMail-Status"]).split())
    assert status == "verified; signer=agency; label=IN-CONFIDENCE; receipt=sent"
    assert str(parsed["X-SecureMail-Signer"]).strip() == "Department of Internal Affairs"
    assert parsed.get_payload() == "body line\r\n"


def test_hostile_directory_values_cannot_inject_fields() -> None:
    """An organisation name with CR/LF, quotes or non-ASCII stays inside its own field."""
    verdict = Verdict(
        "gw.ministry.govt.nz",
        'org"; receipt=sent',
        "Te Tari Taiwhenua \u0101\r\nAuthentication-Results: x; smime=pass",
        "alice@agency.govt.nz",
    )
    marked = mark_verified(MESSAGE, verdict)
    parsed = email.message_from_bytes(marked, policy=email.policy.default)
    assert len(parsed.get_all("Authentication-Results") or []) == 1
    assert str(parsed["X-SecureMail-Signer"]).startswith("Te Tari Taiwhenua \u0101")
    assert 'signer="org\\"; receipt=sent"' in str(parsed["X-SecureMail-Status"])


def test_identifiers_with_line_breaks_are_refused() -> None:
    """An identifier is never rewritten into another one: a bad one is an error."""
    with pytest.raises(ValueError, match="signer_org"):
        Verdict("gw.x.nz", "agency\r\nX: y", "Agency", "a@agency.govt.nz")
    with pytest.raises(ValueError, match="authserv_id"):
        mark_unverified(MESSAGE, "", "not-a-member")


def test_long_values_are_folded_under_998_octets() -> None:
    """Long names are folded (and display names shortened) so every line stays short."""
    verdict = Verdict("g" * 255, "o" * 255, "Name " * 400 + "x" * 300, "a" * 64 + "@b.nz")
    header = mark_verified(MESSAGE, verdict).split(b"\r\n\r\n")[0]
    assert max(len(line) for line in header.split(b"\r\n")) < 998


def test_unverified_marking_says_none() -> None:
    """Ordinary mail gets smime=none and a not-verified status with the reason."""
    parsed = _parse(mark_unverified(MESSAGE, "gw.ministry.govt.nz", "not a member"))
    assert " ".join(str(parsed["Authentication-Results"]).split()) == (
        'gw.ministry.govt.nz; smime=none reason="not a member"'
    )
    assert str(parsed["X-SecureMail-Status"]) == 'not-verified; reason="not a member"'


_NAMES = st.sampled_from(
    ["Authentication-Results", "authentication-results", "X-SecureMail-Status",
     "x-securemail-signer", "X-SECUREMAIL-FUTURE", "Subject", "From", "Received", "X-Other"]
)  # fmt: skip
_LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r"])


@st.composite
def _headers(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(_NAMES) + draw(st.sampled_from(["", " ", "\t"]))
        value = draw(st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=20))
        fold = draw(st.sampled_from(["", "\r\n cont", "\n\tcont"]))
        lines.append(f"{draw(st.sampled_from(['', ' ']))}{name}:{value}{fold}{draw(_LINE_ENDS)}")
    return "".join(lines).encode()


@settings(max_examples=300, deadline=None)
@given(_headers(), st.binary(max_size=50))
def test_stripping_never_leaves_a_trust_field(header: bytes, body: bytes) -> None:
    """Whatever the spelling, folding or line ends, no trust field survives in the header."""
    stripped = strip_trust_fields(header + b"\r\n" + body)
    parsed = _parse(stripped)
    assert not [name for name in parsed if _owned(name)]
    marked = _parse(mark_verified(header + b"\r\n" + body, VERDICT))
    assert len(marked.get_all("Authentication-Results") or []) == 1
    assert " ".join(str(marked["X-SecureMail-Status"]).split()).startswith("verified; signer=")
