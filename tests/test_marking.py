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
    WARNING,
    Verdict,
    claims_classification,
    mark_ordinary,
    mark_unverified,
    mark_verified,
    strip_trust_fields,
)
from securemail.smime.assurance import SenderAssurance

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


def test_ordinary_mail_is_marked_not_verified_without_a_warning() -> None:
    """Mail from outside SecureMail says not-verified; with no label claimed, no warning."""
    forged = b"X-SecureMail-Warning: none\r\nAuthentication-Results: x; smime=pass\r\n" + MESSAGE
    marked = mark_ordinary(forged, "gw.agency.govt.nz")
    parsed = _parse(marked)
    assert parsed.get_all("Authentication-Results") == [
        'gw.agency.govt.nz; smime=none reason="not-securemail"'
    ]
    assert str(parsed["X-SecureMail-Status"]) == "not-verified; reason=not-securemail"
    assert parsed["X-SecureMail-Warning"] is None
    assert marked.endswith(MESSAGE)


CLAIMS = {
    "subject SEC=": b"Subject: [SEC=IN-CONFIDENCE] Budget\r\n",
    "subject bare label": b"Subject: Re: [IN-CONFIDENCE] Budget\r\n",
    "subject lower case": b"subject: budget [sec=sensitive]\r\n",
    "subject folded": b"Subject: Budget\r\n [SEC=RESTRICTED]\r\n",
    "subject encoded-word": b"Subject: =?utf-8?q?=5BSEC=3DIN-CONFIDENCE=5D_Budget?=\r\n",
    "header": b"X-Protective-Marking: VER=2018.1, NS=govt.nz, SEC=IN-CONFIDENCE\r\n",
    "header without SEC": b"X-Protective-Marking: something\r\n",
}

NO_CLAIMS = {
    "plain subject": b"Subject: Budget [draft]\r\n",
    "unclassified subject": b"Subject: [SEC=UNCLASSIFIED] Budget\r\n",
    "unclassified header": b"X-Protective-Marking: VER=2018.1, NS=govt.nz, SEC=UNCLASSIFIED\r\n",
    "label in the body only": b"Subject: Budget\r\n\r\n[SEC=IN-CONFIDENCE]\r\n",
}


@pytest.mark.parametrize("field", CLAIMS.values(), ids=CLAIMS.keys())
def test_a_claimed_classification_gets_the_warning(field: bytes) -> None:
    """A header or Subject marking on mail from outside adds the NOT SecureMail warning."""
    message = b"From: someone@example.com\r\n" + field + b"\r\nbody\r\n"
    assert claims_classification(message)
    parsed = _parse(mark_ordinary(message, "gw.agency.govt.nz"))
    assert " ".join(str(parsed["X-SecureMail-Warning"]).split()) == WARNING
    assert str(parsed["X-SecureMail-Status"]).startswith("not-verified")


@pytest.mark.parametrize("field", NO_CLAIMS.values(), ids=NO_CLAIMS.keys())
def test_no_warning_without_a_claimed_classification(field: bytes) -> None:
    """UNCLASSIFIED, ordinary brackets and a label in the body claim no protection."""
    message = b"From: someone@example.com\r\n" + field + b"\r\nbody\r\n"
    assert not claims_classification(message)
    assert b"X-SecureMail-Warning" not in mark_ordinary(message, "gw.agency.govt.nz")


def test_the_warning_never_rewrites_the_subject_or_body() -> None:
    """Only header fields are added: the Subject and body stay byte for byte."""
    message = b"Subject: [IN-CONFIDENCE] Budget\r\n\r\nthe figures\r\n"
    marked = mark_ordinary(message, "gw.agency.govt.nz")
    assert marked.endswith(message)
    assert max(len(line) for line in marked.split(b"\r\n")) <= 78


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


def test_assurance_values_stay_one_token() -> None:
    """A signed login word that is not a token (quotes, a plus) is quoted in the status
    field and said "unknown" in Authentication-Results, so neither field can be bent."""
    odd = SenderAssurance("provider", "hemi@securemail.provider.nz", 'pass"key+x')
    verdict = Verdict(
        "gw.agency.govt.nz", "provider", "Provider", "hemi@securemail.provider.nz", assurance=odd
    )
    marked = mark_verified(b"From: hemi@securemail.provider.nz\r\n\r\nHi\r\n", verdict)
    head = marked.split(b"\r\n\r\n")[0].decode()
    assert "policy.assurance=unknown" in head and 'login="pass\\"key+x"' in head
