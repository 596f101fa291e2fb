"""``check-config`` on a real node directory: a ready node passes; each thing that would
stop it or expose it (a port in use, a data folder anyone may write, a database behind the
code) is one finding with its reason code."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from securemail.config.node import NodeConfig
from securemail.node.check import ERROR, Finding, check
from securemail.storage.engine import connect, downgrade
from securemail.storage.versions import chain
from tests.node.conftest import Federation


def _ready(federation: Federation) -> NodeConfig:
    """The agency's node as an operator leaves it before the first start: database
    migrated, data folder 0700, passphrase file 0600."""
    path = federation.nodes["agency"].config
    assert CliRunner().invoke(cli, ["db", "upgrade", "--config", str(path)]).exit_code == 0
    config = federation.config("agency")
    config.data_dir.chmod(0o700)
    assert config.passphrase_file is not None
    config.passphrase_file.chmod(0o600)
    return config


def _errors(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.reason, f.detail) for f in findings if f.level == ERROR]


def test_a_ready_node_passes(federation: Federation) -> None:
    """Every file, port, the database and the directory check out: exit 0, no error."""
    config = _ready(federation)
    assert _errors(check(config, datetime.now(UTC))) == []
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config.source)])
    assert result.exit_code == 0, result.output
    assert "ok: directory: federation.directory: serial" in result.stdout
    assert "ok: database: reachable, schema" in result.stdout


def test_a_port_in_use_is_named(federation: Federation) -> None:
    """A listener's port held by another program: port-unavailable naming the setting."""
    config = _ready(federation)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        path = federation.nodes["agency"].config
        text = re.sub(r'(\[relay\]\nlisten = )"[^"]+"', rf'\1"127.0.0.1:{port}"', path.read_text())
        path.write_text(text)
        config = federation.config("agency")
        [(reason, detail)] = _errors(check(config, datetime.now(UTC)))
    assert reason == "port-unavailable"
    assert detail.startswith(f"relay.listen 127.0.0.1:{port}: ") and "another program" in detail
    ports_running = check(config, datetime.now(UTC), running=True)
    assert _errors(ports_running) == []  # a running node holds its own ports


def test_a_data_folder_anyone_may_write_is_an_error(federation: Federation) -> None:
    """data_dir 0777: data-dir-permissions; 0750 is only a warning."""
    config = _ready(federation)
    config.data_dir.chmod(0o777)
    assert [r for r, _ in _errors(check(config, datetime.now(UTC)))] == ["data-dir-permissions"]
    config.data_dir.chmod(0o750)
    findings = check(config, datetime.now(UTC))
    assert _errors(findings) == []
    assert any(f.reason == "data-dir-permissions" and f.level == "warning" for f in findings)


def test_a_database_behind_the_code_is_a_warning(federation: Federation) -> None:
    """A schema one revision behind: database-not-migrated, a warning (the next start or
    ``db upgrade`` migrates it), exit 0."""
    config = _ready(federation)
    engine = connect(config.database)
    downgrade(engine, chain()[-2].id)
    engine.dispose()
    result = CliRunner().invoke(cli, ["check-config", "--config", str(config.source), "--json"])
    assert result.exit_code == 0
    [finding] = [
        f for f in json.loads(result.stdout)["findings"] if f["reason"].startswith("database")
    ]
    assert finding["level"] == "warning" and finding["reason"] == "database-not-migrated"


def test_a_directory_that_does_not_verify(federation: Federation, tmp_path: Path) -> None:
    """federation.directory pointing at an edited copy: the directory's reason code."""
    config = _ready(federation)
    copy = tmp_path / "directory.json"
    copy.write_bytes(Path(config.directory).read_bytes().replace(b'"serial"', b'"serial_"', 1))
    (tmp_path / "directory.json.p7s").write_bytes(Path(config.directory + ".p7s").read_bytes())
    path = federation.nodes["agency"].config
    path.write_text(re.sub(r'(?m)^directory = ".*"$', f'directory = "{copy}"', path.read_text()))
    errors = _errors(check(federation.config("agency"), datetime.now(UTC)))
    [(reason, detail)] = errors
    assert reason.startswith("directory-") and str(copy) in detail, errors


@pytest.mark.parametrize("running", [False, True])
def test_nothing_is_created(federation: Federation, tmp_path: Path, running: bool) -> None:
    """check-config on a node that never ran creates no data folder and no database."""
    path = federation.nodes["agency"].config
    wrong = tmp_path / "fresh"
    path.write_text(re.sub(r'(?m)^data_dir = ".*"$', f'data_dir = "{wrong}"', path.read_text()))
    findings = check(federation.config("agency"), datetime.now(UTC), running=running)
    assert any(f.reason == "data-dir-missing" and f.level == "warning" for f in findings)
    assert not wrong.exists()


def test_the_store_password_file_must_be_private(federation: Federation, tmp_path: Path) -> None:
    """Delivery to the organisation's own store with AUTH: a password file others may read
    is key-permissions, as a key is."""
    _ready(federation)
    secret = tmp_path / "store-password"
    secret.write_text("store password\n")
    secret.chmod(0o644)
    path = federation.nodes["agency"].config
    store = (
        'kind = "smtp"\nhost = "127.0.0.1"\nport = 2525\nstarttls = true\n'
        f'auth_user = "gateway"\nauth_password_file = "{secret}"\n'
    )
    text = re.sub(r'kind = "maildir"\npath = "[^"]*"\n', store, path.read_text())
    path.write_text(text)
    [(reason, detail)] = _errors(check(federation.config("agency"), datetime.now(UTC)))
    assert reason == "key-permissions" and detail.startswith(f"{secret} is 0644")


def test_keys_not_restored_and_a_missing_maildir_root_are_warned(federation: Federation) -> None:
    """An organisation whose keys/ holds no key, and a hosted Maildir root that is not
    there, are each a warning naming the organisation (the node starts; the mail waits)."""
    config = _ready(federation)
    hosted = next(o for o in config.organisations if o.delivery.kind == "maildir")
    assert hosted.delivery.path is not None
    for key in (hosted.keys / "keys").glob("*"):
        if key.name.endswith(("signing.key", "encryption.key")):
            key.unlink()
    hosted.delivery.path.rename(hosted.delivery.path.with_name("moved-away"))
    findings = check(config, datetime.now(UTC))
    warned = {f.reason: f.detail for f in findings if f.level == "warning"}
    assert hosted.org_id in warned["keys-not-installed"]
    assert "key-unavailable" in warned["keys-not-installed"]
    assert str(hosted.delivery.path) in warned["maildir-missing"]
    assert _errors(findings) == []
