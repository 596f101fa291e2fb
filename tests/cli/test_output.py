"""``--json`` on every command family that prints a result: the output parses as JSON and
holds what the text form says."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from securemail import audit
from securemail.cli.main import cli
from securemail.cli.output import plain
from securemail.queue import QueueStore
from securemail.queue.model import State
from tests.node.conftest import Federation
from tests.queue.conftest import NOW, message

SENDER = "aroha.ngata@agency.govt.nz"


def run_json(*words: str, stdin: str | None = None) -> Any:
    """The parsed stdout of ``securemail WORDS --json``, which must exit 0."""
    result = CliRunner().invoke(cli, [*words, "--json"], input=stdin)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plain_turns_dataclasses_dates_and_enums_into_json_values() -> None:
    """Datetimes become ISO strings, enums their value, paths strings; a type with no JSON
    form is refused, not printed as its repr."""
    assert plain({"when": NOW, "state": State.HELD, "at": Path("/a"), "n": (1, 2)}) == {
        "when": NOW.isoformat(),
        "state": "held",
        "at": "/a",
        "n": [1, 2],
    }
    with pytest.raises(TypeError):
        plain(object())


@pytest.fixture
def node(federation: Federation) -> str:
    """The agency's config, its database at the newest schema by ``db upgrade`` (which
    reports in JSON)."""
    config = str(federation.nodes["agency"].config)
    migrated = run_json("db", "upgrade", "--config", config)
    assert isinstance(migrated, dict) and set(migrated) == {"before", "after"}
    assert migrated["after"] is not None
    return config


def test_queue_show_and_recover(node: str) -> None:
    """``queue show --json`` is the entry with its events; ``queue recover --json`` a count."""
    from securemail.config.node import load_config  # noqa: PLC0415 (the node's own database)

    with QueueStore.open(load_config(Path(node)).database) as store:
        entry_id = store.enqueue(message(), NOW)
    shown = run_json("queue", "show", "--config", node, entry_id)
    assert shown["id"] == entry_id and shown["events"][0]["event"] == "accepted"
    assert run_json("queue", "recover", "--config", node, "--all") == {"recovered": 0}


def test_db_current_and_history(node: str) -> None:
    """``db current --json`` says the schema is the newest; ``db history --json`` lists the
    chain oldest first, ending at that head."""
    current = run_json("db", "current", "--config", node)
    history = run_json("db", "history")
    assert current["up_to_date"] is True
    assert history[0]["down"] is None and history[-1]["id"] == current["head"]


def test_user_commands(node: str) -> None:
    """``user list/show/app-password list/token list --json`` parse and name the account."""
    accounts = run_json("user", "list", "--config", node)
    assert isinstance(accounts, list)
    [account] = [a for a in accounts if a["name"] == SENDER]
    assert account["addresses"] == [SENDER] and account["disabled"] is False
    shown = run_json("user", "show", "--config", node, SENDER)
    assert shown["account"]["addresses"] == [SENDER] and shown["app_passwords"] == []
    assert run_json("user", "app-password", "list", "--config", node, SENDER) == []
    assert run_json("user", "token", "list", "--config", node, SENDER) == []


def test_policy_explain(node: str) -> None:
    """``policy explain --json`` gives the organisation, the directory serial and one
    decision per recipient (deferred: this node has accepted no directory yet)."""
    explained = run_json(
        "policy",
        "explain",
        "--config",
        node,
        "--from",
        SENDER,
        "--to",
        "hemi@securemail.provider.nz",
    )
    [decision] = explained["decisions"]
    assert explained["organisation"] == "agency" and explained["directory"] is None
    assert decision["decision"] == "defer" and decision["reason"]  # no directory accepted yet


def test_check_config_and_its_settings(node: str) -> None:
    """``check-config --json`` lists findings with levels and reasons; ``-n --json`` maps
    each non-default setting to its value."""
    result = CliRunner().invoke(cli, ["check-config", "--config", node, "--json"])
    report = json.loads(result.stdout)
    assert {f["level"] for f in report["findings"]} <= {"ok", "warning", "error"}
    assert report["ok"] is (result.exit_code == 0)
    settings = run_json("check-config", "--config", node, "-n")
    assert settings["organisation[0].org_id"] == "agency"


def test_federation_and_directory(federation: Federation) -> None:
    """``federation list``, ``directory verify`` and ``directory fetch`` in JSON agree on
    the members and the serial."""
    members = run_json("federation", "list", "--dir", str(federation.root / "federation"))
    assert {m["org_id"] for m in members} >= {"agency", "provider"}
    config = federation.config("agency")
    source = ["--source", config.directory, "--anchor", str(config.anchor)]
    verified = run_json("directory", "verify", *source)
    assert verified["members"] == len(members)
    state = str(federation.root / "state")
    fetched = run_json("directory", "fetch", *source, "--state", state)
    assert fetched["serial"] == verified["serial"] and fetched["accepted"] is True


def test_audit_verify_and_log_grep(tmp_path: Path) -> None:
    """``audit verify --json`` reports the chain; ``log grep --json`` one object a line."""
    log = tmp_path / "audit.log"
    audit.append(log, "keys.backup", {"backup_id": "b1"}, now=datetime.now(UTC))
    assert run_json("audit", "verify", str(log)) == {
        "log": str(log),
        "ok": True,
        "records": 1,
        "head": False,
    }
    ops = tmp_path / "ops.log"
    ops.write_text('queue_id=Q1 event=accepted message_id="<m@x>"\nother line\n')
    result = CliRunner().invoke(cli, ["log", "grep", "Q1", str(ops), "--json"])
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert found == [
        {"file": str(ops), "queue_id": "Q1", "event": "accepted", "message_id": "<m@x>"}
    ]
