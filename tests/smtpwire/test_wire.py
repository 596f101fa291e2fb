"""Reading remote replies: enhanced status codes and untrusted text."""

from __future__ import annotations

from securemail.smtpwire.wire import MAX_DETAIL, enhanced_status, wire_reply


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
