"""Tell systemd how the node is doing: readiness, stopping and the watchdog (sd_notify(3)).

Under ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace) and waits for ``READY=1``; with ``WatchdogSec=`` it also sets ``WATCHDOG_USEC``
and restarts the service when ``WATCHDOG=1`` stops arriving. One datagram per message, as
the protocol is; without ``NOTIFY_SOCKET`` nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("securemail.node")


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``STOPPING=1``, …); False when not under systemd."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as error:  # systemd went away or the socket is wrong: never stop for it
        log.warning("sd_notify %s: %s", message.split("=", maxsplit=1)[0], error)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` (half systemd's timeout), or None without a watchdog."""
    environ = os.environ if environ is None else environ
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


async def keep_watchdog(interval: float, stop: asyncio.Event) -> None:
    """Send ``WATCHDOG=1`` every ``interval`` seconds while the event loop runs, until stop."""
    while not stop.is_set():
        notify("WATCHDOG=1")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            continue
