"""Accounts on both engines, with a clock the test moves and a log the test can verify."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type

from securemail.accounts.model import Account
from securemail.accounts.node import Accounts, open_accounts
from tests.queue.conftest import pg_schema, pg_url

__all__ = ["pg_schema"]

DOMAIN = "mail.example.govt.nz"
ALICE = f"alice@{DOMAIN}"
PASSWORD = "correct horse battery staple"
PASSPHRASE = b"node key passphrase"
# A cheaper argon2id profile for tests that count failures; the default is tested elsewhere.
QUICK = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)


@dataclass
class Clock:
    """A clock that moves only when the test says so."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 6, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A node database URL on each engine, empty and private to the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'node.db'}"


def open_at(url: str, log: Path, clock: Clock, hasher: PasswordHasher = QUICK) -> Accounts:
    """Accounts for ``DOMAIN`` in ``url``, logging to ``log``."""
    return open_accounts(
        url, log_path=log, passphrase=PASSPHRASE, domains=[DOMAIN], clock=clock, hasher=hasher
    )


@pytest.fixture
def accounts(sqlite_url: str, tmp_path: Path, clock: Clock) -> Iterator[Accounts]:
    """Accounts on SQLite with the quick hasher and Alice added."""
    with open_at(sqlite_url, tmp_path / "accounts.log", clock) as opened:
        opened.service.add(ALICE, PASSWORD, display_name="Alice")
        yield opened


def make_account(
    name: str,
    *aliases: str,
    quota: int | None = None,
    disabled: bool = False,
    totp: bool = False,
    display_name: str | None = None,
) -> Account:
    """An Account value as the store would return it, for tests of the layers above it."""
    return Account(
        name=name,
        addresses=(name, *aliases),
        display_name=name if display_name is None else display_name,
        quota=quota,
        strong_auth_required=False,
        totp_enrolled=totp,
        sole_use_acknowledged=None,
        disabled=disabled,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )
