"""Opening a node's accounts: one database, one event log, the three faces services use.

``open_accounts`` connects to the node's database (the queue's: same durability checks),
brings it to the newest schema with the queue's migration chain, derives the TOTP sealing
key from the node passphrase and the database's salt, and returns :class:`Accounts`:
``authenticator`` for SMTP submission, IMAP and the web, ``mailboxes`` for delivery,
``service`` for the CLI and the web's account pages, and ``mailbox_seal``, the node's key
that seals what the gateway stores in a mailbox (:mod:`securemail.deliver.seal`). That key
is made at the first start, kept in the database sealed under the passphrase like the TOTP
secrets (so every process of the node shares it), and never written anywhere else.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import Engine

from securemail.accounts.events import AccountEvents
from securemail.accounts.login import PasswordLogin
from securemail.accounts.model import Mailbox
from securemail.accounts.passwords import HASHER, PasswordPolicy
from securemail.accounts.service import AccountService
from securemail.accounts.store import AccountStore
from securemail.accounts.throttle import LoginThrottle, ThrottlePolicy
from securemail.accounts.totp import SALT_BYTES, SecretSeal
from securemail.deliver.seal import KEY_BYTES, MailboxSeal
from securemail.storage.engine import connect, upgrade

_MAILBOX_SEAL = "mailbox-seal"  # the name the sealed key is bound to


# How long a mailbox look-up is reused (seconds): the bound on how late a change another
# process makes (the CLI on the node's database) reaches delivery; see StoredMailboxes.
MAILBOX_CACHE_SECONDS = 2.0
_MAILBOX_CACHE_SIZE = 4096


class StoredMailboxes:
    """Address to mailbox from the account store. See ``model.Mailboxes``.

    Every delivery asks, so a found mailbox is reused for ``ttl`` seconds (a database
    query a message was a tenth of the delivery thread's time). A change through this
    process's own store ends every reuse at once (``AccountStore.writes``); one made by
    another process (``securemail user``, or the web while the inbound worker runs in a
    worker process, ``[node] workers`` > 1) reaches delivery within ``ttl``: until then
    mail to an alias just removed still goes to its account, a new quota applies a moment
    later. An address no account has is never cached: an account created a moment ago is
    found at once, never refused with 550.
    """

    def __init__(
        self,
        store: AccountStore,
        *,
        ttl: float = MAILBOX_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._found: dict[str, tuple[float, int, Mailbox]] = {}  # until, writes, mailbox

    def mailbox_for(self, address: str) -> Mailbox | None:
        key = address.strip().lower()
        now, writes = self._clock(), self._store.writes  # both read before the query
        cached = self._found.get(key)
        if cached is not None and now < cached[0] and writes == cached[1]:
            return cached[2]
        found = self._store.mailbox_for(key)
        if found is None:
            self._found.pop(key, None)
            return None
        if len(self._found) >= _MAILBOX_CACHE_SIZE:
            self._found.clear()  # a bound, not an LRU: refilled within one ttl
        self._found[key] = (now + self._ttl, writes, found)
        return found


@dataclass(frozen=True)
class Accounts:
    """A node's accounts, open on its database until :meth:`close`."""

    authenticator: PasswordLogin
    mailboxes: StoredMailboxes
    service: AccountService
    engine: Engine
    mailbox_seal: MailboxSeal

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def open_accounts(
    database_url: str,
    *,
    log_path: Path,
    passphrase: bytes,
    domains: Iterable[str],
    clock: Callable[[], datetime] = _utc_now,
    breached_passwords: Path | None = None,
    throttle: ThrottlePolicy = ThrottlePolicy(),  # noqa: B008 (frozen, shared safely)
    hasher: PasswordHasher = HASHER,
) -> Accounts:
    """Open the accounts in ``database_url`` (migrating it), logging to ``log_path``.

    ``passphrase`` is the node's key passphrase (it seals TOTP secrets); ``domains`` are
    the domains whose addresses accounts may have; ``clock`` gives every "now".
    """
    engine = connect(database_url)
    try:
        upgrade(engine)
        store = AccountStore(engine)
        seal = SecretSeal(passphrase, store.salt(os.urandom(SALT_BYTES)))
        mailbox_seal = _mailbox_seal(store, seal)
    except BaseException:
        engine.dispose()
        raise
    events = AccountEvents(log_path)
    limiter = LoginThrottle(engine, throttle)
    return Accounts(
        authenticator=PasswordLogin(store, limiter, seal, events, clock=clock, hasher=hasher),
        mailboxes=StoredMailboxes(store),
        service=AccountService(
            store,
            limiter,
            seal,
            events,
            domains=domains,
            policy=PasswordPolicy(breached_passwords),
            hasher=hasher,
            clock=clock,
        ),
        engine=engine,
        mailbox_seal=mailbox_seal,
    )


def _mailbox_seal(store: AccountStore, seal: SecretSeal) -> MailboxSeal:
    """The node's mailbox seal, its key made on the first start (see the module doc)."""
    fresh = seal.seal(secrets.token_hex(KEY_BYTES), _MAILBOX_SEAL)
    try:
        key = seal.open(store.sealed_mailbox_key(fresh), _MAILBOX_SEAL)
    except ValueError:
        raise ValueError("the mailbox seal key does not open: another node passphrase?") from None
    return MailboxSeal(bytes.fromhex(key))
