"""Transport security of the relay: pinned STARTTLS to members, verified TLS to smarthosts."""

from __future__ import annotations

import asyncio

import pytest

from securemail.directory.model import spki_pin
from securemail.relay import Destination, PeerTls, RelayError, RelayReason, send
from securemail.relay.tls import peer_context
from securemail.replies import Reply
from tests.relay.loopback import WAIT, Recorder, TlsPki, serving

BODY = b"Subject: SecureMail message\r\n\r\nprotected content\r\n"


def member(port: int, peer: PeerTls) -> Destination:
    return Destination("127.0.0.1", port, "gw.agency.example", peer, timeout=WAIT)


def test_member_gateway_with_pinned_key_gets_the_message_over_tls(tls_pki: TlsPki) -> None:
    """A member whose certificate chains to the anchor and matches the pin receives the mail."""
    handler = Recorder()

    async def run() -> dict[str, Reply]:
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            return await send(member(port, tls_pki.peer()), "a@x.example", ["b@y.example"], BODY)

    reply = asyncio.run(run())["b@y.example"]
    assert reply.code == 250
    assert "Q1234" in reply.detail  # the peer's queue id, for tracing the message there
    [got] = handler.received
    assert got.tls and got.content == BODY and got.rcpt_tos == ("b@y.example",)


def test_wrong_pin_is_refused_before_mail_from(tls_pki: TlsPki) -> None:
    """A valid federation certificate whose key is not the directory's pin gets no envelope."""
    handler = Recorder()
    other_pin = frozenset({spki_pin(tls_pki.stranger.certificate)})

    async def run() -> None:
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            await send(member(port, tls_pki.peer(other_pin)), "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_PIN_MISMATCH
    assert handler.received == []
    assert b"MAIL" not in handler.raw  # raw holds only the plaintext part: EHLO, STARTTLS


def test_wrong_pin_is_refused_on_a_context_already_used(tls_pki: TlsPki) -> None:
    """Members share one TLS context, yet each new session is checked against its own pins."""
    handler = Recorder()
    right = tls_pki.peer()
    wrong = tls_pki.peer(frozenset({spki_pin(tls_pki.stranger.certificate)}))
    assert peer_context(right) is peer_context(wrong)

    async def run() -> None:
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            await send(member(port, right), "a@x.example", ["b@y.example"], BODY)
            await send(member(port, wrong), "a@x.example", ["c@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_PIN_MISMATCH
    assert [r.rcpt_tos for r in handler.received] == [("b@y.example",)]


def test_certificate_from_another_ca_fails_tls(tls_pki: TlsPki) -> None:
    """A certificate not issued by the federation fails the handshake, even with its pin."""
    handler = Recorder()
    pinned = tls_pki.peer(frozenset({spki_pin(tls_pki.stranger.certificate)}))

    async def run() -> None:
        async with serving(handler, tls=tls_pki.context(tls_pki.stranger)) as port:
            await send(member(port, pinned), "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_FAILED
    assert handler.received == []


def test_no_starttls_means_nothing_is_sent_in_plaintext(tls_pki: TlsPki) -> None:
    """A member that does not offer STARTTLS gets only EHLO: no MAIL, RCPT, DATA or body."""
    handler = Recorder()

    async def run() -> None:
        async with serving(handler, tls=None) as port:
            await send(member(port, tls_pki.peer()), "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_UNAVAILABLE
    commands = [line.split(b" ")[0].upper() for line in bytes(handler.raw).splitlines()]
    assert commands == [b"EHLO"]
    assert b"protected content" not in handler.raw


def test_smarthost_requiring_tls_without_starttls_sends_nothing() -> None:
    """A smarthost with require_tls (the default) and no STARTTLS offered gets no envelope."""
    handler = Recorder()

    async def run() -> None:
        async with serving(handler) as port:
            dest = Destination("127.0.0.1", port, "gw.example", None, timeout=WAIT)
            await send(dest, "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_UNAVAILABLE
    assert b"MAIL" not in handler.raw


def test_smarthost_verified_against_cafile_and_host_name(tls_pki: TlsPki) -> None:
    """A smarthost whose certificate matches its name and the CA file gets the message."""
    handler = Recorder()

    async def run() -> bool:
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            dest = Destination("localhost", port, "gw.example", None, cafile=tls_pki.cafile())
            results = await send(dest, "a@x.example", ["b@y.example"], BODY)
            return results["b@y.example"].ok

    assert asyncio.run(run())
    assert handler.received[0].tls


def test_smarthost_with_an_unknown_ca_fails_tls(tls_pki: TlsPki) -> None:
    """A smarthost whose certificate does not verify against the CA file is not used."""
    handler = Recorder()

    async def run() -> None:
        async with serving(handler, tls=tls_pki.context(tls_pki.stranger)) as port:
            dest = Destination("localhost", port, "gw.example", None, cafile=tls_pki.cafile())
            await send(dest, "a@x.example", ["b@y.example"], BODY)

    with pytest.raises(RelayError) as caught:
        asyncio.run(run())
    assert caught.value.reason is RelayReason.TLS_FAILED


def test_opportunistic_smarthost_uses_tls_when_offered(tls_pki: TlsPki) -> None:
    """With require_tls off and no CA file, an offered STARTTLS is used without verification."""
    handler = Recorder()

    async def run() -> None:
        async with serving(handler, tls=tls_pki.context(tls_pki.stranger)) as port:
            dest = Destination("127.0.0.1", port, "gw.example", None, require_tls=False)
            await send(dest, "a@x.example", ["b@y.example"], BODY)

    asyncio.run(run())
    assert handler.received[0].tls


def test_opportunistic_smarthost_without_starttls_sends_in_plaintext() -> None:
    """With require_tls off and no STARTTLS offered, the operator chose plaintext: it is used."""
    handler = Recorder()

    async def run() -> None:
        async with serving(handler) as port:
            dest = Destination("127.0.0.1", port, "gw.example", None, require_tls=False)
            await send(dest, "a@x.example", ["b@y.example"], BODY)

    asyncio.run(run())
    assert not handler.received[0].tls


def test_member_destination_cannot_turn_tls_off(tls_pki: TlsPki) -> None:
    """Configuring a member gateway with require_tls=False is a settings error, not plaintext."""
    with pytest.raises(ValueError, match="only ever reached over TLS"):
        Destination("127.0.0.1", 25, "gw.example", tls_pki.peer(), require_tls=False)
