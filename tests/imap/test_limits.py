"""The IMAP server's limits: a cap on sessions, and autologout of silent clients."""

from __future__ import annotations

import socket
import time

import pytest

from securemail.imap import ImapLimits
from tests.imap.conftest import Imap


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(4096)


@pytest.mark.parametrize("imap", [ImapLimits(max_connections=1)], indirect=True)
def test_sessions_beyond_the_cap_are_turned_away(imap: Imap) -> None:
    """With the cap reached, a new client gets ``* BYE`` at once; a slot frees on logout."""
    first = imap.logged_in()
    assert _greeting(imap.port).startswith(b"* BYE Too many connections")
    first.logout()
    deadline = time.monotonic() + 5
    while _greeting(imap.port).startswith(b"* BYE") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _greeting(imap.port).startswith(b"* OK")


@pytest.mark.parametrize("imap", [ImapLimits(login=0.5, idle=5.0)], indirect=True)
def test_a_client_that_never_logs_in_is_logged_out(imap: Imap) -> None:
    """A silent client that has not logged in gets ``* BYE Autologout`` and is disconnected,
    freeing its slot; a logged-in one may stay silent longer."""
    with socket.create_connection(("127.0.0.1", imap.port), timeout=10) as sock:
        assert sock.recv(4096).startswith(b"* OK")
        started = time.monotonic()
        said = b""
        while chunk := sock.recv(4096):
            said += chunk
        waited = time.monotonic() - started
    assert said.startswith(b"* BYE Autologout")
    assert 0.4 < waited < 5.0
    client = imap.logged_in()
    time.sleep(1.0)  # past the login limit, within the idle one
    assert client.noop()[0] == "OK"
    client.logout()
