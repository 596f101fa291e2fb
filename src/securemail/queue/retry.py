"""When a deferred entry is tried again, is warned about, expires; what an attempt settles.

Pure: values in, values out, no clock. RFC 5321 §4.5.4.1: retry after a delay of at least
30 minutes for most attempts, and give up after 4 to 5 days; the schedule here starts shorter
(a peer gateway restarting is the common case) and its last interval repeats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from securemail.queue.model import Disposition, Entry, State
from securemail.replies import Reply

_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts, the delay warning time and the maximum queue lifetime."""

    schedule: tuple[timedelta, ...] = (
        _MINUTE,
        5 * _MINUTE,
        15 * _MINUTE,
        30 * _MINUTE,
        60 * _MINUTE,
    )
    warn_after: timedelta = timedelta(hours=4)
    max_lifetime: timedelta = timedelta(days=5)

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("retry schedule: at least one delay is needed")
        for delay in self.schedule:
            if delay <= timedelta(0):
                raise ValueError(f"retry schedule: every delay must be positive, not {delay}")
        if self.warn_after <= timedelta(0):
            raise ValueError(f"warn_after must be positive, not {self.warn_after}")
        if self.warn_after >= self.max_lifetime:
            raise ValueError(
                f"warn_after ({self.warn_after}) must be shorter than "
                f"max_lifetime ({self.max_lifetime})"
            )

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed attempts, or None: give up now.

        The delay is ``schedule[attempts - 1]``, the last one repeating. A retry that would
        fall after the deadline (``created_at + max_lifetime``) is moved to the deadline, so
        the last attempt happens exactly at the end of the lifetime; at or past the deadline
        the answer is None.
        """
        deadline = created_at + self.max_lifetime
        if now >= deadline:
            return None
        delay = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
        return min(now + delay, deadline)

    def warning_due(self, created_at: datetime, now: datetime, warned: bool) -> bool:
        """True once an entry has waited ``warn_after`` and its sender was not warned yet."""
        return not warned and now - created_at >= self.warn_after


@dataclass(frozen=True)
class Change:
    """One recipient's outcome of an attempt: its new disposition and the event to write.

    ``reply`` is None for a recipient that was not tried in this attempt but expired with it.
    """

    address: str
    disposition: Disposition
    event: str
    reply: Reply | None


@dataclass(frozen=True)
class Settlement:
    """What one attempt does to an entry: its next state, when it is due, recipient changes."""

    state: State
    next_attempt_at: datetime | None
    changes: tuple[Change, ...]
    reply: Reply | None  # the attempt's decisive reply: a temporary one, else a refusal
    expired: bool


def settle(
    policy: RetryPolicy,
    entry: Entry,
    results: Mapping[str, Reply],
    now: datetime,
) -> Settlement:
    """Apply one attempt's per-recipient ``results`` to ``entry`` (counting this attempt).

    A 2xx delivers, a 5xx bounces, a 4xx leaves the recipient pending; recipients absent
    from ``results`` are unchanged. With nobody pending the entry is DELIVERED if anyone
    was delivered, else BOUNCED; otherwise it is DEFERRED by ``policy`` or, past its
    lifetime, every pending recipient bounces as expired.
    """
    tried = {address.casefold(): reply for address, reply in results.items()}
    changes: list[Change] = []
    left: list[tuple[str, Reply | None]] = []
    for address in entry.pending():
        reply = tried.get(address.casefold())
        if reply is not None and reply.ok:
            changes.append(Change(address, Disposition.DELIVERED, "delivered", reply))
        elif reply is not None and reply.permanent:
            changes.append(Change(address, Disposition.BOUNCED, "bounced", reply))
        else:
            left.append((address, reply))
    decisive = min(results.values(), key=_severity, default=None)
    due = policy.next_attempt(entry.created_at, entry.attempts + 1, now) if left else None
    if due is not None:
        changes += [Change(a, Disposition.PENDING, "deferred", r) for a, r in left if r is not None]
        return Settlement(State.DEFERRED, due, tuple(changes), decisive, expired=False)
    changes += [Change(a, Disposition.BOUNCED, "expired", r) for a, r in left]
    delivered = any(r.disposition is Disposition.DELIVERED for r in entry.recipients) or any(
        c.disposition is Disposition.DELIVERED for c in changes
    )
    state = State.DELIVERED if delivered else State.BOUNCED
    return Settlement(state, None, tuple(changes), decisive, expired=bool(left))


def _severity(reply: Reply) -> int:
    """Temporary first (it is why the entry waits), then permanent, then success."""
    return 0 if reply.temporary else 1 if reply.permanent else 2
