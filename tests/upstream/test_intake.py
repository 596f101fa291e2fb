"""What an upstream queue takes: encrypted mail for the members it backs up, nothing else
(profile §11.1, SM-UPQ-2)."""

from __future__ import annotations

import pytest

from securemail.config.node import UpstreamSettings
from securemail.directory.model import Directory
from securemail.queue import Direction, NewMessage
from securemail.receive import Received
from securemail.replies import Reply
from securemail.smime import clear_sign, sign_message
from securemail.upstream.intake import backed_up, upstream_entries
from tests.conftest import MESSAGE, NOW, Pki
from tests.upstream.conftest import suspended

SETTINGS = UpstreamSettings(backs_up=("ministry",))
BOB = "bob@ministry.govt.nz"


def received(body: bytes, *recipients: str) -> Received:
    return Received(
        "peer", "127.0.0.9", "gw.agency.govt.nz", "alice@agency.govt.nz",
        recipients or (BOB,), body, tls=True, tls_version="TLSv1.3", auth_user=None,
        member="agency",
    )  # fmt: skip


def test_ciphertext_for_a_backed_up_member_becomes_one_upstream_entry(
    members: Directory, ciphertext: bytes
) -> None:
    """The member's recipients become one entry of kind upstream, owned by the member, with
    the sending member (its TLS certificate) kept to vouch for later notices."""
    [entry] = upstream_entries(received(ciphertext), members, SETTINGS)  # type: ignore[misc]
    assert isinstance(entry, NewMessage)
    assert (entry.direction, entry.kind, entry.org_id) == (
        Direction.OUTBOUND,
        "upstream",
        "ministry",
    )
    assert (entry.recipients, entry.auth, entry.body) == ((BOB,), "agency", ciphertext)


@pytest.mark.parametrize("form", ["clear-signed", "opaque-signed", "plain"])
def test_anything_readable_is_refused_at_data(members: Directory, pki: Pki, form: str) -> None:
    """Signed-only mail carries its content in the clear: never stored (554 5.7.1)."""
    body = {
        "clear-signed": lambda: clear_sign(MESSAGE, pki.agency.signer, now=NOW),
        "opaque-signed": lambda: sign_message(MESSAGE, pki.agency.signer, now=NOW).message,
        "plain": lambda: MESSAGE,
    }[form]()
    refusal = upstream_entries(received(body), members, SETTINGS)
    assert isinstance(refusal, Reply)
    assert (refusal.code, refusal.status, refusal.reason) == (
        554,
        "5.7.1",
        "upstream-ciphertext-only",
    )


def test_only_active_members_it_backs_up(members: Directory, ciphertext: bytes) -> None:
    """A member not in backs_up, a suspended one, a stranger's domain: not backed up."""
    assert backed_up(members, SETTINGS, "ministry.govt.nz") is not None
    assert backed_up(members, SETTINGS, "agency.govt.nz") is None
    assert backed_up(members, SETTINGS, "example.com") is None
    assert backed_up(suspended(members, "ministry"), SETTINGS, "ministry.govt.nz") is None
    assert backed_up(members, None, "ministry.govt.nz") is None
    assert upstream_entries(received(ciphertext, "carol@agency.govt.nz"), members, SETTINGS) == []
