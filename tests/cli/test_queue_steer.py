"""``securemail queue hold|release|retry|delete|purge`` on many entries: ids, ALL, stdin,
filters, --dry-run and --json, with actions only where they apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.config.node import load_config
from securemail.queue import Direction, QueueStore, State
from securemail.replies import Reply, ok
from tests.cli.conftest import provider_config
from tests.queue.conftest import NOW, message

DOWN = Reply(451, "4.4.1", "peer down", "connect-failed")


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, QueueStore]:
    """A node config and its queue: two deferred entries (one from dan@) and a delivered one."""
    config = provider_config(tmp_path, "provider.nz")
    store = QueueStore.open(load_config(config).database)
    for sender in ("alice@agency.govt.nz", "dan@agency.govt.nz"):
        store.enqueue(message(mail_from=sender), NOW)
        [claimed] = store.claim(Direction.OUTBOUND, NOW)
        store.defer(claimed.id, DOWN, NOW)
    done = store.enqueue(message(), NOW)
    store.claim(Direction.OUTBOUND, NOW)
    store.record(done, {"bob@ministry.govt.nz": ok()}, NOW)
    return config, store


def queue(config: Path, *words: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["queue", *words, "--config", str(config)], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _ids(store: QueueStore, state: State) -> list[str]:
    return sorted(e.id for e in store.list([state]))


def test_hold_all_dry_run_then_for_real(node: tuple[Path, QueueStore]) -> None:
    """``hold ALL --dry-run`` lists the two deferred entries and changes nothing; for real
    it holds them and says on stderr that the delivered one was skipped, exit 0."""
    config, store = node
    deferred, [delivered] = _ids(store, State.DEFERRED), _ids(store, State.DELIVERED)
    code, out, err = queue(config, "hold", "ALL", "--dry-run")
    assert code == 0
    assert sorted(out.splitlines()) == [f"{i}: would hold (deferred)" for i in deferred]
    assert _ids(store, State.HELD) == []
    code, out, err = queue(config, "hold", "ALL")
    assert code == 0 and _ids(store, State.HELD) == deferred
    assert f"{delivered}: skipped: delivered entries cannot be held" in err
    assert err.splitlines()[-1] == "-- hold: 2 changed, 1 skipped, 0 refused"


def test_retry_of_a_delivered_id_is_refused_clearly(node: tuple[Path, QueueStore]) -> None:
    """A delivered entry named by id: one error line saying why, exit 1, nothing changed."""
    config, store = node
    [delivered] = _ids(store, State.DELIVERED)
    code, out, err = queue(config, "retry", delivered)
    assert code == 1 and out == ""
    assert f"error: action-not-applicable: {delivered}: delivered entries cannot be retried" in err
    assert _ids(store, State.DELIVERED) == [delivered]


def test_ids_from_stdin_and_a_sender_filter(node: tuple[Path, QueueStore]) -> None:
    """``queue list`` output piped into ``hold -`` with ``--sender`` holds only dan's entry."""
    config, store = node
    listed = CliRunner().invoke(cli, ["queue", "list", "--config", str(config)]).stdout
    code, out, _ = queue(config, "hold", "-", "--sender", "dan@agency.govt.nz", stdin=listed)
    assert code == 0
    [held] = _ids(store, State.HELD)
    entry = store.get(held)
    assert entry is not None and entry.mail_from == "dan@agency.govt.nz"
    assert out == f"{held}: hold done (deferred)\n"


def test_json_report_parses(node: tuple[Path, QueueStore]) -> None:
    """``--json`` is one object: the action, dry_run and every entry's outcome."""
    config, store = node
    code, out, _ = queue(config, "delete", "--state", "deferred", "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and report["action"] == "delete" and report["dry_run"] is True
    assert sorted(o["id"] for o in report["outcomes"]) == _ids(store, State.DEFERRED)


def test_purge_by_default_takes_every_old_finished_entry(node: tuple[Path, QueueStore]) -> None:
    """``purge --older-than 1s`` removes the delivered entry only, and counts it."""
    config, store = node
    code, out, _ = queue(config, "purge", "--older-than", "1s", "--dry-run")
    [delivered] = _ids(store, State.DELIVERED)
    assert code == 0 and out == f"{delivered}: would purge (delivered)\n"
    code, out, _ = queue(config, "purge", "--older-than", "1s")
    assert code == 0 and out == "purged 1 entry\n"
    assert _ids(store, State.DELIVERED) == [] and len(_ids(store, State.DEFERRED)) == 2


def test_nothing_named_is_a_clear_error(node: tuple[Path, QueueStore]) -> None:
    """``release`` with no id, ALL or filter: empty-selection, exit 1."""
    config, _ = node
    code, _, err = queue(config, "release")
    assert code == 1 and err.startswith("error: empty-selection: give entry ids, ALL")


def test_an_empty_stdin_chooses_nothing(node: tuple[Path, QueueStore]) -> None:
    """``delete - --sender X`` fed nothing (an empty listing) deletes nothing: the filter
    narrows the ids given, it does not widen to every entry."""
    config, store = node
    code, out, err = queue(config, "delete", "-", "--sender", "dan@agency.govt.nz", stdin="")
    assert code == 0 and out == ""
    assert err.splitlines()[-1] == "-- delete: 0 changed, 0 skipped, 0 refused"
    assert len(_ids(store, State.DEFERRED)) == 2
