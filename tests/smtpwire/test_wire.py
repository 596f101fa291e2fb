"""Reading remote replies (enhanced status codes, untrusted text); writing the DATA payload."""

from __future__ import annotations

import pytest

from securemail.smtpwire.wire import MAX_DETAIL, data_payload, enhanced_status, wire_reply


def test_enhanced_status_is_read_from_the_reply_text() -> None:
    """A reply's RFC 3463 status becomes the Reply's status."""
    assert enhanced_status(550, "5.1.1 No such user") == "5.1.1"


def test_enhanced_status_of_another_class_is_ignored() -> None:
    """A status that contradicts the code is replaced by the code's class."""
    assert enhanced_status(550, "2.0.0 fine") == "5.0.0"
    assert enhanced_status(451, "try later") == "4.0.0"


def test_a_reply_that_is_not_final_is_temporary() -> None:
    """A 354 where a final answer was due is not definite: 451, the queue retries."""
    reply = wire_reply(354, "go ahead", reason="remote-refused")
    assert (reply.code, reply.temporary, reply.reason) == (451, True, "protocol-error")


def test_remote_text_is_only_in_detail_and_made_safe() -> None:
    """Control characters are removed and the length capped; the text is our own."""
    reply = wire_reply(550, "5.7.1 bad\x1b[31m\nsecond line" + "x" * 2000, reason="r")
    assert "\x1b" not in reply.detail and "\n" not in reply.detail
    assert len(reply.detail) <= MAX_DETAIL
    assert reply.text == "Refused by the remote server"


def test_data_payload_of_a_canonical_body_is_dot_stuffed_and_terminated() -> None:
    """A CRLF body keeps its bytes; each line starting with "." gets another (RFC 5321
    §4.5.2), the first line too, and CRLF.CRLF ends it."""
    body = b".first\r\nmiddle\r\n..two\r\n.\r\nend\r\n"
    assert data_payload(body) == b"..first\r\nmiddle\r\n...two\r\n..\r\nend\r\n.\r\n"


@pytest.mark.parametrize(
    "body",
    [b"a\n.\nb", b"a\r.\rb", b"a\r\n.\nb", b"a\n.\r\nb", b"a\r\n.\rb"],
    ids=["lf-dot-lf", "cr-dot-cr", "crlf-dot-lf", "lf-dot-crlf", "crlf-dot-cr"],
)
def test_data_payload_never_carries_a_bare_cr_or_lf(body: bytes) -> None:
    """THREATS.md B (SMTP smuggling): bare CR and LF become CRLF, so the dot line is
    stuffed and the only end of data is the last CRLF.CRLF."""
    payload = data_payload(body)
    assert payload == b"a\r\n..\r\nb\r\n.\r\n"
    assert payload.count(b"\r") == payload.count(b"\n") == payload.count(b"\r\n")


def test_data_payload_ends_an_unterminated_or_empty_body_with_crlf() -> None:
    """A last line without CRLF gets one before the ".", as aiosmtplib's ``data`` did."""
    assert data_payload(b"no end") == b"no end\r\n.\r\n"
    assert data_payload(b"") == b"\r\n.\r\n"
