"""A node fitted between real Postfix instances as docs/integration.md says, followed in its log.

The agency's users hand mail to a private Postfix ("front") whose only SecureMail setting is
``transport_maps`` on the map ``securemail postfix-maps`` wrote; the node delivers the
agency's inbound mail into a second private Postfix ("back", the agency's store). The two
member nodes run as ``securemail serve`` processes, each logging to its own file, and one
message is followed through both logs with ``securemail log grep``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from securemail import logbook
from securemail.demo.exchange import Script, find_delivered, header
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, deliver_to_smtp_store
from tests.support.postfix import PostfixInstance, start_postfix

NOW = datetime.now(UTC)
OFFICER = "aroha.ngata@agency.govt.nz"
CITIZEN = "hemi.walker@securemail.provider.nz"
CITIZEN_DOMAIN = "securemail.provider.nz"
OUT = Script(
    "agency to citizen", "agency", OFFICER, (CITIZEN,), "[IN-CONFIDENCE] Review", receipt=True
)
BACK = Script("citizen to agency", "provider", CITIZEN, (OFFICER,), "[IN-CONFIDENCE] Re: Review")


def _need_postfix() -> None:
    require_tool("postfix")
    require_tool("swaks")
    if os.geteuid() != 0:
        reason = "a private Postfix instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)


def _securemail(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "securemail", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=WAIT, check=False)


@contextmanager
def _serving(config: Path, log: Path) -> Iterator[None]:
    """``securemail serve`` on ``config``, its log in ``log``, until ports.json appears."""
    ports = config.parent / "data" / "ports.json"
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "securemail", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait(lambda: ports.exists() or child.poll() is not None, f"{config} serving")
        assert child.poll() is None, log.read_text()
        yield
    finally:
        child.terminate()
        child.wait(WAIT)


def _wait(done: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _swaks(port: int, script: Script, n: int) -> str:
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "30", "--data", "-"]
    command += ["--from", script.mail_from, "--to", ",".join(script.to)]
    done = subprocess.run(
        command, input=script.message(n, NOW), capture_output=True, timeout=WAIT + 30, check=False
    )
    return done.stdout.decode(errors="replace")


def _queue_id(log: Path, message_id: str, event: str) -> str:
    """The queue id of the first ``event`` line about ``message_id`` in ``log``."""
    for line in log.read_text().splitlines():
        fields = logbook.parse(line)
        if fields.get("message_id") == message_id and fields.get("event") == event:
            return fields["queue_id"]
    raise AssertionError(f"no {event} line for {message_id} in\n{log.read_text()}")


@pytest.fixture
def map_dir() -> Iterator[Path]:
    """A folder Postfix's daemons can enter (pytest's are 0700) for the transport map."""
    folder = Path(tempfile.mkdtemp(prefix="securemail-map-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fit_agency(
    federation: Federation, store: PostfixInstance, front: PostfixInstance, tmap: Path
) -> None:
    """The documented edits of the agency's node.toml: delivery into the store, [postfix]."""
    deliver_to_smtp_store(federation, "agency", store.port)
    config = federation.nodes["agency"].config
    config.write_text(
        config.read_text()
        + f'\n[postfix]\ntransport_map = "{tmap}"\nconfig_directory = "{front.config_dir}"\n'
    )


def test_postfix_in_front_and_behind_a_node_exchanging_with_a_member(
    federation: Federation, tmp_path: Path, map_dir: Path
) -> None:
    """Users -> Postfix -> node -> member, and member -> node -> Postfix store, with the
    Postfix side configured only from the docs and the map; one message followed in the logs."""
    _need_postfix()
    tmap = map_dir / "securemail_transport"
    agency_log, provider_log = tmp_path / "agency.log", tmp_path / "provider.log"
    with ExitStack() as stack:
        store = stack.enter_context(
            start_postfix(
                tmp_path, domain="agency.govt.nz", mailbox_dir=tmp_path / "store",
                mailboxes=("aroha.ngata",),
            )
        )  # fmt: skip
        front = stack.enter_context(
            start_postfix(tmp_path, domain="front.agency.govt.nz",
                          settings={"transport_maps": f"hash:{tmap}"})
        )  # fmt: skip
        _fit_agency(federation, store, front, tmap)
        stack.enter_context(_serving(federation.nodes["provider"].config, provider_log))
        stack.enter_context(_serving(federation.nodes["agency"].config, agency_log))
        # The node wrote the map and its table at start ([postfix]); the command agrees.
        assert tmap.with_name(tmap.name + ".db").is_file(), agency_log.read_text()
        written = _securemail(
            "postfix-maps", "--config", str(federation.nodes["agency"].config), "--json"
        )
        assert written.returncode == 0, written.stderr
        summary = json.loads(written.stdout)
        assert summary["changed"] is False, summary
        relay = federation.nodes["agency"].relay_port
        assert "securemail.provider.nz" in summary["routed"]
        assert "agency.govt.nz" not in summary["routed"] and "agency.govt.nz" in summary["excluded"]
        lookup = front.run("postmap", "-q", "securemail.provider.nz", f"hash:{tmap}").stdout
        assert lookup.strip() == f"smtp:[127.0.0.1]:{relay}"

        sent = _swaks(front.port, OUT, 1)
        assert "250 2.0.0 Ok: queued" in sent, sent
        front.wait_for_log(f"relay=127.0.0.1[127.0.0.1]:{relay}", timeout=WAIT)
        citizen = federation.nodes["provider"].mailbox(CITIZEN)
        _wait(lambda: find_delivered(citizen, OUT.message_id(1, "agency.govt.nz")), "delivery")

        replied = _swaks(federation.nodes["provider"].relay_port, BACK, 2)
        assert " 250 " in replied, replied
        _wait(lambda: _has_event(agency_log, "receipted"), "the receipt")
        # the reply and the officer's receipt notice, both delivered into the store
        store.wait_for_log("status=sent", count=2, timeout=WAIT)
        stored = store.delivered("aroha.ngata")
        front_log = front.log_file.read_text(errors="replace")
        store_log = store.log_file.read_text(errors="replace")
    # The store holds the citizen's reply and the receipt notice for the officer's message.
    reply = [m for m in stored if header(m, "Message-ID") == BACK.message_id(2, CITIZEN_DOMAIN)]
    assert len(reply) == 1 and len(stored) == 2, [header(m, "Subject") for m in stored]
    assert "verified" in header(reply[0], "X-SecureMail-Status")
    # From the front Postfix's log to the node's: its 250 names the node's queue id.
    handed = re.search(r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent "
                       r"\(250 2\.0\.0 Queued as (\w+)\)", front_log)  # fmt: skip
    assert handed is not None, front_log
    queue_id = handed.group(1)
    assert queue_id == _queue_id(agency_log, OUT.message_id(1, "agency.govt.nz"), "accepted")
    # From the node's log to the store's: the delivered line carries the store's queue id.
    into_store = _queue_id(agency_log, BACK.message_id(2, CITIZEN_DOMAIN), "delivered")
    store_id = _reply_queue_id(agency_log, into_store)
    assert re.search(rf"{store_id}: to=<{OFFICER}>.*status=sent", store_log), store_log
    followed = _securemail("log", "grep", queue_id, str(agency_log), str(provider_log))
    assert followed.returncode == 0, followed.stderr
    events = _events(followed.stdout)
    assert {"accepted", "protected", "delivered", "receipted"} <= events["agency.log"], (
        followed.stdout
    )
    assert {"accepted", "verified", "delivered"} <= events["provider.log"], followed.stdout


def _reply_queue_id(log: Path, queue_id: str) -> str:
    """The store's queue id in ``queue_id``'s delivered line (its detail: "queued as X")."""
    for line in log.read_text().splitlines():
        fields = logbook.parse(line)
        if fields.get("queue_id") == queue_id and fields.get("event") == "delivered":
            found = re.search(r"queued as (\w+)", fields.get("detail", ""))
            assert found is not None, line
            return found.group(1)
    raise AssertionError(f"no delivered line for {queue_id}")


def _has_event(log: Path, event: str) -> bool:
    return any(logbook.parse(line).get("event") == event for line in log.read_text().splitlines())


def _events(grep_output: str) -> dict[str, set[str]]:
    """Events per log file in ``log grep`` output (``<file>:<line>`` with several files)."""
    found: dict[str, set[str]] = {"agency.log": set(), "provider.log": set()}
    for line in grep_output.splitlines():
        path, _, rest = line.partition(":")
        event = logbook.parse(rest).get("event")
        if event:
            found[Path(path).name].add(event)
    return found
