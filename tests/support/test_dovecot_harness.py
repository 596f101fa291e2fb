"""Debian's Dovecot serving SecureMail's Maildirs to exported accounts; imaplib and mbsync read.

One private Dovecot (tests/support/dovecot.py) runs for the module with three accounts: a
plain one (password and an app password), one that needs app passwords for IMAP (TOTP
enrolled: three app passwords, its password not exported) and a disabled one. Hashes are
argon2-cffi's defaults, so the logins measure what a provider's Dovecot would spend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher

from securemail.accounts.dovecot import DovecotUser, export_users
from securemail.deliver.maildir import MaildirTarget
from securemail.pki.authority import make_root_ca
from tests.conftest import require_tool
from tests.support.dovecot import HOST, DovecotInstance, mail_owner, start_dovecot
from tests.support.mbsync import ImapAccount, MbsyncError, sync_mailbox

WAIT = 30.0  # seconds; bounds a hang, not a slow loaded machine
DOMAIN = "provider.nz"
HEMI, AROHA, GONE, TUI = (f"{local}@{DOMAIN}" for local in ("hemi", "aroha", "gone", "tui"))
SECRETS = {
    HEMI: ("hemi password", ("hemi app",)),
    AROHA: ("aroha password", ("aroha app 1", "aroha app 2", "aroha app 3")),
    GONE: ("gone password", ()),
    TUI: ("tui password", ()),
}
MESSAGE = (
    b"From: Aroha Ngata <aroha.ngata@agency.govt.nz>\r\n"
    b"To: Hemi Walker <hemi@provider.nz>\r\n"
    b"Subject: [IN-CONFIDENCE] Your benefit review\r\n"
    b"Message-ID: <review-1@agency.govt.nz>\r\n"
    b"\r\n"
    b"Kia ora Hemi, your review is attached.\r\n"
)
Tls = Literal["STARTTLS", "IMAPS"]


@dataclass(frozen=True)
class Served:
    """The running instance and the accounts it was given."""

    dovecot: DovecotInstance
    users: tuple[DovecotUser, ...]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A private Dovecot whose Maildirs hold one delivered message and one with $SecureMail."""
    require_tool("dovecot")
    if os.geteuid() != 0:
        reason = "a private Dovecot instance needs root (its master process does)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("dovecot")
    hasher = PasswordHasher()
    with start_dovecot(tmp) as dovecot:
        users = tuple(_account(dovecot, hasher, name) for name in SECRETS)
        dovecot.install(export_users(users, uid=mail_owner()[0], gid=mail_owner()[1]))
        _store_mail(dovecot)
        yield Served(dovecot, users)


def _account(dovecot: DovecotInstance, hasher: PasswordHasher, name: str) -> DovecotUser:
    password, apps = SECRETS[name]
    local = name.partition("@")[0]
    exported = None if name == AROHA else hasher.hash(password)  # TOTP: app passwords only
    app_hashes = tuple(hasher.hash(app) for app in apps)
    return DovecotUser(
        name, dovecot.mail_root / DOMAIN / local, exported, app_hashes, disabled=name == GONE
    )


def _store_mail(dovecot: DovecotInstance) -> None:
    """Deliver MESSAGE to Hemi through MaildirTarget; give Aroha a cur/ file with $SecureMail."""
    target = MaildirTarget(dovecot.mail_root)
    replies = asyncio.run(target.deliver("aroha.ngata@agency.govt.nz", [HEMI], MESSAGE, "ab12"))
    assert replies[HEMI].code == 250, replies
    aroha = dovecot.mail_root / DOMAIN / "aroha"
    for folder in ("tmp", "new", "cur"):
        (aroha / folder).mkdir(parents=True, mode=0o700)
    # Dovecot keeps keyword names in dovecot-keywords; the letters a-z after ":2," index them.
    (aroha / "dovecot-keywords").write_text("0 $SecureMail\n")
    (aroha / "cur" / "1795000000.verified.securemail:2,a").write_bytes(MESSAGE)
    dovecot.hand_over(dovecot.mail_root)


def _connect(dovecot: DovecotInstance, tls: Tls) -> imaplib.IMAP4:
    """An IMAP client over TLS that verifies the instance's certificate."""
    context = ssl.create_default_context(cafile=dovecot.ca_file)
    if tls == "IMAPS":
        return imaplib.IMAP4_SSL(HOST, dovecot.imaps_port, ssl_context=context, timeout=WAIT)
    client = imaplib.IMAP4(HOST, dovecot.imap_port, timeout=WAIT)
    client.starttls(context)
    return client


def _login(dovecot: DovecotInstance, user: str, secret: str, tls: Tls = "STARTTLS") -> str:
    """Log in and out; "OK", or the server's refusal text."""
    client = _connect(dovecot, tls)
    try:
        client.login(user, secret)
    except imaplib.IMAP4.error as refusal:
        return str(refusal)
    finally:
        with suppress(imaplib.IMAP4.abort, OSError):  # the server may have hung up already
            client.logout()
    return "OK"


def test_plain_account_logs_in_with_its_password_over_starttls_and_imaps(served: Served) -> None:
    """An account without TOTP logs in with its password on both TLS ports."""
    assert _login(served.dovecot, HEMI, "hemi password", "STARTTLS") == "OK"
    assert _login(served.dovecot, HEMI, "hemi password", "IMAPS") == "OK"
    assert _login(served.dovecot, HEMI, "hemi app") == "OK"


def test_totp_account_password_is_refused_and_every_app_password_works(served: Served) -> None:
    """IMAP refuses the password of an account with TOTP; each of its app passwords works."""
    refused = _login(served.dovecot, AROHA, "aroha password")
    assert "AUTHENTICATIONFAILED" in refused
    for app in SECRETS[AROHA][1]:
        assert _login(served.dovecot, AROHA, app) == "OK", app


def test_disabled_account_and_wrong_password_are_refused(served: Served) -> None:
    """A disabled account's password and a wrong password both get AUTHENTICATIONFAILED."""
    assert "AUTHENTICATIONFAILED" in _login(served.dovecot, GONE, "gone password")
    assert "AUTHENTICATIONFAILED" in _login(served.dovecot, HEMI, "aroha app 1")


class _FromOtherLoopback(imaplib.IMAP4):
    """An IMAP client connecting from 127.0.0.2 to the server on 127.0.0.1.

    Dovecot counts a connection whose remote address equals its local one as secured and
    allows a login without TLS there, so a refusal can only be seen from another address.
    """

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, ("127.0.0.2", 0))


def test_no_login_before_starttls(served: Served) -> None:
    """Without TLS the server offers LOGINDISABLED and refuses LOGIN with PRIVACYREQUIRED."""
    try:
        client = _FromOtherLoopback(HOST, served.dovecot.imap_port, timeout=WAIT)
    except OSError as error:
        reason = f"no second loopback address to connect from: {error}"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)
    try:
        _, [capabilities] = client.capability()
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            client.login(HEMI, "hemi password")
    finally:
        client.logout()
    assert isinstance(capabilities, bytes) and b"LOGINDISABLED" in capabilities.split()


def test_delivered_message_is_listed_and_fetched(served: Served) -> None:
    """The message MaildirTarget stored is in Hemi's INBOX with its trace headers."""
    client = _connect(served.dovecot, "IMAPS")
    try:
        client.login(HEMI, "hemi password")
        assert client.select("INBOX", readonly=True) == ("OK", [b"1"])
        status, data = client.fetch("1", "(BODY.PEEK[])")
    finally:
        client.logout()
    assert status == "OK" and isinstance(data[0], tuple)
    fetched = message_from_bytes(data[0][1])
    assert fetched["Subject"] == "[IN-CONFIDENCE] Your benefit review"
    assert fetched["Delivered-To"] == HEMI


def test_securemail_keyword_from_dovecot_keywords_is_shown(served: Served) -> None:
    """A cur/ file flagged "a" with dovecot-keywords "0 $SecureMail" carries that keyword."""
    client = _connect(served.dovecot, "STARTTLS")
    try:
        client.login(AROHA, "aroha app 1")
        client.select("INBOX", readonly=True)
        status, flags = client.fetch("1", "(FLAGS)")
        _, found = client.search(None, "KEYWORD", "$SecureMail")
    finally:
        client.logout()
    assert status == "OK" and isinstance(flags[0], bytes) and b"$SecureMail" in flags[0]
    assert found == [b"1"]


@pytest.mark.parametrize("tls", ["STARTTLS", "IMAPS"])
def test_mbsync_pulls_the_mailbox_into_a_local_maildir(
    served: Served, tls: Tls, tmp_path: Path
) -> None:
    """mbsync, verifying the server against the test CA, copies Hemi's message to a Maildir."""
    require_tool("mbsync")
    port = served.dovecot.imaps_port if tls == "IMAPS" else served.dovecot.imap_port
    account = ImapAccount(HOST, port, tls, served.dovecot.ca_file, HEMI, "hemi app")

    synced = sync_mailbox(account, tmp_path / "local", tmp_path)

    assert list(synced.folders) == ["INBOX"], synced.output
    [copy] = synced.folders["INBOX"]
    pulled, sent = message_from_bytes(copy), message_from_bytes(MESSAGE)
    assert (pulled["Message-ID"], pulled["Delivered-To"]) == (sent["Message-ID"], HEMI)
    assert str(pulled.get_payload()) == str(sent.get_payload()).replace("\r\n", "\n")


def test_mbsync_refuses_a_server_its_ca_file_does_not_vouch_for(
    served: Served, tmp_path: Path
) -> None:
    """With another CA's file, mbsync fails and the error carries mbsync's own output."""
    require_tool("mbsync")
    other = make_root_ca("Somebody Else's CA", now=datetime.now(UTC), key_type="p256")
    (tmp_path / "other-ca.pem").write_bytes(other.certificate_pem())
    account = ImapAccount(
        HOST, served.dovecot.imaps_port, "IMAPS", tmp_path / "other-ca.pem", HEMI, "hemi app"
    )

    with pytest.raises(MbsyncError, match="certificate") as failure:
        sync_mailbox(account, tmp_path / "local", tmp_path)
    assert "127.0.0.1" in str(failure.value)


def test_reexport_with_the_account_disabled_locks_it_out(served: Served) -> None:
    """Installing a new export in which an account is disabled refuses it within seconds."""
    assert _login(served.dovecot, TUI, "tui password") == "OK"
    users = [dataclasses.replace(u, disabled=u.disabled or u.name == TUI) for u in served.users]
    uid, gid = mail_owner()
    served.dovecot.install(export_users(users, uid=uid, gid=gid))
    # Dovecot checks each file at most once a second; meanwhile it may still log the
    # account in, or pair an old password file with the new users file and hang up.
    deadline = time.monotonic() + 5
    while "AUTHENTICATIONFAILED" not in (outcome := _login(served.dovecot, TUI, "tui password")):
        assert time.monotonic() < deadline, f"disabled account not refused: {outcome}"
        time.sleep(0.25)
