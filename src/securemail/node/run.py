"""Run a node: open the queue, load keys and directory, start listeners and workers.

Services meet only at the queue: the listeners admit (enqueue, then 250); the outbound and
inbound workers claim and process; a refresher keeps the directory current; a warner sends
delay notices. This is the composition root: it opens the node's parts once and hands each
role its own narrow context (securemail.node.roles), never the parts themselves. All run as
tasks of one asyncio loop (``securemail serve``); on stop, the listeners close first, then
workers finish the entries they hold, then the queue closes. Anything a crash leaves
``active`` returns to the queue at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from securemail import logbook
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.conformance.history import ConformanceHistory
from securemail.conformance.metrics import ConformanceCollector
from securemail.conformance.schedule import run_schedule
from securemail.contacts.store import ContactRegister
from securemail.directory.fetch import Source
from securemail.directory.refresh import DirectoryRefresher
from securemail.directory.store import DirectoryStore
from securemail.imap import ImapServer
from securemail.node.admission import Admission
from securemail.node.context import (
    Node,
    NodeError,
    make_target,
    read_passphrase,
)
from securemail.node.counters import QueueCounters, counting_worker, share_counters
from securemail.node.keyring import KeyRing, run_key_watch
from securemail.node.listeners import Listeners, start_listeners
from securemail.node.mailboxes import open_node_accounts, start_node_imap
from securemail.node.monitoring import monitoring_router, open_monitor
from securemail.node.mta import keep_postfix_map
from securemail.node.processes import WorkerProcesses
from securemail.node.roles import Roles, build_roles, conformance_context
from securemail.node.structured import (
    QueueAnswers,
    open_inbox,
    run_inbox_purge,
    with_application,
)
from securemail.node.web import WebServer, start_node_web
from securemail.node.workers import (
    CONCURRENCY,
    POLL_SECONDS,
    SHARED_POLL_SECONDS,
    Process,
    WorkerLoop,
    run_body_purge,
    run_receipt_windows,
    run_warnings,
    run_worker,
)
from securemail.protect.service import Outbound
from securemail.queue import Direction, Entry, QueueStore, RetryPolicy
from securemail.queue.access import QueueAccess
from securemail.queue.commits import GroupCommit
from securemail.queue.threads import DatabaseThreads
from securemail.queue.wakeups import listen_for_work, listens
from securemail.receive import Listener
from securemail.records.service import keep_records
from securemail.relay import PoolLimits, RelayPool
from securemail.relay.transport import PooledRelay
from securemail.storage.engine import connect
from securemail.unprotect.service import Inbound
from securemail.upstream.forward import Forwarder
from securemail.upstream.intake import UPSTREAM
from securemail.upstream.watch import run_delay_notices, run_probe

log = logging.getLogger("securemail.node")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ports:
    """The ports the node's listeners are bound to (useful when the config says port 0)."""

    peer: int
    relay: int
    ordinary: int | None = None
    submission: int | None = None  # STARTTLS (587 style)
    submission_tls: int | None = None  # implicit TLS (465 style)
    imap: int | None = None  # STARTTLS (143 style)
    imap_tls: int | None = None  # implicit TLS (993 style)
    web: int | None = None  # HTTPS: webmail, operator console, JSON API


async def open_node(
    config: NodeConfig, clock: Callable[[], datetime] = utc_now, *, fetch: bool = True
) -> Node:
    """Everything the services share; raises NodeError/QueueError if the node cannot start.

    ``fetch`` False (a worker process): the directory is read from the node's state only,
    which the main process keeps current.
    """
    passphrase = read_passphrase(config)
    orgs = KeyRing.open(config, passphrase)
    anchors = load_anchors(config.anchor)
    retry = RetryPolicy(config.retry.schedule, config.retry.warn_after, config.retry.max_lifetime)
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = await asyncio.to_thread(QueueStore.open, config.database, retry=retry)
    accounts = await open_node_accounts(config, passphrase, clock)
    mailboxes = None if accounts is None else accounts.mailboxes
    seal = None if accounts is None else accounts.mailbox_seal
    refresher = DirectoryRefresher(
        DirectoryStore(config.data_dir / "directory", anchors, federation=config.federation),
        Source(config.directory),
        clock=clock,
        on_current=keep_postfix_map(config) if fetch else None,
        # only the fetching (main) process accepts versions, so only it records them
        records=connect(config.database) if fetch else None,
    )
    threads = DatabaseThreads(config.database)
    wake = {d: asyncio.Event() for d in Direction}
    queue = QueueAccess(
        store,
        store,
        store,
        threads,
        GroupCommit(store, threads, clock),
        _notify(wake),
        store,
        store,
    )
    answers = QueueAnswers(queue, store, clock)
    inbox = open_inbox(config)
    node = Node(
        config=config,
        orgs=orgs,
        targets={
            o.org_id: with_application(
                o, config, make_target(o, config, mailboxes, seal, passphrase), answers, inbox
            )
            for o in config.organisations
        },
        anchors=anchors,
        refresher=refresher,
        store=store,
        queue=queue,
        threads=threads,
        # As many parked sessions per peer as the outbound worker has sends in flight: a
        # session is then never closed for want of room only to be opened again moments
        # later (a full handshake at both ends), and never more are open than the worker's slots.
        relay=PooledRelay(RelayPool(PoolLimits(idle_per_destination=CONCURRENCY))),
        wake=wake,
        clock=clock,
        accounts=accounts,
        inbox=inbox,
        contacts=ContactRegister(connect(config.database)),  # migrated by QueueStore.open
    )
    await refresher.load(clock())
    if fetch:
        await refresher.refresh_once(clock())
        _check_mail_roots(config)
    return node


def _notify(wake: dict[Direction, asyncio.Event]) -> Callable[[Direction], None]:
    """Wake the workers of a direction (something new is queued)."""
    return lambda direction: wake[direction].set()


def _check_mail_roots(config: NodeConfig) -> None:
    """Warn about Maildir roots that are missing: delivery waits (451) until they appear.

    They are not created here: a missing root is as likely an unmounted volume as a new
    node, and mail written under the mount point would be hidden once it is mounted.
    """
    for org in config.organisations:
        path = org.delivery.path
        if path is not None and not path.is_dir():
            log.warning(
                "%s: Maildir root %s does not exist; deliveries wait until it is created",
                org.org_id,
                path,
            )


async def serve(
    config: NodeConfig,
    *,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utc_now,
    ready: Callable[[Ports], Awaitable[None] | None] | None = None,
) -> None:
    """Run the node until ``stop`` is set."""
    node = await open_node(config, clock)
    if config.node_policy.region != "NZ":
        allowed = config.node_policy.allow_offshore_labelled
        log.warning(
            "this node declares region %s: labelled mail is %s",
            config.node_policy.region,
            "ALLOWED by [node] allow_offshore_labelled" if allowed else "refused (node-offshore)",
        )
    recovered = await node.queue.db(node.store.recover, clock(), owner=config.name)
    if recovered:
        log.warning("%d entries were active at the last stop: back in the queue", recovered)
    roles = build_roles(node)
    admission = Admission(roles.admission)
    authenticator = None if node.accounts is None else node.accounts.authenticator
    listeners = await start_listeners(config, admission, authenticator)
    try:
        imap = None if node.accounts is None else await start_node_imap(config, node.accounts)
    except BaseException:  # e.g. the IMAP port is taken: leave nothing listening
        await listeners.close()
        raise
    monitor = open_monitor(node, listeners, share_counters(config))
    try:
        web = await start_node_web(node, admission, extra=[monitoring_router(monitor)])
    except BaseException:
        await listeners.close()
        if imap is not None:
            await imap.close()
        raise
    tasks = await _background(node, roles, monitor.registry, stop)
    ports = _ports(listeners, imap, web)
    log.info("node %s serving; %s", config.name, ", ".join(describe(ports)))
    if ready is not None:
        result = ready(ports)
        if result is not None:
            await result
    try:
        await stop.wait()
    finally:
        await listeners.close()
        if imap is not None:
            await imap.close()
        if web is not None:
            await web.close()
        for event in node.wake.values():
            event.set()
        await asyncio.gather(*tasks, return_exceptions=True)  # the shutdown checkpoint too
        await node.close()


async def _background(
    node: Node, roles: Roles, registry: CollectorRegistry, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Every role beside the listeners: records, directory refresh, notices, purge, key
    watch, upstream probes, the workers (here or in worker processes) and conformance."""
    config, clock = node.config, node.clock
    tasks = [
        asyncio.create_task(keep_records(config, read_passphrase(config), clock, stop)),
        asyncio.create_task(node.refresher.run(config.refresh.total_seconds(), stop)),
        asyncio.create_task(run_warnings(roles.notices, stop)),
        asyncio.create_task(run_receipt_windows(roles.notices, stop)),
        asyncio.create_task(run_body_purge(node.queue, config.retry.keep_body, clock, stop)),
        asyncio.create_task(_key_watch(node, stop)),
    ]
    if node.inbox is not None:
        keep = config.structured.keep_taken
        purge = run_inbox_purge(node.inbox, node.queue.db, keep, clock, stop)
        tasks.append(asyncio.create_task(purge))
    tasks += _upstream_watches(roles, stop)
    if config.workers > 1:
        tasks.append(asyncio.create_task(_worker_processes(node).run(stop)))
    else:
        tasks += _work(node, roles, stop)
    tasks += await _conformance(node, registry, stop)
    return tasks


async def _conformance(
    node: Node, registry: CollectorRegistry, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """The scheduled conformance role ([conformance]) and its gauges, if enabled."""
    if not node.config.conformance.enabled:
        return []
    history = await node.queue.db(ConformanceHistory.open, node.config.database)
    context = conformance_context(node, history)
    assert context is not None  # noqa: S101 (enabled, so built)
    registry.register(ConformanceCollector(history))

    async def role() -> None:  # a run in progress is cut short at stop, not awaited
        schedule = asyncio.create_task(run_schedule(context, stop))
        try:
            await stop.wait()
        finally:
            schedule.cancel()
            await asyncio.gather(schedule, return_exceptions=True)
            history.close()

    return [asyncio.create_task(role())]


async def serve_worker(
    config: NodeConfig, *, stop: asyncio.Event, clock: Callable[[], datetime] = utc_now
) -> None:
    """A worker process of a node (``securemail serve --role worker``): the outbound and
    inbound workers only, until ``stop``; then it finishes the entries in hand."""
    node = await open_node(config, clock, fetch=False)
    if counting_worker():  # the main process adds this process's counts to its /metrics
        node.store.observe(QueueCounters(CollectorRegistry()).observe)
    work = _work(node, build_roles(node), stop)
    tasks = [
        asyncio.create_task(_reload_directory(node, stop)),
        asyncio.create_task(_key_watch(node, stop)),
        *work,
    ]
    log.info("node %s worker process %d working", config.name, os.getpid())
    try:
        await stop.wait()
    finally:
        for event in node.wake.values():
            event.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await node.close()


def _work(node: Node, roles: Roles, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The outbound and inbound worker loops, and PostgreSQL's wake-ups for them."""
    listening = listens(node.config.database)
    # Alone, a process's listeners wake its loops directly; a worker process beside them
    # hears of new work by NOTIFY on PostgreSQL, and polls more often on SQLite.
    alone = node.config.workers == 1
    poll = POLL_SECONDS if alone or listening else SHARED_POLL_SECONDS
    outbound = _loop(node, Direction.OUTBOUND, poll)
    inbound = _loop(node, Direction.INBOUND, poll)
    tasks = [
        asyncio.create_task(run_worker(outbound, _outbound_process(roles), stop)),
        asyncio.create_task(run_worker(inbound, Inbound(roles.unprotect).process, stop)),
    ]
    if listening:  # other nodes on the database queue work too
        tasks.append(asyncio.create_task(listen_for_work(node.config.database, node.wake, stop)))
    return tasks


def _key_watch(node: Node, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """Reload keys restored or installed while running, and release the mail they free
    (every process of the node: each holds its own keys)."""
    hold = node.config.hold_without_key
    return run_key_watch(node.orgs, node.queue, node.clock, hold, stop)


def _upstream_watches(roles: Roles, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """An upstream queue's probe of the gateways it backs up, and its delay notices."""
    if roles.upstream is None:
        return []
    return [
        asyncio.create_task(run_probe(roles.upstream, stop)),
        asyncio.create_task(run_delay_notices(roles.upstream, stop)),
    ]


def _outbound_process(roles: Roles) -> Process:
    """The outbound worker's step: protect and relay our mail; an upstream queue's entries
    (kind ``upstream``) are forwarded unchanged instead (securemail.upstream.forward)."""
    outbound = Outbound(roles.protect)
    if roles.upstream is None:
        return outbound.process
    forwarder = Forwarder(roles.upstream)

    async def process(entry: Entry) -> Entry:
        if entry.kind == UPSTREAM:
            return await forwarder.process(entry)
        return await outbound.process(entry)

    return process


def _worker_processes(node: Node) -> WorkerProcesses:
    config = node.config
    if config.source is None:
        raise NodeError(NodeReason.BAD_CONFIG, "worker processes need the config file")

    async def recover(pid: int) -> int:
        return await node.queue.db(node.store.recover, node.clock(), owner=f"{config.name}/{pid}")

    return WorkerProcesses(config.source, config.workers, recover, log_level=logbook.level())


async def _reload_directory(node: Node, stop: asyncio.Event) -> None:
    """A worker process takes the directory the main process accepted, as often as it
    refreshes (the state directory is the main process's to write)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), node.config.refresh.total_seconds())
        if not stop.is_set():
            await node.refresher.load(node.clock())


def _loop(node: Node, direction: Direction, poll: float) -> WorkerLoop:
    owner = f"{node.config.name}/{os.getpid()}"  # the node and the process holding a claim
    wake = node.wake[direction]
    config = node.config
    return WorkerLoop(node.queue, direction, wake, owner, node.clock, config.lease, poll)


def _ports(listeners: Listeners, imap: ImapServer | None, web: WebServer | None) -> Ports:
    def port(listener: Listener | None) -> int | None:
        return None if listener is None else listener.port

    return Ports(
        listeners.peer.port,
        listeners.relay.port,
        port(listeners.ordinary),
        port(listeners.submission),
        port(listeners.submission_tls),
        None if imap is None else imap.port,
        None if imap is None else imap.tls_port,
        None if web is None else web.port,
    )


def describe(ports: Ports) -> list[str]:
    """``"peer port 25"``, ... for every listener that runs."""
    return [
        f"{field.name.replace('_', ' ')} port {value}"
        for field in dataclasses.fields(ports)
        if (value := getattr(ports, field.name)) is not None
    ]
