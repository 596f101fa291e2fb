"""The organisations' keys as a running node holds them: loaded at start, reloaded when the
key files change (``keys restore``, ``keys install-next``), and the mail held meanwhile
released.

An organisation whose folder holds no key at all (a gateway rebuilt on a new machine
before its keys were restored) does not stop the node: it serves its other organisations,
says so loudly (an error line, ``/readyz`` "keys: not loaded"), and its mail is held as
``key-unavailable`` (securemail.unprotect.service). A folder with keys that do not open
(a wrong passphrase, a damaged file) still stops the start: that is a mistake to fix, not
a key to wait for.

Security: the passphrase is read again from its file or variable for each reload and not
kept; a reload that fails keeps the keys the node had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta

from securemail.config.node import NodeConfig, Organisation
from securemail.keys.org import OrgKeys
from securemail.node.context import NodeError, load_org_keys, read_passphrase
from securemail.queue import Direction
from securemail.queue.access import QueueAccess

log = logging.getLogger("securemail.keys")

WATCH_SECONDS = 5.0


def key_files(org: Organisation) -> tuple[tuple[str, int, int], ...]:
    """What the organisation's ``keys/`` and ``certs/`` hold: name, size, change time."""
    found = []
    for folder in ("keys", "certs"):
        path = org.keys / folder
        for item in sorted(path.iterdir()) if path.is_dir() else ():
            with contextlib.suppress(OSError):
                stat = item.stat()
                found.append((f"{folder}/{item.name}", stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def installed(org: Organisation) -> bool:
    """Whether any signing or decryption key of the organisation is in its folder (the
    node's TLS key may live there too: it is not the organisation's)."""
    keys = org.keys / "keys"
    names = (p.name for p in keys.iterdir()) if keys.is_dir() else iter(())
    return any(name.endswith(("signing.key", "encryption.key")) for name in names)


class KeyRing(Mapping[str, OrgKeys]):
    """org_id -> the organisation's opened keys, for the organisations that have them."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._keys: dict[str, OrgKeys] = {}
        self._seen: dict[str, tuple[tuple[str, int, int], ...]] = {}

    @classmethod
    def open(cls, config: NodeConfig, passphrase: bytes) -> KeyRing:
        """Every organisation's keys; one without any is left out (and said to be)."""
        ring = cls(config)
        for org in config.organisations:
            ring._seen[org.org_id] = key_files(org)
            if not installed(org):
                log.error("%s: no key is installed in %s: its mail is held", org.org_id, org.keys)
                continue
            ring._keys[org.org_id] = load_org_keys(org, passphrase)
        return ring

    def __getitem__(self, org_id: str) -> OrgKeys:
        return self._keys[org_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def expected(self) -> frozenset[str]:
        """Every organisation the node serves, with its keys or not."""
        return frozenset(o.org_id for o in self.config.organisations)

    def reload_changed(self) -> list[str]:
        """Reload the organisations whose key files changed; the ids that now have keys."""
        reloaded = []
        for org in self.config.organisations:
            files = key_files(org)
            if files == self._seen.get(org.org_id) or not installed(org):
                continue
            try:
                keys = load_org_keys(org, read_passphrase(self.config))
            except NodeError as error:  # half-written, or a mistake: keep what we had
                log.error("%s: keys changed but do not open: %s", org.org_id, error.detail)
                continue
            self._seen[org.org_id] = files
            self._keys[org.org_id] = keys
            log.warning("%s: keys reloaded (%d decryption keys)", org.org_id, len(keys.identities))
            reloaded.append(org.org_id)
        return reloaded


async def run_key_watch(
    ring: KeyRing,
    queue: QueueAccess,
    clock: Callable[[], datetime],
    hold_limit: timedelta,
    stop: asyncio.Event,
) -> None:
    """Every few seconds: reload changed keys and release their held mail; release mail
    held longer than ``hold_limit`` (its next attempt takes the normal failure path)."""
    while not stop.is_set():
        try:
            await watch_once(ring, queue, clock(), hold_limit)
        except Exception:  # the database is away: the next round tries again
            log.warning("watching the keys failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WATCH_SECONDS)


async def watch_once(
    ring: KeyRing, queue: QueueAccess, now: datetime, hold_limit: timedelta
) -> int:
    """One round of :func:`run_key_watch`; how many entries it released."""
    released = 0
    for org_id in await asyncio.to_thread(ring.reload_changed):
        released += await queue.db(queue.holds.release_for_key, org_id, now)
    for org_id in ring.expected:
        expired = now - hold_limit
        released += await queue.db(queue.holds.release_for_key, org_id, now, arrived_before=expired)
    if released:
        log.warning("%d entries held for a key released", released)
        queue.notify(Direction.INBOUND)
    return released
