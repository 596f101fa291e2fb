"""In-flow control (receive.flow): a session waits before MAIL only while the workers'
backlog is over the limit, never longer than the delay, and the backlog is read once for
all the sessions waiting."""

from __future__ import annotations

import asyncio
import time

import pytest

from securemail.receive import Listener, start_relay_listener
from securemail.receive.flow import POLL, FlowLimits, InFlow
from tests.receive.conftest import (
    LOOPBACK,
    PLAIN_MESSAGE,
    Inbox,
    check_recipient,
    raw_session,
    run,
    send_data,
    sender_allowed,
    settings,
    with_listener,
)


class Backlog:
    """A queue's backlog as the test sets it, counting how often it was read."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.reads = 0

    async def __call__(self) -> int:
        self.reads += 1
        await asyncio.sleep(0.005)  # a database round trip
        return self.value


def _pause(flow: InFlow) -> float:
    return asyncio.run(flow.pause())


def test_no_wait_while_the_workers_keep_up() -> None:
    """At or below the limit MAIL is answered at once."""
    backlog = Backlog(64)
    started = time.monotonic()
    assert _pause(InFlow(FlowLimits(delay=1.0, backlog=64), backlog)) < 0.05
    assert time.monotonic() - started < 0.2 and backlog.reads == 1


def test_a_backlog_that_stays_is_waited_out_for_the_delay_only() -> None:
    """Over the limit the whole time: the session waits the delay, then goes on."""
    backlog = Backlog(500)
    waited = _pause(InFlow(FlowLimits(delay=0.3, backlog=64), backlog))
    assert 0.3 <= waited < 0.45
    assert backlog.reads >= 3  # read again while waiting, at most every POLL seconds
    assert backlog.reads <= 0.3 / POLL + 2


def test_the_wait_ends_when_the_workers_catch_up() -> None:
    """The backlog falls below the limit mid-wait: the session goes on then."""
    backlog = Backlog(500)

    async def scenario() -> float:
        flow = InFlow(FlowLimits(delay=5.0, backlog=64), backlog)
        waiting = asyncio.create_task(flow.pause())
        await asyncio.sleep(0.2)
        backlog.value = 10
        return await waiting

    assert 0.2 <= asyncio.run(scenario()) < 0.5


def test_sessions_waiting_together_share_one_reading() -> None:
    """Fifty sessions pausing at once cause one query per POLL, not fifty."""
    backlog = Backlog(500)

    async def scenario() -> list[float]:
        flow = InFlow(FlowLimits(delay=0.2, backlog=64), backlog)
        return await asyncio.gather(*(flow.pause() for _ in range(50)))

    waits = asyncio.run(scenario())
    assert all(0.2 <= w < 0.4 for w in waits)
    assert backlog.reads <= 0.2 / POLL + 3


def test_off_and_broken_never_hold_a_session() -> None:
    """delay 0 reads nothing; a backlog that cannot be read (database down) holds nobody."""
    backlog = Backlog(500)
    assert _pause(InFlow(FlowLimits(delay=0, backlog=1), backlog)) == 0.0
    assert backlog.reads == 0

    async def down() -> int:
        raise OSError("database unavailable")

    assert _pause(InFlow(FlowLimits(delay=1.0, backlog=1), down)) < 0.05


@pytest.mark.parametrize(("delay", "backlog"), [(-1.0, 64), (1.0, 0)])
def test_limits_out_of_range_are_refused(delay: float, backlog: int) -> None:
    """A negative delay or a backlog limit below one is a configuration error."""
    with pytest.raises(ValueError, match="in_flow"):
        FlowLimits(delay=delay, backlog=backlog)


def test_a_listener_answers_mail_after_the_pause_and_takes_the_message() -> None:
    """On a real relay listener whose queue is behind, MAIL FROM is answered 250 after the
    delay (not refused), and the message is admitted as always."""
    inbox = Inbox()

    async def behind() -> int:
        return 1000

    flow = InFlow(FlowLimits(delay=0.4, backlog=32), behind)

    async def body(listener: Listener) -> float:
        client = await raw_session(listener.port)
        started = time.monotonic()
        reply = await client.command("MAIL FROM:<alice@agency.govt.nz>")
        waited = time.monotonic() - started
        assert reply.startswith("250"), reply
        assert (await client.command("RCPT TO:<bob@ministry.govt.nz>")).startswith("250")
        assert (await send_data(client, PLAIN_MESSAGE)).startswith("250")
        await client.close()
        return waited

    start = start_relay_listener(
        settings(None, inflow=flow),
        networks=LOOPBACK,
        check_recipient=check_recipient,
        sender_allowed=sender_allowed,
        admit=inbox,
    )
    assert 0.4 <= run(with_listener(start, body)) < 1.0
    assert len(inbox.messages) == 1


def test_the_session_is_told_before_each_wait_and_only_then() -> None:
    """``before_waiting`` (the session writes its held replies) runs before every sleep
    while the backlog is over the limit, and not at all when MAIL is answered at once."""
    calls: list[float] = []
    behind = InFlow(FlowLimits(delay=0.12, backlog=64), Backlog(500))
    keeping_up = InFlow(FlowLimits(delay=0.12, backlog=64), Backlog(10))

    async def scenario() -> None:
        await behind.pause(lambda: calls.append(time.monotonic()))
        assert len(calls) >= 2
        calls.clear()
        await keeping_up.pause(lambda: calls.append(time.monotonic()))

    asyncio.run(scenario())
    assert calls == []
