"""Server-side browser sessions: the cookie holds a random id, the database its digest.

Theory of operation. A session starts when a login succeeds (:meth:`WebSessions.start`):
a fresh 256-bit id goes into the ``__Host-securemail`` cookie and only its SHA-256 is
stored, so a copy of the database opens no session. A login whose password was right but
whose TOTP code is still awaited gets a *pending* session (:meth:`WebSessions.start_pending`)
holding the password sealed under a key derived from the cookie value: the second step can
repeat the whole Authenticator check without the browser sending the password again, and
neither the database nor the cookie alone reveals it. The signed-in session that follows
gets a new id (rotation); a pending session never grants anything itself.

A session ends at logout (its row is deleted), after ``idle`` without a request, or
``absolute`` after it started, whichever is first.

Security: the cookie value is untrusted input, only ever hashed. The id, CSRF token and
sealed password are never logged.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securemail.access.model import Scope
from securemail.access.store import StoredSession, WebStore

COOKIE = "__Host-securemail"
_SEEN_EVERY = timedelta(minutes=1)  # last_seen is written at most this often per session
_SEAL_INFO = b"securemail web pending login v1"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live (OWASP session management: idle and absolute timeouts)."""

    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)
    pending: timedelta = timedelta(minutes=5)  # to type the TOTP code


@dataclass(frozen=True)
class Opened:
    """A new session and the cookie value that opens it (set it once, keep it nowhere)."""

    cookie: str
    session: StoredSession


def session_id(cookie: str) -> str:
    """The stored id of the session a cookie value opens."""
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class WebSessions:
    """Start, find and end sessions; synchronous (run it with ``WebContext.db``)."""

    def __init__(
        self,
        store: WebStore,
        clock: Callable[[], datetime],
        policy: SessionPolicy = SessionPolicy(),
    ) -> None:
        self.store, self.policy, self._clock = store, policy, clock

    def start(self, account: str, scopes: Iterable[Scope], method: str) -> Opened:
        """A signed-in session for ``account`` (always a new id)."""
        return self._open(account, frozenset(scopes), method, lambda cookie: None)

    def start_pending(self, account: str, password: str) -> Opened:
        """A session that only waits for ``account``'s TOTP code, holding the sealed password."""
        return self._open(
            account, frozenset(), None, lambda cookie: _seal(cookie, account, password)
        )

    def find(self, cookie: str | None) -> StoredSession | None:
        """The live session ``cookie`` opens, or None (an expired one is deleted)."""
        if not cookie:
            return None
        session = self.store.session(session_id(cookie))
        if session is None:
            return None
        now = self._clock()
        lifetime = self.policy.absolute if session.method else self.policy.pending
        if now - session.last_seen >= self.policy.idle or now - session.created >= lifetime:
            self.store.session_end(session.id)
            return None
        if now - session.last_seen >= _SEEN_EVERY:
            self.store.session_seen(session.id, now)
        return session

    def pending_password(self, cookie: str, session: StoredSession) -> str | None:
        """The password a pending session holds, or None if it holds none or will not open."""
        if session.pending is None:
            return None
        return _open_seal(cookie, session.account, session.pending)

    def end(self, ident: str) -> None:
        self.store.session_end(ident)

    def end_others(self, account: str, keep: str | None) -> int:
        """End every session of ``account`` but ``keep`` (after a password change)."""
        return self.store.sessions_end(account, keep=keep)

    def _open(
        self,
        account: str,
        scopes: frozenset[Scope],
        method: str | None,
        pending: Callable[[str], bytes | None],
    ) -> Opened:
        now = self._clock()
        cookie = secrets.token_urlsafe(32)  # 256 bits
        session = StoredSession(
            id=session_id(cookie),
            account=account,
            scopes=scopes,
            csrf=secrets.token_urlsafe(32),
            method=method,
            pending=pending(cookie),
            created=now,
            last_seen=now,
        )
        self.store.session_add(
            session, stale=now - self.policy.idle, old=now - self.policy.absolute
        )
        return Opened(cookie, session)


def _key(cookie: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return AESGCM(hkdf.derive(cookie.encode("utf-8", "replace")))


def _seal(cookie: str, account: str, password: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _key(cookie).encrypt(nonce, password.encode("utf-8"), account.encode())


def _open_seal(cookie: str, account: str, sealed: bytes) -> str | None:
    nonce, box = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return _key(cookie).decrypt(nonce, box, account.encode()).decode("utf-8")
    except (InvalidTag, UnicodeDecodeError):
        return None
