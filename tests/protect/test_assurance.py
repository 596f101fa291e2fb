"""What the outbound service signs of a sender: only a provider's word, only about mail its
holder submitted, always about the message's From: address."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from securemail.accounts.assurance import Submitted
from securemail.directory import Directory
from securemail.protect.service import provider_id, sender_assurance
from securemail.queue import Direction, Entry, State
from tests.directory.conftest import first

__all__ = ["first"]  # the directory fixture, shared with tests/directory

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BODY = b"From: Hemi <Hemi.Walker@securemail.provider.nz>\r\nTo: a@agency.govt.nz\r\n\r\nHi\r\n"
TAKEN = Submitted("hemi.walker@securemail.provider.nz", "password-totp", NOW, None)


def _entry(kind: str = "mail", assurance: str | None = TAKEN.to_json()) -> Entry:
    return Entry(
        id="e1",
        direction=Direction.OUTBOUND,
        state=State.ACTIVE,
        kind=kind,
        org_id="provider",
        mail_from="hemi.walker@securemail.provider.nz",
        message_id=None,
        client="submission 127.0.0.1",
        auth="hemi.walker@securemail.provider.nz",
        size=len(BODY),
        created_at=NOW,
        next_attempt_at=NOW,
        attempts=0,
        last_reply=None,
        reason=None,
        warned=False,
        recipients=(),
        assurance=assurance,
    )


def test_a_providers_holder_gets_the_assertion() -> None:
    """The snapshot becomes the assertion, in the provider's name, about the From: address."""
    value = sender_assurance(_entry(), BODY, "provider")
    assert value is not None and value.provider == "provider"
    assert value.address == "Hemi.Walker@securemail.provider.nz"
    assert value.login == "password-totp" and value.sole_use_since == NOW


def test_nothing_without_a_submission_or_from_a_non_provider() -> None:
    """Relayed mail, notices, unreadable snapshots and non-providers sign nothing."""
    assert sender_assurance(_entry(assurance=None), BODY, "provider") is None
    assert sender_assurance(_entry(kind="notice"), BODY, "provider") is None
    assert sender_assurance(_entry(assurance="{not json"), BODY, "provider") is None
    assert sender_assurance(_entry(), BODY, None) is None


def test_only_a_member_listed_as_msp_is_a_provider(first: Directory) -> None:
    """An agency's webmail submission carries a snapshot too, but the agency is no provider."""
    assert provider_id(first, "agency") is None
    agency = first.member("agency")
    assert agency is not None
    listed = dataclasses.replace(first, members=(dataclasses.replace(agency, roles=("msp",)),))
    assert provider_id(listed, "agency") == "agency"
    assert provider_id(None, "agency") is None
