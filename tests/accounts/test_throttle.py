"""The login throttle with an injected clock: lockouts, their growth, release and sharing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from securemail.accounts.model import AccountReason, Denied, Granted, Service
from securemail.accounts.node import Accounts
from securemail.accounts.throttle import ACCOUNT, ThrottlePolicy, source_key
from tests.accounts.conftest import ALICE, DOMAIN, PASSWORD, Clock

POLICY = ThrottlePolicy()


def login(accounts: Accounts, name: str, secret: str, source: str = "192.0.2.1") -> object:
    return asyncio.run(
        accounts.authenticator.login(name, secret, service=Service.IMAP, source=source)
    )


def events(log: Path, name: str) -> list[dict[str, str]]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [r["details"] for r in records if r["event"] == f"account.{name}"]


def test_lockout_grows_and_is_capped() -> None:
    """Five failures lock for 30 s, each further one doubles it, never beyond 15 minutes."""
    assert POLICY.lockout(ACCOUNT, 4) is None
    lockouts = [POLICY.lockout(ACCOUNT, n) for n in range(5, 12)]
    assert lockouts[:5] == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
    assert lockouts[5:] == [timedelta(minutes=15)] * 2
    assert POLICY.lockout(ACCOUNT, 10**6) == timedelta(minutes=15)
    assert POLICY.lockout("source", 19) is None and POLICY.lockout("source", 20) is not None


def test_ipv6_sources_count_per_64() -> None:
    """Two addresses of one IPv6 /64 are one source; IPv4 and mapped IPv4 are themselves."""
    assert source_key("2001:db8::1") == source_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7" == source_key("192.0.2.7")
    assert source_key("not an address") == "not an address"


def test_account_lockout_refuses_even_the_right_password(
    accounts: Accounts, clock: Clock, tmp_path: Path
) -> None:
    """After five wrong passwords the right one is THROTTLED until the lock runs out, then
    works and clears the count; the lockout and its release are logged."""
    for _ in range(5):
        assert login(accounts, ALICE, "wrong password, again") == Denied(
            AccountReason.BAD_CREDENTIALS
        )
    assert login(accounts, ALICE, PASSWORD) == Denied(AccountReason.THROTTLED, 30.0)
    clock.advance(29)
    assert login(accounts, ALICE, PASSWORD) == Denied(AccountReason.THROTTLED, 1.0)
    clock.advance(1)
    assert isinstance(login(accounts, ALICE, PASSWORD), Granted)
    for _ in range(4):  # the success cleared the count: four more failures lock nothing
        login(accounts, ALICE, "wrong password, again")
    assert isinstance(login(accounts, ALICE, PASSWORD), Granted)
    log = tmp_path / "accounts.log"
    assert [e["key"] for e in events(log, "lockout")] == [ALICE]
    assert [(e["key"], e["reason"]) for e in events(log, "release")] == [(ALICE, "expired")]


def test_failures_after_a_lock_double_it(accounts: Accounts, clock: Clock) -> None:
    """Each failure after a lock ran out locks twice as long as the one before."""
    for _ in range(5):
        login(accounts, ALICE, "wrong password, again")
    for expected in (60.0, 120.0, 240.0):
        clock.advance(expected / 2)  # the running lock is half the next one
        assert login(accounts, ALICE, "wrong password, again") == Denied(
            AccountReason.BAD_CREDENTIALS
        )
        assert login(accounts, ALICE, PASSWORD) == Denied(AccountReason.THROTTLED, expected)


def test_failures_leave_the_window(accounts: Accounts, clock: Clock) -> None:
    """Four failures 15 minutes ago no longer count: four more lock nothing."""
    for _ in range(4):
        login(accounts, ALICE, "wrong password, again")
    clock.advance(15 * 60)
    for _ in range(4):
        login(accounts, ALICE, "wrong password, again")
    assert isinstance(login(accounts, ALICE, PASSWORD), Granted)


def test_unknown_names_are_throttled_by_name(accounts: Accounts, tmp_path: Path) -> None:
    """Guessing at a name that has no account locks that name just as a real one."""
    ghost = f"ghost@{DOMAIN}"
    for _ in range(5):
        assert login(accounts, ghost, "some password") == Denied(AccountReason.BAD_CREDENTIALS)
    assert login(accounts, ghost, "some password") == Denied(AccountReason.THROTTLED, 30.0)
    assert [e["key"] for e in events(tmp_path / "accounts.log", "lockout")] == [ghost]


def test_a_spraying_source_is_locked_across_names(accounts: Accounts, clock: Clock) -> None:
    """Twenty failures from one source over many names lock that source for every name,
    while another source still logs in."""
    for number in range(20):
        login(accounts, f"user{number}@{DOMAIN}", "some password", source="198.51.100.9")
    refused = login(accounts, ALICE, PASSWORD, source="198.51.100.9")
    assert refused == Denied(AccountReason.THROTTLED, 30.0)
    assert isinstance(login(accounts, ALICE, PASSWORD, source="192.0.2.1"), Granted)


def test_operator_unlock(accounts: Accounts, tmp_path: Path) -> None:
    """``unlock`` clears a locked account at once and logs the release as the operator's."""
    for _ in range(5):
        login(accounts, ALICE, "wrong password, again")
    assert accounts.service.unlock(ALICE) is True
    assert isinstance(login(accounts, ALICE, PASSWORD), Granted)
    assert accounts.service.unlock(ALICE) is False
    releases = events(tmp_path / "accounts.log", "release")
    assert [(e["key"], e["reason"]) for e in releases] == [(ALICE, "operator")]
