"""The node's submission listeners: [submission] settings, start-up, mail queued as the account."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiosmtplib
import pytest

from securemail.config.toml_table import ConfigError
from securemail.demo.exchange import client_tls
from securemail.demo.federation import Clients
from securemail.node.admission import Admission
from securemail.node.context import NodeError
from securemail.node.listeners import start_listeners
from securemail.node.roles import build_roles
from securemail.node.run import open_node
from securemail.queue import Direction, QueueStore
from tests.node.conftest import WAIT, Federation, running

HEMI = "hemi.walker@securemail.provider.nz"
AROHA = "aroha.ngata@agency.govt.nz"
MESSAGE = (
    f"From: Hemi Walker <{HEMI}>\r\nTo: {AROHA}\r\nSubject: Benefit review\r\n"
    "Message-ID: <review-1@securemail.provider.nz>\r\n\r\nKia ora.\r\n"
).encode()


def _with_submission(federation: Federation, table: str) -> Path:
    """The provider node's config file with its [submission] table replaced by ``table``."""
    path = federation.nodes["provider"].config
    text = re.sub(r"\n\[submission\]\n.*?\n\n", "\n", path.read_text(), count=1, flags=re.S)
    path.write_text(text + "\n[submission]\n" + table)
    return path


async def _submit(clients: Clients, *, implicit_tls: bool) -> None:
    """Log in as Hemi with her password and send MESSAGE, checking the node's certificate
    as a mail client would (chain to the federation CA, name 127.0.0.1)."""
    port = clients.submission_tls_port if implicit_tls else clients.submission_port
    await aiosmtplib.send(
        MESSAGE,
        sender=HEMI,
        recipients=[AROHA],
        hostname="127.0.0.1",
        port=port,
        username=HEMI,
        password=clients.passwords[HEMI],
        use_tls=implicit_tls,
        start_tls=not implicit_tls,
        tls_context=client_tls(clients),
        timeout=WAIT,
    )


def test_submitted_mail_is_queued_outbound_with_the_account(federation: Federation) -> None:
    """Through 587 and 465 the node queues the mail outbound, recording the account as auth."""
    clients = federation.nodes["provider"].clients
    assert clients is not None

    async def scenario() -> None:
        async with running(federation, "provider"):
            await _submit(clients, implicit_tls=False)
            await _submit(clients, implicit_tls=True)

    asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    store = QueueStore.open(federation.config("provider").database)
    try:
        entries = store.list(direction=Direction.OUTBOUND)
    finally:
        store.close()
    submitted = [e for e in entries if e.client == "submission 127.0.0.1"]
    assert len(submitted) == 2
    for entry in submitted:
        assert entry.auth == HEMI
        assert entry.mail_from == HEMI
        assert [r.address for r in entry.recipients] == [AROHA]


def test_submission_without_an_authenticator_does_not_start(federation: Federation) -> None:
    """A node configured for submission but given no authenticator refuses to start."""
    _with_submission(federation, 'listen = "127.0.0.1:0"\n')
    config = federation.config("provider")

    async def scenario() -> None:
        node = await open_node(config)
        try:
            await start_listeners(config, Admission(build_roles(node).admission))
        finally:
            await node.close()

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
    assert "[submission]" not in base
    for table, message in mistakes.items():
        path.write_text(base + "\n[submission]\n" + table)
        with pytest.raises(ConfigError, match=message):
            federation.config("provider")


def test_refusal_tells_the_person_why_in_words(federation: Federation) -> None:
    """A mail program writing to a domain outside SecureMail is told, at RCPT, "Not sent to
    …: … is not a SecureMail member …", with 550 5.7.1 and the reason code not-a-member."""
    clients = federation.nodes["provider"].clients
    assert clients is not None
    outsider = "someone@elsewhere.example"

    async def scenario() -> aiosmtplib.SMTPRecipientRefused:
        async with running(federation, "provider"):
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
                await aiosmtplib.send(
                    MESSAGE,
                    sender=HEMI,
                    recipients=[outsider],
                    hostname="127.0.0.1",
                    port=clients.submission_port,
                    username=HEMI,
                    password=clients.passwords[HEMI],
                    start_tls=True,
                    tls_context=client_tls(clients),
                    timeout=WAIT,
                )
            return refused.value.recipients[0]

    refusal = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    assert refusal.code == 550
    assert refusal.message == (
        "5.7.1 Not sent to someone@elsewhere.example: elsewhere.example is not a SecureMail"
        " member, and this service sends only to SecureMail members (not-a-member)"
    )


def test_classified_mail_to_an_outsider_is_refused_at_data_in_words(
    federation: Federation,
) -> None:
    """With a smarthost the outsider is taken at RCPT, but an IN-CONFIDENCE message to it is
    refused at DATA ("…classification may go only to SecureMail members…", 550 5.7.1,
    label-requires-securemail) instead of being accepted and bounced later; nothing queued."""
    clients = federation.nodes["provider"].clients
    assert clients is not None
    config = federation.nodes["provider"].config
    config.write_text(
        config.read_text() + '\n[smarthost]\nhost = "127.0.0.1"\nport = 9\nrequire_tls = false\n'
    )
    labelled = MESSAGE.replace(b"Subject: Benefit review", b"Subject: Review [IN-CONFIDENCE]")

    async def scenario() -> aiosmtplib.SMTPResponseException:
        async with running(federation, "provider"):
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await aiosmtplib.send(
                    labelled,
                    sender=HEMI,
                    recipients=["orders@supplier.example.com"],
                    hostname="127.0.0.1",
                    port=clients.submission_port,
                    username=HEMI,
                    password=clients.passwords[HEMI],
                    start_tls=True,
                    tls_context=client_tls(clients),
                    timeout=WAIT,
                )
            return refused.value

    refusal = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    assert refusal.code == 550
    assert refusal.message.startswith("5.7.1 Not sent to orders@supplier.example.com: the")
    assert "classification may go only to SecureMail members" in refusal.message
    assert refusal.message.endswith("(label-requires-securemail)")
    store = QueueStore.open(federation.config("provider").database)
    try:
        assert store.list(direction=Direction.OUTBOUND) == []
    finally:
        store.close()
