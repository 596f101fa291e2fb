"""``securemail user operator``, ``records-role`` and ``token``: roles and API tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from securemail import audit
from securemail.cli.main import cli
from securemail.config.node import load_config
from securemail.records.schema import log
from securemail.storage.engine import connect
from tests.cli.conftest import provider_config

DOMAIN = "mail.example.govt.nz"
ALICE = f"alice@{DOMAIN}"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = provider_config(tmp_path, DOMAIN)
    user(path, "add", ALICE, "--password-stdin", input="correct horse battery staple\n")
    return path


def user(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["user", "--config", str(config), *args], input=input)
    return result.exit_code, result.output


def test_operator_tokens_need_the_role(config: Path) -> None:
    """An operator token is refused until the account is an operator; then shown once."""
    code, output = user(config, "token", "add", ALICE, "ops", "--scope", "operator")
    assert code == 1 and "not an operator" in output
    assert user(config, "operator", ALICE, "on")[0] == 0
    code, output = user(config, "token", "add", ALICE, "ops", "--scope", "operator")
    assert code == 0 and output.splitlines()[1].startswith("smapi_")
    assert user(config, "operator", f"nobody@{DOMAIN}", "on")[0] == 1


def test_token_list_and_revoke(config: Path) -> None:
    """A mailbox token is listed by id (never its secret) and revoked; events are logged."""
    code, output = user(config, "token", "add", ALICE, "billing app")
    token = output.splitlines()[1]
    ident = token.split("_")[1]
    code, listed = user(config, "token", "list", ALICE)
    assert code == 0 and ident in listed and "mailbox" in listed and token not in listed
    assert user(config, "token", "revoke", ALICE, ident)[0] == 0
    assert user(config, "token", "list", ALICE)[1] == ""
    code, output = user(config, "token", "revoke", ALICE, ident)
    assert code == 1 and "no API token" in output
    log = config.parent / "data" / "accounts.log"
    assert audit.verify(log).ok and token not in log.read_text()


def test_records_role_is_granted_revoked_and_recorded(config: Path) -> None:
    """``user records-role`` turns the role on and off, each change a record naming the CLI
    user; an unknown account is one error line; no token can take the records scope."""
    assert user(config, "records-role", ALICE, "on") == (0, f"{ALICE} records-role on\n")
    assert user(config, "records-role", ALICE, "off")[0] == 0
    code, output = user(config, "records-role", f"nobody@{DOMAIN}", "on")
    assert code == 1 and output.startswith("error: ") and "Traceback" not in output
    code, _ = user(config, "token", "add", ALICE, "exports", "--scope", "records")
    assert code == 2  # not a choice
    with connect(load_config(config).database).connect() as conn:
        events = conn.execute(select(log.c.event, log.c.record).order_by(log.c.seq)).all()
    changes = [(e, json.loads(r)["details"]["by"]) for e, r in events if "role" in e]
    assert [e for e, _ in changes] == ["records.role-granted", "records.role-revoked"]
    assert all(by.startswith("cli:") for _, by in changes)
