"""The retry policy and an attempt's settlement, as pure functions of values and a given time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securemail.queue import Direction, Disposition, Entry, Recipient, RetryPolicy, State
from securemail.queue.retry import settle
from securemail.replies import Reply, ok
from tests.queue.conftest import NOW

POLICY = RetryPolicy()
BUSY = Reply(451, "4.4.1", "connection refused", "peer-unavailable")
GONE = Reply(550, "5.1.1", "no such user", "unknown-recipient")


def _entry(*addresses: str, attempts: int = 0) -> Entry:
    people = tuple(Recipient(a, Disposition.PENDING, 0, None, None, NOW) for a in addresses)
    return Entry(
        "id", Direction.OUTBOUND, State.ACTIVE, "mail", "org", "a@x.nz", None, "local", None, 1,
        NOW, NOW, attempts, None, None, False, people,
    )  # fmt: skip


def test_schedule_then_last_interval_repeats() -> None:
    """Delays follow the schedule, the last one repeating (RFC 5321 §4.5.4.1)."""
    delays = [POLICY.next_attempt(NOW, n, NOW) for n in range(1, 8)]
    assert [d - NOW for d in delays if d] == [
        *POLICY.schedule,
        POLICY.schedule[-1],
        POLICY.schedule[-1],
    ]


def test_last_attempt_at_the_deadline_then_none() -> None:
    """A retry past the lifetime moves to the deadline; at the deadline the answer is give up."""
    deadline = NOW + POLICY.max_lifetime
    assert POLICY.next_attempt(NOW, 9, deadline - timedelta(minutes=5)) == deadline
    assert POLICY.next_attempt(NOW, 10, deadline) is None


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=10**7))
def test_never_after_the_deadline(attempts: int, seconds: int) -> None:
    """Whatever the attempt count and time, the next attempt is never after the deadline."""
    now = NOW + timedelta(seconds=seconds)
    due = POLICY.next_attempt(NOW, attempts, now)
    deadline = NOW + POLICY.max_lifetime
    assert (due is None) == (now >= deadline)
    assert due is None or now < due <= deadline


def test_warning_due_once_after_warn_after() -> None:
    """The delay warning is due after warn_after, and only while not sent."""
    assert not POLICY.warning_due(NOW, NOW + POLICY.warn_after - timedelta(seconds=1), False)
    assert POLICY.warning_due(NOW, NOW + POLICY.warn_after, False)
    assert not POLICY.warning_due(NOW, NOW + POLICY.warn_after, True)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"schedule": ()}, "at least one"),
        ({"schedule": (timedelta(0),)}, "positive"),
        ({"warn_after": timedelta(days=6)}, "shorter than"),
        ({"warn_after": -timedelta(hours=1)}, "positive"),
    ],
)
def test_bad_policies_are_refused(settings: dict[str, object], error: str) -> None:
    """A policy that cannot work is refused with a message naming the problem."""
    with pytest.raises(ValueError, match=error):
        RetryPolicy(**settings)  # type: ignore[arg-type]


def test_decreasing_schedule_is_allowed() -> None:
    """The schedule need not increase (an operator may retry fast after a slow start)."""
    assert RetryPolicy((timedelta(hours=1), timedelta(minutes=1))).schedule[1] == timedelta(
        minutes=1
    )


def test_settle_mixed_outcome() -> None:
    """One attempt with 250, 451 and 550 delivers, defers and bounces one recipient each."""
    outcome = settle(
        POLICY,
        _entry("a@m.nz", "b@m.nz", "c@m.nz"),
        {"A@m.nz": ok(), "b@m.nz": BUSY, "c@m.nz": GONE},
        NOW,
    )
    assert (outcome.state, outcome.next_attempt_at, outcome.reply) == (
        State.DEFERRED,
        NOW + POLICY.schedule[0],
        BUSY,
    )
    assert [(c.address, c.event) for c in outcome.changes] == [
        ("a@m.nz", "delivered"),
        ("c@m.nz", "bounced"),
        ("b@m.nz", "deferred"),
    ]


def test_settle_expiry_bounces_untried_recipients_too() -> None:
    """At the end of the lifetime every pending recipient expires, tried in this attempt or not."""
    late = NOW + POLICY.max_lifetime
    outcome = settle(POLICY, _entry("a@m.nz", "b@m.nz", attempts=40), {"a@m.nz": BUSY}, late)
    assert outcome.state is State.BOUNCED and outcome.expired
    assert [(c.address, c.event, c.reply) for c in outcome.changes] == [
        ("a@m.nz", "expired", BUSY),
        ("b@m.nz", "expired", None),
    ]
