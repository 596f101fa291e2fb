"""The submission listener: people's mail clients send through it after logging in.

Port 587 (RFC 6409) takes STARTTLS, required before anything but EHLO, NOOP, QUIT and
STARTTLS; port 465 (RFC 8314) is TLS from the first byte. AUTH PLAIN and LOGIN are offered
only under TLS and go to the shared :class:`securemail.accounts.model.Authenticator`,
awaited so a password hash never stops the other sessions.

Security: the client is anyone who can reach the port until it logs in. Its replies never
tell an unknown user from a wrong password (one identical 535), say "try later" only for a
throttle (454) and ask for an app password only after the right password (534). MAIL needs
a login (530). The account may send only as its own addresses: MAIL FROM (``<>`` too is
refused) and the message's single From: mailbox, strictly parsed by
:func:`securemail.addresses.author` (no second From:, Sender:, group, list, encoded-word in
the address, 8-bit text without SMTPUTF8) and with no other address in its display name.
Every recipient passes the same ``CheckRecipient`` as the relay listener: never an open
relay. Refusals are 553 5.7.1, each with its own reason code in the log.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from securemail import addresses
from securemail.accounts.assurance import Submitted, login_of
from securemail.accounts.model import (
    Account,
    AccountReason,
    Authenticator,
    Denied,
    Granted,
    Service,
)
from securemail.receive.conversation import Client, LogIn, Proved
from securemail.receive.model import Admit, CheckRecipient, ListenerSettings, ReceiveReason
from securemail.receive.server import Listener, start_listener
from securemail.replies import Reply

_INVALID = "Authentication credentials invalid"  # RFC 4954 §6, one text for every 535
_APP_PASSWORD = (AccountReason.APP_PASSWORD_REQUIRED, AccountReason.STRONG_AUTH_REQUIRED)
# Something shaped like an address inside a display name; NFKC first, so U+FF20 counts.
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:@]+@[^\s<>()\[\]\"',;:@]+")


def auth_refusal(denied: Denied, user: str) -> Reply:
    """The reply to ``user``'s refused login (RFC 4954 §6), its reason the account reason."""
    reason, detail = denied.reason, f"login as {user!r} refused"
    if reason is AccountReason.THROTTLED:
        detail += f", retry after {denied.retry_after or 0:.0f} s"
        return Reply(454, "4.7.0", "Temporary authentication failure", reason, detail)
    if reason in _APP_PASSWORD:
        return Reply(534, "5.7.9", "Please use an app password", reason, detail)
    return Reply(535, "5.7.8", _INVALID, reason, detail)


def _refused(reason: str, detail: str, text: str) -> Reply:
    return Reply(553, "5.7.1", text, reason, detail)


def _login_required(detail: str) -> Reply:
    # RFC 4954 §6: 530 5.7.0 when policy requires authentication for MAIL.
    return Reply(530, "5.7.0", "Authentication required", ReceiveReason.AUTH_REQUIRED, detail)


def refuse_author(account: Account, header: bytes) -> Reply | None:
    """``None`` if the header's single From: mailbox is the account's; else the 553 5.7.1."""
    try:
        mailbox = addresses.author(header)
    except addresses.AddressError as error:
        return _refused(error.reason, error.detail, "From: must be one plain address")
    named = _ADDRESS_LIKE.findall(unicodedata.normalize("NFKC", mailbox.display))
    if any(other.rstrip(".").lower() != mailbox.address.lower() for other in named):
        detail = "the display name holds another address"
        return _refused(ReceiveReason.FROM_DISPLAY_ADDRESS, detail, "From: display name refused")
    if not account.owns(mailbox.address):
        detail = f"From: {mailbox.address} is not an address of {account.name!r}"
        return _refused(ReceiveReason.FROM_NOT_OWNED, detail, "From: address not yours")
    return None


@dataclass(frozen=True)
class _AccountLogIn:
    """The :class:`Authenticator` as the listener's :class:`LogIn` (service SMTP)."""

    authenticator: Authenticator

    async def __call__(self, ip: str, user: str, password: bytes) -> Proved | Reply:
        try:
            secret = password.decode("utf-8")
        except UnicodeDecodeError:  # no account has such a password: as for a wrong one
            detail = f"password for {user!r} is not UTF-8"
            return Reply(535, "5.7.8", _INVALID, AccountReason.BAD_CREDENTIALS, detail)
        try:
            outcome = await self.authenticator.login(user, secret, service=Service.SMTP, source=ip)
        except Exception as error:  # the account store is down: try later, never grant
            detail = f"authenticator raised {type(error).__qualname__}"
            text = "Temporary authentication failure"
            return Reply(454, "4.7.0", text, ReceiveReason.AUTH_UNAVAILABLE, detail)
        if isinstance(outcome, Granted):
            submitted = Submitted.of(outcome.account, login_of(outcome))
            return Proved(outcome.account.name, outcome.account, submitted)
        return auth_refusal(outcome, user)


@dataclass(frozen=True)
class SubmissionGate:
    """The submission listener's policy; see :class:`securemail.receive.conversation.Gate`."""

    authenticator: Authenticator
    check_recipient: CheckRecipient

    @property
    def listener(self) -> Literal["submission"]:
        return "submission"

    @property
    def requires_tls(self) -> bool:
        return True

    @property
    def log_in(self) -> LogIn:
        return _AccountLogIn(self.authenticator)

    @property
    def member_of(self) -> None:
        return None

    def refuse_client(self, ip: str) -> Reply | None:
        return None  # anyone may try to log in; the authenticator throttles by source

    def refuse_sender(self, client: Client, mail_from: str) -> Reply | None:
        if client.account is None:
            return _login_required("MAIL before AUTH")
        if not mail_from:
            detail = "null reverse-path on submission"
            return _refused(ReceiveReason.NULL_SENDER, detail, "Sender address required")
        if not client.account.owns(mail_from):
            detail = f"{mail_from} is not an address of {client.account.name!r}"
            return _refused(ReceiveReason.SENDER_NOT_OWNED, detail, "Sender address not yours")
        return None

    def refuse_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        return self.check_recipient(mail_from, recipient)

    def refuse_content(self, client: Client, header: bytes) -> Reply | None:
        if client.account is None:  # MAIL needs a login, so DATA never comes without one
            return _login_required("DATA before AUTH")
        return refuse_author(client.account, header)


async def start_submission_listener(
    settings: ListenerSettings,
    *,
    authenticator: Authenticator,
    check_recipient: CheckRecipient,
    admit: Admit,
    implicit_tls: bool = False,
) -> Listener:
    """Serve mail clients on ``settings.host:port`` in the running loop.

    STARTTLS (port 587) or, with ``implicit_tls``, TLS from the first byte (port 465).
    Raises ValueError without a TLS context: passwords never cross in clear.
    """
    if settings.tls is None:
        raise ValueError("the submission listener needs a TLS context")
    gate = SubmissionGate(authenticator, check_recipient)
    return await start_listener(settings, gate, admit, implicit_tls=implicit_tls)
