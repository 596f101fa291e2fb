"""Everyday operator mistakes get one line ``error: <reason>: <detail>`` and a non-zero exit,
never a traceback; read-only commands create nothing; ``--config`` and $SECUREMAIL_CONFIG
are taken the same way by every command that reads a node's configuration."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from tests.node.conftest import Federation

SENDER = "aroha.ngata@agency.govt.nz"


def serve(config: Path, *args: str) -> tuple[int, str]:
    """``securemail serve`` as an operator runs it: a process of its own, its stderr."""
    command = [sys.executable, "-m", "securemail", "serve", "--config", str(config), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stderr


def one_error_line(stderr: str) -> str:
    """The one ``error:`` line of ``stderr``, which must hold no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def _listen_on(config: Path, table: str, port: int) -> None:
    text = config.read_text()
    pattern = rf"(\[{re.escape(table)}\]\n(?:[^\[].*\n)*?listen = )\"127\.0\.0\.1:\d+\""
    changed, count = re.subn(pattern, rf'\g<1>"127.0.0.1:{port}"', text)
    assert count == 1, text
    config.write_text(changed)


def test_serve_with_the_peer_port_in_use(federation: Federation, taken_port: int) -> None:
    """A peer port another program holds: listen-failed naming the address, exit 1."""
    config = federation.nodes["agency"].config
    _listen_on(config, "peer", taken_port)
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1
    assert line.startswith("error: listen-failed: ") and str(taken_port) in line, line
    assert "address already in use" in line.lower()


def test_serve_with_the_web_port_in_use(federation: Federation, taken_port: int) -> None:
    """A [web] port another program holds: listen-failed naming [web] and the address."""
    config = federation.nodes["agency"].config
    _listen_on(config, "web", taken_port)
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1
    assert (
        line == f"error: listen-failed: [web] listen 127.0.0.1:{taken_port}: Address already in use"
    )


def test_serve_with_an_unknown_log_level(federation: Federation) -> None:
    """``--log-level verbose`` is refused before anything starts, as a usage error (2)."""
    code, stderr = serve(federation.nodes["agency"].config, "--log-level", "verbose")
    assert code == 2
    assert one_error_line(stderr) == (
        "error: bad-config: --log-level must be one of DEBUG, INFO, WARNING, ERROR, not 'verbose'"
    )


def test_a_config_file_that_is_not_there(tmp_path: Path) -> None:
    """A mistyped --config path: bad-config naming the file, for serve and the queue alike."""
    missing = tmp_path / "nodee.toml"
    code, stderr = serve(missing)
    assert code == 1
    assert one_error_line(stderr).startswith(f"error: bad-config: cannot read {missing}: ")
    result = CliRunner().invoke(cli, ["queue", "list", "--config", str(missing)])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: bad-config: cannot read ")


@pytest.mark.parametrize(
    "command",
    [["queue", "list"], ["queue", "show", "0123"], ["status"], ["track", "<1@x>"]],
    ids=lambda words: "-".join(words[:2]).strip("<>1@x"),
)
def test_a_wrong_data_dir_is_refused_and_nothing_is_created(
    federation: Federation, tmp_path: Path, command: list[str]
) -> None:
    """A data_dir that does not exist is an error naming it, not an empty queue; the folder
    and no database are created."""
    config = federation.nodes["agency"].config
    wrong = tmp_path / "no-such-dir"
    text, count = re.subn(r'(?m)^data_dir = ".*"$', f'data_dir = "{wrong}"', config.read_text())
    assert count == 1
    config.write_text(text)
    result = CliRunner().invoke(cli, [*command, "--config", str(config)])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert (
        line
        == f"error: bad-config: node.data_dir {wrong} does not exist: is this the node's config?"
    )
    assert not wrong.exists()


def test_a_data_dir_without_a_queue_is_refused_and_none_is_created(
    federation: Federation,
) -> None:
    """A data_dir that exists but holds no queue database (the node never ran there) gets
    queue-unavailable; no empty database is made."""
    config = federation.nodes["agency"].config
    database = config.parent / "data" / "queue.sqlite"
    database.parent.mkdir(exist_ok=True)
    database.unlink(missing_ok=True)
    result = CliRunner().invoke(cli, ["queue", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: queue-unavailable: no queue database")
    assert not database.exists()


def _started_once(federation: Federation) -> Path:
    """The agency's config, with a queue database (as a node that ran once leaves it)."""
    config = federation.nodes["agency"].config
    assert CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    return config


def test_config_is_taken_the_same_way_by_every_command(federation: Federation) -> None:
    """Each node command gives the same answer with ``--config F`` after its name and with
    $SECUREMAIL_CONFIG; ``user`` also still takes it before the subcommand."""
    config = str(_started_once(federation))
    commands = [
        ["status"],
        ["queue", "list"],
        ["track", "<none@agency.govt.nz>"],
        ["policy", "explain", "--from", SENDER, "--to", SENDER],
        ["user", "list"],
    ]
    for words in commands:
        given = CliRunner().invoke(cli, [*words, "--config", config])
        from_env = CliRunner(env={"SECUREMAIL_CONFIG": config}).invoke(cli, words)
        assert (given.exit_code, given.output) == (from_env.exit_code, from_env.output), words
        assert "error: " not in given.output or words[0] == "track", given.output
    before = CliRunner().invoke(cli, ["user", "--config", config, "list"])
    after = CliRunner().invoke(cli, ["user", "list", "--config", config])
    assert before.exit_code == after.exit_code == 0 and before.output == after.output
    assert "aroha.ngata@agency.govt.nz" in after.output


def test_status_json(federation: Federation) -> None:
    """``status --json`` is one JSON object: node, organisations, directory, listeners and
    every queue state's count."""
    config = str(_started_once(federation))
    result = CliRunner().invoke(cli, ["status", "--config", config, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["node"] and status["organisations"][0]["org_id"] == "agency"
    assert status["listeners"] is None  # not running
    assert set(status["queue"]) >= {"incoming", "deferred", "delivered", "quarantined"}
    assert all(count == 0 for count in status["queue"].values())


def test_serve_with_the_relay_port_in_use(federation: Federation, taken_port: int) -> None:
    """The relay listener's port taken: listen-failed naming the address, exit 1."""
    config = federation.nodes["agency"].config
    _listen_on(config, "relay", taken_port)
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("error: listen-failed: ") and str(taken_port) in line


def test_serve_with_the_imap_port_in_use(federation: Federation, taken_port: int) -> None:
    """The provider's IMAP port taken: listen-failed naming [imap], exit 1, and the SMTP
    listeners it had opened are closed again (the process ends)."""
    config = federation.nodes["provider"].config
    _listen_on(config, "imap", taken_port)
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("error: listen-failed: [imap]: "), line


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('[log]\nformat = "xml"\n', 'error: bad-config: log.format must be "text" or "json"'),
        ('[log]\nlevel = "loud"\n', "error: bad-config: log.level must be DEBUG, INFO, WARNING"),
        ("[log]\ncolour = true\n", "error: bad-config: [log] has unknown setting(s): colour"),
        ('[web]\nmetrics_from = ["10.0.0.1/8"]\n', "error: bad-config: web.metrics_from: "),
    ],
    ids=["log-format", "log-level", "log-unknown", "metrics-from"],
)
def test_bad_log_and_monitoring_settings(
    federation: Federation, setting: str, expected: str
) -> None:
    """A wrong [log] or [web] monitoring setting is bad-config naming it, before anything
    starts."""
    config = federation.nodes["agency"].config
    text = config.read_text()
    if setting.startswith("[web]"):
        text = text.replace("[web]\n", setting, 1)
    else:
        text += "\n" + setting
    config.write_text(text)
    code, stderr = serve(config)
    assert code == 1 and one_error_line(stderr).startswith(expected), stderr


def test_serve_without_the_passphrase_file(federation: Federation) -> None:
    """A [keys] passphrase_file that is not there: keys-unavailable naming it, exit 1."""
    config = federation.nodes["agency"].config
    (federation.root / "passphrase.txt").unlink()
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("error: keys-unavailable: passphrase file: "), line


def test_a_config_path_that_is_a_folder(federation: Federation) -> None:
    """--config naming a folder: bad-config, for serve and for status."""
    folder = federation.nodes["agency"].config.parent
    code, stderr = serve(folder)
    assert code == 1 and one_error_line(stderr).startswith("error: bad-config: cannot read ")
    result = CliRunner().invoke(cli, ["status", "--config", str(folder)])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: bad-config: cannot read ")


def test_log_grep_of_a_file_that_is_not_there(tmp_path: Path) -> None:
    """``log grep`` of a missing file: one error line naming it, exit 2."""
    result = CliRunner().invoke(cli, ["log", "grep", "0123", str(tmp_path / "none.log")])
    assert result.exit_code == 2
    assert one_error_line(result.output).startswith(f"error: unreadable: {tmp_path}/none.log: ")


def test_serve_with_a_tls_certificate_that_is_not_its_keys(federation: Federation) -> None:
    """[peer] tls_certificate of another node (its key does not match): keys-unavailable
    naming the TLS pair, exit 1, before any listener opens."""
    config = federation.nodes["agency"].config
    theirs = federation.config("provider").tls_certificate
    text = config.read_text()
    text, count = re.subn(r'(?m)^tls_certificate = ".*"$', f'tls_certificate = "{theirs}"', text)
    assert count >= 1
    config.write_text(text)
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("error: keys-unavailable: TLS certificate"), line


def test_a_database_url_that_cannot_be_reached(federation: Federation, taken_port: int) -> None:
    """[node] database naming a PostgreSQL port where none listens: queue list and serve
    each say queue-unavailable in one line, exit 1."""
    config = federation.nodes["agency"].config
    dead = f"postgresql://root@127.0.0.1:{_closed_port()}/test?connect_timeout=2"
    config.write_text(config.read_text().replace("[node]\n", f'[node]\ndatabase = "{dead}"\n', 1))
    result = CliRunner().invoke(cli, ["queue", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: queue-unavailable: "), result.output
    code, stderr = serve(config)
    assert code == 1 and one_error_line(stderr).startswith("error: queue-unavailable: "), stderr


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_corrupt_stored_directory(federation: Federation) -> None:
    """The directory the node accepted, edited on disk: policy explain refuses with the
    directory's reason code in one line, exit 1."""
    config = _started_once(federation)
    state = federation.config("agency").data_dir / "directory"
    fetched = CliRunner().invoke(
        cli,
        [
            "directory",
            "fetch",
            "--source",
            federation.config("agency").directory,
            "--anchor",
            str(federation.config("agency").anchor),
            "--state",
            str(state),
        ],
    )
    assert fetched.exit_code == 0, fetched.output
    document = state / "directory.json"
    document.write_bytes(document.read_bytes().replace(b'"serial"', b'"serial_"', 1))
    words = ["policy", "explain", "--config", str(config), "--from", SENDER, "--to", SENDER]
    result = CliRunner().invoke(cli, words)
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: directory-"), result.output


def test_read_only_user_commands_with_a_wrong_data_dir(
    federation: Federation, tmp_path: Path
) -> None:
    """``user list`` and ``user show`` with a data_dir that does not exist: bad-config in one
    line, exit 1, and neither the folder nor a database is created."""
    config = federation.nodes["agency"].config
    wrong = tmp_path / "no-such-dir"
    text, count = re.subn(r'(?m)^data_dir = ".*"$', f'data_dir = "{wrong}"', config.read_text())
    assert count == 1
    config.write_text(text)
    for words in (["user", "list"], ["user", "show", SENDER]):
        result = CliRunner().invoke(cli, [*words, "--config", str(config)])
        assert result.exit_code == 1
        assert one_error_line(result.output).startswith(f"error: bad-config: node.data_dir {wrong}")
    assert not wrong.exists()


def test_serve_without_an_organisation_signing_key(federation: Federation) -> None:
    """An organisation's signing key file removed: keys-unavailable naming it, exit 1."""
    config = federation.nodes["agency"].config
    keys = federation.config("agency").organisations[0].keys
    (keys / "keys" / "signing.key").unlink()
    code, stderr = serve(config)
    line = one_error_line(stderr)
    assert code == 1 and line.startswith("error: keys-unavailable: "), line
    assert "signing" in line


def test_a_world_readable_private_key_fails_check_config(federation: Federation) -> None:
    """check-config -q on a node whose TLS key is 0644: one key-permissions line naming
    the file and the fix, exit 1."""
    config = federation.nodes["agency"].config
    agency = federation.config("agency")
    assert agency.passphrase_file is not None
    agency.passphrase_file.chmod(0o600)
    key = agency.tls_key
    key.chmod(0o644)
    result = CliRunner().invoke(cli, ["check-config", "-q", "--config", str(config)])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert line == f"error: key-permissions: {key} is 0644: keys and passphrases must be 0600"


def test_db_downgrade_to_an_unknown_revision(federation: Federation) -> None:
    """``db downgrade 9999``: bad-config naming the revisions there are, exit 1, schema
    unchanged."""
    config = str(_started_once(federation))
    result = CliRunner().invoke(cli, ["db", "downgrade", "9999", "--config", config])
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: bad-config: no revision '9999'")
    current = CliRunner().invoke(cli, ["db", "current", "--config", config, "--json"])
    assert json.loads(current.stdout)["up_to_date"] is True
