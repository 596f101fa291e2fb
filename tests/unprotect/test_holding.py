"""Mail for one of the node's organisations whose key is not installed is held
(``key-unavailable``), never quarantined or bounced; mail for another gateway still is."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from securemail.keys.org import OrgKeys
from securemail.logbook import QueueLine
from securemail.queue import Direction, Entry, State
from securemail.smime import ProtectOptions, SealedFor, protect
from securemail.unprotect.service import Inbound
from tests.conftest import NOW, Pki
from tests.support.roles import RecordingTarget, open_queue, org_keys, unprotect_context
from tests.unprotect.test_service import FROM_MINISTRY, inbound


def encrypted_to(pki: Pki, certificate_of: str) -> bytes:
    """The ministry's mail for alice at the agency, encrypted to ``certificate_of``'s key."""
    certificate = getattr(pki, certificate_of).certificate
    options = ProtectOptions(sealed_for=SealedFor("agency", ("alice@agency.govt.nz",)))
    return protect(
        FROM_MINISTRY, pki.ministry.signer, [certificate], now=NOW, options=options
    ).message


@dataclass
class Observed(RecordingTarget):
    """The delivery target, and the operations-log lines the queue's commits wrote."""

    lines: list[QueueLine] = field(default_factory=list)


def process_one(
    pki: Pki,
    tmp_path: Path,
    body: bytes,
    orgs: dict[str, OrgKeys],
    *,
    now: datetime = NOW,
) -> tuple[Entry, Observed]:
    """``body`` queued inbound for the agency and processed once by a node that serves the
    agency with the keys in ``orgs`` (perhaps none), at ``now``."""
    target = Observed()

    async def scenario() -> Entry:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            queue.store.observe(target.lines.extend)
            context = unprotect_context(
                pki,
                queue,
                orgs,
                target,
                clock=lambda: now,
                expected=frozenset({"agency"}),
                hold_without_key=timedelta(days=2),
            )
            queue.store.enqueue(inbound(body), NOW)
            [claimed] = queue.store.claim(Direction.INBOUND, now, 1)
            return await Inbound(context).process(claimed)

    return asyncio.run(scenario()), target


def test_no_key_installed_holds_it_with_key_unavailable(pki: Pki, tmp_path: Path) -> None:
    """An organisation served here but without its keys (a rebuilt gateway): held."""
    entry, target = process_one(pki, tmp_path, encrypted_to(pki, "agency"), {})
    assert (entry.state, entry.reason) == (State.HELD, "key-unavailable")
    assert target.stored == []
    # the alert: an operations-log line (and the metric counting those lines)
    assert [(x.event, x.reason) for x in target.lines if x.event == "held"] == [
        ("held", "key-unavailable")
    ]


def test_key_missing_for_the_certificate_it_was_encrypted_to_holds_it(
    pki: Pki, tmp_path: Path
) -> None:
    """Keys loaded, but not the one for the directory's certificate the sender used (a
    next key published before install-next): held, not quarantined."""
    stale = dataclasses.replace(org_keys(pki.agency, "agency", tmp_path), identities=())
    entry, _ = process_one(pki, tmp_path, encrypted_to(pki, "agency"), {"agency": stale})
    assert (entry.state, entry.reason) == (State.HELD, "key-unavailable")


def test_mail_encrypted_for_another_gateway_is_still_quarantined(pki: Pki, tmp_path: Path) -> None:
    """Encrypted to the council's key, not one the directory lists for the agency: the
    missing key is not ours to wait for (not-for-us)."""
    for n, keys in enumerate(({}, {"agency": org_keys(pki.agency, "agency", tmp_path)})):
        (tmp_path / str(n)).mkdir()
        entry, _ = process_one(pki, tmp_path / str(n), encrypted_to(pki, "council"), keys)
        assert (entry.state, entry.reason) == (State.QUARANTINED, "not-for-us")


def test_past_the_hold_limit_the_normal_failure_path_applies(pki: Pki, tmp_path: Path) -> None:
    """After [keys] hold_without_key the message is quarantined as before (not-for-us)."""
    later = NOW + timedelta(days=2, seconds=1)
    entry, _ = process_one(pki, tmp_path, encrypted_to(pki, "agency"), {}, now=later)
    assert (entry.state, entry.reason) == (State.QUARANTINED, "not-for-us")


def test_with_the_key_installed_it_is_delivered(pki: Pki, tmp_path: Path) -> None:
    """The same message, once the key is there, is delivered (the control case)."""
    keys = {"agency": org_keys(pki.agency, "agency", tmp_path)}
    entry, target = process_one(pki, tmp_path, encrypted_to(pki, "agency"), keys)
    assert entry.state is State.DELIVERED and len(target.stored) == 1
