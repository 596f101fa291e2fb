"""Issue 14, item 4: two ``securemail serve`` nodes of one organisation (same keys, same
organisation, distinct ``[node] name``) on one PostgreSQL database share its work; kill -9
of one mid-stream leaves the other to finish, after the leases expire, with no command
typed: nothing acknowledged is lost and nothing is delivered twice, to a Maildir and to
an SMTP store that shows every copy it is handed.

The provider's two nodes sit behind a TCP balancer on the peer port the directory lists
(the "TCP load balancer, no TLS termination" of docs/operations.md); the agency's node
sends them a stream through its relay listener. ``[node] lease`` is 3 s here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import create_engine, func, select

from securemail.demo.exchange import Script, head
from securemail.demo.federation import free_port
from securemail.queue import Direction, State
from securemail.queue.schema import events, messages
from tests.node.conftest import Federation, deliver_to_smtp_store, open_people_accounts
from tests.node.test_crash import SCRIPT, Process, _delivered
from tests.queue.conftest import pg_schema, pg_url  # noqa: F401 (a fixture)
from tests.relay.loopback import Recorder, serving

MESSAGES = 500
SENDERS = 4  # concurrent SMTP sessions into the agency's relay listener
LEASE = "3s"
DEADLINE = 180.0  # seconds for the whole stream to be delivered after the last send
A, B = "provider-a.demo.securemail.test", "provider-b.demo.securemail.test"


@dataclass
class Sink(Recorder):
    """The organisation's SMTP store: records every message it answered 250 to, and when."""

    answered: list[tuple[float, str]] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        self.answered.append((time.time(), _message_id(envelope.original_content or b"")))
        return reply


def _message_id(message: bytes) -> str:
    for line in head(message).splitlines():
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


@dataclass(frozen=True)
class Pair:
    """The provider's two nodes on one database, and the port their balancer listens on."""

    a: Process
    b: Process
    url: str
    balanced_port: int
    backends: tuple[int, int]


def _node_config(text: str, name: str, peer: int, others: bool) -> str:
    """``text`` as the configuration of node ``name``: its peer listener on ``peer``, its
    other listeners on new ports if ``others``."""
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text, count=1)
    lines, table = [], ""
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            table = line.strip().strip("[]")
        key = line.partition(" = ")[0]
        moved = line
        if key in ("listen", "tls_listen") and '"127.0.0.1:' in line:
            if (table, key) == ("peer", "listen"):
                moved = f'listen = "127.0.0.1:{peer}"\n'
            elif others:
                moved = f'{key} = "127.0.0.1:{free_port()}"\n'
        lines.append(moved)
    return "".join(lines)


def make_pair(federation: Federation, schema: str) -> Pair:
    """Node A in the provider's folder, node B in a copy beside it (its own data_dir and
    listeners; the same keys, directory, database and delivery target); both peer
    listeners on new ports behind the balancer, which takes the directory's port."""
    setup = federation.nodes["provider"]
    url = pg_url(schema)
    text = setup.config.read_text()
    assert "\n[node]\n" in text or text.startswith("[node]\n"), text
    extra = f'database = "{url}"\nlease = "{LEASE}"\n'
    text = text.replace("[node]\n", f"[node]\n{extra}", 1)
    text = text.replace('path = "mail"', f'path = "{setup.mail}"')  # one Maildir root
    port_a, port_b = free_port(), free_port()
    setup.config.write_text(_node_config(text, A, port_a, others=False))
    config_b = setup.config.parent.parent / "provider-b.node" / "node.toml"
    config_b.parent.mkdir(mode=0o700)
    config_b.write_text(_node_config(text, B, port_b, others=True))
    return Pair(Process(setup.config), Process(config_b), url, setup.peer_port, (port_a, port_b))


@contextlib.asynccontextmanager
async def balancer(port: int, backends: tuple[int, ...]) -> AsyncIterator[None]:
    """A TCP balancer on ``port`` (no TLS termination): each connection goes to the next
    backend that accepts it, round robin, so a dead node is skipped."""
    turn = itertools.count()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(turn)
        for n in range(len(backends)):
            try:
                upstream = await asyncio.open_connection(
                    "127.0.0.1", backends[(first + n) % len(backends)]
                )
            except OSError:
                continue
            await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))
            return
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def send_stream(relay_port: int, count: int, sent: list[int]) -> set[str]:
    """Send messages 1..count into the agency's relay listener over ``SENDERS`` sessions;
    the Message-IDs acknowledged with 250. ``sent`` counts them as they go."""
    numbers = iter(range(1, count + 1))
    acknowledged: set[str] = set()

    async def session() -> None:
        client: aiosmtplib.SMTP | None = None
        for n in numbers:
            try:
                if client is None:
                    client = aiosmtplib.SMTP(
                        hostname="127.0.0.1", port=relay_port, start_tls=False, timeout=30
                    )
                    await client.connect()
                message = SCRIPT.message(n, datetime.now(UTC))
                await client.sendmail(SCRIPT.mail_from, list(SCRIPT.to), message)
                acknowledged.add(Script.message_id(n, "agency.govt.nz"))
            except (aiosmtplib.SMTPException, OSError):
                client = None  # not acknowledged: the client would send it again later
            sent.append(n)
        if client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()

    await asyncio.gather(*(session() for _ in range(SENDERS)))
    return acknowledged


@dataclass
class Outcome:
    """What the stream came to."""

    acknowledged: set[str]
    delivered: Counter[str]
    killed_at: float = 0.0
    held_at_kill: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


def _held_by(url: str, node: str) -> int:
    """How many inbound entries ``node``'s processes hold (ACTIVE under their claim)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            held = (
                (messages.c.state == State.ACTIVE)
                & (messages.c.direction == Direction.INBOUND)
                & messages.c.claimed_by.startswith(f"{node}/")
            )
            return int(conn.scalar(select(func.count()).select_from(messages).where(held)) or 0)
    finally:
        engine.dispose()


def _live(url: str) -> int:
    """Entries of either direction not final yet."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            final = [State.DELIVERED, State.BOUNCED, State.QUARANTINED]
            live = ~messages.c.state.in_(final)
            return int(conn.scalar(select(func.count()).select_from(messages).where(live)) or 0)
    finally:
        engine.dispose()


def _facts(url: str, killed_at: float) -> dict[str, Any]:
    """Takeovers after the kill (how many, the first one's delay) and who settled what."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            taken = conn.execute(
                select(events.c.time, events.c.detail).where(events.c.event == "lease-expired")
            ).all()
            settled = conn.execute(
                select(messages.c.claimed_by, func.count())
                .where(messages.c.direction == Direction.INBOUND)
                .group_by(messages.c.claimed_by)
            ).all()
    finally:
        engine.dispose()
    delays = sorted(row.time.timestamp() - killed_at for row in taken)
    by_node: Counter[str] = Counter()
    for holder, count in settled:
        by_node[(holder or "-").partition("/")[0]] += count
    return {
        "taken_over": len(taken),
        "from_a": sum(f"held by {A}/" in row.detail for row in taken),
        "first_takeover_s": round(delays[0], 2) if delays else None,
        "last_takeover_s": round(delays[-1], 2) if delays else None,
        "settled_by": dict(by_node),
    }


def run_stream(federation: Federation, schema: str, sink: Sink | None = None) -> Outcome:
    """The agency sends ``MESSAGES`` to the provider's pair, which delivers to its shared
    Maildir, or to ``sink`` (an SMTP store); node A is killed -9 half way through while it
    holds entries; then wait until the survivor finished everything."""
    store_port = free_port()
    if sink is not None:
        deliver_to_smtp_store(federation, "provider", store_port)
    pair = make_pair(federation, schema)
    open_people_accounts(federation, "provider")
    agency = Process(federation.nodes["agency"].config)
    relay_port = federation.nodes["agency"].relay_port
    mailbox = federation.nodes["provider"].mailbox(SCRIPT.to[0])
    outcome = Outcome(set(), Counter())

    def count_delivered() -> Counter[str]:
        if sink is None:
            return _delivered(mailbox)
        return Counter(message_id for _, message_id in sink.answered)

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            if sink is not None:
                await stack.enter_async_context(serving(sink, port=store_port))
            await stack.enter_async_context(balancer(pair.balanced_port, pair.backends))
            for node in (pair.a, pair.b, agency):
                await asyncio.to_thread(node.start)
            sent: list[int] = []
            stream = asyncio.create_task(send_stream(relay_port, MESSAGES, sent))
            while len(sent) < MESSAGES // 2 or not await asyncio.to_thread(_held_by, pair.url, A):
                assert not stream.done(), "A never held an entry while the stream ran"
                await asyncio.sleep(0.01)
            assert pair.a.child is not None
            os.kill(pair.a.child.pid, signal.SIGKILL)  # mid-stream, entries in hand
            outcome.killed_at = time.time()
            outcome.held_at_kill = await asyncio.to_thread(_held_by, pair.url, A)
            outcome.facts["sent_before_kill"] = len(sent)
            outcome.acknowledged = await stream
            outcome.facts["stream_end_s"] = round(time.time() - outcome.killed_at, 1)
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                finished = outcome.acknowledged <= set(count_delivered())
                if finished and not await asyncio.to_thread(_live, pair.url):
                    break
                await asyncio.sleep(0.5)
            outcome.facts["all_done_s"] = round(time.time() - outcome.killed_at, 1)
            await asyncio.sleep(1.0)  # a late second copy would show now
            outcome.delivered = count_delivered()
            if sink is not None:
                outcome.facts["answers"] = [
                    (round(at - outcome.killed_at, 3), mid) for at, mid in sink.answered
                ]

    try:
        asyncio.run(scenario())
    finally:
        for node in (agency, pair.b, pair.a):
            node.stop()
    outcome.facts |= _facts(pair.url, outcome.killed_at)
    return outcome


# The store's 250 for an entry in hand, then kill -9 before the node's ``handed`` commit
# (or before it even read the 250): the one window in which an SMTP store gets a second
# copy (docs/operations.md). On this loaded machine the node may need this long to read
# the 250 and commit after it. The store (in this process) may take up to LATE to handle
# what the dead node sent just before the kill; the second copy comes from B, only after
# A's lease expired (3 s).
WINDOW, LATE, TAKEOVER = 2.0, 1.0, 1.5


def check(outcome: Outcome, *, window: float = 0.0) -> None:
    """Nothing acknowledged lost; A's entries taken over by B; nothing delivered twice,
    except (``window`` > 0, an SMTP store) a message the store answered 250 to at most
    ``window`` seconds before the kill (A's copy, for an entry it held) and again after the
    lease expired (B's)."""
    answers = outcome.facts.pop("answers", [])
    print(
        f"two nodes: {len(outcome.acknowledged)} acknowledged, {outcome.held_at_kill} held "
        f"by A at the kill, {outcome.facts}"
    )
    assert len(outcome.acknowledged) == MESSAGES, "the agency's relay listener never stopped"
    missing = outcome.acknowledged - set(outcome.delivered)
    assert not missing, f"acknowledged but never delivered: {sorted(missing)[:10]}"
    twice = {mid: n for mid, n in outcome.delivered.items() if n > 1}
    answered = [a for a in answers if a[1] in twice]
    print(f"two nodes: delivered twice {twice}; the store's answers (s after the kill) {answered}")
    if window:
        assert all(n == 2 for n in twice.values()), twice
        for mid in twice:
            first, second = sorted(at for at, m in answered if m == mid)
            explained = -window <= first <= LATE and second >= TAKEOVER
            assert explained, f"a second copy not explained by the kill: {twice}, {answered}"
        assert len(twice) <= outcome.facts["from_a"], (twice, outcome.facts)
    else:
        assert not twice, f"delivered more than once: {twice}"
    assert outcome.facts["from_a"] >= 1, "B took over what A held, once its leases expired"
    assert set(outcome.facts["settled_by"]) == {A, B}, "both nodes did work"


def test_two_nodes_share_a_stream_and_survive_kill_9_into_a_maildir(
    federation: Federation,
    pg_schema: str,  # noqa: F811 (the fixture)
) -> None:
    """500 messages to two provider nodes on one PostgreSQL database, one killed -9 half
    way while it holds entries: every acknowledged message is in the shared Maildir once."""
    check(run_stream(federation, pg_schema))


def test_two_nodes_share_a_stream_and_survive_kill_9_into_an_smtp_store(
    federation: Federation,
    pg_schema: str,  # noqa: F811 (the fixture)
) -> None:
    """The same into the organisation's SMTP store, which counts every copy it answered
    250 to (a second copy would be visible there, unlike in a Maildir): nothing lost, and a
    second copy only of a message the store took from A in the moment before the kill."""
    check(run_stream(federation, pg_schema, Sink()), window=WINDOW)
