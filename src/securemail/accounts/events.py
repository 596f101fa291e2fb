"""Account events, appended to the node's tamper-evident log (``securemail.audit``).

Event names are ``account.<what>`` (``account.login.ok``, ``account.login.failed``,
``account.lockout``, ``account.release``, ``account.created``...); details are names,
services, sources, methods and reason codes.

Security: never a password, app password, TOTP code or secret in a detail.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from securemail import audit
from securemail.accounts.throttle import Key, Lock

ACCOUNTS_LOG = "accounts.log"  # the file name below the node's data_dir


class AccountEvents:
    """Appends account events to the log at ``path`` (its directory must exist)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, event: str, now: datetime, **details: str) -> None:
        audit.append(self.path, f"account.{event}", details, now=now)

    def lockouts(self, locks: list[Lock], now: datetime) -> None:
        for lock in locks:
            self.record(
                "lockout",
                now,
                scope=lock.key.scope,
                key=lock.key.value,
                until=lock.until.isoformat(),
                failures=str(lock.failures),
            )

    def releases(self, keys: list[Key], why: str, now: datetime) -> None:
        for key in keys:
            self.record("release", now, scope=key.scope, key=key.value, reason=why)
