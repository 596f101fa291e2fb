"""swaks, a real mail client, submits through both submission ports with AUTH PLAIN."""

from __future__ import annotations

import pytest

from securemail.receive import Listener
from tests.conftest import require_tool
from tests.receive.conftest import Inbox, Tls, run, swaks, with_listener
from tests.receive.test_submission_listener import ALICE, ALICE_PASSWORD, Accounts, start


@pytest.mark.parametrize(
    ("implicit_tls", "tls_option"), [(False, "--tls"), (True, "--tls-on-connect")]
)
def test_swaks_submits_with_auth_plain(tls: Tls, implicit_tls: bool, tls_option: str) -> None:
    """swaks --auth PLAIN over STARTTLS (587) and implicit TLS (465): 235, then queued."""
    require_tool("swaks")
    inbox = Inbox()

    async def body(listener: Listener) -> tuple[int, str]:
        return await swaks(
            listener.port,
            tls_option,
            "--auth", "PLAIN",
            "--auth-user", ALICE,
            "--auth-password", ALICE_PASSWORD,
            "--from", ALICE,
            "--to", "bob@ministry.govt.nz",
            "--header", f"From: {ALICE}",
            "--helo", "client.agency.govt.nz",
        )  # fmt: skip

    start_listener = start(tls, Accounts(), inbox, implicit_tls=implicit_tls)
    status, transcript = run(with_listener(start_listener, body))
    assert status == 0, transcript
    assert "<~  235 2.7.0 Authentication successful" in transcript
    (received,) = inbox.messages
    assert received.auth_user == ALICE and received.tls
