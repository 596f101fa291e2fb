"""Keep a gateway's directory current: fetch, verify and accept on a schedule.

Security: every fetched version goes through :meth:`DirectoryStore.accept`; a refused one
is logged with its reason code and the last good version stays in use. A stale directory
is still served, with a warning, because refusing all mail when the operator is late to
publish is worse than using last week's member list; the operator is told in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from securemail.directory.document import DirectoryError
from securemail.directory.fetch import FetchError, Source
from securemail.directory.model import Directory
from securemail.directory.store import DirectoryStore, Stored

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DirectoryRefresher:
    """The gateway's current directory, refreshed from ``source`` into ``store``.

    The anchors and the federation name are the store's: acceptance is its business.
    Fetching and accepting run in a worker thread; :attr:`current` is only replaced on the
    event loop's thread, so look-ups need no lock.
    """

    def __init__(
        self,
        store: DirectoryStore,
        source: Source,
        *,
        clock: Callable[[], datetime] = _utc_now,
        on_current: Callable[[Directory], None] | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self._clock = clock
        self._stored: Stored | None = None
        # Called in a worker thread with the current directory after each successful load
        # or refresh (e.g. to rewrite the Postfix transport map); it logs its own failures.
        self._on_current = on_current

    @property
    def current(self) -> Directory | None:
        """The last good directory, or None before anything was accepted."""
        return None if self._stored is None else self._stored.directory

    async def load(self, now: datetime) -> bool:
        """Take the last good version from the state directory; False if there is none."""
        try:
            self._stored = await asyncio.to_thread(self.store.load, now)
        except (DirectoryError, OSError) as error:
            log.error("directory state refused, not used: %s", error)
            return False
        if self._stored is not None:
            log.info("directory serial %d loaded from state", self._stored.directory.serial)
            self._warn_if_stale(now)
            await self._tell(self._stored.directory)
        return self._stored is not None

    async def refresh_once(self, now: datetime) -> bool:
        """Fetch and accept once; True if a newer version became current."""
        try:
            stored, changed = await asyncio.to_thread(self._fetch_and_accept, now)
        except (FetchError, DirectoryError, OSError) as error:
            kept = "none" if self._stored is None else self._stored.directory.serial
            log.warning("directory refresh refused (keeping serial %s): %s", kept, error)
            self._warn_if_stale(now)
            return False
        self._stored = stored
        if changed:
            log.info("directory serial %d accepted (%s)", stored.directory.serial, stored.digest)
        self._warn_if_stale(now)
        await self._tell(stored.directory)
        return changed

    async def _tell(self, directory: Directory) -> None:
        if self._on_current is not None:
            await asyncio.to_thread(self._on_current, directory)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Load the state, then refresh every ``interval`` seconds until ``stop`` is set."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if self._stored is None:
            await self.load(self._clock())
        while not stop.is_set():
            await self.refresh_once(self._clock())
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                continue

    def _fetch_and_accept(self, now: datetime) -> tuple[Stored, bool]:
        return self.store.accept(self.source.fetch(), now)

    def _warn_if_stale(self, now: datetime) -> None:
        if self._stored is not None and self._stored.is_stale(now):
            log.warning(
                "directory serial %d is past its next update (%s); serving it until a newer "
                "version is accepted",
                self._stored.directory.serial,
                self._stored.directory.next_update.isoformat(),
            )
