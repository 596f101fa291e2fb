"""Keep a gateway's directory current: fetch, verify and accept on a schedule.

Security: every fetched version goes through :meth:`DirectoryStore.accept`; a refused one
is logged with its reason code and the last good version stays in use. With a records
database, a newly accepted serial (``directory.accepted``) and a refused version
(``directory.refused``, once per distinct refusal) are also records (class security;
serials, digests and reason codes only). A stale directory
is still served, with a warning, because refusing all mail when the operator is late to
publish is worse than using last week's member list; the operator is told in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy import Engine

from securemail.directory.document import DirectoryError
from securemail.directory.fetch import FetchError, Source
from securemail.directory.model import Directory
from securemail.directory.store import DirectoryStore, Stored
from securemail.records.chain import NewRecord, RecordClass, record

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
        records: Engine | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self._clock = clock
        self._stored: Stored | None = None
        # Called in a worker thread with the current directory after each successful load
        # or refresh (e.g. to rewrite the Postfix transport map); it logs its own failures.
        self._on_current = on_current
        self._records = records  # the node database whose records log hears of changes
        self._last_refusal: str | None = None

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
            if isinstance(error, DirectoryError):
                await self._refused(error, str(kept), now)
            self._warn_if_stale(now)
            return False
        self._stored = stored
        if changed:
            log.info("directory serial %d accepted (%s)", stored.directory.serial, stored.digest)
            self._last_refusal = None  # a later refusal is news again
            details = {"serial": str(stored.directory.serial), "digest": stored.digest}
            await self._record(now, "directory.accepted", details)
        self._warn_if_stale(now)
        await self._tell(stored.directory)
        return changed

    async def _refused(self, error: DirectoryError, kept: str, now: datetime) -> None:
        """Record a refusal, once until another refusal or an acceptance (a bad version
        is fetched again at every interval)."""
        seen = f"{error.reason.value} {error.detail}"
        if seen == self._last_refusal:
            return
        details = {"reason": error.reason.value, "detail": error.detail[:500], "kept": kept}
        await self._record(now, "directory.refused", details)
        self._last_refusal = seen

    async def _record(self, now: datetime, event: str, details: Mapping[str, str]) -> None:
        if self._records is None:
            return
        new = NewRecord(now, RecordClass.SECURITY, event, details=details)
        try:
            await asyncio.to_thread(record, self._records, new)
        except Exception:  # the directory stays current; the node's log says what was lost
            log.exception("records: the %s record could not be written", event)

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
