"""The delivery's mailbox look-up cache: what it reuses, and when a change reaches it."""

from __future__ import annotations

from pathlib import Path

from securemail.accounts.model import Mailbox
from securemail.accounts.node import StoredMailboxes
from securemail.accounts.store import AccountStore
from tests.accounts.conftest import ALICE, DOMAIN, PASSWORD, Clock, open_at

ALIAS = f"a.smith@{DOMAIN}"


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(AccountStore):
    """An account store that counts its mailbox queries."""

    queries = 0

    def mailbox_for(self, address: str) -> Mailbox | None:
        self.queries += 1
        return super().mailbox_for(address)


def test_a_found_mailbox_is_reused_until_a_change_here(
    sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """A found mailbox is answered without a query within the ttl; a change through the
    node's own store (a new quota, a removed alias) takes effect at once."""
    with open_at(sqlite_url, tmp_path / "accounts.log", clock) as accounts:
        accounts.service.add(ALICE, PASSWORD, quota=1000)
        accounts.service.add_alias(ALICE, ALIAS)
        store = CountingStore(accounts.engine)
        ticks = Ticks()
        mailboxes = StoredMailboxes(store, ttl=2.0, clock=ticks)
        assert mailboxes.mailbox_for(ALIAS.upper()) == Mailbox(ALICE, ALICE, 1000)
        assert mailboxes.mailbox_for(f" {ALIAS} ") == Mailbox(ALICE, ALICE, 1000)
        assert store.queries == 1
        store.update(ALICE, quota=5000)
        assert mailboxes.mailbox_for(ALIAS) == Mailbox(ALICE, ALICE, 5000)
        store.remove_address(ALICE, ALIAS)
        assert mailboxes.mailbox_for(ALIAS) is None
        assert store.queries == 3


def test_another_process_change_arrives_within_the_ttl(
    sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """A change made by another process (another store on the database) is seen once the
    ttl has passed, not before; an address no account has is never cached, so an account
    another process just created is found at the next look-up."""
    with open_at(sqlite_url, tmp_path / "accounts.log", clock) as accounts:
        accounts.service.add(ALICE, PASSWORD, quota=1000)
        ticks = Ticks()
        mailboxes = StoredMailboxes(AccountStore(accounts.engine), ttl=2.0, clock=ticks)
        bob = f"bob@{DOMAIN}"
        assert mailboxes.mailbox_for(bob) is None
        assert mailboxes.mailbox_for(ALICE) == Mailbox(ALICE, ALICE, 1000)
        accounts.service.add(bob, PASSWORD)  # the other process's store, not the cache's
        accounts.service.set_quota(ALICE, 7000)
        assert mailboxes.mailbox_for(bob) == Mailbox(bob, bob, None)
        ticks.now += 1.9
        assert mailboxes.mailbox_for(ALICE) == Mailbox(ALICE, ALICE, 1000)
        ticks.now += 0.2
        assert mailboxes.mailbox_for(ALICE) == Mailbox(ALICE, ALICE, 7000)
