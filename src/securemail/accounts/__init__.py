"""Mailbox accounts: logins for SMTP submission, IMAP and the web, and address ownership."""

from securemail.accounts.model import (
    Account,
    AccountError,
    AccountReason,
    Authenticator,
    Denied,
    Granted,
    Mailbox,
    Mailboxes,
    Service,
)

__all__ = [
    "Account",
    "AccountError",
    "AccountReason",
    "Authenticator",
    "Denied",
    "Granted",
    "Mailbox",
    "Mailboxes",
    "Service",
]
