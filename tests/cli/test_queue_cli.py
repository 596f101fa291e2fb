"""`securemail queue` and `securemail status`: an operator sees and steers a node's queue."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.config.node import load_config
from securemail.demo.exchange import Script, submit
from securemail.queue import QueueStore
from tests.node.conftest import Federation, running
from tests.queue.conftest import NOW, message

SCRIPT = Script(
    "queue test",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("hemi.walker@securemail.provider.nz",),
    "Waiting for the provider",
)


def _queue_one_deferred(federation: Federation) -> None:
    async def scenario() -> None:
        async with running(federation, "agency"):
            reply = await submit(
                federation.nodes["agency"], SCRIPT, SCRIPT.message(1, datetime.now(UTC))
            )
            assert reply.startswith("250"), reply
            await asyncio.sleep(1.0)  # one attempt: the provider is down

    asyncio.run(scenario())


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_list_show_hold_release_retry_delete(federation: Federation) -> None:
    """The operator lists the deferred entry, reads why, holds, releases and deletes it."""
    _queue_one_deferred(federation)
    config = str(federation.nodes["agency"].config)
    code, output = run("queue", "list", "--config", config, "--json")
    assert code == 0, output
    [entry] = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert entry["state"] == "deferred"
    assert entry["recipients"][0]["reason"] == "connect-failed"
    assert entry["client"] == "relay 127.0.0.1" and entry["auth"] is None
    code, output = run("queue", "show", "--config", config, entry["id"])
    assert code == 0 and "accepted" in output and "connect-failed" in output
    assert not output.lstrip().startswith("{"), "the form for people is lines, not JSON"
    assert "state:       deferred" in output and "hemi.walker@securemail.provider.nz  " in output
    assert run("queue", "hold", "--config", config, entry["id"])[0] == 0
    code, output = run("queue", "list", "--config", config, "--state", "held")
    assert entry["id"] in output
    assert run("queue", "release", "--config", config, entry["id"])[0] == 0
    assert run("queue", "retry", "--config", config, entry["id"])[0] == 0
    code, output = run("status", "--config", config)
    assert code == 0 and "deferred 1" in output and "4 members" in output
    assert run("queue", "delete", "--config", config, entry["id"])[0] == 0
    code, output = run("queue", "show", "--config", config, entry["id"])
    assert code != 0 and "no queue entry" in output


def test_unknown_entry_and_bad_config_are_clear_errors(federation: Federation) -> None:
    """An unknown id and a broken config file get a reason, not a traceback."""
    config = federation.nodes["agency"].config
    code, output = run("queue", "hold", "--config", str(config), "nope")
    assert code == 1 and "queue-entry-not-found" in output
    config.write_text(config.read_text().replace("[relay]", "[relay]\nbogus = 1", 1))
    code, output = run("queue", "list", "--config", str(config))
    assert code == 1 and "error: bad-config: [relay] has unknown setting(s): bogus" in output


def test_list_pages_newest_first_and_never_stops_silently(federation: Federation) -> None:
    """`queue list` shows one page, newest first, and its last line says how many entries
    there are and how to see the next page; a bad page size is a one-line error."""
    config = federation.nodes["agency"].config
    with QueueStore.open(load_config(config).database) as store:
        made = [store.enqueue(message(), NOW + timedelta(seconds=n)) for n in range(5)]
    code, output = run("queue", "list", "--config", str(config), "--limit", "2")
    assert code == 0, output
    assert [line.split()[0] for line in output.splitlines()[:2]] == made[:-3:-1]
    assert output.splitlines()[-1] == "-- entries 1-2 of 5; more: --offset 2"
    code, output = run("queue", "list", "--config", str(config), "--offset", "4")
    assert output.splitlines()[-1] == "-- entries 5-5 of 5" and made[0] in output
    code, output = run("queue", "list", "--config", str(config), "--oldest-first", "--limit", "1")
    assert output.splitlines()[0].split()[0] == made[0]
    code, output = run("queue", "list", "--config", str(config), "--limit", "0")
    assert code == 1 and output.startswith("error: bad-page: limit must be 1 to 500")
