"""`securemail audit verify` on logs that hold and logs that were tampered with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from securemail import audit
from securemail.cli.main import cli


def _log(tmp_path: Path) -> tuple[Path, audit.Head]:
    path = tmp_path / "audit.log"
    head = audit.Head(0, "")
    for name in ("first", "second", "third"):
        head = audit.append(path, "keys.backup", {"backup_id": name}, now=datetime.now(UTC))
    return path, head


def test_intact_log_verifies_with_its_head(tmp_path: Path) -> None:
    """An untouched log verifies, with and without its recorded head."""
    path, head = _log(tmp_path)
    runner = CliRunner()
    plain = runner.invoke(cli, ["audit", "verify", str(path)])
    assert plain.exit_code == 0 and "3 records, chain intact" in plain.output
    with_head = runner.invoke(
        cli, ["audit", "verify", str(path), "--records", "3", "--digest", head.digest]
    )
    assert with_head.exit_code == 0 and "matching head 3" in with_head.output


def test_edited_and_shortened_logs_fail(tmp_path: Path) -> None:
    """An edited record fails by line; a log missing its last record fails against the head."""
    path, head = _log(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b"second", b"forged") + lines[2])
    edited = CliRunner().invoke(cli, ["audit", "verify", str(path)])
    assert edited.exit_code == 1 and "line 2 was altered" in edited.stderr
    path.write_bytes(b"".join(lines[:2]))
    shortened = CliRunner().invoke(
        cli, ["audit", "verify", str(path), "--records", "3", "--digest", head.digest]
    )
    assert shortened.exit_code == 1 and "audit-broken" in shortened.stderr
