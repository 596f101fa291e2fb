"""A role on a real queue with fakes at its edges: a recording relay and a recording store.

The queue is a real SQLite file (WAL, fsync) in the test's directory; the relay and the
delivery target implement the real Protocols (:class:`securemail.relay.transport.Relay`,
:class:`securemail.deliver.target.Target`) in memory, so a worker's whole attempt runs in
milliseconds with nothing listening.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from securemail.bounces import NoticeContext
from securemail.config.node import Delivery, Organisation
from securemail.deliver.seal import Origin
from securemail.deliver.target import Target
from securemail.directory.model import Directory
from securemail.keys.org import OrgKeys
from securemail.queue import Direction, QueueStore
from securemail.queue.access import QueueAccess
from securemail.queue.commits import GroupCommit
from securemail.queue.threads import DatabaseThreads
from securemail.relay import Destination, RelayError
from securemail.replies import Reply, ok
from securemail.unprotect.context import UnprotectContext
from tests.conftest import NOW, Org, Pki
from tests.directory.conftest import member_of


@dataclass(frozen=True)
class Sent:
    """One message the relay was handed."""

    destination: Destination
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes


@dataclass
class RecordingRelay:
    """See Relay: records every send and answers ``reply`` (or raises ``failure``)."""

    reply: Callable[[str], Reply] = lambda recipient: ok("queued")
    failure: RelayError | None = None
    sent: list[Sent] = field(default_factory=list)

    async def send(
        self, destination: Destination, mail_from: str, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        if self.failure is not None:
            raise self.failure
        self.sent.append(Sent(destination, mail_from, tuple(recipients), body))
        return {r: self.reply(r) for r in recipients}


@dataclass(frozen=True)
class Stored:
    """One message the delivery target stored."""

    recipients: tuple[str, ...]
    body: bytes
    key: str
    keywords: frozenset[str]
    origin: Origin = Origin.DELIVERED


@dataclass
class RecordingTarget:
    """See Target: stores in memory, once per key and recipient (it can tell duplicates)."""

    stored: list[Stored] = field(default_factory=list)
    keeps_one_copy = True

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),
    ) -> dict[str, Reply]:
        self.stored.append(Stored(tuple(recipients), body, key, frozenset(keywords), origin))
        return {r: ok("stored") for r in recipients}


def org_keys(org: Org, org_id: str, keys: Path) -> OrgKeys:
    """``org`` as an organisation this node serves, its one certificate signing and decrypting."""
    organisation = Organisation(org_id, (org.domain,), keys, Delivery("maildir", keys))
    return OrgKeys(organisation, org.signer, (org.recipient,))


def directory(pki: Pki) -> Directory:
    """The agency and the ministry, with the federation's CRL."""
    members = (member_of(pki.agency, "agency"), member_of(pki.ministry, "ministry"))
    return Directory("test", 1, NOW, NOW + timedelta(days=7), members, crls=(pki.crl,))


@dataclass(frozen=True)
class Queue:
    """A real queue and the access a role gets to it, and what it was woken for."""

    store: QueueStore
    access: QueueAccess
    woken: list[Direction]


@asynccontextmanager
async def open_queue(path: Path) -> AsyncIterator[Queue]:
    """A fresh SQLite queue at ``path``, closed (threads too) on leaving."""
    url = f"sqlite:///{path}"
    store = QueueStore.open(url)
    threads = DatabaseThreads(url)
    woken: list[Direction] = []
    commits = GroupCommit(store, threads, lambda: NOW)
    access = QueueAccess(store, store, store, threads, commits, woken.append, store, store)
    try:
        yield Queue(store, access, woken)
    finally:
        threads.close()
        store.close()


def notices_for(orgs: dict[str, OrgKeys], queue: QueueAccess) -> NoticeContext:
    """The notice context of a node named ``gw.test`` serving ``orgs``."""
    by_domain = {d: k.organisation for k in orgs.values() for d in k.organisation.domains}
    return NoticeContext("gw.test", orgs, by_domain.get, queue, lambda: NOW)


def unprotect_context(
    pki: Pki,
    queue: Queue,
    orgs: dict[str, OrgKeys],
    target: Target,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    **settings: Any,
) -> UnprotectContext:
    """The inbound role of a node named ``gw.test`` serving ``orgs`` on ``queue``, the
    agency's verified mail going to ``target``; ``settings``: other UnprotectContext fields."""
    return UnprotectContext(
        name="gw.test",
        orgs=orgs,
        targets={"agency": target},
        directory=lambda: directory(pki),
        trust=pki.trust,
        queue=queue.access,
        notices=notices_for(orgs, queue.access),
        clock=clock,
        **settings,
    )
