"""What the composition root opens for one node process: keys, queue, directory, targets.

``open_node`` (securemail.node.run) fills one :class:`Node`; the root builds each role's
narrow context from it (securemail.node.roles) and closes it at stop. No role is handed the
``Node`` itself. Keys are loaded once at start (the passphrase is read then and not kept);
the directory is the refresher's current verified value, read on every decision so a
refresh takes effect at once.

Security: the key passphrase comes only from the environment variable or file the config
names. A node whose keys cannot be opened refuses to start rather than running unable to
sign or decrypt.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from securemail.accounts.model import Mailboxes
from securemail.accounts.node import Accounts
from securemail.config.node import Delivery, NodeConfig, Organisation, StoreAuth
from securemail.config.reasons import NodeReason
from securemail.contacts.store import ContactRegister
from securemail.deliver import MaildirTarget, SmtpTarget, Target
from securemail.deliver.seal import MailboxSeal
from securemail.deliver.smtp import StoreClient
from securemail.directory.model import Directory
from securemail.directory.refresh import DirectoryRefresher
from securemail.errors import SecureMailError
from securemail.keys.org import OrgKeys
from securemail.keys.rollover import decryption_identities
from securemail.queue import Direction, QueueStore
from securemail.queue.access import QueueAccess
from securemail.queue.threads import DatabaseThreads
from securemail.relay.transport import PooledRelay
from securemail.smime import SignerIdentity, SmimeError, TrustStore
from securemail.smime.keys import load_certificate, load_private_key
from securemail.structured.inbox import PullInbox

if TYPE_CHECKING:  # the key ring loads keys with this module's functions
    from securemail.node.keyring import KeyRing


class NodeError(SecureMailError[NodeReason]):
    """The node cannot start: keys, directory or configuration refused."""


def read_passphrase(config: NodeConfig) -> bytes:
    """The key passphrase from the configured file or environment variable."""
    if config.passphrase_file is not None:
        try:
            # the first line, as the CLI's --passphrase-file reads it
            lines = config.passphrase_file.read_bytes().splitlines()
        except OSError as error:
            raise NodeError(NodeReason.KEYS_UNAVAILABLE, f"passphrase file: {error}") from None
        if not lines or not lines[0]:
            raise NodeError(NodeReason.KEYS_UNAVAILABLE, "the passphrase file is empty")
        return lines[0]
    value = os.environ.get(config.passphrase_env or "")
    if not value:
        raise NodeError(
            NodeReason.KEYS_UNAVAILABLE, f"set the key passphrase in ${config.passphrase_env}"
        )
    return value.encode()


def load_org_keys(org: Organisation, passphrase: bytes) -> OrgKeys:
    """Open the organisation's signing key and every decryption key (current, next, retired)."""
    try:
        signer = SignerIdentity(
            load_certificate((org.keys / "certs" / "signing.pem").read_bytes()),
            load_private_key((org.keys / "keys" / "signing.key").read_bytes(), passphrase),
        )
        identities = tuple(decryption_identities(org.keys, passphrase))
    except (OSError, ValueError, SmimeError) as error:
        raise NodeError(NodeReason.KEYS_UNAVAILABLE, f"{org.org_id}: {error}") from None
    if not identities:
        raise NodeError(NodeReason.KEYS_UNAVAILABLE, f"{org.org_id}: no encryption key")
    return OrgKeys(org, signer, identities)


def read_store_password(auth: StoreAuth) -> str:
    """The store's AUTH password: the first line of the file, or the environment variable."""
    if auth.password_file is not None:
        try:
            lines = auth.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise NodeError(NodeReason.BAD_CONFIG, f"auth_password_file: {error}") from None
        if not lines or not lines[0]:
            raise NodeError(NodeReason.BAD_CONFIG, f"{auth.password_file} is empty")
        return lines[0]
    value = os.environ.get(auth.password_env or "")
    if not value:
        raise NodeError(NodeReason.BAD_CONFIG, f"set the store's password in ${auth.password_env}")
    return value


def store_client(delivery: Delivery, passphrase: bytes | None) -> StoreClient:
    """The client certificate and AUTH the node presents to an SMTP/LMTP store."""
    tls, auth = delivery.store_tls, delivery.auth
    return StoreClient(
        certificate=None if tls is None else _text(tls.client_certificate),
        key=None if tls is None else _text(tls.client_key),
        key_password=passphrase,
        auth=None if auth is None else (auth.user, read_store_password(auth)),
    )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def make_target(
    org: Organisation,
    config: NodeConfig,
    mailboxes: Mailboxes | None = None,
    seal: MailboxSeal | None = None,
    passphrase: bytes | None = None,
) -> Target:
    """The delivery target of ``org``; ``mailboxes`` is required when it uses accounts.

    ``seal`` (the node's, when it serves mailboxes to people) seals what goes into Maildirs;
    ``passphrase`` opens an encrypted client key for an SMTP/LMTP store.
    """
    delivery = org.delivery
    if delivery.kind == "maildir":
        assert delivery.path is not None  # noqa: S101 (config guarantees it)
        if not delivery.accounts:
            return MaildirTarget(delivery.path, seal=seal)
        if mailboxes is None:
            raise ValueError(f"{org.org_id}: delivery with accounts needs the mailboxes")
        return MaildirTarget(delivery.path, accounts=mailboxes, seal=seal)
    cafile = None if delivery.store_tls is None else _text(delivery.store_tls.cafile)
    try:
        return SmtpTarget(
            delivery.host,
            delivery.port,
            lmtp=delivery.kind == "lmtp",
            starttls=delivery.starttls,
            cafile=cafile,
            helo=config.name,
            client=store_client(delivery, passphrase),
        )
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        raise NodeError(NodeReason.BAD_CONFIG, f"{org.org_id}.delivery: {error}") from None


@dataclass(frozen=True)
class Node:
    """The parts one node process opened; only the composition root holds it."""

    config: NodeConfig
    orgs: KeyRing  # the organisations' keys; reloaded when their files change
    targets: Mapping[str, Target]
    anchors: tuple[x509.Certificate, ...]
    refresher: DirectoryRefresher
    store: QueueStore  # the whole queue; roles get its parts through ``queue``
    queue: QueueAccess
    threads: DatabaseThreads
    relay: PooledRelay
    wake: Mapping[Direction, asyncio.Event]
    clock: Callable[[], datetime]
    accounts: Accounts | None = None  # open when the node hosts people's mailboxes
    inbox: PullInbox | None = None  # open when an organisation pulls its documents (issue 21)
    contacts: ContactRegister | None = None  # the organisations' verified contacts

    def directory(self) -> Directory | None:
        """The current verified directory (None until one was loaded)."""
        return self.refresher.current

    async def close(self) -> None:
        """Close what ``open_node`` opened: relay sessions, the queue, the structured pull
        queue, the accounts, the contacts."""
        await self.relay.close()
        await self.queue.db(self.store.close)
        if self.inbox is not None:
            await self.queue.db(self.inbox.close)
        self.threads.close()
        if self.accounts is not None:
            self.accounts.close()
        if self.contacts is not None:
            self.contacts.close()


class CurrentTrust:
    """The trust store for signer validation: federation anchors + the directory's CRLs,
    rebuilt when the directory's serial changes."""

    def __init__(
        self, anchors: tuple[x509.Certificate, ...], directory: Callable[[], Directory | None]
    ) -> None:
        self._anchors, self._directory = anchors, directory
        self._trust: tuple[int, TrustStore] | None = None

    def __call__(self) -> TrustStore:
        directory = self._directory()
        serial = -1 if directory is None else directory.serial
        if self._trust is None or self._trust[0] != serial:
            crls = () if directory is None else directory.crls
            self._trust = (serial, TrustStore(self._anchors, crls))
        return self._trust[1]
