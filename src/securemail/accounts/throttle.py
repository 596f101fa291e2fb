"""The login throttle: failures per account name and per source in a sliding window.

Theory of operation. Every failed login adds a row for its account name and one for its
source address; rows older than the window are dropped as the key is written. Once a key
has ``limit`` failures in the window it is locked, and each further failure (possible only
after a lock ran out) locks it twice as long as the one before, up to a cap. A lock is a
row with its end time, so every process and service sharing the database (SMTP, IMAP, the
web) sees it. A lock found expired is deleted by the next attempt and reported as released;
a successful login clears the account's failures and lock, not the source's (a source
trying many names is an attacker whatever one success says).

Names that are no account are counted and locked by name just the same, so spraying
unknown names is slowed as much as guessing one account's password and the throttle tells
nobody which names exist. IPv6 sources are counted per /64, the block one host usually has.

Security: keys are the attempted name (lower-cased) and the client address; never a secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, delete, func, select

from securemail.accounts.schema import NAME, login_failures, login_locks
from securemail.storage.dialect import insert_new
from securemail.storage.engine import transaction

ACCOUNT = "account"
SOURCE = "source"
_MAX_DOUBLINGS = 30  # 2**30 first lockouts is beyond any cap; keeps the arithmetic small


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures lock a key, and for how long."""

    account_limit: int = 5
    source_limit: int = 20
    window: timedelta = timedelta(minutes=15)
    first_lockout: timedelta = timedelta(seconds=30)
    max_lockout: timedelta = timedelta(minutes=15)

    def limit(self, scope: str) -> int:
        return self.account_limit if scope == ACCOUNT else self.source_limit

    def lockout(self, scope: str, failures: int) -> timedelta | None:
        """How long a key is locked after its ``failures``-th failure in the window."""
        over = failures - self.limit(scope)
        if over < 0:
            return None
        return min(self.first_lockout * (1 << min(over, _MAX_DOUBLINGS)), self.max_lockout)


@dataclass(frozen=True)
class Key:
    """One throttled key: an account name or a source (network)."""

    scope: str
    value: str


@dataclass(frozen=True)
class Lock:
    """A key locked until ``until`` after ``failures`` failures in the window."""

    key: Key
    until: datetime
    failures: int


def login_keys(name: str, source: str) -> tuple[Key, Key]:
    """The keys a login attempt by ``name`` from ``source`` counts against."""
    return Key(ACCOUNT, name.strip().lower()[: NAME.length]), Key(SOURCE, source_key(source))


def source_key(source: str) -> str:
    """The client address, IPv6 reduced to its /64; anything else as given (bounded)."""
    try:
        address = ipaddress.ip_address(source.strip("[]"))
    except ValueError:
        return source[: NAME.length]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginThrottle:
    """Throttle state in the node's database; each method is one transaction."""

    def __init__(self, engine: Engine, policy: ThrottlePolicy) -> None:
        self._engine = engine
        self.policy = policy

    def check(self, keys: Sequence[Key], now: datetime) -> tuple[float | None, list[Key]]:
        """Seconds until the last of ``keys`` unlocks (None if none is locked), and the keys
        whose lock ran out (now released)."""
        wait, released = 0.0, []
        with transaction(self._engine, "throttle check", write=True) as conn:
            for key in keys:
                until = conn.execute(select(login_locks.c.until).where(_lock_is(key))).scalar()
                if until is None:
                    continue
                if until > now:
                    wait = max(wait, (until - now).total_seconds())
                else:
                    conn.execute(delete(login_locks).where(_lock_is(key)))
                    released.append(key)
        return (wait or None), released

    def fail(self, keys: Sequence[Key], now: datetime) -> list[Lock]:
        """Count a failure against ``keys``; the locks it starts."""
        locks = []
        with transaction(self._engine, "throttle failure", write=True) as conn:
            for key in keys:
                conn.execute(
                    login_failures.insert().values(scope=key.scope, key=key.value, time=now)
                )
                conn.execute(
                    delete(login_failures).where(
                        _failures_of(key), login_failures.c.time <= now - self.policy.window
                    )
                )
                count = conn.execute(
                    select(func.count()).select_from(login_failures).where(_failures_of(key))
                ).scalar_one()
                lockout = self.policy.lockout(key.scope, count)
                if lockout is not None:
                    conn.execute(delete(login_locks).where(_lock_is(key)))
                    values = {"scope": key.scope, "key": key.value, "until": now + lockout}
                    conn.execute(insert_new(conn, login_locks, **values))
                    locks.append(Lock(key, now + lockout, count))
        return locks

    def locks(self, now: datetime) -> list[Lock]:
        """The keys locked at ``now``, the latest-ending first, with their failures in the
        window (for the operator; reading changes nothing)."""
        failures = (
            select(func.count())
            .select_from(login_failures)
            .where(login_failures.c.scope == login_locks.c.scope)
            .where(login_failures.c.key == login_locks.c.key)
            .where(login_failures.c.time > now - self.policy.window)
            .scalar_subquery()
        )
        query = (
            select(login_locks.c.scope, login_locks.c.key, login_locks.c.until, failures)
            .where(login_locks.c.until > now)
            .order_by(login_locks.c.until.desc(), login_locks.c.key)
        )
        with transaction(self._engine, "throttle locks", write=False) as conn:
            rows = conn.execute(query).all()
        return [Lock(Key(scope, key), until, count) for scope, key, until, count in rows]

    def failures(self, now: datetime) -> dict[str, int]:
        """Failures counted in the window at ``now``, by scope (for monitoring)."""
        query = (
            select(login_failures.c.scope, func.count())
            .where(login_failures.c.time > now - self.policy.window)
            .group_by(login_failures.c.scope)
        )
        with transaction(self._engine, "throttle failures", write=False) as conn:
            return {scope: int(count) for scope, count in conn.execute(query)}

    def clear(self, key: Key) -> bool:
        """Forget ``key``'s failures and lock; whether it was locked."""
        with transaction(self._engine, "throttle clear", write=True) as conn:
            conn.execute(delete(login_failures).where(_failures_of(key)))
            return bool(conn.execute(delete(login_locks).where(_lock_is(key))).rowcount)


def _failures_of(key: Key) -> ColumnElement[bool]:
    return and_(login_failures.c.scope == key.scope, login_failures.c.key == key.value)


def _lock_is(key: Key) -> ColumnElement[bool]:
    return and_(login_locks.c.scope == key.scope, login_locks.c.key == key.value)
