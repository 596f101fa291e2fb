"""Issue 18: an upstream queue on real nodes over loopback SMTP. With the agency's gateway
down, the provider's gateway hands the agency's mail to the GSP's node (the agency's
upstream queue in the directory), which stores the ciphertext only and forwards it, pinned,
as soon as the agency's gateway answers: delivered once, verified, nothing bounced."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosmtplib
from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.demo.exchange import Script
from securemail.directory.model import spki_pin
from securemail.federation.operator import Changes, publish, update_member
from securemail.federation.store import Store
from securemail.queue import QueueStore, State
from securemail.smime.keys import load_certificate
from tests.node.conftest import WAIT, Federation, mailbox_files, running

MARKER = "plaintext-marker-7f3a"  # in every test message's body: must never be on the queue
TO_AGENCY = Script(
    MARKER,
    "provider",
    "hemi.walker@securemail.provider.nz",
    ("aroha.ngata@agency.govt.nz",),
    "Upstream",
)


def make_upstream(federation: Federation, **settings: str) -> None:
    """Publish the GSP's node as the agency's upstream queue and configure it as one."""
    now = datetime.now(UTC)
    root = federation.root
    gsp = federation.nodes["gsp"]
    pin = spki_pin(load_certificate((root / "gsp" / "certs" / "tls.pem").read_bytes()))
    store = Store(root / "federation")
    queue = f"127.0.0.1:{gsp.peer_port},{pin},gsp"
    update_member(store, "agency", Changes(upstream=(queue,)), None, now)
    publish(store, (root / "passphrase.txt").read_bytes().strip(), now, timedelta(days=7))
    values = {
        "backs_up": '["agency"]',
        "probe_every": '"1s"',
        "keep_for": '"30m"',
        "delay_notice_after": '"10m"',
    } | settings
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    with gsp.config.open("a") as config:
        config.write(f"\n[upstream]\n{lines}")


async def send(federation: Federation, script: Script, n: int) -> None:
    """Hand message ``n`` to the sending node's relay listener."""
    await aiosmtplib.send(
        script.message(n, datetime.now(UTC)),
        sender=script.mail_from,
        recipients=list(script.to),
        hostname="127.0.0.1",
        port=federation.nodes[script.node].relay_port,
        start_tls=False,
        timeout=10,
    )


def entries(federation: Federation, node: str) -> list:  # type: ignore[type-arg]
    with QueueStore.open(federation.config(node).database) as store:
        return store.list()


async def until(check: object, what: str, seconds: float = WAIT) -> None:
    """Wait until ``check()`` is true, or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def backlog(federation: Federation) -> list[dict[str, object]]:
    """``securemail queue backlog --json`` of the GSP's node: member and count."""
    config = str(federation.nodes["gsp"].config)
    result = CliRunner().invoke(cli, ["queue", "backlog", "--config", config, "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [{"member": line["member"], "waiting": line["waiting"]} for line in lines]


def stored_bytes(data_dir: Path) -> bytes:
    """Every byte the node keeps in its data directory (database, WAL, logs)."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def test_gateway_down_upstream_takes_ciphertext_and_forwards_when_it_answers(
    federation: Federation,
) -> None:
    """Primary down: the upstream queue accepts over pinned TLS and holds ciphertext only;
    once the agency's gateway is up, the probe sends it on and it is delivered once."""
    make_upstream(federation)
    agency_box = federation.nodes["agency"].mailbox(TO_AGENCY.to[0])

    async def scenario() -> None:
        async with running(federation, "provider", "gsp") as nodes:
            await send(federation, TO_AGENCY, 1)
            await until(
                lambda: [e.state for e in entries(federation, "provider")] == [State.DELIVERED],
                "the provider's gateway to hand the message to the upstream queue",
            )
            [held] = entries(federation, "gsp")
            assert (held.kind, held.org_id, held.auth) == ("upstream", "agency", "provider")
            assert held.state in (State.INCOMING, State.DEFERRED, State.ACTIVE)
            gsp_data = federation.config("gsp").data_dir
            assert MARKER.encode() not in stored_bytes(gsp_data)
            assert not mailbox_files(agency_box)
            assert backlog(federation) == [{"member": "agency", "waiting": 1}]
            await nodes.start("agency")
            await until(lambda: len(mailbox_files(agency_box)) >= 1, "delivery to the agency")
            await until(
                lambda: [e.state for e in entries(federation, "gsp")] == [State.DELIVERED],
                "the upstream entry to be recorded delivered",
            )
            await asyncio.sleep(1.5)  # a second copy, if any were sent, would land meanwhile

    asyncio.run(scenario())
    [delivered] = mailbox_files(agency_box)
    assert MARKER.encode() in delivered
    assert b"smime=pass" in delivered and b"signer=provider" in delivered
    assert backlog(federation) == []
    assert all(e.state is not State.BOUNCED for e in entries(federation, "provider"))
