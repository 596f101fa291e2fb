"""The node's submission listeners: [submission] settings, start-up, mail queued as the account."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import pytest

from securemail.accounts import Account, AccountReason, Denied, Granted, Service
from securemail.node.admission import Admission
from securemail.node.context import NodeError
from securemail.node.listeners import start_listeners
from securemail.node.run import open_node
from securemail.node.toml_table import ConfigError
from securemail.queue import Direction, QueueStore
from tests.node.conftest import WAIT, Federation

HEMI = "hemi.walker@securemail.provider.nz"
PASSWORD = "hemi's app password"
AROHA = "aroha.ngata@agency.govt.nz"
MESSAGE = (
    f"From: Hemi Walker <{HEMI}>\r\nTo: {AROHA}\r\nSubject: Benefit review\r\n"
    "Message-ID: <review-1@securemail.provider.nz>\r\n\r\nKia ora.\r\n"
).encode()


class OneAccount:
    """An in-test Authenticator with Hemi's account and one password."""

    async def login(
        self, name: str, secret: str, *, service: Service, source: str, totp: str | None = None
    ) -> Granted | Denied:
        if (name, secret, service) != (HEMI, PASSWORD, Service.SMTP):
            return Denied(AccountReason.BAD_CREDENTIALS)
        hemi = Account(
            HEMI, (HEMI,), "Hemi Walker", None, False, False, None, False, datetime.now(UTC)
        )
        return Granted(hemi, "app-password")


def _with_submission(federation: Federation, table: str) -> Path:
    """The provider node's config file with ``table`` added."""
    path = federation.nodes["provider"].config
    path.write_text(path.read_text() + "\n[submission]\n" + table)
    return path


async def _submit(port: int, *, implicit_tls: bool) -> None:
    """Log in as Hemi and send MESSAGE, over STARTTLS or implicit TLS (certificate unchecked:
    the test trusts the loopback address, not the federation CA)."""
    await aiosmtplib.send(
        MESSAGE,
        sender=HEMI,
        recipients=[AROHA],
        hostname="127.0.0.1",
        port=port,
        username=HEMI,
        password=PASSWORD,
        use_tls=implicit_tls,
        start_tls=not implicit_tls,
        validate_certs=False,
        timeout=WAIT,
    )


def test_submitted_mail_is_queued_outbound_with_the_account(federation: Federation) -> None:
    """Through 587 and 465 the node queues the mail outbound, recording the account as auth."""
    _with_submission(federation, 'listen = "127.0.0.1:0"\ntls_listen = "127.0.0.1:0"\n')
    config = federation.config("provider")

    async def scenario() -> None:
        node = await open_node(config)
        listeners = await start_listeners(node, Admission(node), authenticator=OneAccount())
        try:
            assert listeners.submission is not None and listeners.submission_tls is not None
            await _submit(listeners.submission.port, implicit_tls=False)
            await _submit(listeners.submission_tls.port, implicit_tls=True)
        finally:
            await listeners.close()
            await node.relay_pool.close_all()
            await node.db(node.store.close)
            node.close_db()

    asyncio.run(asyncio.wait_for(scenario(), WAIT))
    store = QueueStore.open(config.database)
    try:
        entries = store.list(direction=Direction.OUTBOUND)
    finally:
        store.close()
    assert len(entries) == 2
    for entry in entries:
        assert entry.auth == HEMI
        assert entry.client == "submission 127.0.0.1"
        assert entry.mail_from == HEMI
        assert [r.address for r in entry.recipients] == [AROHA]


def test_submission_without_an_authenticator_does_not_start(federation: Federation) -> None:
    """A node configured for submission but given no authenticator refuses to start."""
    _with_submission(federation, 'listen = "127.0.0.1:0"\n')
    config = federation.config("provider")

    async def scenario() -> None:
        node = await open_node(config)
        try:
            await start_listeners(node, Admission(node))
        finally:
            await node.db(node.store.close)
            node.close_db()

    with pytest.raises(NodeError, match="authenticator"):
        asyncio.run(scenario())


def test_submission_settings(federation: Federation) -> None:
    """The certificate defaults to the peer's; a table without a port or with half a key pair
    is refused, naming the setting."""
    _with_submission(federation, 'tls_listen = "127.0.0.1:465"\n')
    config = federation.config("provider")
    assert config.submission is not None and config.submission.listen is None
    assert config.submission.tls_listen is not None and config.submission.tls_listen.port == 465
    assert config.submission.tls_certificate == config.tls_certificate
    assert config.submission.tls_key == config.tls_key
    mistakes = {
        "": "needs listen",
        'listen = "127.0.0.1:587"\ntls_certificate = "x.pem"\n': "together",
        'listen = "nowhere"\n': r"submission\.listen",
        'listen = "127.0.0.1:587"\ntls_listen = "127.0.0.1:587"\n': "same address",
        'listen = "127.0.0.1:587"\nport = 587\n': "unknown setting",
    }
    path = federation.nodes["provider"].config
    base = path.read_text().rpartition("\n[submission]\n")[0]
    for table, message in mistakes.items():
        path.write_text(base + "\n[submission]\n" + table)
        with pytest.raises(ConfigError, match=message):
            federation.config("provider")
