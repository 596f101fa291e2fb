"""``securemail user operator`` and ``user token``: roles and API tokens from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail import audit
from securemail.cli.main import cli
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
