"""The register's shared operations: checked requests, paging with a filter on both engines,
and revoking."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from securemail.contacts import desk
from securemail.contacts.model import Contact
from securemail.contacts.store import ContactRegister
from securemail.queue import NewMessage, QueueStore
from securemail.storage.engine import connect
from tests.queue.conftest import RETRY, pg_schema, url
from tests.web.conftest import node_config

__all__ = ["pg_schema", "url"]

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


@pytest.fixture
def register(url: str) -> Iterator[ContactRegister]:
    QueueStore.open(url, retry=RETRY).close()  # migrated as a node's database is
    opened = ContactRegister(connect(url))
    yield opened
    opened.close()


def test_page_filters_by_part_of_the_address_newest_first(register: ContactRegister) -> None:
    """Twelve contacts page five at a time newest first; a filter with a LIKE wildcard
    matches it literally, not as a pattern."""
    for n in range(12):
        contact, _ = _asked(f"holder{n}@provider.nz", NOW + timedelta(minutes=n))
        register.add(contact)
    register.add(_asked("100%_sure@provider.nz", NOW)[0])
    first = desk.page(register, "holder", 0, 5)
    assert [c.address for c in first.entries][:2] == [
        "holder11@provider.nz",
        "holder10@provider.nz",
    ]
    assert (first.total, first.more, first.next_offset) == (12, True, 5)
    last = desk.page(register, "HOLDER", 10, 5)
    assert (len(last.entries), last.more, last.next_offset) == (2, False, None)
    assert [c.address for c in desk.page(register, "%_", 0, 5).entries] == ["100%_sure@provider.nz"]


def test_revoke_and_unknown_ids(register: ContactRegister) -> None:
    """Revoking saves the revoked state; an unknown id is refused with its reason code."""
    contact, _ = _asked("hemi@provider.nz", NOW)
    register.add(contact)
    assert desk.revoke(register, contact.id).status(NOW) == "revoked"
    assert desk.one(register, contact.id).state == "revoked"
    with pytest.raises(desk.ContactError) as refused:
        desk.revoke(register, "no-such-id")
    assert refused.value.reason is desk.ContactReason.NOT_FOUND


@pytest.mark.parametrize(
    ("address", "purpose", "valid"),
    [
        ("hemi", "rates", YEAR),
        ("a b@provider.nz", "rates", YEAR),
        ("hemi@provider.nz", " ", YEAR),
        ("hemi@provider.nz", "rates\n", YEAR),
        ("hemi@provider.nz", "rates", timedelta(0)),
    ],
)
def test_ask_refuses_what_is_not_a_request(address: str, purpose: str, valid: timedelta) -> None:
    """A non-address, a blank or unprintable purpose, or no validity is a bad request."""
    with pytest.raises(desk.ContactError) as refused:
        _asked(address, NOW, purpose=purpose, valid=valid)
    assert refused.value.reason is desk.ContactReason.BAD_REQUEST
    with pytest.raises(desk.ContactError):
        desk.requirements("strong-auth,strong-login")


def _asked(
    address: str, now: datetime, *, purpose: str = "rates", valid: timedelta = YEAR
) -> tuple[Contact, NewMessage]:
    org = desk.organisation(node_config(Path("/nonexistent")), None)
    return desk.ask(org, address, purpose, ("sole-use",), valid, now=now)
