"""The login check SMTP submission, IMAP and the web share: see ``model.Authenticator``.

Theory of operation. :func:`decide` is the pure rule table: from the account (or None),
whether the secret verified, which kind of secret it was and, for the web, the TOTP check,
it returns the method granted or the reason refused. :class:`PasswordLogin` does the I/O
around it in a worker thread: throttle check first (a throttled attempt verifies nothing),
one argon2id verify (a dummy hash for an unknown name, so both cost the same), the TOTP
check only once the password was right, then the writes a decision implies (failure
counts and locks, the used TOTP step, a rehash, an app password's last use) and the event.

Security: ``name``, ``secret``, ``source`` and ``totp`` are untrusted client input. A
client learns only the reason code; the secret is never logged or kept. Refusals that are
guesses (wrong secret, wrong or replayed TOTP code) count against the throttle.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from securemail.accounts import app_passwords, totp
from securemail.accounts.events import AccountEvents
from securemail.accounts.model import (
    Account,
    AccountReason,
    Denied,
    Granted,
    Method,
    Service,
)
from securemail.accounts.store import AccountStore, Credentials
from securemail.accounts.throttle import Key, LoginThrottle, login_keys

GUESSES = frozenset(
    {AccountReason.BAD_CREDENTIALS, AccountReason.TOTP_INVALID, AccountReason.TOTP_REPLAYED}
)


class TotpCheck(StrEnum):
    """The second factor as checked for a web login."""

    MISSING = "missing"
    INVALID = "invalid"
    REPLAYED = "replayed"
    OK = "ok"


_TOTP_REFUSALS = {
    TotpCheck.MISSING: AccountReason.TOTP_REQUIRED,
    TotpCheck.INVALID: AccountReason.TOTP_INVALID,
    TotpCheck.REPLAYED: AccountReason.TOTP_REPLAYED,
}


def needs_totp(service: Service, account: Account | None, secret_ok: bool) -> bool:
    """Whether :func:`decide` will look at the TOTP check (only then is it worth making)."""
    return secret_ok and account is not None and service is Service.WEB and account.totp_enrolled


def decide(
    service: Service,
    account: Account | None,
    *,
    secret_ok: bool,
    app_password: bool,
    totp_check: TotpCheck | None,
) -> Method | AccountReason:
    """The method a login is granted with, or why it is refused (see Authenticator)."""
    if account is None or not secret_ok:
        return AccountReason.BAD_CREDENTIALS
    if account.disabled:
        return AccountReason.DISABLED
    if service is not Service.WEB:
        if app_password:
            return "app-password"
        if account.totp_enrolled or account.strong_auth_required:
            return AccountReason.APP_PASSWORD_REQUIRED
        return "password"
    if app_password:  # mail clients only; the web never picks an app password's hash
        return AccountReason.BAD_CREDENTIALS
    if account.totp_enrolled:
        check = totp_check or TotpCheck.MISSING
        return "password+totp" if check is TotpCheck.OK else _TOTP_REFUSALS[check]
    if account.strong_auth_required:
        return AccountReason.STRONG_AUTH_REQUIRED
    return "password"


class PasswordLogin:
    """The Authenticator over the account store. See ``model.Authenticator``."""

    def __init__(
        self,
        store: AccountStore,
        throttle: LoginThrottle,
        seal: totp.SecretSeal,
        events: AccountEvents,
        *,
        clock: Callable[[], datetime],
        hasher: PasswordHasher,
    ) -> None:
        self._store, self._throttle, self._seal = store, throttle, seal
        self._events, self._clock, self._hasher = events, clock, hasher
        self._dummy = hasher.hash(secrets.token_urlsafe(24))

    async def login(
        self,
        name: str,
        secret: str,
        *,
        service: Service,
        source: str,
        totp: str | None = None,
    ) -> Granted | Denied:
        return await asyncio.to_thread(self.check, name, secret, service, source, totp)

    def check(
        self, name: str, secret: str, service: Service, source: str, code: str | None
    ) -> Granted | Denied:
        """:meth:`login`, synchronously (for callers already in a worker thread)."""
        now = self._clock()
        keys = login_keys(name, source)
        wait, released = self._throttle.check(keys, now)
        self._events.releases(released, "expired", now)
        if wait is not None:
            denied = Denied(AccountReason.THROTTLED, wait)
            return self._refuse(denied, keys, service, source, now)
        app_id = app_passwords.public_id(secret) if service is not Service.WEB else None
        found = self._store.credentials(keys[0].value, app_id)
        secret_ok = self._verify(found.hash, secret)
        step = None
        check = None
        if needs_totp(service, found.account, secret_ok):
            check, step = self._totp(found, code, now)
        outcome = decide(
            service,
            found.account,
            secret_ok=secret_ok,
            app_password=found.app_password is not None,
            totp_check=check,
        )
        # the step is stored only if it is still newer: a concurrent login may have used it
        if (
            outcome == "password+totp"
            and step is not None
            and not self._store.totp_use(keys[0].value, step)
        ):
            outcome = AccountReason.TOTP_REPLAYED
        if isinstance(outcome, AccountReason):
            return self._refuse(Denied(outcome), keys, service, source, now)
        if found.account is None or found.hash is None:  # decide() grants neither
            raise RuntimeError("login granted without an account")
        self._update_secret(found, secret, now)
        granted = self._grant(
            found.account, outcome, keys=keys, service=service, source=source, now=now
        )
        return replace(granted, app_password_under_totp=found.app_password_under_totp)

    def _verify(self, hashed: str | None, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy, secret) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    def _totp(
        self, found: Credentials, code: str | None, now: datetime
    ) -> tuple[TotpCheck, int | None]:
        if code is None or found.totp is None or found.account is None:
            return TotpCheck.MISSING, None
        secret = self._seal.open(found.totp.sealed, found.account.name)
        step = totp.match_step(secret, code, now)
        if step is None:
            return TotpCheck.INVALID, None
        last = found.totp.last_step
        if last is not None and step <= last:
            return TotpCheck.REPLAYED, None
        return TotpCheck.OK, step

    def _refuse(
        self, denied: Denied, keys: tuple[Key, Key], service: Service, source: str, now: datetime
    ) -> Denied:
        reason = denied.reason.value
        self._events.record(
            "login.failed",
            now,
            name=keys[0].value,
            service=service.value,
            source=source,
            reason=reason,
        )
        if denied.reason in GUESSES:
            self._events.lockouts(self._throttle.fail(keys, now), now)
        return denied

    def _update_secret(self, found: Credentials, secret: str, now: datetime) -> None:
        """Rehash a secret hashed under a weaker profile; note an app password's use."""
        stale = found.hash is not None and self._hasher.check_needs_rehash(found.hash)
        fresh = {"hash": self._hasher.hash(secret)} if stale else {}
        if found.app_password is not None:
            self._store.app_password_update(found.app_password, last_used=now, **fresh)
        elif fresh and found.account is not None:
            self._store.update(found.account.name, password_hash=fresh["hash"])

    def _grant(
        self,
        account: Account,
        method: Method,
        *,
        keys: tuple[Key, Key],
        service: Service,
        source: str,
        now: datetime,
    ) -> Granted:
        if self._throttle.clear(keys[0]):
            self._events.releases([keys[0]], "success", now)
        self._events.record(
            "login.ok",
            now,
            name=account.name,
            service=service.value,
            source=source,
            method=method,
        )
        return Granted(account, method)
