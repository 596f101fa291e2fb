"""THREATS.md K, door exhaustion, against the federation: the flood of issue 16 replayed.

200 connections from one address (127.0.0.2, a second source on loopback) to the provider's
peer listener, the ones let in saying NOOP, while the agency's mail to a citizen must still
be delivered within 10 seconds. Bounded: the flood is closed after the delivery or 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

from securemail.demo.exchange import Script, submit, wait_for
from tests.node.conftest import Federation, running

NOW = datetime.now(UTC)

FLOOD = 200
SOURCE = "127.0.0.2"
TO_CITIZEN = Script(
    "agency to citizen during a flood",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "During the flood",
)


async def hold(port: int, greetings: list[str], stop: asyncio.Event) -> None:
    """One flooding connection: take the greeting, then NOOP every second until ``stop``."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(SOURCE, 0))
    except OSError as error:
        greetings.append(f"connect failed: {error}")
        return
    try:
        greetings.append((await reader.readline()).decode("ascii", "replace"))
        while not stop.is_set() and not reader.at_eof():
            writer.write(b"NOOP\r\n")
            await writer.drain()
            await reader.readline()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def test_an_idle_flood_from_one_address_does_not_delay_another_members_mail(
    federation: Federation,
) -> None:
    """200 idle NOOP-ing connections from one host: 20 held, the rest 421; mail in < 10 s."""
    port = federation.nodes["provider"].peer_port
    message_id = Script.message_id(51, "agency.govt.nz")
    mailbox = federation.nodes["provider"].mailbox(TO_CITIZEN.to[0])

    async def scenario() -> tuple[list[str], float, bytes | None]:
        async with running(federation, "provider", "agency"):
            greetings: list[str] = []
            stop = asyncio.Event()
            flood = [asyncio.create_task(hold(port, greetings, stop)) for _ in range(FLOOD)]
            try:
                while len(greetings) < FLOOD:
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                reply = await submit(
                    federation.nodes["agency"], TO_CITIZEN, TO_CITIZEN.message(51, NOW)
                )
                assert reply.startswith("250"), reply
                delivered = await wait_for(mailbox, message_id, 10.0)
                elapsed = time.monotonic() - started
            finally:
                stop.set()
                await asyncio.wait_for(asyncio.gather(*flood, return_exceptions=True), 30)
            return greetings, elapsed, delivered

    greetings, elapsed, delivered = asyncio.run(asyncio.wait_for(scenario(), 120))
    held = [g for g in greetings if g.startswith("220")]
    refused = [g for g in greetings if g.startswith("421 4.7.0")]
    assert (len(held), len(refused)) == (20, FLOOD - 20), greetings[:3]
    assert delivered is not None, f"not delivered within 10 s during the flood ({elapsed:.1f} s)"
    assert elapsed < 10.0
    print(f"delivered in {elapsed:.2f} s while {len(held)} flood sessions were held")
