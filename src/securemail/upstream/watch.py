"""The upstream queue's two watches: is a member's gateway back, and who has waited long.

``run_probe``: every ``[upstream] probe_every``, for each member with mail waiting here,
open a TCP connection to its gateway's endpoints; when one answers, the member's deferred
entries become due at once (so the backlog leaves as soon as the gateway is back, not at
the next step of the retry schedule). The connection proves nothing and carries nothing:
the forwarding itself checks TLS and the pin.

``run_delay_notices``: an entry waiting longer than ``[upstream] delay_notice_after``
gets one signed delay notice to its sender's gateway (securemail.upstream.notices).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from securemail.directory.model import Member
from securemail.notices import Failed
from securemail.policy.routing import primary_hops
from securemail.queue import Direction
from securemail.upstream.context import UpstreamContext
from securemail.upstream.notices import tell_sender

log = logging.getLogger("securemail.upstream")

CONNECT_TIMEOUT = 5.0  # seconds
DELAY_POLL_SECONDS = 60.0


async def answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` within the timeout."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def gateway_answers(member: Member) -> bool:
    """Whether one of the member's own endpoints accepts a connection."""
    for hop in primary_hops(member):
        if await answers(hop.host, hop.port):
            return True
    return False


async def probe_once(context: UpstreamContext) -> int:
    """Hasten the backlog of every member whose gateway answers; how many entries."""
    protect = context.protect
    queue, directory = protect.queue, protect.directory()
    hastened = 0
    for waiting in await queue.db(queue.upstream.backlog):
        member = None if directory is None else directory.member(waiting.org_id)
        if member is None or not await gateway_answers(member):
            continue
        count = await queue.db(queue.upstream.hasten, waiting.org_id, protect.clock())
        if count:
            log.info("%s's gateway answers: %d upstream entries due now", waiting.org_id, count)
            queue.notify(Direction.OUTBOUND)
        hastened += count
    return hastened


async def run_probe(context: UpstreamContext, stop: asyncio.Event) -> None:
    """:func:`probe_once` every ``probe_every`` until ``stop``."""
    every = context.settings.probe_every.total_seconds()
    while not stop.is_set():
        try:
            await probe_once(context)
        except Exception:  # the database is away: the next round tries again
            log.warning("probing the backed-up gateways failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def notify_delayed(context: UpstreamContext) -> int:
    """One delay notice for each entry waiting longer than ``delay_notice_after``."""
    protect = context.protect
    queue, now = protect.queue, protect.clock()
    older_than = now - context.settings.delay_notice_after
    sent = 0
    for entry in await queue.db(queue.upstream.upstream_delayed, older_than):
        body = await queue.db(queue.manager.body, entry.id)
        failed = [
            Failed(r, "4.4.7", entry.reason or "delayed", entry.last_reply or "")
            for r in entry.pending()
        ]
        if await tell_sender(context, entry, failed, body, now, action="delayed"):
            sent += 1
        await queue.db(queue.manager.mark_warned, entry.id, now)
    return sent


async def run_delay_notices(context: UpstreamContext, stop: asyncio.Event) -> None:
    """:func:`notify_delayed` every minute until ``stop``."""
    while not stop.is_set():
        try:
            await notify_delayed(context)
        except Exception:  # the database is away: the next round tries again
            log.warning("upstream delay notices failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DELAY_POLL_SECONDS)
