"""Failure and delay notices: RFC 3464 reports that never carry the original body."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.notices import (
    EXPLANATIONS,
    Failed,
    FailureReport,
    failure_notice,
    message_id,
    original_header,
    read_failure_report,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = b"The budget figure is 42 million."
ORIGINAL = (
    b"From: Alice <alice@agency.govt.nz>\r\n"
    b"To: bob@ministry.govt.nz\r\n"
    b"Subject: Budget\r\n"
    b"Message-ID: <m1@agency.govt.nz>\r\n"
    b"\r\n" + SECRET + b"\r\n"
)
FAILED = Failed("bob@ministry.govt.nz", "5.7.1", "tls-pin-mismatch", "550 5.7.1 Refused")


def _notice(
    header: bytes = ORIGINAL, failed: tuple[Failed, ...] = (FAILED,), **options: object
) -> bytes:
    arguments: dict[str, object] = {
        "original_header": original_header(header),
        "reporting_mta": "gw.agency.govt.nz",
        "postmaster": "postmaster@agency.govt.nz",
        "to": "alice@agency.govt.nz",
        "failed": failed,
        "now": NOW,
        "message_id_domain": "agency.govt.nz",
    }
    return failure_notice(**(arguments | options))  # type: ignore[arg-type]


def _parts(notice: bytes) -> list[EmailMessage]:
    parsed = email.message_from_bytes(notice, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return list(parsed.iter_parts())  # type: ignore[arg-type]


def test_notice_is_a_delivery_status_report_with_three_parts() -> None:
    """Mail readers see multipart/report: text, message/delivery-status, text/rfc822-headers."""
    notice = _notice()
    parsed = email.message_from_bytes(notice, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in _parts(notice)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert parsed["From"] == "Mail Delivery System <postmaster@agency.govt.nz>"
    assert parsed["To"] == "alice@agency.govt.nz"
    assert parsed["Subject"] == "Undelivered SecureMail message"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Date"].datetime == NOW
    assert parsed["Message-ID"].endswith("@agency.govt.nz>")


def test_every_line_ends_in_crlf() -> None:
    """The notice is CRLF-canonical, ready to sign."""
    notice = _notice()
    assert notice.count(b"\n") == notice.count(b"\r\n") == notice.count(b"\r")


def test_delivery_status_fields_per_recipient() -> None:
    """Each recipient gets Final-Recipient, Action, Status, Diagnostic-Code and our reason."""
    second = Failed("carol@ministry.govt.nz", "4.4.7", "expired")
    status = _parts(_notice(failed=(FAILED, second), arrived=NOW - timedelta(days=5)))[1]
    blocks: list[Message] = status.get_payload()  # type: ignore[assignment]
    assert blocks[0]["Reporting-MTA"] == "dns; gw.agency.govt.nz"
    assert blocks[0]["Arrival-Date"] == "Tue, 24 Nov 2026 12:00:00 +0000"
    first = dict(blocks[1].items())
    assert first == {
        "Final-Recipient": "rfc822; bob@ministry.govt.nz",
        "Action": "failed",
        "Status": "5.7.1",
        "Diagnostic-Code": "smtp; 550 5.7.1 Refused",
        "X-SecureMail-Reason": "tls-pin-mismatch",
    }
    assert "Diagnostic-Code" not in blocks[2] and blocks[2]["X-SecureMail-Reason"] == "expired"


def test_text_part_explains_reason_and_unknown_codes_get_a_generic_sentence() -> None:
    """People read which recipient failed, the code, and what it means."""
    odd = Failed("dave@ministry.govt.nz", "5.0.0", "something-new")
    text = _parts(_notice(failed=(FAILED, odd)))[0].get_content()
    assert "bob@ministry.govt.nz" in text and "tls-pin-mismatch (5.7.1)" in text
    assert EXPLANATIONS["tls-pin-mismatch"] in text
    assert "The message could not be delivered for the reason shown." in text


def test_delay_notice_says_delayed() -> None:
    """A delay notice has its own subject, Action: delayed, and says nothing need be done."""
    notice = _notice(failed=(Failed("bob@ministry.govt.nz", "4.4.1", "connect-failed"),),
                     action="delayed")  # fmt: skip
    parsed = email.message_from_bytes(notice, policy=email.policy.default)
    assert parsed["Subject"] == "Delayed SecureMail message"
    assert b"Action: delayed\r\n" in notice
    assert "will keep trying" in _parts(notice)[0].get_content()


def test_remote_diagnostic_cannot_inject_lines() -> None:
    """CR, LF and control characters from a remote reply are removed before quoting it."""
    hostile = Failed("bob@ministry.govt.nz", "5.7.1", "relay-denied",
                     "550 no\r\nX-SecureMail-Reason: delivered\r\n\r\n--b\x00\x1b[31m")  # fmt: skip
    notice = _notice(failed=(hostile,))
    assert b"\r\nX-SecureMail-Reason: delivered" not in notice
    assert b"\x00" not in notice and b"\x1b" not in notice
    assert b"Diagnostic-Code: smtp; 550 no X-SecureMail-Reason: delivered --b [31m\r\n" in notice


def test_original_header_never_holds_the_body() -> None:
    """The rfc822-headers part has the original header fields and not one body line."""
    notice = _notice()
    assert SECRET not in notice
    headers = _parts(notice)[2].get_content()
    assert "Subject: Budget" in headers and "Message-ID: <m1@agency.govt.nz>" in headers


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: x\r\r" + SECRET,  # bare CR empty line
        b"Subject: x\n\n" + SECRET,
        b"Subject: x\r\n" + SECRET + b"\r\n",  # no empty line at all
        b"Subject: x\r\n \r\n" + SECRET,  # whitespace-only line, then the text
        SECRET + b"\r\n",
    ],
)
def test_odd_messages_give_no_body_away(message: bytes) -> None:
    """Without a clean empty line the header is cut at the first line that is not a field."""
    assert SECRET not in original_header(message)


def test_bad_inputs_from_our_own_code_are_errors() -> None:
    """A malformed status, a recipient with a line break or no recipients is a ValueError."""
    with pytest.raises(ValueError, match="RFC 3463"):
        Failed("bob@ministry.govt.nz", "5.7", "relay-denied")
    with pytest.raises(ValueError, match="recipient"):
        Failed("bob@ministry.govt.nz\r\nBcc: x", "5.7.1", "relay-denied")
    with pytest.raises(ValueError, match="at least one"):
        _notice(failed=())


_LINE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["From: a@b.nz", "Subject: s", " folded", "X-A:"]), max_size=5),
    st.sampled_from([b"\r\n", b"\n", b"\r"]),
    st.lists(_LINE, max_size=5),
)
def test_notices_never_contain_a_body_line(
    header: list[str], line_end: bytes, body: list[str]
) -> None:
    """Whatever the header and line ends, no line of the body reaches the notice."""
    marker = "SECRET-7f3a"
    body_lines = [f"{marker}{text}".encode() for text in body] + [marker.encode()]
    message = b"".join(h.encode() + line_end for h in header) + line_end
    message += line_end.join(body_lines)
    assert marker.encode() not in _notice(message)


def test_failure_report_is_read_back_per_recipient_block() -> None:
    """Only recipients whose block says failed count; a delayed one in the same report does not."""
    header = b"From: a@agency.govt.nz\r\nMessage-ID: <m1@agency.govt.nz>\r\n\r\n"
    failed = Failed("bob@ministry.govt.nz", "5.1.1", "remote-refused", "550 no")
    report = failure_notice(
        original_header=header,
        reporting_mta="gw.ministry.govt.nz",
        postmaster="postmaster@ministry.govt.nz",
        to="a@agency.govt.nz",
        failed=[failed],
        now=NOW,
        message_id_domain="ministry.govt.nz",
    )
    read = read_failure_report(report)
    assert read == FailureReport("<m1@agency.govt.nz>", frozenset({"bob@ministry.govt.nz"}))
    delayed = report.replace(b"Action: failed", b"Action: delayed")
    assert read_failure_report(delayed) is None
    assert read_failure_report(b"Subject: hi\r\n\r\nAction: failed\r\n") is None
    assert message_id(report) is not None and message_id(b"Subject: x\r\n\r\n") is None
