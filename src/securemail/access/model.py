"""Who is using the web: the values the webmail, the operator console and the API share.

A request is made by a :class:`Principal`: a mailbox account signed in with a session
(webmail, console) or presenting an API token. The console and the operator API need
``operator``; the webmail needs a session; the API needs a token whose scope covers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from securemail.accounts.model import Account


class Scope(StrEnum):
    """What an API token (or a session) may do."""

    MAILBOX = "mailbox"  # the account's own mail: read, send, track
    OPERATOR = "operator"  # the node: queue, quarantine, directory, keys, lockouts
    APPLICATION = "application"  # a business application: send and track structured documents
    RECORDS = "records"  # an operator's console session: Privacy Act and OIA exports (no token)


@dataclass(frozen=True)
class Principal:
    """The account behind a request, and how it proved itself.

    ``session`` is the server-side session id (never the cookie value itself) for a browser,
    None for an API token. ``csrf`` is the session's CSRF token, which every state-changing
    form must echo. ``scopes`` are what this session or token may do; an operator's session
    has both scopes.
    """

    account: Account
    scopes: frozenset[Scope]
    session: str | None = None
    csrf: str | None = None
    method: str | None = None  # how the session's login was made: "password", "password+totp"

    @property
    def operator(self) -> bool:
        return Scope.OPERATOR in self.scopes

    @property
    def records(self) -> bool:
        """May make Privacy Act and OIA exports: an operator with the records role."""
        return self.operator and Scope.RECORDS in self.scopes
