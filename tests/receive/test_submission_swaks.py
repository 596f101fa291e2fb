"""swaks, a real mail client, submits through both submission ports with AUTH PLAIN."""

from __future__ import annotations

import asyncio

import pytest

from securemail.receive import Listener
from tests.conftest import require_tool
from tests.receive.conftest import WAIT, Inbox, Tls, run, with_listener
from tests.receive.test_submission_listener import ALICE, ALICE_PASSWORD, Accounts, start


async def swaks(port: int, *args: str) -> tuple[int, str]:
    """Run swaks against 127.0.0.1:``port``: its exit status and transcript."""
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--timeout", "30", *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), WAIT)
    return process.returncode or 0, out.decode(errors="replace")


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
