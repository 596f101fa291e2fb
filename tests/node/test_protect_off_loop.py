"""A node signs and encrypts off its event loop: its listeners answer while it protects."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import pytest

from securemail import smime
from securemail.demo.exchange import Script, submit
from securemail.protect import service
from tests.node.conftest import WAIT, Federation, running

HELD = 10.0  # seconds the first protect is held, at most
TO_CITIZEN = Script(
    "agency to citizen",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "Held while signing",
)


def test_a_listener_answers_while_a_message_is_being_protected(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the outbound worker's protect is held (as a long signature would hold it), a
    new SMTP session on the relay listener is answered: protect runs on the node's CPU
    threads, not on the event loop the listeners share."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    real = smime.protect

    def held(*args: Any, **kwargs: Any) -> Any:
        started.set()
        release.wait(HELD)
        finished.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "protect", held)

    async def scenario() -> tuple[int, bool]:
        node = federation.nodes["agency"]
        async with running(federation, "agency"):
            reply = await submit(node, TO_CITIZEN, TO_CITIZEN.message(1, datetime.now(UTC)))
            assert reply.startswith("250"), reply
            assert await asyncio.to_thread(started.wait, WAIT)
            try:
                client = aiosmtplib.SMTP(
                    hostname="127.0.0.1", port=node.relay_port, timeout=WAIT, start_tls=False
                )
                await client.connect()
                code, _ = await client.ehlo()
                answered_while_held = not finished.is_set()
                await client.quit()
            finally:
                release.set()
            return code, answered_while_held

    assert asyncio.run(scenario()) == (250, True)
