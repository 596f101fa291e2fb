"""A fair share of a listener's door: per-source and per-member limits, and time limits.

THREATS.md K (door exhaustion): one host holding idle sessions, NOOP after NOOP, must not
keep other members out. The listener's slots are shared by every client, so each source
address, and each member (known by its TLS client certificate), may hold only a share of
them; a session must complete TLS, and then reach MAIL, within short deadlines, and no
session lives longer than ``max_session``. On stop, sessions that are not in the middle of
a DATA transfer are dropped at once, and a transfer gets ``drain_deadline`` to finish.

:class:`SourceQuota` counts what each source sent that ended quarantined; over the quota,
the peer listener answers DATA with a 4xx until the hour has passed, so unauthenticated
garbage cannot grow the store without bound.

None means "no limit" (the relay, ordinary and submission listeners' default).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Door:
    """Limits on a listener's sessions beyond its total (``max_connections``)."""

    per_source: int | None = None  # concurrent sessions from one IP address
    per_member: int | None = None  # concurrent sessions of one member (client certificate)
    handshake_timeout: float | None = None  # connect -> TLS up (listeners that require TLS)
    pre_mail_timeout: float | None = None  # connect -> first MAIL accepted
    max_session: float | None = None  # a session's whole life, in seconds
    drain_deadline: float = 5.0  # on stop: time a DATA transfer in progress may take

    def __post_init__(self) -> None:
        for name in ("per_source", "per_member"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("handshake_timeout", "pre_mail_timeout", "max_session"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.drain_deadline < 0:
            raise ValueError("drain_deadline must not be negative")


def at_limit(keys: Iterable[str | None], key: str | None, limit: int | None) -> bool:
    """Whether ``limit`` of ``keys`` (one per session already let in) equal ``key``: one
    more would be over it."""
    return limit is not None and key is not None and sum(1 for k in keys if k == key) >= limit


class SourceQuota:
    """Quarantined messages per source address in a sliding window (one process's view).

    The inbound service calls :meth:`record` when it quarantines a message, the peer
    listener's admission :meth:`exceeded` before it queues one. Kept in memory: a restart
    forgets it, and with several inbound processes each counts what it saw, which bounds
    the growth as well (by the number of processes).
    """

    def __init__(self, limit: int | None, window: timedelta = timedelta(hours=1)) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, collections.deque[datetime]] = {}

    def record(self, source: str, now: datetime) -> None:
        if self.limit is None:
            return
        times = self._seen.setdefault(source, collections.deque())
        self._forget_before(times, now)
        times.append(now)

    def exceeded(self, source: str, now: datetime) -> bool:
        times = self._seen.get(source)
        if self.limit is None or times is None:
            return False
        self._forget_before(times, now)
        if not times:
            del self._seen[source]  # a quiet source leaves no trace: the map cannot grow
            return False
        return len(times) >= self.limit

    def _forget_before(self, times: collections.deque[datetime], now: datetime) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
