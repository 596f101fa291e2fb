"""The demo federation's port picks: free, distinct, and outside the ephemeral range."""

from __future__ import annotations

import socket

from securemail.demo.federation import EPHEMERAL, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    """Fifty picks are fifty different ports, each bindable, none in the range the kernel
    gives outgoing connections (so no client connection can take one before the bind)."""
    low = int(EPHEMERAL.read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(port < low for port in ports), (low, ports)
    for port in ports[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()
