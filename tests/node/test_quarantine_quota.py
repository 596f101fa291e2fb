"""The peer door's quarantine quota is the queue's count: any process sharing the queue
refuses a source over it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

from securemail.node.admission import Admission, AdmissionContext
from securemail.queue import Direction, NewMessage
from securemail.receive import Received
from securemail.receive.door import SourceQuota
from tests.conftest import NOW
from tests.node.conftest import Federation
from tests.support.roles import open_queue

RECIPIENT = "hemi.walker@securemail.provider.nz"


def _peer_mail(source: str) -> Received:
    body = b"Received: from gw\r\nSubject: x\r\nMessage-ID: <q@agency.govt.nz>\r\n\r\nx\r\n"
    return Received("peer", source, "gw", "a@agency.govt.nz", (RECIPIENT,), body, True, None, None)


def test_a_source_over_its_quota_is_refused_by_another_process(
    federation: Federation, tmp_path: Path
) -> None:
    """Peer mail quarantined in one process counts at another's door: a source at its
    quota gets 451 4.7.1, another source is queued."""
    config = federation.config("provider")

    async def scenario() -> tuple[int, str, int]:
        async with open_queue(tmp_path / "queue.db") as queue:
            bad = NewMessage(Direction.INBOUND, "provider", "", (RECIPIENT,), b"x", "")
            for n in range(2):  # what an inbound worker elsewhere quarantined
                entry = dataclasses.replace(bad, client="peer 192.0.2.1")
                entry_id = queue.store.enqueue(entry, NOW - timedelta(minutes=n))
                queue.store.quarantine(entry_id, "integrity-failed", "test", NOW)
            context = AdmissionContext(
                config, lambda: None, queue.access, lambda: NOW, SourceQuota(2)
            )
            door = Admission(context)
            refused = await door.admit_inbound(_peer_mail("192.0.2.1"))
            other = await door.admit_inbound(_peer_mail("192.0.2.9"))
            return refused.code, refused.reason, other.code

    code, reason, other = asyncio.run(scenario())
    assert (code, reason) == (451, "quarantine-quota")
    assert other == 250
