"""Ordinary mail beside SecureMail (issue 7 §4): the ordinary port, its marking, priority."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import Message

import aiosmtplib
import pytest

from securemail.config.node import NodeConfig, load_config
from securemail.config.toml_table import ConfigError
from securemail.demo.exchange import wait_for
from securemail.demo.federation import free_port
from securemail.marking import WARNING
from securemail.node.context import load_org_keys
from securemail.queue import Direction, Entry, QueueStore
from securemail.smime import protect
from tests.node.conftest import WAIT, Federation, running

AROHA = "aroha.ngata@agency.govt.nz"


def _with_ordinary(federation: Federation, extra: str = "") -> int:
    """Give the agency node an ordinary listener (and ``extra`` config); its port."""
    port = free_port()
    config = federation.nodes["agency"].config
    config.write_text(config.read_text() + f'\n[ordinary]\nlisten = "127.0.0.1:{port}"\n{extra}')
    return port


def _message(message_id: str, subject: str, *extra: str) -> bytes:
    lines = [
        *extra,
        "From: Someone <someone@example.com>",
        f"To: {AROHA}",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "",
        "Kia ora, this came from the Internet.",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


async def _send(port: int, message: bytes, to: str = AROHA, *, tls: bool = False) -> str:
    """Send as an outside server would; with ``tls``, over STARTTLS without checking the
    certificate (an outside server has no reason to trust the federation's CA)."""
    _, reply = await aiosmtplib.send(
        message,
        sender="someone@example.com",
        recipients=[to],
        hostname="127.0.0.1",
        port=port,
        timeout=WAIT,
        start_tls=tls,
        validate_certs=False,
    )
    return reply


def _parse(message: bytes) -> Message:
    return email.message_from_bytes(message, policy=email.policy.compat32)


def _scenario(federation: Federation, body: Callable[[], Awaitable[None]]) -> None:
    async def scenario() -> None:
        async with running(federation, "agency"):
            await body()

    asyncio.run(scenario())


def _entries(config: NodeConfig) -> list[Entry]:
    with QueueStore.open(config.database) as store:
        return store.list(limit=1000)


def _assert_not_verified(delivered: bytes) -> Message:
    """Our fields only, saying not verified; nothing that could read as verified."""
    parsed = _parse(delivered)
    [results] = parsed.get_all("Authentication-Results") or []
    assert " ".join(results.split()) == (
        'agency.demo.securemail.test; smime=none reason="not-securemail"'
    )
    assert parsed.get_all("X-SecureMail-Status") == ["not-verified; reason=not-securemail"]
    assert parsed["X-SecureMail-Signer"] is None
    assert b"smime=pass" not in delivered and b"verified; signer" not in delivered
    return parsed


def test_plain_mail_is_delivered_marked_not_verified(federation: Federation) -> None:
    """Plain mail from outside reaches the Maildir marked not verified, forged fields gone."""
    port = _with_ordinary(federation)
    mailbox = federation.nodes["agency"].mailbox(AROHA)
    forged = (
        "Authentication-Results: agency.demo.securemail.test; smime=pass",
        "X-SecureMail-Status: verified; signer=ministry",
        "X-SecureMail-Signer: Ministry",
    )
    found: list[bytes | None] = []

    async def body() -> None:
        reply = await _send(port, _message("<plain-1@example.com>", "Lunch?", *forged))
        assert reply.startswith("2"), reply
        found.append(await wait_for(mailbox, "<plain-1@example.com>", WAIT))

    _scenario(federation, body)
    [delivered] = found
    assert delivered is not None, "not delivered"
    parsed = _assert_not_verified(delivered)
    assert parsed["X-SecureMail-Warning"] is None
    assert parsed["Subject"] == "Lunch?"
    [entry] = _entries(federation.config("agency"))
    assert (entry.kind, entry.priority, entry.direction) == ("ordinary", 1, Direction.INBOUND)
    assert entry.client == "ordinary 127.0.0.1"


def test_a_claimed_classification_carries_the_warning(federation: Federation) -> None:
    """Mail from outside marked [SEC=IN-CONFIDENCE] (sent over STARTTLS) gets the NOT SecureMail
    warning as a header, and its Subject is left as it came."""
    port = _with_ordinary(federation)
    mailbox = federation.nodes["agency"].mailbox(AROHA)
    subject = "[SEC=IN-CONFIDENCE] Your benefit review"
    found: list[bytes | None] = []

    async def body() -> None:
        message = _message("<claim-1@example.com>", subject)
        reply = await _send(port, message, tls=True)
        assert reply.startswith("2"), reply
        found.append(await wait_for(mailbox, "<claim-1@example.com>", WAIT))

    _scenario(federation, body)
    [delivered] = found
    assert delivered is not None, "not delivered"
    parsed = _assert_not_verified(delivered)
    assert " ".join(str(parsed["X-SecureMail-Warning"]).split()) == WARNING
    assert parsed["Subject"] == subject
    assert b"with ESMTPS;" in delivered


def test_smime_on_the_ordinary_port_is_not_verified(federation: Federation) -> None:
    """A genuine member's S/MIME message sent to the ordinary port is delivered as it came,
    unverified: only the peer port's checks make mail verified."""
    port = _with_ordinary(federation)
    passphrase = (federation.root / "passphrase.txt").read_bytes().strip()
    provider = load_org_keys(federation.config("provider").organisations[0], passphrase)
    agency = load_org_keys(federation.config("agency").organisations[0], passphrase)
    inner = _message("<smime-1@securemail.provider.nz>", "Signed and sealed")
    protected = protect(
        inner,
        provider.signer,
        [agency.identities[0].certificate],
        now=datetime.now(UTC),
    ).message
    outer = b"Message-ID: <smime-1@securemail.provider.nz>\r\n" + protected
    mailbox = federation.nodes["agency"].mailbox(AROHA)
    found: list[bytes | None] = []

    async def body() -> None:
        assert (await _send(port, outer)).startswith("2")
        found.append(await wait_for(mailbox, "<smime-1@securemail.provider.nz>", WAIT))

    _scenario(federation, body)
    [delivered] = found
    assert delivered is not None, "not delivered"
    _assert_not_verified(delivered)
    assert b"application/pkcs7-mime" in delivered
    assert b"Kia ora, this came from the Internet." not in delivered  # never decrypted


def test_a_copy_resent_after_a_lost_reply_lands_once(federation: Federation) -> None:
    """The same message sent twice (a lost 250) is delivered once."""
    port = _with_ordinary(federation)
    mailbox = federation.nodes["agency"].mailbox(AROHA)
    message = _message("<twice-1@example.com>", "Twice")

    async def body() -> None:
        for _ in range(2):
            assert (await _send(port, message)).startswith("2")
        await wait_for(mailbox, "<twice-1@example.com>", WAIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        entries = federation.config("agency")
        while loop.time() < deadline and any(e.pending() for e in _entries(entries)):
            await asyncio.sleep(0.1)

    _scenario(federation, body)
    assert len(list((mailbox / "new").iterdir())) == 1
    replies = sorted(str(e.recipients[0].last_reply) for e in _entries(federation.config("agency")))
    assert len(replies) == 2 and any("duplicate suppressed" in r for r in replies)


def test_ordinary_mail_to_the_receipt_address_is_refused(federation: Federation) -> None:
    """Receipts come only through SecureMail: ordinary mail to the receipt address gets 550."""
    port = _with_ordinary(federation)
    receipts = "securemail-receipts@agency.govt.nz"
    refused: list[aiosmtplib.SMTPDataError] = []

    async def body() -> None:
        with pytest.raises(aiosmtplib.SMTPDataError) as error:
            await _send(port, _message("<receipt-1@example.com>", "MDN"), to=receipts)
        refused.append(error.value)

    _scenario(federation, body)
    assert refused[0].code == 550
    assert _entries(federation.config("agency")) == []


def test_outbound_to_the_smarthost_only_waits_behind_securemail(federation: Federation) -> None:
    """Outbound mail whose every recipient leaves through the smarthost is queued at the
    ordinary priority; mail to a member (even with an outside copy) at SecureMail's."""
    dead = free_port()  # the smarthost is down: entries stay queued to be read
    smarthost = f'[smarthost]\nhost = "127.0.0.1"\nport = {dead}\nrequire_tls = false\n'
    _with_ordinary(federation, smarthost)
    relay = federation.nodes["agency"].relay_port
    sends = {
        "<out-1@agency.govt.nz>": ["orders@supplier.example.com"],
        "<out-2@agency.govt.nz>": ["orders@supplier.example.com", "hemi@securemail.provider.nz"],
    }

    async def body() -> None:
        for message_id, to in sends.items():
            message = _message(message_id, "Order").replace(
                b"From: Someone <someone@example.com>", f"From: {AROHA}".encode()
            )
            await aiosmtplib.send(
                message,
                sender=AROHA,
                recipients=to,
                hostname="127.0.0.1",
                port=relay,
                start_tls=False,
                timeout=WAIT,
            )

    _scenario(federation, body)
    priorities = {e.message_id: e.priority for e in _entries(federation.config("agency"))}
    assert priorities == {"<out-1@agency.govt.nz>": 1, "<out-2@agency.govt.nz>": 0}


def test_the_ordinary_table_is_optional_and_checked(federation: Federation) -> None:
    """Without [ordinary] there is no ordinary listener; a bad listen value is named."""
    path = federation.nodes["agency"].config
    assert load_config(path).ordinary is None
    _with_ordinary(federation)
    ordinary = load_config(path).ordinary
    assert ordinary is not None and ordinary.host == "127.0.0.1"
    path.write_text(path.read_text() + 'extra = "x"\n')
    with pytest.raises(ConfigError, match="ordinary"):
        load_config(path)
    bad = path.read_text().replace('extra = "x"\n', "")
    path.write_text(bad.replace(f"127.0.0.1:{ordinary.port}", "nowhere"))
    with pytest.raises(ConfigError, match=r"ordinary\.listen"):
        load_config(path)
