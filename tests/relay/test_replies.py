"""Per-recipient outcomes of one relay attempt, and whole-attempt failures the queue retries."""

from __future__ import annotations

import asyncio

import pytest

from securemail.relay import Destination, RelayError, RelayReason, send
from securemail.replies import Reply
from tests.relay.loopback import WAIT, Recorder, closed_port, serving, silent_server

BODY = b"Subject: test\r\n\r\n.a line that starts with a dot\r\nend\r\n"


def plain(port: int, timeout: float = WAIT) -> Destination:
    """A smarthost reached in plaintext (TLS is tested in test_tls.py)."""
    return Destination("127.0.0.1", port, "gw.example", None, require_tls=False, timeout=timeout)


def relay(handler: Recorder, recipients: list[str], *, smtputf8: bool = False) -> dict[str, Reply]:
    async def run() -> dict[str, Reply]:
        async with serving(handler, smtputf8=smtputf8) as port:
            return await send(plain(port), "alice@x.example", recipients, BODY)

    return asyncio.run(run())


def test_mixed_rcpt_replies_give_each_recipient_its_own_outcome() -> None:
    """250, 450 and 550 to RCPT become delivered, temporary and permanent for those recipients."""
    handler = Recorder(
        rcpt_replies={
            "busy@y.example": "450 4.2.1 Mailbox busy, try later",
            "gone@y.example": "550 5.1.1 No such user here",
        }
    )
    results = relay(handler, ["ok@y.example", "busy@y.example", "gone@y.example"])
    assert results["ok@y.example"].code == 250
    busy, gone = results["busy@y.example"], results["gone@y.example"]
    assert (busy.code, busy.status, busy.temporary) == (450, "4.2.1", True)
    assert (gone.code, gone.status, gone.permanent) == (550, "5.1.1", True)
    assert "No such user" in gone.detail
    assert handler.received[0].rcpt_tos == ("ok@y.example",)


def test_body_arrives_byte_for_byte_with_dot_lines_intact() -> None:
    """Lines starting with a dot are stuffed on the wire and arrive unchanged (RFC 5321 §4.5.2)."""
    handler = Recorder()
    relay(handler, ["ok@y.example"])
    assert handler.received[0].content == BODY


def test_data_refusal_applies_to_every_accepted_recipient() -> None:
    """554 after DATA is a permanent refusal for all accepted recipients, not the refused one."""
    handler = Recorder(
        rcpt_replies={"gone@y.example": "550 5.1.1 No such user"},
        data_reply="554 5.7.1 Message refused by policy",
    )
    results = relay(handler, ["a@y.example", "b@y.example", "gone@y.example"])
    for rcpt in ("a@y.example", "b@y.example"):
        assert (results[rcpt].code, results[rcpt].status) == (554, "5.7.1")
    assert results["gone@y.example"].status == "5.1.1"


def test_mail_from_refusal_applies_to_every_recipient() -> None:
    """A 451 to MAIL FROM leaves every recipient temporary, and no RCPT is sent."""
    handler = Recorder(mail_reply="451 4.3.0 Sender check unavailable")
    results = relay(handler, ["a@y.example", "b@y.example"])
    assert {r.code for r in results.values()} == {451}
    assert b"RCPT" not in handler.raw


def test_no_data_when_every_recipient_is_refused() -> None:
    """If no RCPT was accepted the body is never sent."""
    handler = Recorder(rcpt_replies={"a@y.example": "550 5.1.1 No"})
    results = relay(handler, ["a@y.example"])
    assert results["a@y.example"].permanent
    assert handler.received == [] and b"DATA" not in handler.raw


def test_duplicate_recipients_are_sent_once() -> None:
    """The same address twice is one RCPT and one Reply."""
    handler = Recorder()
    results = relay(handler, ["a@y.example", "a@y.example"])
    assert list(results) == ["a@y.example"]
    assert handler.received[0].rcpt_tos == ("a@y.example",)


def test_connection_closed_after_data_is_a_temporary_failure() -> None:
    """A drop after the body but before the final reply raises RelayError: the queue retries."""
    handler = Recorder(drop_after_data=True)
    with pytest.raises(RelayError) as caught:
        relay(handler, ["a@y.example"])
    assert caught.value.reason is RelayReason.PROTOCOL
    assert len(handler.received) == 1  # the peer has it: it de-duplicates our retry


def test_closed_port_is_connect_failed() -> None:
    """Nothing listening: RelayError connect-failed."""
    with pytest.raises(RelayError) as caught:
        asyncio.run(send(plain(closed_port()), "a@x.example", ["b@y.example"], BODY))
    assert caught.value.reason is RelayReason.CONNECT_FAILED


def test_silent_server_times_out() -> None:
    """A server that never greets: RelayError timeout after the configured wait."""

    async def run() -> None:
        async with silent_server() as port:
            await send(plain(port, timeout=0.3), "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TIMEOUT


def test_non_ascii_address_without_smtputf8_is_refused_locally() -> None:
    """A UTF-8 address to a server without SMTPUTF8 is a 553 5.6.7 and nothing is sent."""
    handler = Recorder()
    results = relay(handler, ["rōpū@y.example"])
    assert (results["rōpū@y.example"].code, results["rōpū@y.example"].status) == (553, "5.6.7")
    assert b"MAIL" not in handler.raw


def test_non_ascii_address_with_smtputf8_is_sent() -> None:
    """A UTF-8 address goes out with the SMTPUTF8 parameter when the server offers it."""
    handler = Recorder()
    results = relay(handler, ["rōpū@y.example"], smtputf8=True)
    assert results["rōpū@y.example"].ok
    assert b"SMTPUTF8" in handler.raw


def test_address_with_line_break_is_never_sent() -> None:
    """A recipient containing CR/LF cannot inject commands: 553 5.1.3, others still go."""
    handler = Recorder()
    results = relay(handler, ["a@y.example\r\nRSET", "b@y.example"])
    assert results["a@y.example\r\nRSET"].status == "5.1.3"
    assert results["b@y.example"].ok
    assert b"RSET" not in handler.raw
