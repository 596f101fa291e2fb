"""Issue 18 §4, the rebuild drill: 200 messages for a member whose gateway is down (process
killed, directory deleted) wait at the sender or the member's upstream queue; the gateway
is rebuilt in a new directory from 3 of 5 key shares, its node.toml and the directory, and
``securemail serve`` delivers all 200 exactly once, receipted, none bounced; the upstream
queue never held a readable byte of them. The nodes are real ``securemail serve`` processes.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib

from securemail.queue import Direction, Disposition, QueueStore, State
from tests.node.conftest import Federation
from tests.node.test_crash import Process, _delivered
from tests.node.test_key_hold import back_up, restore
from tests.node.test_upstream import MARKER, TO_AGENCY, make_upstream, stored_bytes

MESSAGES = 200
DEADLINE = 240.0  # seconds for the backlog to be delivered and receipted after the rebuild
RECEIPTED = TO_AGENCY.__class__(**{**TO_AGENCY.__dict__, "receipt": True})


async def send_all(port: int, count: int) -> int:
    """Submit ``count`` small messages in one session; how many got 250."""
    accepted = 0
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for n in range(1, count + 1):
            message = RECEIPTED.message(n, datetime.now(UTC))
            await client.sendmail(RECEIPTED.mail_from, list(RECEIPTED.to), message)
            accepted += 1
    return accepted


def provider_outcomes(federation: Federation) -> Counter[str]:
    """The provider's entries by direction, kind and state, and the receipt states of the
    recipients its outbound mail reached."""
    counts: Counter[str] = Counter()
    with QueueStore.open(federation.config("provider").database) as store:
        for entry in store.list(limit=1000):
            counts[f"{entry.direction.value}:{entry.kind}:{entry.state.value}"] += 1
            for recipient in entry.recipients if entry.direction is Direction.OUTBOUND else ():
                if recipient.disposition is Disposition.DELIVERED:
                    counts[f"receipt:{recipient.receipt_state.value}"] += 1
    return counts


def notice_subjects(federation: Federation) -> Counter[bytes]:
    """The subjects of the notices the provider's gateway wrote to its own users."""
    subjects: Counter[bytes] = Counter()
    with QueueStore.open(federation.config("provider").database) as store:
        for entry in store.list(limit=1000):
            if entry.kind == "notice":
                head = store.body(entry.id).split(b"\r\n\r\n", 1)[0]
                found = [x for x in head.split(b"\r\n") if x.lower().startswith(b"subject:")]
                subjects[found[0].split(b":", 1)[1].strip() if found else b""] += 1
    return subjects


def rebuilt_config(text: str, old_keys: str, keys: Path) -> str:
    """The saved node.toml for the new directory: the same listeners and organisation, every
    path into the old keys folder (keys, anchor, TLS) now into ``keys``, where the restore
    put them; data and mail folders relative, so new."""
    text = text.replace(f'keys = "{old_keys}"', f'keys = "{keys}"')
    return text.replace(f'"{old_keys}/', f'"{keys}/')


def wait_for(check: object, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def assert_waiting(federation: Federation) -> None:
    """Every message accepted is at the sender (queued) or handed to the upstream queue,
    none bounced, and the upstream queue's disk holds none of them readable."""
    waiting = provider_outcomes(federation)
    assert waiting["outbound:mail:bounced"] == 0
    states = ("delivered", "deferred", "active", "incoming")
    assert sum(waiting[f"outbound:mail:{state}"] for state in states) == MESSAGES
    assert MARKER.encode() not in stored_bytes(federation.config("gsp").data_dir)


def rebuild(federation: Federation, backup: Path, shares: list[Path], saved: str) -> Path:
    """The agency's gateway in a new directory: 3 of 5 shares restored into a new keys
    folder, the saved node.toml pointed at it, new data and mail folders."""
    new_node = backup.parent / "agency-rebuilt"
    new_node.mkdir()
    restore(federation, backup, [shares[0], shares[2], shares[4]], new_node / "keys-folder")
    (new_node / "mail").mkdir(mode=0o700)
    config = rebuilt_config(saved, "../agency", new_node / "keys-folder")
    (new_node / "node.toml").write_text(config)
    return new_node


def test_rebuild_from_shares_delivers_the_backlog_once_with_receipts(
    federation: Federation, tmp_path: Path
) -> None:
    """Kill -9 and delete the agency's gateway; 200 messages accepted by the provider wait
    at it or at the GSP's upstream queue (ciphertext only); the rebuilt gateway (new
    directory, 3 of 5 shares) delivers each once and receipts it; nothing bounces."""
    make_upstream(federation)
    shares = back_up(federation, tmp_path / "agency.backup")
    saved_config = federation.nodes["agency"].config.read_text()  # "configuration management"
    logs = tmp_path / "logs"
    logs.mkdir()
    agency = Process(federation.nodes["agency"].config, logs / "agency.log")
    provider = Process(federation.nodes["provider"].config, logs / "provider.log")
    gsp = Process(federation.nodes["gsp"].config, logs / "gsp.log")
    rebuilt = Process(tmp_path / "agency-rebuilt" / "node.toml", logs / "rebuilt.log")
    try:
        for node in (agency, provider, gsp):
            node.start()
        agency.kill()
        shutil.rmtree(federation.nodes["agency"].config.parent)  # data, queue, mail
        shutil.rmtree(federation.root / "agency")  # keys and certificates
        started = time.monotonic()
        sent = asyncio.run(send_all(federation.nodes["provider"].relay_port, MESSAGES))
        times = {"accepted by the sender": time.monotonic() - started}
        wait_for(
            lambda: provider_outcomes(federation)["outbound:mail:delivered"] > 0,
            "the upstream queue to take mail",
            60,
        )
        assert_waiting(federation)
        new_node = rebuild(federation, tmp_path / "agency.backup", shares, saved_config)
        times["keys restored"] = time.monotonic() - started
        rebuilt.start()
        times["rebuilt gateway serving"] = time.monotonic() - started
        mailbox = new_node / "mail" / "agency.govt.nz" / "aroha.ngata"
        wait_for(
            lambda: (
                len(_delivered(mailbox)) == MESSAGES
                and provider_outcomes(federation)["receipt:receipted"] == MESSAGES
            ),
            "every message delivered and receipted",
            DEADLINE,
        )
        times["all delivered and receipted"] = time.monotonic() - started
        print("rebuild drill, seconds since the first send:", times)
        time.sleep(3)  # a late second copy, if any were on its way, lands meanwhile
        delivered = _delivered(mailbox)
        outcomes = provider_outcomes(federation)
    finally:
        for node in (rebuilt, provider, gsp, agency):
            node.stop()
    assert sent == MESSAGES and len(delivered) == MESSAGES and set(delivered.values()) == {1}
    assert outcomes["outbound:mail:delivered"] == MESSAGES
    assert outcomes["outbound:mail:bounced"] == 0
    assert outcomes["receipt:receipted"] == MESSAGES
    # the only notices: one delivery receipt report per message to its sender, no failure
    # or delay notice
    assert [key for key in outcomes if ":notice:" in key] == ["inbound:notice:delivered"]
    assert notice_subjects(federation) == Counter({b"SecureMail delivery receipt": MESSAGES})
    assert MARKER.encode() not in stored_bytes(federation.config("gsp").data_dir)
    with QueueStore.open(federation.config("gsp").database) as store:
        upstream = [e for e in store.list(limit=1000) if e.kind == "upstream"]
        assert store.backlog() == []
    assert upstream and all(e.state is State.DELIVERED for e in upstream)
    print(f"rebuild drill: {len(upstream)} of {MESSAGES} went through the upstream queue")
