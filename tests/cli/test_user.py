"""``securemail user`` through click: stdin passwords, clear errors, TOTP and app passwords."""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from securemail import audit
from securemail.cli.main import cli
from tests.cli.conftest import provider_config

DOMAIN = "mail.example.govt.nz"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A minimal provider node configuration with a passphrase file."""
    return provider_config(tmp_path, DOMAIN)


def user(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["user", "--config", str(config), *args], input=input)
    return result.exit_code, result.output


def test_add_makes_the_maildir_with_its_special_use_folders(tmp_path: Path) -> None:
    """``user add`` on a node whose delivery root exists makes the account's Maildir with
    Sent, Drafts, Trash, Junk and Archive (0700), each subscribed."""
    config = provider_config(tmp_path, DOMAIN)
    (tmp_path / "mail").mkdir(mode=0o700)
    code, output = user(config, "add", f"tui@{DOMAIN}", "--password-stdin", input=PASSWORD)
    assert code == 0, output
    maildir = tmp_path / "mail" / DOMAIN / "tui"
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (maildir / f".{name}" / "cur").is_dir()
        assert (maildir / f".{name}").stat().st_mode & 0o777 == 0o700
    assert (maildir / "subscriptions").read_text().split() == [
        "Sent",
        "Drafts",
        "Trash",
        "Junk",
        "Archive",
    ]


def test_add_list_show_and_errors(config: Path) -> None:
    """Accounts are added with a stdin password; weak passwords and bad addresses exit 1
    with their reason code; the log verifies."""
    alice = f"alice@{DOMAIN}"
    code, output = user(config, "add", alice, "--password-stdin", input=PASSWORD + "\n")
    assert code == 0 and alice in output
    code, output = user(config, "add", f"bob@{DOMAIN}", "--password-stdin", input="short\n")
    assert code == 1 and "error: weak-password: a password needs at least 15" in output
    code, output = user(config, "add", "bob@elsewhere.nz", "--password-stdin", input=PASSWORD)
    assert code == 1 and "error: bad-address:" in output
    code, output = user(config, "add", f"carol@{DOMAIN}", input=f"{PASSWORD}2\n{PASSWORD}2\n")
    assert code == 0 and PASSWORD not in output
    assert user(config, "alias", "add", alice, f"a.smith@{DOMAIN}")[0] == 0
    assert user(config, "quota", alice, "1000000")[0] == 0
    code, output = user(config, "quota", alice, "lots")
    assert code == 2 and "'lots' is not a number of octets or none" in output
    assert user(config, "strong-auth", alice, "on")[0] == 0
    assert user(config, "sole-use", alice)[0] == 0
    code, output = user(config, "list")
    assert code == 0 and output.splitlines()[0].startswith(alice) and "strong-auth" in output
    code, output = user(config, "show", alice)
    assert f"a.smith@{DOMAIN}" in output and "quota 1000000" in output
    code, output = user(config, "disable", f"nobody@{DOMAIN}")
    assert code == 1 and "error: no-such-account:" in output
    assert audit.verify(config.parent / "data" / "accounts.log").ok


def test_time_zone_set_refused_and_reset(config: Path) -> None:
    """``user time-zone`` stores an IANA zone, refuses an unknown one with its reason code
    (exit 1), and "default" returns to New Zealand time."""
    alice = f"alice@{DOMAIN}"
    assert user(config, "add", alice, "--password-stdin", input=PASSWORD)[0] == 0
    code, output = user(config, "time-zone", alice, "Australia/Sydney")
    assert code == 0 and "time zone Australia/Sydney" in output
    code, output = user(config, "time-zone", alice, "Middle/Earth")
    assert code == 1 and output.startswith("error: bad-time-zone: 'Middle/Earth'")
    code, output = user(config, "time-zone", alice, "default")
    assert code == 0 and "default (Pacific/Auckland)" in output


def test_totp_and_app_passwords(config: Path) -> None:
    """TOTP enrolment shows a QR code and URI and takes a code; app passwords are shown once,
    listed by id and revoked."""
    alice = f"alice@{DOMAIN}"
    user(config, "add", alice, "--password-stdin", input=PASSWORD + "\n")
    code, output = user(config, "totp", "enrol", alice)
    uri = re.search(r"otpauth://\S+", output)
    assert code == 0 and uri is not None and "█" in output
    app = pyotp.parse_uri(uri.group())
    assert isinstance(app, pyotp.TOTP)
    code, output = user(config, "totp", "confirm", alice, input=app.now() + "\n")
    assert code == 0 and "TOTP enrolled" in output
    code, output = user(config, "app-password", "add", alice, "phone")
    secret = output.splitlines()[-1]
    assert code == 0 and re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{5}){5}", secret)
    ident = secret[:4]
    code, output = user(config, "app-password", "list", alice)
    assert ident in output and "phone" in output and secret not in output
    assert user(config, "app-password", "revoke", alice, ident)[0] == 0
    code, output = user(config, "app-password", "revoke", alice, ident)
    assert code == 1 and "error: no-such-app-password:" in output
    assert user(config, "totp", "remove", alice)[0] == 0
    code, output = user(config, "unlock", alice)
    assert code == 0 and "was not locked" in output
