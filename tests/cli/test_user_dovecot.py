"""``securemail user export-dovecot``: files, report and errors; then Debian's Dovecot serving them.

The end-to-end test makes accounts through the real account service on the node's SQLite
database (with the accounts tests' cheap argon2id profile, which Dovecot verifies too),
exports them with the command into a private Dovecot's auth directory
(tests/support/dovecot.py) and logs in with imaplib.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import ssl
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path, PurePosixPath

import pyotp
import pytest
from click.testing import CliRunner

from securemail.accounts.dovecot import auth_config
from securemail.accounts.node import Accounts, open_accounts
from securemail.cli.main import cli
from securemail.config.node import load_config
from securemail.deliver.maildir import MaildirTarget
from securemail.node.context import read_passphrase
from tests.accounts.conftest import QUICK
from tests.cli.conftest import provider_config
from tests.conftest import require_tool
from tests.support.dovecot import HOST, DovecotInstance, mail_owner, start_dovecot

DOMAIN = "provider.nz"
ELSEWHERE = "agency.govt.nz"
HEMI, AROHA, GONE = (f"{local}@{DOMAIN}" for local in ("hemi", "aroha", "gone"))
PASSWORD = "correct horse battery staple"
WAIT = 30.0  # seconds; bounds a hang, not a slow loaded machine
MESSAGE = b"From: aroha.ngata@agency.govt.nz\r\nSubject: Your review\r\n\r\nKia ora.\r\n"


def write_config(tmp: Path, mail_root: Path | str = "mail") -> Path:
    """A provider node with Maildir delivery for DOMAIN and an SMTP-delivered organisation."""
    return provider_config(tmp, DOMAIN, mail_root=mail_root, more=AGENCY_BY_SMTP)


AGENCY_BY_SMTP = f"""[[organisation]]
org_id = "agency"
domains = ["{ELSEWHERE}"]
keys = "agency-keys"
[organisation.delivery]
kind = "smtp"
host = "mx.{ELSEWHERE}"
"""


def node_accounts(config_path: Path) -> Accounts:
    """The node's accounts through the real service, hashing with the cheap profile."""
    config = load_config(config_path)
    return open_accounts(
        config.database,
        log_path=config.data_dir / "accounts.log",
        passphrase=read_passphrase(config),
        domains=config.domains,
        hasher=QUICK,
    )


def export(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["user", "--config", str(config), "export-dovecot", *args])
    return result.exit_code, result.output


def enrol_totp(accounts: Accounts, name: str) -> None:
    app = pyotp.parse_uri(accounts.service.totp_begin(name))
    assert isinstance(app, pyotp.TOTP)
    accounts.service.totp_confirm(name, app.now())


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A node with Hemi (password), Aroha (TOTP, one app password), Gone (disabled) and
    Ann, whose organisation delivers by SMTP."""
    path = write_config(tmp_path)
    with node_accounts(path) as accounts:
        for name in (HEMI, AROHA, GONE, f"ann@{ELSEWHERE}"):
            accounts.service.add(name, PASSWORD)
        enrol_totp(accounts, AROHA)
        accounts.service.app_password_add(AROHA, "phone")
        accounts.service.disable(GONE)
    return path


def test_export_writes_the_files_and_reports_them(config: Path, tmp_path: Path) -> None:
    """The users file names each enabled account's Maildir under the configured root; the
    report gives entries per file, the slots, and the account skipped with its reason."""
    out = tmp_path / "dovecot"
    out.mkdir()

    code, output = export(config, "--out", str(out), "--uid", "5000", "--gid", "5001")

    assert code == 0, output
    mail = tmp_path / "mail" / DOMAIN
    assert (out / "users").read_text() == (
        f"aroha@{DOMAIN}::5000:5001::{mail / 'aroha'}::userdb_mail=maildir:~\n"
        f"hemi@{DOMAIN}::5000:5001::{mail / 'hemi'}::userdb_mail=maildir:~\n"
    )
    assert [line.split(":")[0] for line in (out / "passwords.0").read_text().splitlines()] == [
        AROHA,  # its app password: the account password is not exported
        HEMI,
    ]
    assert f"{out / 'passwords.0'}  2 entries" in output
    assert f"{out / 'passwords.7'}  0 entries" in output
    assert f"{out / 'users'}  2 entries" in output
    assert f"warning: skipped ann@{ELSEWHERE}: organisation agency delivers by smtp" in output
    assert "exported 2 accounts with 8 password slots (1 disabled left out, 1 skipped)" in output


def test_print_config_prints_the_auth_chain_and_writes_nothing(
    config: Path, tmp_path: Path
) -> None:
    """--print-config prints auth_config for the directory and slots given, and only that."""
    out = tmp_path / "dovecot"

    code, output = export(config, "--out", str(out), "--slots", "3", "--print-config")

    assert code == 0
    assert output == auth_config(PurePosixPath(out), 3)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--uid", "0", "--gid", "5000"), "error: bad-value: Dovecot refuses mail access as root"),
        (
            ("--uid", "5000", "--gid", "5000", "--slots", "1"),
            f"error: bad-value: account '{AROHA}' has 2",
        ),
    ],
)
def test_refused_exports_exit_1_and_write_nothing(
    config: Path, tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    """An export export_users refuses ends with its reason and leaves the directory empty."""
    with node_accounts(config) as accounts:
        accounts.service.app_password_add(AROHA, "laptop")
    out = tmp_path / "dovecot"
    out.mkdir()

    code, output = export(config, "--out", str(out), *args)

    assert code == 1 and error in output
    assert list(out.iterdir()) == []


def test_a_missing_directory_is_an_error(config: Path, tmp_path: Path) -> None:
    """The output directory is not created (its group decides who reads the files)."""
    code, output = export(config, "--out", str(tmp_path / "none"), "--uid", "1", "--gid", "1")

    assert code == 1 and f"error: not-a-directory: {tmp_path / 'none'} is not a directory" in output


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotInstance]:
    """A private Dovecot on loopback with no accounts yet."""
    require_tool("dovecot")
    if os.geteuid() != 0:
        reason = "a private Dovecot instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)
    with start_dovecot(tmp_path) as instance:
        yield instance


def _login(dovecot: DovecotInstance, user: str, secret: str) -> str:
    """Log in over STARTTLS, verifying the instance's certificate; "OK" or the refusal."""
    client = imaplib.IMAP4(HOST, dovecot.imap_port, timeout=WAIT)
    try:
        client.starttls(ssl.create_default_context(cafile=dovecot.ca_file))
        client.login(user, secret)
        _, [count] = client.select("INBOX", readonly=True)
    except imaplib.IMAP4.error as refusal:
        return str(refusal)
    finally:
        with suppress(imaplib.IMAP4.abort, OSError):  # the server may have hung up already
            client.logout()
    return f"OK {count!r}"


def test_exported_accounts_log_in_to_dovecot(dovecot: DovecotInstance, tmp_path: Path) -> None:
    """After the export, Dovecot opens Hemi's Maildir (one delivered message) with the
    password, Aroha's (TOTP) only with its app password, and refuses the disabled account."""
    site = tmp_path / "node"
    site.mkdir()
    config = write_config(site, dovecot.mail_root)
    with node_accounts(config) as accounts:
        for name in (HEMI, AROHA, GONE):
            accounts.service.add(name, PASSWORD)
        enrol_totp(accounts, AROHA)
        _, app_password = accounts.service.app_password_add(AROHA, "phone")
        accounts.service.disable(GONE)
    replies = asyncio.run(
        MaildirTarget(dovecot.mail_root).deliver("a@x.nz", [HEMI], MESSAGE, "ab12")
    )
    assert replies[HEMI].code == 250, replies
    dovecot.hand_over(dovecot.mail_root)
    uid, gid = mail_owner()

    started = time.monotonic()
    code, output = export(
        config, "--out", str(dovecot.auth_dir), "--uid", str(uid), "--gid", str(gid)
    )
    exported = time.monotonic() - started

    assert code == 0, output
    # Dovecot checks a passwd-file for changes at most once a second.
    deadline = time.monotonic() + 5
    while (outcome := _login(dovecot, HEMI, PASSWORD)) != "OK b'1'":
        assert time.monotonic() < deadline, f"{outcome}\n{dovecot.log_tail()}"
        time.sleep(0.25)
    assert "AUTHENTICATIONFAILED" in _login(dovecot, AROHA, PASSWORD)
    assert _login(dovecot, AROHA, app_password) == "OK b'0'"
    assert "AUTHENTICATIONFAILED" in _login(dovecot, GONE, PASSWORD)
    assert exported < 5, exported
