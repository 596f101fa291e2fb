"""The account store: accounts, addresses, app passwords and TOTP state in the node's database.

Every public method is one transaction (SQLite ``BEGIN IMMEDIATE`` for writes, so a check
and the write that depends on it cannot interleave with another process). The store holds
rows, not rules: the service decides what may change and logs it; the store never reads
the clock (every change takes ``now``) and never sees a password, only its hash.

Security: names and addresses are untrusted values, stored only through bound parameters;
a database failure is a StorageError UNAVAILABLE (securemail.storage).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, select, update

from securemail.accounts.model import Account, AccountError, AccountReason, Mailbox
from securemail.accounts.schema import (
    account_addresses,
    account_settings,
    account_totp,
    accounts,
    app_passwords,
)
from securemail.smime.assurance import IdentityCheck
from securemail.storage.dialect import insert_new
from securemail.storage.engine import transaction

_SALT = "totp_salt"
_MAILBOX_SEAL = "mailbox_seal_key"  # sealed: see securemail.deliver.seal


@dataclass(frozen=True)
class AppPassword:
    """An app password as it is listed: never its hash."""

    id: str
    label: str
    created: datetime
    last_used: datetime | None
    under_totp: bool = False


@dataclass(frozen=True)
class TotpState:
    """An account's TOTP secret (sealed) and the last time step a login used."""

    sealed: bytes
    confirmed: bool
    last_step: int | None


@dataclass(frozen=True)
class Credentials:
    """What a login checks: the account, the hash to verify and, for an app password, its id."""

    account: Account | None
    hash: str | None
    app_password: str | None
    totp: TotpState | None
    app_password_under_totp: bool = False


@dataclass(frozen=True)
class StoredSecrets:
    """An account with the hashes of its password and its app passwords (oldest first)."""

    account: Account
    password_hash: str | None
    app_password_hashes: tuple[str, ...]


class AccountStore:
    """Account rows in one SQLite file or PostgreSQL database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Write transactions this object ran: a cache of what it reads (StoredMailboxes)
        # is stale once this moved since the cached read.
        self.writes = 0
        self._counting = threading.Lock()

    @contextmanager
    def _write(self, name: str) -> Iterator[Connection]:
        """A write transaction; :attr:`writes` moves once it is over (committed or not), so a
        reader that looked at :attr:`writes` before its own read sees the change."""
        try:
            with transaction(self._engine, name, write=True) as conn:
                yield conn
        finally:
            with self._counting:
                self.writes += 1

    def salt(self, fresh: bytes) -> bytes:
        """The database's TOTP sealing salt, storing ``fresh`` if it has none yet."""
        return bytes.fromhex(self.setting(_SALT, fresh.hex()))

    def sealed_mailbox_key(self, fresh: bytes) -> bytes:
        """The node's mailbox seal key, sealed under the passphrase; ``fresh`` if none yet."""
        return bytes.fromhex(self.setting(_MAILBOX_SEAL, fresh.hex()))

    def setting(self, name: str, fresh: str) -> str:
        """The node-wide value ``name``, storing ``fresh`` if it has none yet (first start)."""
        with self._write(name) as conn:
            conn.execute(insert_new(conn, account_settings, name=name, value=fresh))
            stored: str = conn.execute(
                select(account_settings.c.value).where(account_settings.c.name == name)
            ).scalar_one()
        return stored

    def add(self, name: str, display_name: str, password_hash: str, now: datetime) -> Account:
        """A new account whose name is its primary address; ADDRESS_TAKEN if any has it."""
        with self._write("add account") as conn:
            if _owner(conn, name) is not None or _row(conn, name) is not None:
                raise AccountError(AccountReason.ADDRESS_TAKEN, f"{name} is already in use")
            conn.execute(
                accounts.insert().values(
                    name=name,
                    display_name=display_name,
                    password_hash=password_hash,
                    strong_auth_required=False,
                    disabled=False,
                    created=now,
                    password_changed=now,
                )
            )
            conn.execute(
                account_addresses.insert().values(address=name, account=name, is_primary=True)
            )
            return _account(conn, name)

    def get(self, name: str) -> Account | None:
        with transaction(self._engine, "get account", write=False) as conn:
            return _account(conn, name) if _row(conn, name) is not None else None

    def list(self) -> builtins.list[Account]:
        with transaction(self._engine, "list accounts", write=False) as conn:
            names = conn.execute(select(accounts.c.name).order_by(accounts.c.name)).scalars()
            return [_account(conn, name) for name in names.all()]

    def secrets(self) -> builtins.list[StoredSecrets]:
        """Every account (by name) with its hashes, read in one transaction for an export."""
        with transaction(self._engine, "list secrets", write=False) as conn:
            addresses: dict[str, builtins.list[str]] = {}
            for address, owner in conn.execute(_ADDRESSES_IN_ORDER):
                addresses.setdefault(owner, []).append(address)
            totps = {
                r.account: TotpState(r.sealed, r.confirmed, r.last_step)
                for r in conn.execute(select(account_totp))
            }
            apps: dict[str, builtins.list[str]] = {}
            for owner, hashed in conn.execute(_APP_HASHES_IN_ORDER):
                apps.setdefault(owner, []).append(hashed)
            rows = conn.execute(select(accounts).order_by(accounts.c.name))
            return [
                StoredSecrets(
                    _build(row, addresses.get(row.name, []), totps.get(row.name)),
                    row.password_hash,
                    tuple(apps.get(row.name, ())),
                )
                for row in rows
            ]

    def mailbox_for(self, address: str) -> Mailbox | None:
        with transaction(self._engine, "mailbox", write=False) as conn:
            owner = _owner(conn, address)
            row = None if owner is None else _row(conn, owner)
            return None if row is None else Mailbox(row.name, row.name, row.quota)

    def update(self, name: str, **values: Any) -> Account:
        """Set account columns (password_hash, disabled, quota...); NO_SUCH_ACCOUNT if none."""
        with self._write("update account") as conn:
            _exists(conn, name)
            conn.execute(update(accounts).where(accounts.c.name == name).values(**values))
            return _account(conn, name)

    def add_address(self, name: str, address: str) -> Account:
        with self._write("add alias") as conn:
            _exists(conn, name)
            if _owner(conn, address) is not None or _row(conn, address) is not None:
                raise AccountError(AccountReason.ADDRESS_TAKEN, f"{address} is already in use")
            conn.execute(
                account_addresses.insert().values(address=address, account=name, is_primary=False)
            )
            return _account(conn, name)

    def remove_address(self, name: str, address: str) -> Account:
        with self._write("remove alias") as conn:
            _exists(conn, name)
            if address == name:
                raise AccountError(AccountReason.PRIMARY_ADDRESS, "the primary address stays")
            gone = conn.execute(
                delete(account_addresses).where(
                    account_addresses.c.address == address, account_addresses.c.account == name
                )
            ).rowcount
            if not gone:
                raise AccountError(AccountReason.BAD_ADDRESS, f"{name} has no alias {address}")
            return _account(conn, name)

    def credentials(self, name: str, app_password: str | None) -> Credentials:
        """The hash a login for ``name`` checks: app password ``app_password``'s, if the
        account has it, else the account password's (nothing for an unknown name)."""
        with transaction(self._engine, "credentials", write=False) as conn:
            row = _row(conn, name)
            if row is None:
                return Credentials(None, None, None, None)
            app = None
            if app_password is not None:
                app = conn.execute(
                    select(app_passwords.c.hash, app_passwords.c.under_totp).where(
                        app_passwords.c.id == app_password, app_passwords.c.account == name
                    )
                ).first()
            totp = _totp(conn, name)
            if app is not None:
                account = _account(conn, name)
                return Credentials(account, app.hash, app_password, totp, bool(app.under_totp))
            return Credentials(_account(conn, name), row.password_hash, None, totp)

    def totp_begin(self, name: str, sealed: bytes, now: datetime) -> None:
        """Store a new, unconfirmed secret (replacing an unconfirmed one; not a confirmed one)."""
        with self._write("totp begin") as conn:
            _exists(conn, name)
            conn.execute(delete(account_totp).where(account_totp.c.account == name))
            conn.execute(
                account_totp.insert().values(
                    account=name, sealed=sealed, confirmed=False, created=now
                )
            )

    def totp(self, name: str) -> TotpState | None:
        with transaction(self._engine, "totp", write=False) as conn:
            return _totp(conn, name)

    def totp_use(self, name: str, step: int, *, confirm: bool = False) -> bool:
        """Record ``step`` as used (and the secret as confirmed); False if it is not newer."""
        with self._write("totp use") as conn:
            newer = (account_totp.c.last_step.is_(None)) | (account_totp.c.last_step < step)
            values: dict[str, Any] = {"last_step": step} | ({"confirmed": True} if confirm else {})
            done = conn.execute(
                update(account_totp).where(account_totp.c.account == name, newer).values(**values)
            )
            return bool(done.rowcount)

    def totp_remove(self, name: str) -> bool:
        with self._write("totp remove") as conn:
            _exists(conn, name)
            return bool(
                conn.execute(delete(account_totp).where(account_totp.c.account == name)).rowcount
            )

    def app_password_add(self, name: str, row: dict[str, Any], now: datetime, *, cap: int) -> bool:
        """Store an app password row (id, label, hash); False if its id is taken (draw
        another). APP_PASSWORD_LIMIT once the account has ``cap`` of them."""
        with self._write("add app password") as conn:
            _exists(conn, name)
            count = conn.execute(
                select(func.count()).where(app_passwords.c.account == name)
            ).scalar_one()
            if count >= cap:
                raise AccountError(
                    AccountReason.APP_PASSWORD_LIMIT, f"{name} has {count} app passwords"
                )
            taken = conn.execute(select(app_passwords.c.id).where(app_passwords.c.id == row["id"]))
            if taken.first() is not None:
                return False
            conn.execute(app_passwords.insert().values(account=name, created=now, **row))
            return True

    def app_passwords(self, name: str) -> builtins.list[AppPassword]:
        with transaction(self._engine, "list app passwords", write=False) as conn:
            _exists(conn, name)
            rows = conn.execute(
                select(app_passwords)
                .where(app_passwords.c.account == name)
                .order_by(app_passwords.c.created, app_passwords.c.id)
            )
            return [AppPassword(r.id, r.label, r.created, r.last_used, r.under_totp) for r in rows]

    def app_password_revoke(self, name: str, ident: str) -> None:
        with self._write("revoke app password") as conn:
            _exists(conn, name)
            gone = conn.execute(
                delete(app_passwords).where(
                    app_passwords.c.id == ident, app_passwords.c.account == name
                )
            ).rowcount
            if not gone:
                raise AccountError(
                    AccountReason.NO_SUCH_APP_PASSWORD, f"{name} has no app password {ident}"
                )

    def app_password_update(self, ident: str, **values: Any) -> None:
        """Set an app password's last_used or hash (after a login)."""
        with self._write("update app password") as conn:
            conn.execute(update(app_passwords).where(app_passwords.c.id == ident).values(**values))


# Primary address first, then the aliases alphabetically (as Account.addresses lists them).
_ADDRESSES_IN_ORDER = select(account_addresses.c.address, account_addresses.c.account).order_by(
    account_addresses.c.account, account_addresses.c.is_primary.desc(), account_addresses.c.address
)
# The order app_passwords() lists them in: the slots they take in an export.
_APP_HASHES_IN_ORDER = select(app_passwords.c.account, app_passwords.c.hash).order_by(
    app_passwords.c.account, app_passwords.c.created, app_passwords.c.id
)


def _row(conn: Connection, name: str) -> Row[Any] | None:
    return conn.execute(select(accounts).where(accounts.c.name == name)).first()


def _exists(conn: Connection, name: str) -> None:
    if _row(conn, name) is None:
        raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {name}")


def _owner(conn: Connection, address: str) -> str | None:
    query = select(account_addresses.c.account).where(account_addresses.c.address == address)
    return conn.execute(query).scalar()


def _totp(conn: Connection, name: str) -> TotpState | None:
    row = conn.execute(select(account_totp).where(account_totp.c.account == name)).first()
    return None if row is None else TotpState(row.sealed, row.confirmed, row.last_step)


def _account(conn: Connection, name: str) -> Account:
    row = _row(conn, name)
    if row is None:
        raise AccountError(AccountReason.NO_SUCH_ACCOUNT, f"no account {name}")
    addresses = conn.execute(
        select(account_addresses.c.address)
        .where(account_addresses.c.account == name)
        .order_by(account_addresses.c.is_primary.desc(), account_addresses.c.address)
    ).scalars()
    return _build(row, addresses.all(), _totp(conn, name))


def _build(row: Row[Any], addresses: Sequence[str], totp: TotpState | None) -> Account:
    return Account(
        name=row.name,
        addresses=tuple(addresses),
        display_name=row.display_name,
        quota=row.quota,
        strong_auth_required=row.strong_auth_required,
        totp_enrolled=totp is not None and totp.confirmed,
        sole_use_acknowledged=row.sole_use_acknowledged,
        disabled=row.disabled,
        created=row.created,
        identity=_identity(row),
        time_zone=row.time_zone,
    )


def _identity(row: Row[Any]) -> IdentityCheck | None:
    if row.identity_level is None or row.identity_verified is None:
        return None
    method = row.identity_method or "unspecified"
    return IdentityCheck(row.identity_level, method, row.identity_verified.date())
