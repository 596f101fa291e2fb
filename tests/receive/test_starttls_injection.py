"""THREATS.md B, STARTTLS command injection: plaintext pipelined after STARTTLS is discarded."""

from __future__ import annotations

from securemail.receive import Listener, start_peer_listener, start_relay_listener
from tests.receive.conftest import (
    ELSEWHERE,
    LOOPBACK,
    Inbox,
    RawClient,
    Tls,
    check_recipient,
    raw_session,
    run,
    sender_allowed,
    served,
    settings,
    with_listener,
)


async def _inject(port: int, tls: Tls, injected: bytes, probe: str) -> tuple[str, str]:
    """STARTTLS and ``injected`` in one write, then TLS, EHLO and ``probe``: the replies to
    STARTTLS and to the probe."""
    client = await raw_session(port)
    await client.send(b"STARTTLS\r\n" + injected)
    ready = await client.reply()
    await client.start_tls(tls.client)
    assert (await client.command("EHLO client.ministry.govt.nz")).startswith("250")
    answer = await client.command(probe)
    await client.close()
    return ready, answer


def test_peer_discards_mail_pipelined_with_starttls(tls: Tls) -> None:
    """A MAIL sent in the STARTTLS packet is not processed: RCPT after TLS finds no MAIL."""
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[str, str]:
        injected = b"MAIL FROM:<attacker@ministry.govt.nz>\r\n"
        return await _inject(listener.port, tls, injected, "RCPT TO:<bob@agency.govt.nz>")

    start = start_peer_listener(settings(tls.server()), served=served, admit=inbox)
    ready, rcpt = run(with_listener(start, body))
    assert ready == "220 Ready to start TLS"
    assert rcpt == "503 Error: need MAIL command"


def test_relay_discards_a_whole_transaction_pipelined_with_starttls(tls: Tls) -> None:
    """MAIL and RCPT sent in the STARTTLS packet are both dropped: DATA after TLS finds none."""

    async def body(listener: Listener) -> tuple[str, str]:
        injected = b"MAIL FROM:<alice@agency.govt.nz>\r\nRCPT TO:<bob@ministry.govt.nz>\r\n"
        return await _inject(listener.port, tls, injected, "DATA")

    start = start_relay_listener(
        settings(tls.server()),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=Inbox(),
    )
    ready, data = run(with_listener(start, body))
    assert ready == "220 Ready to start TLS"
    assert data == "503 Error: need RCPT command"


def test_auth_pipelined_with_starttls_is_not_processed(tls: Tls) -> None:
    """AUTH sent in clear in the STARTTLS packet does not authenticate the TLS session."""

    async def body(listener: Listener) -> tuple[str, str]:
        injected = b"AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU=\r\n"
        return await _inject(listener.port, tls, injected, "MAIL FROM:<alice@agency.govt.nz>")

    start = start_relay_listener(
        settings(tls.server()),
        networks=ELSEWHERE,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=Inbox(),
        authenticate=lambda user, password: user == "alice",
    )
    ready, mail = run(with_listener(start, body))
    assert ready == "220 Ready to start TLS"
    assert mail == "530 5.7.0 Authentication required"


def test_failed_handshake_leaves_the_listener_serving(tls: Tls) -> None:
    """A client that sends plaintext instead of a TLS handshake is dropped; others go on."""

    async def body(listener: Listener) -> tuple[bytes, str]:
        client = await raw_session(listener.port)
        assert (await client.command("STARTTLS")).startswith("220 ")
        await client.send(b"MAIL FROM:<x@ministry.govt.nz>\r\n" * 10)
        rest = await client.reader.read()
        await client.close()
        other = await RawClient.connect(listener.port)
        greeting = await other.reply()
        await other.close()
        return rest, greeting

    start = start_peer_listener(settings(tls.server()), served=served, admit=Inbox())
    rest, greeting = run(with_listener(start, body))
    assert b"250" not in rest
    assert greeting.startswith("220 ")
