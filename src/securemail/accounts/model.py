"""Mailbox accounts of a mail service provider: the values and the seams other services use.

An account is what a person logs in with (its ``name``, by convention its primary
address) and the addresses it may send as (``addresses``; the first is the primary
address, whose Maildir holds the account's mail; the rest are aliases delivered there).

Two seams, each a Protocol whose docstring is the contract:

- :class:`Authenticator` -- the one login check that SMTP submission, IMAP and the web
  share, with the throttling and the event log that go with it;
- :class:`Mailboxes` -- address to mailbox (primary address and quota) for delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from securemail.errors import SecureMailError
from securemail.smime.assurance import IdentityCheck

Method = Literal["password", "app-password", "password+totp"]


class Service(StrEnum):
    """Where a login comes from; the rules for second factors differ per service."""

    SMTP = "smtp"
    IMAP = "imap"
    WEB = "web"


class AccountReason(StrEnum):
    """Why a login or an account operation was refused (stable codes for logs and replies).

    ``BAD_CREDENTIALS`` covers an unknown name and a wrong secret alike: a client is never
    told which. The reasons after it are given only once the secret was right.
    """

    BAD_CREDENTIALS = "bad-credentials"
    THROTTLED = "login-throttled"
    DISABLED = "account-disabled"
    TOTP_REQUIRED = "totp-required"
    TOTP_INVALID = "totp-invalid"
    TOTP_REPLAYED = "totp-replayed"
    APP_PASSWORD_REQUIRED = "app-password-required"  # noqa: S105 (a reason code)
    STRONG_AUTH_REQUIRED = "strong-auth-required"
    WEAK_PASSWORD = "weak-password"  # noqa: S105 (a reason code)
    NO_SUCH_ACCOUNT = "no-such-account"
    ADDRESS_TAKEN = "address-taken"
    BAD_ADDRESS = "bad-address"
    TOTP_NOT_PENDING = "totp-not-pending"
    APP_PASSWORD_LIMIT = "app-password-limit"  # noqa: S105 (a reason code)
    NO_SUCH_APP_PASSWORD = "no-such-app-password"  # noqa: S105 (a reason code)
    PRIMARY_ADDRESS = "primary-address"
    BAD_TIME_ZONE = "bad-time-zone"


class AccountError(SecureMailError[AccountReason]):
    """An account operation was refused (weak password, address taken, no such account...)."""


@dataclass(frozen=True)
class Account:
    """One mailbox account as the services see it (never its secrets)."""

    name: str
    addresses: tuple[str, ...]
    display_name: str
    quota: int | None  # octets; None is no limit
    strong_auth_required: bool
    totp_enrolled: bool
    sole_use_acknowledged: datetime | None
    disabled: bool
    created: datetime
    # How the provider verified the holder's identity (set by its operator), or None.
    identity: IdentityCheck | None = None
    time_zone: str | None = None  # IANA name; None is the provider's default (NZ time)

    @property
    def primary(self) -> str:
        return self.addresses[0]

    def owns(self, address: str) -> bool:
        """Whether the account may send as ``address`` (compared case-insensitively)."""
        return address.lower() in (a.lower() for a in self.addresses)


@dataclass(frozen=True)
class Granted:
    """A successful login: who, and with what strength."""

    account: Account
    method: Method
    # For an app password: it was created while the account had a confirmed second factor.
    app_password_under_totp: bool = False


@dataclass(frozen=True)
class Denied:
    """A refused login. ``retry_after`` (seconds) is set when the refusal is a throttle."""

    reason: AccountReason
    retry_after: float | None = None


@dataclass(frozen=True)
class Mailbox:
    """Where mail for an address is stored: the owning account's primary address and quota."""

    account: str
    primary: str
    quota: int | None


class Authenticator(Protocol):
    """The login check shared by SMTP submission, IMAP and the web.

    Contract for :meth:`login`:

    - an unknown ``name`` costs the same work as a wrong password (a dummy argon2id
      verify) and both give ``Denied(BAD_CREDENTIALS)``;
    - every failure counts against the account name and against ``source`` (the client's
      IP address); once either is throttled, further attempts are ``Denied(THROTTLED,
      retry_after=...)`` without checking the secret, so the throttle cannot be used to
      learn whether a password was right;
    - for SMTP and IMAP, an account with TOTP enrolled or ``strong_auth_required`` accepts
      only its app passwords (``APP_PASSWORD_REQUIRED`` for the account password);
    - for the web, an account with TOTP enrolled needs ``totp`` as well (``TOTP_REQUIRED``
      when missing, ``TOTP_INVALID``, ``TOTP_REPLAYED`` for a code already used); an account
      with ``strong_auth_required`` but no TOTP is ``STRONG_AUTH_REQUIRED``;
    - a disabled account is ``DISABLED``;
    - success and every refusal are logged as account events (login, lockout, release)
      with service, source and reason, never with the secret;
    - never blocks the event loop (the hash runs in a worker thread).
    """

    async def login(
        self,
        name: str,
        secret: str,
        *,
        service: Service,
        source: str,
        totp: str | None = None,
    ) -> Granted | Denied: ...


class Mailboxes(Protocol):
    """Address to mailbox, for delivery into hosted Maildirs.

    Contract: :meth:`mailbox_for` returns the mailbox an address (primary or alias,
    case-insensitive) delivers to, or None if no account has it. Synchronous: it is called
    from the delivery worker thread and may read the database. It may answer a found
    mailbox from a cache whose staleness it bounds and states; None is always current.
    """

    def mailbox_for(self, address: str) -> Mailbox | None: ...
