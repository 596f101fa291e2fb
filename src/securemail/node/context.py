"""What the node's services share: settings, the queue, keys, the directory and targets.

Services get one ``Node`` value at start; nothing is global. Keys are loaded once at start
(the passphrase is read then and not kept); the directory is the refresher's current
verified value, read on every decision so a refresh takes effect at once.

Security: the key passphrase comes only from the environment variable or file the config
names. A node whose keys cannot be opened refuses to start rather than running unable to
sign or decrypt.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from cryptography import x509

from securemail.accounts.model import Mailboxes
from securemail.accounts.node import Accounts
from securemail.deliver import MaildirTarget, SmtpTarget, Target
from securemail.directory.model import Directory
from securemail.directory.refresh import DirectoryRefresher
from securemail.errors import SecureMailError
from securemail.keys.rollover import decryption_identities
from securemail.node.commits import GroupCommit
from securemail.node.config import NodeConfig, Organisation
from securemail.node.reasons import NodeReason
from securemail.queue import Direction, NewMessage, QueueStore
from securemail.relay import ClientCertificate, Destination, PeerTls, PoolLimits, RelayPool
from securemail.smime import RecipientIdentity, SignerIdentity, SmimeError, TrustStore
from securemail.smime.keys import load_certificate, load_certificates, load_private_key

P = ParamSpec("P")
T = TypeVar("T")


class NodeError(SecureMailError[NodeReason]):
    """The node cannot start: keys, directory or configuration refused."""


@dataclass(frozen=True)
class OrgKeys:
    """One organisation this node serves, with its signing and decryption keys."""

    organisation: Organisation
    signer: SignerIdentity
    identities: tuple[RecipientIdentity, ...]


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


def make_target(
    org: Organisation, config: NodeConfig, mailboxes: Mailboxes | None = None
) -> Target:
    """The delivery target of ``org``; ``mailboxes`` is required when it uses accounts."""
    delivery = org.delivery
    if delivery.kind == "maildir":
        assert delivery.path is not None  # noqa: S101 (config guarantees it)
        if not delivery.accounts:
            return MaildirTarget(delivery.path)
        if mailboxes is None:
            raise ValueError(f"{org.org_id}: delivery with accounts needs the mailboxes")
        return MaildirTarget(delivery.path, accounts=mailboxes)
    return SmtpTarget(
        delivery.host,
        delivery.port,
        lmtp=delivery.kind == "lmtp",
        starttls=delivery.starttls,
        helo=config.name,
    )


@dataclass
class Node:
    """The running node's shared state (one per process)."""

    config: NodeConfig
    store: QueueStore
    orgs: dict[str, OrgKeys]
    targets: dict[str, Target]
    anchors: tuple[x509.Certificate, ...]
    directory: Callable[[], Directory | None]
    clock: Callable[[], datetime]
    wake: dict[Direction, asyncio.Event] = field(default_factory=dict)
    refresher: DirectoryRefresher | None = None
    accounts: Accounts | None = None  # open when the node hosts people's mailboxes
    # Closed by run.serve at stop. Eight idle sessions per peer: half the outbound workers
    # (measured: 4 -> 101-105 msg/s, 16 -> 113), leaving most of a peer's 100 slots free.
    relay_pool: RelayPool = field(default_factory=lambda: RelayPool(PoolLimits(8)))
    _trust: tuple[int, TrustStore] | None = None
    _executor: ThreadPoolExecutor | None = None
    _commits: GroupCommit | None = None
    _client_tls: ClientCertificate | None = None

    def db(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Run a queue store call off the event loop, on the node's database thread(s).

        SQLite gets one thread: its writers would otherwise wait for each other by sleeping
        in SQLite's busy handler (up to 100 ms a step), which measured as the largest cost
        per message. PostgreSQL gets a few, since it locks rows, not the database.
        """
        if self._executor is None:
            threads = 1 if self.config.database.startswith("sqlite") else 4
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix="queue")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def commits(self) -> GroupCommit:
        """The node's group commit for ``enqueue`` and ``record`` (see node.commits)."""
        if self._commits is None:
            self._commits = GroupCommit(self.store, self.db, self.clock)
        return self._commits

    def close_db(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def trust(self) -> TrustStore:
        """The trust store for signer validation: federation anchors + the directory's CRLs."""
        directory = self.directory()
        serial = -1 if directory is None else directory.serial
        if self._trust is None or self._trust[0] != serial:
            crls = () if directory is None else directory.crls
            self._trust = (serial, TrustStore(self.anchors, crls))
        return self._trust[1]

    def org_for(self, address: str) -> OrgKeys | None:
        org = self.config.organisation_for(address.rpartition("@")[2])
        return None if org is None else self.orgs[org.org_id]

    def peer_destination(self, host: str, port: int, pins: tuple[str, ...]) -> Destination:
        """A member gateway, checked by pin and anchor, shown our TLS client certificate."""
        if self._client_tls is None:
            config = self.config
            self._client_tls = ClientCertificate(
                str(config.tls_certificate), str(config.tls_key), read_passphrase(config)
            )
        peer_tls = PeerTls(frozenset(pins), self.anchors, self._client_tls)
        return Destination(host, port, helo=self.config.name, peer_tls=peer_tls)

    def smarthost(self) -> Destination | None:
        smarthost = self.config.smarthost
        if smarthost is None:
            return None
        cafile = None if smarthost.cafile is None else str(smarthost.cafile)
        return Destination(
            smarthost.host,
            smarthost.port,
            helo=self.config.name,
            peer_tls=None,
            require_tls=smarthost.require_tls,
            cafile=cafile,
        )

    def notify_about(self, messages: Iterable[NewMessage]) -> None:
        """Wake the workers that will take ``messages`` (just queued)."""
        for direction in {m.direction for m in messages}:
            self.notify(direction)

    def notify(self, direction: Direction) -> None:
        """Wake the workers of ``direction`` (something new is queued)."""
        event = self.wake.get(direction)
        if event is not None:
            event.set()


def load_anchors(path: Path) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(load_certificates(path.read_bytes()))
    except (OSError, ValueError) as error:
        raise NodeError(NodeReason.BAD_CONFIG, f"federation anchor {path}: {error}") from None
