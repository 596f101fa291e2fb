"""A fair share of a listener's door: per-source and per-member limits, and time limits.

THREATS.md K (door exhaustion): one host holding idle sessions, NOOP after NOOP, must not
keep other members out. The listener's slots are shared by every client, so each source
address, and each member (known by its TLS client certificate), may hold only a share of
them; a session must complete TLS, and then reach MAIL, within short deadlines, and no
session lives longer than ``max_session``. On stop, sessions that are not in the middle of
a DATA transfer are dropped at once, and a transfer gets ``drain_deadline`` to finish.

:class:`SourceQuota` bounds what each source sent that ended quarantined (counted in the
queue); over the quota, the peer listener answers DATA with a 4xx until the hour has
passed, so unauthenticated garbage cannot grow the store without bound.

None means "no limit" (the relay, ordinary and submission listeners' default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta


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


@dataclass(frozen=True)
class SourceQuota:
    """How much peer mail from one source address may end quarantined: ``limit`` entries
    within ``window`` (None: no limit).

    The count is the queue's (entries from the source quarantined within the window, see
    :meth:`securemail.queue.manager.QueueManager.quarantined_from`), so every process and
    node sharing the queue sees the same one, and a restart forgets nothing.
    """

    limit: int | None
    window: timedelta = timedelta(hours=1)

    def exceeded_by(self, count: int) -> bool:
        """Whether ``count`` quarantined entries in the window reach the limit."""
        return self.limit is not None and count >= self.limit
