"""The peer listener: STARTTLS required, no AUTH, served domains only, S/MIME only."""

from __future__ import annotations

import logging
import re
import ssl

import pytest

from securemail.receive import Listener, start_peer_listener
from securemail.replies import Reply
from tests.receive.conftest import (
    PLAIN_MESSAGE,
    SERVER_NAME,
    SMIME_MESSAGE,
    Inbox,
    Tls,
    raw_session,
    raw_tls_session,
    run,
    send_data,
    served,
    settings,
    smtp_client,
    with_listener,
)


async def _peer(tls: Tls, inbox: Inbox) -> Listener:
    return await start_peer_listener(settings(tls.server()), served=served, admit=inbox)


async def _deliver(port: int, tls: Tls, message: bytes) -> str:
    """One transaction over STARTTLS to bob@agency.govt.nz: the reply to the final dot."""
    client = await raw_tls_session(port, tls)
    try:
        assert (await client.command("MAIL FROM:<gateway@ministry.govt.nz>")).startswith("250")
        assert (await client.command("RCPT TO:<bob@agency.govt.nz>")).startswith("250")
        return await send_data(client, message)
    finally:
        await client.close()


def _deliver_one(tls: Tls, inbox: Inbox, message: bytes) -> str:
    async def body(listener: Listener) -> str:
        return await _deliver(listener.port, tls, message)

    return run(with_listener(_peer(tls, inbox), body))


def test_accepts_smime_over_tls(tls: Tls) -> None:
    """An S/MIME message over STARTTLS to a served domain is admitted with its TLS facts."""
    inbox = Inbox()

    async def body(listener: Listener) -> None:
        client = await smtp_client(listener.port, tls)
        await client.sendmail("gateway@ministry.govt.nz", ["bob@agency.govt.nz"], SMIME_MESSAGE)
        await client.quit()

    run(with_listener(_peer(tls, inbox), body))
    (received,) = inbox.messages
    assert received.listener == "peer"
    assert received.client_address == "127.0.0.1"
    assert received.helo == "client.agency.govt.nz"
    assert received.mail_from == "gateway@ministry.govt.nz"
    assert received.recipients == ("bob@agency.govt.nz",)
    assert received.tls and received.tls_version in ("TLSv1.2", "TLSv1.3")
    assert received.auth_user is None
    assert received.body.endswith(SMIME_MESSAGE)
    trace = received.body[: -len(SMIME_MESSAGE)].decode("ascii")
    assert re.fullmatch(
        rf"Received: from client\.agency\.govt\.nz \(\[127\.0\.0\.1\]\)\r\n"
        rf"\tby {re.escape(SERVER_NAME)} with ESMTPS;\r\n\t[A-Z][a-z]{{2}}, .+ \+0000\r\n",
        trace,
    )


def test_mail_before_starttls_is_refused(tls: Tls) -> None:
    """Before STARTTLS the peer port offers STARTTLS, no AUTH, and answers MAIL with 530."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        ehlo = await client.command("EHLO again.ministry.govt.nz")
        mail = await client.command("MAIL FROM:<gateway@ministry.govt.nz>")
        await client.close()
        return ehlo, mail

    ehlo, mail = run(with_listener(_peer(tls, Inbox()), body))
    assert "250-STARTTLS" in ehlo.splitlines()
    assert "AUTH" not in ehlo
    assert mail == "530 5.7.0 Must issue a STARTTLS command first"


def test_no_auth_after_tls(tls: Tls) -> None:
    """After STARTTLS the peer port still offers no AUTH and refuses the command."""

    async def body(listener: Listener) -> tuple[str, str]:
        client = await raw_session(listener.port)
        assert (await client.command("STARTTLS")).startswith("220 ")
        await client.start_tls(tls.client)
        ehlo = await client.command("EHLO client.ministry.govt.nz")
        auth = await client.command("AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=")
        await client.close()
        return ehlo, auth

    ehlo, auth = run(with_listener(_peer(tls, Inbox()), body))
    assert "AUTH" not in ehlo and "STARTTLS" not in ehlo
    assert auth.startswith("5")


def test_recipient_outside_served_domains_is_refused(tls: Tls) -> None:
    """A recipient in a domain this node does not serve gets 550 5.7.1; the peer is no relay."""
    inbox = Inbox()

    async def body(listener: Listener) -> list[str]:
        client = await raw_tls_session(listener.port, tls)
        replies = [
            await client.command("MAIL FROM:<gateway@ministry.govt.nz>"),
            await client.command("RCPT TO:<carol@ministry.govt.nz>"),
            await client.command("RCPT TO:<BOB@Agency.Govt.NZ>"),
        ]
        await client.close()
        return replies

    replies = run(with_listener(_peer(tls, inbox), body))
    assert replies == ["250 2.1.0 OK", "550 5.7.1 Relay not permitted", "250 2.1.5 OK"]


NOT_PROTECTED = {
    "plain text": PLAIN_MESSAGE,
    "no content type": b"Subject: x\r\n\r\nbody\r\n",
    "pgp signed": (
        b'Content-Type: multipart/signed; protocol="application/pgp-signature";\r\n'
        b" boundary=b\r\n\r\n--b--\r\n"
    ),
    "two content types": (
        b"Content-Type: application/pkcs7-mime\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    ),
    "s/mime type only in the body": (
        b"Subject: x\r\n\r\nContent-Type: application/pkcs7-mime\r\n\r\nx\r\n"
    ),
}


@pytest.mark.parametrize("message", NOT_PROTECTED.values(), ids=NOT_PROTECTED.keys())
def test_unprotected_message_is_refused(tls: Tls, message: bytes) -> None:
    """A message that does not declare one top-level S/MIME entity gets 554 5.7.1."""
    inbox = Inbox()
    reply = _deliver_one(tls, inbox, message)
    assert reply == "554 5.7.1 SecureMail peers must send S/MIME-protected mail"
    assert inbox.messages == []


PROTECTED = {
    "x-pkcs7-mime": b"Content-Type: application/x-pkcs7-mime; name=smime.p7m\r\n\r\nMIAG\r\n",
    "multipart/signed, folded": (
        b"CONTENT-TYPE: multipart/signed; micalg=sha-256;\r\n"
        b'\tprotocol="application/pkcs7-signature"; boundary="b"\r\n\r\n--b--\r\n'
    ),
    "enveloped": SMIME_MESSAGE,
}


@pytest.mark.parametrize("message", PROTECTED.values(), ids=PROTECTED.keys())
def test_smime_types_are_admitted(tls: Tls, message: bytes) -> None:
    """Enveloped (pkcs7-mime) and signed (multipart/signed + pkcs7-signature) are admitted."""
    inbox = Inbox()
    assert _deliver_one(tls, inbox, message) == "250 2.0.0 Queued"
    assert len(inbox.messages) == 1


def test_admit_reply_is_the_data_reply(tls: Tls) -> None:
    """Whatever Admit answers (here: the queue is full) is what the peer gets after DATA."""
    inbox = Inbox(reply=Reply(452, "4.3.1", "Insufficient system storage", "queue-full"))
    assert _deliver_one(tls, inbox, SMIME_MESSAGE) == "452 4.3.1 Insufficient system storage"


def test_admit_error_is_451_and_logged_without_content(
    tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    """If Admit raises, the peer gets 451 4.3.0 (never 250) and the log has no content."""
    inbox = Inbox(error=RuntimeError("INSERT failed for body MIAGCSqGSIb3DQEHA6CAMIACAQAxggE="))
    with caplog.at_level(logging.INFO, logger="securemail.receive"):
        assert _deliver_one(tls, inbox, SMIME_MESSAGE) == "451 4.3.0 Try again later"
    logged = caplog.text
    assert "admit-failed" in logged and "RuntimeError" in logged
    assert "MIAG" not in logged and "SecureMail message" not in logged


def test_needs_a_tls_context() -> None:
    """A peer listener without a TLS context is a configuration error, not a plain port."""

    async def start() -> None:
        await start_peer_listener(settings(None), served=served, admit=Inbox())

    with pytest.raises(ValueError, match="TLS"):
        run(start())


def test_tls_minimum_is_raised_to_1_2(tls: Tls) -> None:
    """A server context that allows old TLS versions is raised to a TLS 1.2 minimum."""
    context = tls.server()
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED

    async def body(listener: Listener) -> None:
        return None

    run(with_listener(start_peer_listener(settings(context), served=served, admit=Inbox()), body))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_close_ends_open_sessions(tls: Tls) -> None:
    """Closing the listener drops sessions that are still open."""

    async def scenario() -> bytes:
        listener = await _peer(tls, Inbox())
        client = await raw_session(listener.port)
        await listener.close()
        rest = await client.reader.read()
        await client.close()
        return rest

    assert run(scenario()) == b""


def test_error_in_a_policy_check_is_451(tls: Tls, caplog: pytest.LogCaptureFixture) -> None:
    """A policy callable that raises gives the client 451 4.3.0, not a traceback or a 250."""
    inbox = Inbox()

    def broken(domain: str) -> bool:
        raise LookupError("directory not loaded")

    async def body(listener: Listener) -> str:
        client = await raw_tls_session(listener.port, tls)
        await client.command("MAIL FROM:<gateway@ministry.govt.nz>")
        reply = await client.command("RCPT TO:<bob@agency.govt.nz>")
        await client.close()
        return reply

    start = start_peer_listener(settings(tls.server()), served=broken, admit=inbox)
    with caplog.at_level(logging.INFO, logger="securemail.receive"):
        assert run(with_listener(start, body)) == "451 4.3.0 Try again later"
    assert "LookupError" in caplog.text


def test_settings_are_validated() -> None:
    """Impossible settings are refused with the setting named."""
    with pytest.raises(ValueError, match="hostname"):
        settings(hostname="mx example")
    with pytest.raises(ValueError, match="max_recipients"):
        settings(max_recipients=0)
    with pytest.raises(ValueError, match="timeout"):
        settings(timeout=0)
