"""Account operations for operators and users: the one layer the CLI and the web call.

Each operation checks its input (addresses with the project's strict parser and in a domain
the node serves; passwords against the policy), changes the store and appends the event.
Refusals are AccountError with a reason code.

Security: names, addresses, labels and passwords are untrusted input. New secrets (an app
password, a TOTP secret) are returned to the caller once and never logged; the TOTP
secret is kept only sealed under the node passphrase.
"""

from __future__ import annotations

import builtins
import functools
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from argon2 import PasswordHasher

from securemail.accounts import app_passwords, totp
from securemail.accounts.events import AccountEvents
from securemail.accounts.login import decide
from securemail.accounts.model import Account, AccountError, AccountReason, Service
from securemail.accounts.passwords import PasswordPolicy
from securemail.accounts.store import AccountStore, AppPassword, StoredSecrets
from securemail.accounts.throttle import ACCOUNT, Key, LoginThrottle
from securemail.addresses import AddressError, parse_mailbox
from securemail.smime.assurance import IdentityCheck

APP_PASSWORD_CAP = 20
MAX_LABEL = 100


class AccountService:
    """Add, change and inspect accounts; every change is an account event."""

    def __init__(
        self,
        store: AccountStore,
        throttle: LoginThrottle,
        seal: totp.SecretSeal,
        events: AccountEvents,
        *,
        domains: Iterable[str],
        policy: PasswordPolicy,
        hasher: PasswordHasher,
        clock: Callable[[], datetime],
    ) -> None:
        self._store, self._throttle, self._seal, self._events = store, throttle, seal, events
        self._domains = frozenset(d.lower() for d in domains)
        self._policy, self._hasher, self._clock = policy, hasher, clock

    def add(
        self, address: str, password: str, *, display_name: str = "", quota: int | None = None
    ) -> Account:
        """A new account named by its primary ``address``."""
        name = self.address(address)
        self._policy.check(password, name)
        now = self._clock()
        account = self._store.add(name, display_name, self._hasher.hash(password), now)
        if quota is not None:
            account = self._store.update(name, quota=_quota(quota))
        self._events.record("created", now, name=name)
        return account

    def get(self, name: str) -> Account:
        account = self._store.get(_name(name))
        if account is None:
            raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {_name(name)}")
        return account

    def list(self) -> list[Account]:
        return self._store.list()

    def imap_secrets(self) -> builtins.list[StoredSecrets]:
        """Every account with the hashes IMAP accepts: its password's only where the
        Authenticator would grant IMAP a password login (no TOTP, no strong
        authentication, not disabled), else None; its app passwords always."""
        return [
            item if _password_opens_imap(item.account) else replace(item, password_hash=None)
            for item in self._store.secrets()
        ]

    def set_password(self, name: str, password: str) -> None:
        name = _name(name)
        self._policy.check(password, name)
        now = self._clock()
        self._store.update(name, password_hash=self._hasher.hash(password), password_changed=now)
        self._events.record("password-changed", now, name=name)

    def disable(self, name: str) -> Account:
        return self._change(name, "disabled", disabled=True)

    def enable(self, name: str) -> Account:
        return self._change(name, "enabled", disabled=False)

    def set_strong_auth(self, name: str, required: bool) -> Account:
        event = "strong-auth-required" if required else "strong-auth-cleared"
        return self._change(name, event, strong_auth_required=required)

    def set_quota(self, name: str, quota: int | None) -> Account:
        return self._change(name, "quota-changed", quota=_quota(quota))

    def acknowledge_sole_use(self, name: str) -> Account:
        """Record that the account's holder acknowledged it is for their sole use."""
        return self._change(name, "sole-use-acknowledged", sole_use_acknowledged=self._clock())

    def set_identity(self, name: str, check: IdentityCheck | None) -> Account:
        """Record how the provider verified the holder's identity (None: withdraw it); the
        operator's statement, signed into every later message as the provider's word."""
        if check is None:
            values: dict[str, object] = dict.fromkeys(
                ("identity_level", "identity_method", "identity_verified")
            )
            return self._change(name, "identity-cleared", **values)
        verified = datetime.combine(check.verified_on, datetime.min.time(), UTC)
        if verified > self._clock():
            raise ValueError("an identity cannot be verified in the future")
        account = self._store.update(
            _name(name),
            identity_level=check.level,
            identity_method=check.method,
            identity_verified=verified,
        )
        self._events.record(
            "identity-verified",
            self._clock(),
            name=account.name,
            level=check.level,
            method=check.method,
            verified_on=check.verified_on.isoformat(),
        )
        return account

    def set_time_zone(self, name: str, zone: str | None) -> Account:
        """Show ``name``'s dates in ``zone`` (an IANA name); None restores New Zealand time."""
        return self._change(name, "time-zone-changed", time_zone=_zone(zone))

    def add_alias(self, name: str, address: str) -> Account:
        alias = self.address(address)
        account = self._store.add_address(_name(name), alias)
        self._events.record("alias-added", self._clock(), name=account.name, address=alias)
        return account

    def remove_alias(self, name: str, address: str) -> Account:
        alias = address.strip().lower()
        account = self._store.remove_address(_name(name), alias)
        self._events.record("alias-removed", self._clock(), name=account.name, address=alias)
        return account

    def totp_begin(self, name: str) -> str:
        """Start enrolment with a new secret; the ``otpauth://`` URI to show once."""
        account = self.get(name)
        if account.totp_enrolled:
            raise AccountError(AccountReason.TOTP_NOT_PENDING, "remove the current TOTP first")
        secret = totp.new_secret()
        self._store.totp_begin(account.name, self._seal.seal(secret, account.name), self._clock())
        return totp.provisioning_uri(secret, account.name)

    def totp_confirm(self, name: str, code: str) -> Account:
        """Turn TOTP on once ``code`` is a current code of the pending secret."""
        name = _name(name)
        state = self._store.totp(name)
        if state is None or state.confirmed:
            raise AccountError(AccountReason.TOTP_NOT_PENDING, f"{name} has no TOTP enrolment")
        now = self._clock()
        step = totp.match_step(self._seal.open(state.sealed, name), code, now)
        if step is None:
            raise AccountError(AccountReason.TOTP_INVALID, "the code does not match")
        if not self._store.totp_use(name, step, confirm=True):
            raise AccountError(AccountReason.TOTP_REPLAYED, "this code was already used")
        self._events.record("totp-enrolled", now, name=name)
        return self.get(name)

    def totp_remove(self, name: str) -> None:
        name = _name(name)
        if self._store.totp_remove(name):
            self._events.record("totp-removed", self._clock(), name=name)

    def app_password_add(self, name: str, label: str) -> tuple[str, str]:
        """A new app password for ``name``: (its id, the password to show once)."""
        name, label = _name(name), _label(label)
        now = self._clock()
        while True:  # ids are 4 of 31 characters: a clash is rare, another draw resolves it
            ident, secret = app_passwords.generate()
            row = {
                "id": ident,
                "label": label,
                "hash": self._hasher.hash(secret),
                "under_totp": self.get(name).totp_enrolled,
            }
            if self._store.app_password_add(name, row, now, cap=APP_PASSWORD_CAP):
                break
        self._events.record("app-password-created", now, name=name, id=ident, label=label)
        return ident, secret

    def app_passwords(self, name: str) -> builtins.list[AppPassword]:
        return self._store.app_passwords(_name(name))

    def app_password_revoke(self, name: str, ident: str) -> None:
        name = _name(name)
        self._store.app_password_revoke(name, ident.strip().lower())
        self._events.record("app-password-revoked", self._clock(), name=name, id=ident)

    def unlock(self, name: str) -> bool:
        """Clear the login throttle for ``name``; whether it was locked."""
        key = Key(ACCOUNT, _name(name))
        locked = self._throttle.clear(key)
        if locked:
            self._events.releases([key], "operator", self._clock())
        return locked

    def address(self, text: str) -> str:
        """``text`` as a lower-case addr-spec in a domain this node serves, or BAD_ADDRESS."""
        try:
            mailbox = parse_mailbox(text.strip().encode("utf-8"))
        except AddressError as error:
            raise AccountError(AccountReason.BAD_ADDRESS, f"{text!r}: {error.detail}") from None
        if "<" in text or mailbox.display:
            raise AccountError(AccountReason.BAD_ADDRESS, f"{text!r}: give the bare address")
        if mailbox.domain not in self._domains:
            raise AccountError(
                AccountReason.BAD_ADDRESS, f"{mailbox.domain} is not a domain this node serves"
            )
        return mailbox.address.lower()

    def _change(self, name: str, event: str, **values: object) -> Account:
        account = self._store.update(_name(name), **values)
        self._events.record(event, self._clock(), name=account.name)
        return account


def _password_opens_imap(account: Account) -> bool:
    outcome = decide(Service.IMAP, account, secret_ok=True, app_password=False, totp_check=None)
    return outcome == "password"


def _name(name: str) -> str:
    return name.strip().lower()


def _quota(quota: int | None) -> int | None:
    if quota is not None and quota <= 0:
        raise ValueError("a quota is a positive number of octets (or none)")
    return quota


@functools.cache
def time_zones() -> tuple[str, ...]:
    """The IANA zone names an account may choose, sorted (read once from the system)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def _zone(zone: str | None) -> str | None:
    """``zone`` as stored: a name from the system's IANA database, or None for the default."""
    if zone is None or not zone.strip():
        return None
    zone = zone.strip()
    if zone not in time_zones():
        raise AccountError(
            AccountReason.BAD_TIME_ZONE,
            f"{zone!r} is not a time zone name (for example Pacific/Auckland)",
        )
    return zone


def _label(label: str) -> str:
    label = " ".join(label.split())
    if not label or len(label) > MAX_LABEL or not label.isprintable():
        raise ValueError(f"an app password label is 1 to {MAX_LABEL} printable characters")
    return label
