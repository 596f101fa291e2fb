"""``securemail conformance history`` reads the node's kept runs; the operator's mistakes
with ``conformance`` are one line each, never a traceback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.conformance.history import ConformanceHistory
from securemail.conformance.report import Finding, report_document
from tests.config.test_node import VALID
from tests.queue.conftest import NOW

GOOD = [Finding("SM-RECV-2", "tampered", True, "kept")]
BROKEN = [Finding("SM-RECV-2", "tampered", False, "receipted")]


def _node(tmp_path: Path) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(VALID)
    (tmp_path / "data").mkdir()
    return config


def _record(config: Path, member: str, findings: list[Finding], hours: int) -> None:
    at = NOW + timedelta(hours=hours)
    history = ConformanceHistory.open(
        f"sqlite:///{config.parent.resolve() / 'data' / 'queue.sqlite'}"
    )
    try:
        history.record(report_document(tester="conformance", member=member, target="h:25",
                                       started=at, finished=at, findings=findings, cases=[]),
                       b"signature")  # fmt: skip
    finally:
        history.close()


def test_history_lists_runs_newest_first_with_the_regression(tmp_path: Path) -> None:
    """Lines name the time, member, gateway, result and what regressed; --json one object a
    run; --member keeps one member's runs."""
    config = _node(tmp_path)
    _record(config, "agency", GOOD, 0)
    _record(config, "agency", BROKEN, 1)
    _record(config, "council", GOOD, 2)
    runner = CliRunner()
    shown = runner.invoke(cli, ["conformance", "history", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("2026-11-29T14:00:00Z  council  h:25  pass")
    assert lines[1].endswith("FAIL SM-RECV-2  regressed: SM-RECV-2")
    as_json = runner.invoke(cli, ["conformance", "history", "--config", str(config), "--json",
                                  "--member", "agency"])  # fmt: skip
    runs = [json.loads(line) for line in as_json.output.splitlines()]
    assert [r["result"] for r in runs] == ["fail", "pass"]
    assert runs[0]["regressed"] == ["SM-RECV-2"] and runs[0]["member"] == "agency"


def test_conformance_mistakes_are_one_line(tmp_path: Path) -> None:
    """A bad --target, a report folder that exists and a missing config are each one
    `error: <reason-code>: …` line and exit 1."""
    runner = CliRunner()
    out = tmp_path / "report"
    out.mkdir()
    common = ["conformance", "run", "--member", "agency", "--recipient", "a@agency.govt.nz",
              "--node-dir", str(tmp_path), "--tester", "conformance", "--directory",
              str(tmp_path / "directory.json"), "--listen", "127.0.0.1:2525"]  # fmt: skip
    exists = runner.invoke(cli, [*common, "--target", "127.0.0.1:25", "--out", str(out)])
    assert exists.exit_code == 1
    assert exists.output.strip().startswith("error: out-exists: ")
    bad = runner.invoke(cli, [*common, "--target", "nohost", "--out", str(tmp_path / "new")])
    assert bad.exit_code == 1
    assert bad.output.strip() == "error: bad-target: --target 'nohost' is not HOST:PORT"
    missing = runner.invoke(cli, ["conformance", "history", "--config", str(tmp_path / "no.toml")])
    assert missing.exit_code == 1 and missing.output.startswith("error: bad-config: ")
    assert "Traceback" not in exists.output + bad.output + missing.output
