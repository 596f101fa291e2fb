"""``securemail user identity``: the provider's operator records and withdraws how a holder's
identity was verified; mistakes are one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import provider_config
from tests.cli.test_user import DOMAIN, PASSWORD, user

ALICE = f"alice@{DOMAIN}"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = provider_config(tmp_path, DOMAIN)
    assert user(config, "add", ALICE, "--password-stdin", input=PASSWORD)[0] == 0
    return config


def test_set_show_and_clear(config: Path) -> None:
    """A recorded verification is shown on the account and in the account log; clearing it
    withdraws it."""
    args = ("--level", "level 2", "--method", "in person,  passport", "--date", "2026-11-20")
    code, output = user(config, "identity", "set", ALICE, *args)
    assert code == 0 and "identity verified: level 2, in person, passport, 2026-11-20" in output
    assert "identity verified: level 2, in person, passport" in user(config, "show", ALICE)[1]
    log = (config.parent / "data" / "accounts.log").read_text()
    assert "account.identity-verified" in log and "2026-11-20" in log
    assert user(config, "identity", "clear", ALICE)[0] == 0
    assert "identity verified: no" in user(config, "show", ALICE)[1]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--date", "20 Nov 2026"), "is not a date (YYYY-MM-DD)"),
        (("--date", "2999-01-01"), "cannot be verified in the future"),
    ],
)
def test_mistakes_are_one_error_line(config: Path, args: tuple[str, ...], error: str) -> None:
    """A bad or future date exits 1 with one ``error:`` line, no traceback."""
    code, output = user(config, "identity", "set", ALICE, "--level", "1", "--method", "x", *args)
    assert code == 1 and output.startswith("error: ") and error in output, output
    assert "Traceback" not in output


def test_an_unknown_account_is_refused(config: Path) -> None:
    """No such account: the account reason code."""
    args = ("--level", "1", "--method", "x", "--date", "2026-01-01")
    code, output = user(config, "identity", "set", f"nobody@{DOMAIN}", *args)
    assert code == 1 and "error: no-such-account" in output
