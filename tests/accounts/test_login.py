"""The Authenticator end to end: equal refusals, the rules per service, TOTP, app passwords."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pyotp
import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from sqlalchemy import select

from securemail import audit
from securemail.accounts.model import AccountReason, Denied, Granted, Service
from securemail.accounts.node import Accounts
from securemail.accounts.passwords import HASHER
from securemail.accounts.schema import accounts as accounts_table
from securemail.accounts.schema import app_passwords
from tests.accounts.conftest import ALICE, DOMAIN, PASSWORD, Clock, open_at

R = AccountReason


def login(
    accounts: Accounts, secret: str, service: Service, totp: str | None = None, name: str = ALICE
) -> Granted | Denied:
    return asyncio.run(
        accounts.authenticator.login(name, secret, service=service, source="192.0.2.1", totp=totp)
    )


def enrol(accounts: Accounts, clock: Clock) -> pyotp.TOTP:
    """Enrol Alice in TOTP; her authenticator app."""
    app = pyotp.parse_uri(accounts.service.totp_begin(ALICE))
    assert isinstance(app, pyotp.TOTP)
    accounts.service.totp_confirm(ALICE, app.at(clock.now))
    clock.advance(30)
    return app


class CountingHasher(PasswordHasher):
    """The real hasher, counting verifies."""

    verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        CountingHasher.verifies += 1
        return super().verify(hash, password)


def test_unknown_name_and_wrong_password_look_the_same(
    sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Unknown name and wrong password give the same refusal after one argon2id verify each,
    and log the same kind of event."""
    hasher = CountingHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    with open_at(sqlite_url, tmp_path / "accounts.log", clock, hasher) as accounts:
        accounts.service.add(ALICE, PASSWORD)
        before = CountingHasher.verifies
        wrong = login(accounts, "not the password at all", Service.IMAP)
        unknown = login(accounts, PASSWORD, Service.IMAP, name=f"nobody@{DOMAIN}")
        assert wrong == unknown == Denied(R.BAD_CREDENTIALS)
        assert CountingHasher.verifies - before == 2
    lines = (tmp_path / "accounts.log").read_text().splitlines()
    failed = [json.loads(line)["details"] for line in lines[-2:]]
    assert [sorted(d) for d in failed] == [["name", "reason", "service", "source"]] * 2
    assert not any(PASSWORD in line or "not the password" in line for line in lines)


def test_plain_account_by_service(accounts: Accounts) -> None:
    """Without TOTP or strong auth the password works for SMTP, IMAP and the web."""
    for service in Service:
        granted = login(accounts, PASSWORD, service)
        assert isinstance(granted, Granted) and granted.method == "password"
        assert granted.account.name == ALICE


def test_strong_auth_needs_app_passwords_or_totp(accounts: Accounts) -> None:
    """With strong_auth_required the password is refused for mail (app password required)
    and for the web (strong auth required) while no TOTP is enrolled; app passwords work."""
    accounts.service.set_strong_auth(ALICE, True)
    _, app = accounts.service.app_password_add(ALICE, "laptop")
    assert login(accounts, PASSWORD, Service.SMTP) == Denied(R.APP_PASSWORD_REQUIRED)
    assert login(accounts, PASSWORD, Service.IMAP) == Denied(R.APP_PASSWORD_REQUIRED)
    assert login(accounts, PASSWORD, Service.WEB) == Denied(R.STRONG_AUTH_REQUIRED)
    for service in (Service.SMTP, Service.IMAP):
        granted = login(accounts, app, service)
        assert isinstance(granted, Granted) and granted.method == "app-password"
    assert login(accounts, app, Service.WEB) == Denied(R.BAD_CREDENTIALS)


def test_totp_on_the_web(accounts: Accounts, clock: Clock) -> None:
    """An enrolled account needs a current code on the web; a wrong one is TOTP_INVALID and
    a code already used (or older than the last used) is TOTP_REPLAYED; mail needs app
    passwords."""
    app = enrol(accounts, clock)
    assert accounts.service.get(ALICE).totp_enrolled
    assert login(accounts, PASSWORD, Service.WEB) == Denied(R.TOTP_REQUIRED)
    wrong = "000000" if app.at(clock.now) != "000000" else "111111"
    assert login(accounts, PASSWORD, Service.WEB, totp=wrong) == Denied(R.TOTP_INVALID)
    code = app.at(clock.now)
    granted = login(accounts, PASSWORD, Service.WEB, totp=code)
    assert isinstance(granted, Granted) and granted.method == "password+totp"
    assert login(accounts, PASSWORD, Service.WEB, totp=code) == Denied(R.TOTP_REPLAYED)
    previous = app.at(clock.now - timedelta(seconds=30))  # within the drift, before the last
    assert login(accounts, PASSWORD, Service.WEB, totp=previous) == Denied(R.TOTP_REPLAYED)
    clock.advance(30)
    assert isinstance(login(accounts, PASSWORD, Service.WEB, totp=app.at(clock.now)), Granted)
    assert login(accounts, "wrong password here", Service.WEB, totp=code) == Denied(
        R.BAD_CREDENTIALS
    )
    assert login(accounts, PASSWORD, Service.IMAP) == Denied(R.APP_PASSWORD_REQUIRED)


def test_disabled_account(accounts: Accounts) -> None:
    """A disabled account is refused with the right password on every service, until enabled."""
    accounts.service.disable(ALICE)
    for service in Service:
        assert login(accounts, PASSWORD, service) == Denied(R.DISABLED)
    accounts.service.enable(ALICE)
    assert isinstance(login(accounts, PASSWORD, Service.IMAP), Granted)


def test_rehash_from_weaker_parameters(sqlite_url: str, tmp_path: Path, clock: Clock) -> None:
    """A password hashed under a weaker profile is rehashed with the current one at login."""
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    log = tmp_path / "accounts.log"
    with open_at(sqlite_url, log, clock, weak) as accounts:
        accounts.service.add(ALICE, PASSWORD)
        _, app = accounts.service.app_password_add(ALICE, "phone")
    with open_at(sqlite_url, log, clock, HASHER) as accounts:
        assert isinstance(login(accounts, PASSWORD, Service.IMAP), Granted)
        assert isinstance(login(accounts, app, Service.IMAP), Granted)
        with accounts.engine.connect() as conn:
            stored = conn.execute(select(accounts_table.c.password_hash)).scalar_one()
            app_hash = conn.execute(select(app_passwords.c.hash)).scalar_one()
    for hashed in (stored, app_hash):
        assert extract_parameters(hashed).memory_cost == HASHER.memory_cost
        assert HASHER.verify(hashed, PASSWORD if hashed is stored else app)


def test_app_password_is_picked_by_id(sqlite_url: str, tmp_path: Path, clock: Clock) -> None:
    """With several app passwords a login verifies exactly one hash, records its last use,
    and a revoked one stops working."""
    hasher = CountingHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    with open_at(sqlite_url, tmp_path / "accounts.log", clock, hasher) as accounts:
        accounts.service.add(ALICE, PASSWORD)
        made = [accounts.service.app_password_add(ALICE, f"device {n}") for n in range(5)]
        before = CountingHasher.verifies
        ident, secret = made[3]
        assert isinstance(login(accounts, secret, Service.SMTP), Granted)
        assert CountingHasher.verifies - before == 1
        used = {a.id: a.last_used for a in accounts.service.app_passwords(ALICE)}
        assert used[ident] == clock.now and sum(v is not None for v in used.values()) == 1
        accounts.service.app_password_revoke(ALICE, ident)
        assert login(accounts, secret, Service.SMTP) == Denied(R.BAD_CREDENTIALS)
        other = made[0][1]
        assert login(accounts, other, Service.SMTP, name=f"bob@{DOMAIN}") == Denied(
            R.BAD_CREDENTIALS
        )


def test_the_log_verifies_after_a_run(accounts: Accounts, clock: Clock, tmp_path: Path) -> None:
    """After enrolment, logins of every kind, a lockout and changes, the hash chain holds."""
    enrol(accounts, clock)
    _, app = accounts.service.app_password_add(ALICE, "phone")
    login(accounts, app, Service.IMAP)
    for _ in range(5):
        login(accounts, "wrong password again", Service.SMTP)
    accounts.service.unlock(ALICE)
    accounts.service.totp_remove(ALICE)
    log = tmp_path / "accounts.log"
    check = audit.verify(log)
    assert check.ok and check.records == len(log.read_text().splitlines())
    kinds = {json.loads(line)["event"] for line in log.read_text().splitlines()}
    assert {
        "account.created",
        "account.totp-enrolled",
        "account.app-password-created",
        "account.login.ok",
        "account.login.failed",
        "account.lockout",
        "account.release",
        "account.totp-removed",
    } <= kinds


@pytest.mark.parametrize("service", [Service.SMTP, Service.WEB])
def test_login_does_not_block_the_event_loop(accounts: Accounts, service: Service) -> None:
    """While a login hashes in a worker thread, other coroutines keep running."""

    async def scenario() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await accounts.authenticator.login(ALICE, PASSWORD, service=service, source="::1")
        ticker.cancel()
        return ticks

    assert asyncio.run(scenario()) > 0
