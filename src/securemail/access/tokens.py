"""Who may use the console and the API: the operator role and per-account API tokens.

A token is ``smapi_<id>_<secret>``: the id is public (listing, revoking), the secret is 256
random bits, and only the SHA-256 of the whole token is stored (a token is random, so a
fast hash is enough; argon2 is for passwords people choose). A token has one scope; an
operator-scoped token acts as an operator only while its account still is one, and no
token works for a disabled account.

Security: tokens are shown once at creation and never logged; every change is an account
event (``account.operator-granted``, ``account.api-token-created``...).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime

from securemail.access.model import Scope
from securemail.access.store import StoredToken, WebStore
from securemail.accounts.events import AccountEvents

PREFIX = "smapi"
MAX_LABEL = 100


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class WebAccess:
    """The operator flag and API tokens of accounts; synchronous (run it off the loop)."""

    def __init__(
        self, store: WebStore, events: AccountEvents, clock: Callable[[], datetime]
    ) -> None:
        self.store, self._events, self._clock = store, events, clock

    def operator(self, name: str) -> bool:
        return self.store.operator(name.strip().lower())

    def set_operator(self, name: str, flag: bool) -> None:
        name = name.strip().lower()
        self.store.set_operator(name, flag)
        event = "operator-granted" if flag else "operator-revoked"
        self._events.record(event, self._clock(), name=name)

    def records_role(self, name: str) -> bool:
        return self.store.records_role(name.strip().lower())

    def set_records_role(self, name: str, flag: bool, *, by: str) -> None:
        """Grant (or revoke) the console's records exports; recorded in the records log."""
        self.store.set_records_role(name.strip().lower(), flag, by=by, now=self._clock())

    def scopes(self, name: str) -> frozenset[Scope]:
        """What a session of ``name`` may do now: the records scope only for an operator
        who also has the records role."""
        if not self.operator(name):
            return frozenset({Scope.MAILBOX})
        if self.records_role(name):
            return frozenset({Scope.MAILBOX, Scope.OPERATOR, Scope.RECORDS})
        return frozenset({Scope.MAILBOX, Scope.OPERATOR})

    def token_add(self, name: str, label: str, scope: Scope) -> tuple[str, str]:
        """A new token for ``name``: (its id, the token to show once)."""
        name, label = name.strip().lower(), _label(label)
        if scope is Scope.RECORDS:
            raise ValueError("the records role is for console sessions, not API tokens")
        if scope is Scope.OPERATOR and not self.operator(name):
            raise ValueError(f"{name} is not an operator: it cannot have an operator token")
        now = self._clock()
        while True:  # 40-bit ids: a clash is rare, another draw resolves it
            ident, secret = secrets.token_hex(5), secrets.token_urlsafe(32)
            token = StoredToken(ident, name, scope, label, now, None)
            if self.store.token_add(token, token_digest(f"{PREFIX}_{ident}_{secret}")):
                break
        self._events.record(
            "api-token-created", now, name=name, id=ident, scope=scope.value, label=label
        )
        return ident, f"{PREFIX}_{ident}_{secret}"

    def tokens(self, name: str) -> list[StoredToken]:
        return self.store.tokens(name.strip().lower())

    def token_revoke(self, name: str, ident: str) -> None:
        name = name.strip().lower()
        if not self.store.token_revoke(name, ident.strip().lower()):
            raise ValueError(f"{name} has no API token {ident}")
        self._events.record("api-token-revoked", self._clock(), name=name, id=ident)

    def token_check(self, token: str) -> tuple[str, frozenset[Scope]] | None:
        """The account a token acts for and its scopes now, or None if it opens nothing."""
        found = self.store.token_by_digest(token_digest(token))
        if found is None:
            return None
        if found.scope is Scope.RECORDS:
            return None
        if found.scope is Scope.OPERATOR and not self.operator(found.account):
            return None
        self.store.token_used(found.id, self._clock())
        return found.account, frozenset({found.scope})


def _label(label: str) -> str:
    label = " ".join(label.split())
    if not label or len(label) > MAX_LABEL or not label.isprintable():
        raise ValueError(f"a token label is 1 to {MAX_LABEL} printable characters")
    return label
