"""The relay listener: allowed networks or AUTH after STARTTLS, allowed senders, recipient check."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import aiosmtplib
import pytest

from securemail.receive import Listener, start_relay_listener
from securemail.receive.relay import RelayGate
from tests.receive.conftest import (
    ELSEWHERE,
    LOOPBACK,
    PLAIN_MESSAGE,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    run,
    send_data,
    sender_allowed,
    settings,
    smtp_client,
    with_listener,
)

USERS = {"alice": b"correct horse battery staple"}


def authenticate(user: str, password: bytes) -> bool:
    return USERS.get(user) == password


async def _relay(
    inbox: Inbox,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = LOOPBACK,
    tls: Tls | None = None,
    *,
    with_auth: bool = False,
) -> Listener:
    return await start_relay_listener(
        settings(tls.server() if tls else None),
        networks=networks,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=inbox,
        authenticate=authenticate if with_auth else None,
    )


def test_internal_server_mail_is_admitted() -> None:
    """A server in the relay networks sends plain SMTP; the message is admitted as is."""
    inbox = Inbox()

    async def body(listener: Listener) -> None:
        client = await smtp_client(listener.port)
        recipients = ["bob@ministry.govt.nz", "carol@agency.govt.nz"]
        await client.sendmail("alice@agency.govt.nz", recipients, PLAIN_MESSAGE)
        await client.quit()

    run(with_listener(_relay(inbox), body))
    (received,) = inbox.messages
    assert received.listener == "relay"
    assert received.recipients == ("bob@ministry.govt.nz", "carol@agency.govt.nz")
    assert received.tls is False and received.tls_version is None
    assert received.auth_user is None
    assert b" with ESMTP;\r\n" in received.body
    assert received.body.endswith(PLAIN_MESSAGE)


def test_client_outside_networks_is_refused_at_connect() -> None:
    """Without AUTH configured, a client outside the networks gets 554 5.7.1 and no session."""

    async def body(listener: Listener) -> tuple[str, bytes]:
        client = await RawClient.connect(listener.port)
        greeting = await client.reply()
        rest = await client.reader.read()
        await client.close()
        return greeting, rest

    greeting, rest = run(with_listener(_relay(Inbox(), ELSEWHERE), body))
    assert greeting == "554 5.7.1 Access denied"
    assert rest == b""


def test_null_sender_is_allowed() -> None:
    """The null reverse path <> (notices) is taken; Received.mail_from is ""."""
    inbox = Inbox()

    async def body(listener: Listener) -> list[str]:
        client = await raw_session(listener.port)
        replies = [
            await client.command("MAIL FROM:<>"),
            await client.command("RCPT TO:<bob@ministry.govt.nz>"),
            await send_data(client, PLAIN_MESSAGE),
        ]
        await client.close()
        return replies

    assert run(with_listener(_relay(inbox), body)) == [
        "250 2.1.0 OK",
        "250 2.1.5 OK",
        "250 2.0.0 Queued",
    ]
    assert inbox.messages[0].mail_from == ""


def test_sender_outside_served_domains_is_refused() -> None:
    """MAIL FROM in a domain this node does not serve gets 553 5.7.1."""

    async def body(listener: Listener) -> str:
        client = await raw_session(listener.port)
        reply = await client.command("MAIL FROM:<mallory@ministry.govt.nz>")
        await client.close()
        return reply

    assert run(with_listener(_relay(Inbox()), body)) == "553 5.7.1 Sender not allowed"


def test_check_recipient_reply_goes_out_verbatim() -> None:
    """The CheckRecipient refusal is the RCPT reply, word for word."""

    async def body(listener: Listener) -> str:
        client = await raw_session(listener.port)
        await client.command("MAIL FROM:<alice@agency.govt.nz>")
        reply = await client.command("RCPT TO:<someone@gmail.com>")
        await client.close()
        return reply

    assert run(with_listener(_relay(Inbox()), body)) == "550 5.7.1 Relay not permitted"


def test_auth_is_offered_only_after_starttls(tls: Tls) -> None:
    """AUTH appears in EHLO only after STARTTLS; before it, AUTH is refused with 538."""

    async def body(listener: Listener) -> tuple[str, str, str]:
        client = await raw_session(listener.port)
        before = await client.command("EHLO client.agency.govt.nz")
        refused = await client.command("AUTH PLAIN AGFsaWNlAGNvcnJlY3Q=")
        assert (await client.command("STARTTLS")).startswith("220 ")
        await client.start_tls(tls.client)
        after = await client.command("EHLO client.agency.govt.nz")
        await client.close()
        return before, refused, after

    before, refused, after = run(
        with_listener(_relay(Inbox(), ELSEWHERE, tls, with_auth=True), body)
    )
    assert "AUTH" not in before and "250-STARTTLS" in before
    assert refused.startswith("538 5.7.11")
    assert "250-AUTH LOGIN PLAIN" in after.splitlines()


def test_authenticated_client_outside_networks_is_admitted(tls: Tls) -> None:
    """A client outside the networks that AUTHs after STARTTLS may send; its user is kept."""
    inbox = Inbox()

    async def body(listener: Listener) -> None:
        client = await smtp_client(listener.port, tls)
        await client.login("alice", "correct horse battery staple")
        await client.sendmail("alice@agency.govt.nz", ["bob@ministry.govt.nz"], PLAIN_MESSAGE)
        await client.quit()

    run(with_listener(_relay(inbox, ELSEWHERE, tls, with_auth=True), body))
    (received,) = inbox.messages
    assert received.auth_user == "alice"
    assert received.tls
    assert b" with ESMTPSA;\r\n" in received.body


def test_unauthenticated_client_outside_networks_cannot_send(tls: Tls) -> None:
    """Outside the networks, a wrong password gets 535 and MAIL without AUTH gets 530 5.7.0."""

    async def body(listener: Listener) -> tuple[int, str]:
        client = await smtp_client(listener.port, tls)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
            await client.login("alice", "wrong")
        mail = await client.execute_command(b"MAIL", b"FROM:<alice@agency.govt.nz>")
        await client.quit()
        return failed.value.code, f"{mail.code} {mail.message}"

    code, mail = run(with_listener(_relay(Inbox(), ELSEWHERE, tls, with_auth=True), body))
    assert code == 535
    assert mail == "530 5.7.0 Authentication required"


def test_auth_without_tls_is_a_configuration_error() -> None:
    """AUTH without a TLS context would send passwords in clear: refused at start."""
    with pytest.raises(ValueError, match="TLS"):
        run(_relay(Inbox(), ELSEWHERE, None, with_auth=True))


def test_ipv4_mapped_client_matches_ipv4_network() -> None:
    """A dual-stack socket's ::ffff:127.0.0.1 is matched against IPv4 relay networks."""
    gate = RelayGate(tuple(LOOPBACK), check_recipient, sender_allowed)
    assert gate.refuse_client("::ffff:127.0.0.1") is None
    refusal = gate.refuse_client("::ffff:10.1.2.3")
    assert refusal is not None and refusal.reason == "client-not-allowed"
