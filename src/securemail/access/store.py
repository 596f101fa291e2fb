"""The web's rows: browser sessions, API tokens and the operator flag, in the node database.

Like the account store, every public method is one transaction, holds rows and not rules,
and never reads the clock. Ids and tokens arrive here already hashed.

Security: every value is bound as a parameter; a database failure is a StorageError
UNAVAILABLE (securemail.storage).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, or_, select, update

from securemail.access.model import Scope
from securemail.access.schema import api_tokens, web_sessions
from securemail.accounts.model import AccountError, AccountReason
from securemail.accounts.schema import accounts
from securemail.records.chain import NewRecord, RecordClass, append
from securemail.storage.engine import transaction


@dataclass(frozen=True)
class StoredSession:
    """A browser session as stored: ``method`` is None while the second factor is awaited."""

    id: str
    account: str
    scopes: frozenset[Scope]
    csrf: str
    method: str | None
    pending: bytes | None
    created: datetime
    last_seen: datetime


@dataclass(frozen=True)
class StoredToken:
    """An API token as listed: never its hash."""

    id: str
    account: str
    scope: Scope
    label: str
    created: datetime
    last_used: datetime | None


class WebStore:
    """Session, token and operator rows; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def operator(self, name: str) -> bool:
        with transaction(self._engine, "operator", write=False) as conn:
            query = select(accounts.c.operator).where(accounts.c.name == name)
            return bool(conn.execute(query).scalar())

    def set_operator(self, name: str, flag: bool) -> None:
        with transaction(self._engine, "set operator", write=True) as conn:
            done = conn.execute(
                update(accounts).where(accounts.c.name == name).values(operator=flag)
            )
            if not done.rowcount:
                raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {name}")

    def records_role(self, name: str) -> bool:
        with transaction(self._engine, "records role", write=False) as conn:
            query = select(accounts.c.records).where(accounts.c.name == name)
            return bool(conn.execute(query).scalar())

    def set_records_role(self, name: str, flag: bool, *, by: str, now: datetime) -> None:
        """Grant or revoke the records role, and record it in the records log (one
        transaction: the change and its record stand or fall together)."""
        with transaction(self._engine, "set records role", write=True) as conn:
            done = conn.execute(
                update(accounts).where(accounts.c.name == name).values(records=flag)
            )
            if not done.rowcount:
                raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {name}")
            event = "records.role-granted" if flag else "records.role-revoked"
            details = {"account": name, "by": by}
            append(conn, [NewRecord(now, RecordClass.SECURITY, event, (name,), None, details)])

    def session_add(self, session: StoredSession, *, stale: datetime, old: datetime) -> None:
        """Store ``session``, first dropping those idle since ``stale`` or made before ``old``."""
        row = asdict(session) | {"scopes": " ".join(sorted(session.scopes))}
        with transaction(self._engine, "add session", write=True) as conn:
            conn.execute(
                delete(web_sessions).where(
                    or_(web_sessions.c.last_seen < stale, web_sessions.c.created < old)
                )
            )
            conn.execute(web_sessions.insert().values(**row))

    def session(self, ident: str) -> StoredSession | None:
        with transaction(self._engine, "session", write=False) as conn:
            row = conn.execute(select(web_sessions).where(web_sessions.c.id == ident)).first()
        if row is None:
            return None
        scopes = frozenset(Scope(s) for s in row.scopes.split())
        values = row._asdict() | {"scopes": scopes}
        return StoredSession(**values)

    def session_seen(self, ident: str, now: datetime) -> None:
        with transaction(self._engine, "touch session", write=True) as conn:
            conn.execute(
                update(web_sessions).where(web_sessions.c.id == ident).values(last_seen=now)
            )

    def session_end(self, ident: str) -> None:
        with transaction(self._engine, "end session", write=True) as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == ident))

    def sessions_end(self, account: str, *, keep: str | None = None) -> int:
        """End every session of ``account`` except ``keep``; how many ended."""
        with transaction(self._engine, "end sessions", write=True) as conn:
            query = delete(web_sessions).where(web_sessions.c.account == account)
            if keep is not None:
                query = query.where(web_sessions.c.id != keep)
            return conn.execute(query).rowcount

    def token_add(self, token: StoredToken, digest: str) -> bool:
        """Store ``token`` with its SHA-256 ``digest``; False if its id is taken."""
        with transaction(self._engine, "add token", write=True) as conn:
            owner = select(accounts.c.name).where(accounts.c.name == token.account)
            if conn.execute(owner).first() is None:
                raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {token.account}")
            taken = conn.execute(select(api_tokens.c.id).where(api_tokens.c.id == token.id))
            if taken.first() is not None:
                return False
            conn.execute(api_tokens.insert().values(**asdict(token), hash=digest))
            return True

    def token_by_digest(self, digest: str) -> StoredToken | None:
        with transaction(self._engine, "token", write=False) as conn:
            row = conn.execute(select(api_tokens).where(api_tokens.c.hash == digest)).first()
        return None if row is None else _token(row._asdict())

    def tokens(self, account: str) -> list[StoredToken]:
        with transaction(self._engine, "list tokens", write=False) as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.account == account)
                .order_by(api_tokens.c.created, api_tokens.c.id)
            )
            return [_token(row._asdict()) for row in rows]

    def token_revoke(self, account: str, ident: str) -> bool:
        with transaction(self._engine, "revoke token", write=True) as conn:
            query = delete(api_tokens).where(
                api_tokens.c.account == account, api_tokens.c.id == ident
            )
            return bool(conn.execute(query).rowcount)

    def token_used(self, ident: str, now: datetime) -> None:
        with transaction(self._engine, "token used", write=True) as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == ident).values(last_used=now))


def _token(row: dict[str, object]) -> StoredToken:
    row.pop("hash")
    return StoredToken(**row | {"scope": Scope(str(row["scope"]))})  # type: ignore[arg-type]
