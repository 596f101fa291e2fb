"""Bulk queue actions: choose entries (ids, ALL, filters) and hold, release, retry, delete
or purge them all, or only say what would change (a dry run).

The one place the CLI (``securemail queue hold … ALL --sender X --dry-run``) and the
console's queue page (checkboxes and one action) choose and steer many entries, so both
refuse the same things in the same words. A selection is read first, then each entry is
steered in its own store transaction: an entry that changed state in between is refused by
the store (``queue-bad-state``) and reported, never forced.

Security: ids and filter values come from operators (argv, stdin, a form): they reach the
database only as bound parameters through :class:`~securemail.queue.steering.Steering`.
An action applies only where :func:`operations.actions_for` allows it (delivered mail is
never held or retried); deleting or purging an entry that holds receipt evidence needs
``force``, as a single delete does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from securemail import operations
from securemail.errors import SecureMailError
from securemail.operations import OperationReason
from securemail.queue import Entry, State
from securemail.queue.steering import Steering

EVERY = "ALL"  # the word that selects every entry (postsuper's ALL)
MAX_SELECTED = 100_000  # a larger selection is refused: narrow it with a filter
PURGEABLE = (State.DELIVERED, State.BOUNCED)  # and QUARANTINED when asked


class Action(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    RETRY = "retry"
    DELETE = "delete"
    PURGE = "purge"


class BulkReason(StrEnum):
    EMPTY_SELECTION = "empty-selection"
    TOO_MANY = "selection-too-large"
    NOT_APPLICABLE = "action-not-applicable"


class BulkError(SecureMailError[BulkReason]):
    """A bulk selection refused before anything changed."""


@dataclass(frozen=True)
class Selection:
    """Which entries an action is for: the ``ids`` given (``by_id``: ids were asked for,
    even if none came, as from an empty stdin: then none is chosen), or every entry
    (``every``), narrowed by any of ``states``, a ``sender`` and a ``recipient`` (exact
    address, any case) and a ``reason`` code; for a purge also ``before`` (last changed
    before it)."""

    ids: tuple[str, ...] = ()
    every: bool = False
    by_id: bool = False
    states: tuple[State, ...] = ()
    sender: str | None = None
    recipient: str | None = None
    reason: str | None = None
    before: datetime | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.states or self.sender or self.recipient or self.reason)


@dataclass(frozen=True)
class Outcome:
    """What the action did (or would do) to one entry: ``done`` or why not."""

    entry_id: str
    state: str  # before the action ("" for an unknown id)
    done: bool
    reason: str | None = None  # a reason code when not done
    detail: str = ""


@dataclass(frozen=True)
class Report:
    action: Action
    dry_run: bool
    outcomes: tuple[Outcome, ...]

    @property
    def changed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.done)

    @property
    def refused(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.done)


def parse_ids(
    words: Sequence[str], stdin_lines: Sequence[str] = ()
) -> tuple[tuple[str, ...], bool]:
    """The entry ids named by ``words`` (``ALL``; ``-`` for the first word of each line of
    ``stdin_lines``, as ``queue list`` prints them), and whether ALL was among them."""
    ids: list[str] = []
    every = False
    for word in words:
        if word == EVERY:
            every = True
        elif word == "-":
            ids.extend(line.split()[0] for line in stdin_lines if _is_id_line(line))
        else:
            ids.append(word)
    return tuple(dict.fromkeys(ids)), every


def _is_id_line(line: str) -> bool:
    """A line that starts with an id: not blank, not a comment, not an indented
    continuation (``queue list`` puts the last reply there), not a ``--`` footer."""
    return bool(line.strip()) and not line[0].isspace() and line[0] not in "#-"


def select(store: Steering, selection: Selection) -> tuple[list[Entry], list[Outcome]]:
    """The entries ``selection`` names, and an outcome for each id that names none."""
    named = bool(selection.ids) or selection.by_id
    if not (named or selection.every or selection.filtered):
        detail = "give entry ids, ALL, - (ids on stdin) or a filter (--state, --sender, …)"
        raise BulkError(BulkReason.EMPTY_SELECTION, detail)
    if named and not selection.every:
        found, missing = _by_id(store, selection.ids)
        chosen = [e for e in found if _matches(e, selection)]
    else:
        chosen, missing = list(_scan(store, selection)), []
    if selection.before is not None:
        recent = {e.id for e in _scan(store, selection, since=selection.before)}
        chosen = [e for e in chosen if e.id not in recent]
    return chosen, missing


def _by_id(store: Steering, ids: Sequence[str]) -> tuple[list[Entry], list[Outcome]]:
    if len(ids) > MAX_SELECTED:
        raise BulkError(BulkReason.TOO_MANY, f"{len(ids)} ids: at most {MAX_SELECTED}")
    found, missing = [], []
    for entry_id in ids:
        entry = store.get(entry_id)
        if entry is None:
            reason = OperationReason.NOT_FOUND
            missing.append(Outcome(entry_id, "", False, reason, f"no queue entry {entry_id}"))
        else:
            found.append(entry)
    return found, missing


def _scan(store: Steering, selection: Selection, since: datetime | None = None) -> Iterator[Entry]:
    """Every entry the filters match, oldest first, one page of the store at a time."""
    text = selection.sender or selection.recipient
    offset, seen = 0, 0
    while True:
        page = store.list(
            selection.states or None,
            None,
            operations.MAX_PAGE,
            reason=selection.reason,
            text=text,
            changed_since=since,
            offset=offset,
        )
        for entry in page:
            if _matches(entry, selection):
                seen += 1
                if seen > MAX_SELECTED:
                    detail = f"more than {MAX_SELECTED} entries: narrow it with a filter"
                    raise BulkError(BulkReason.TOO_MANY, detail)
                yield entry
        if len(page) < operations.MAX_PAGE:
            return
        offset += len(page)


def _matches(entry: Entry, selection: Selection) -> bool:
    """Whether ``entry`` passes the filters (the store's text match is a substring one;
    sender and recipient must be the whole address)."""
    if selection.states and entry.state not in selection.states:
        return False
    if selection.sender is not None and entry.mail_from.lower() != selection.sender.lower():
        return False
    if selection.recipient is not None:
        wanted = selection.recipient.lower()
        if all(r.address.lower() != wanted for r in entry.recipients):
            return False
    if selection.reason is not None:
        reasons = {entry.reason, *(r.reason for r in entry.recipients)}
        return selection.reason in reasons
    return True


def applies(action: Action, entry: Entry, *, quarantined: bool = False) -> str | None:
    """None if ``action`` applies to ``entry`` in its state, else why not (in words)."""
    if action is Action.PURGE:
        purgeable = (*PURGEABLE, State.QUARANTINED) if quarantined else PURGEABLE
        if entry.state in purgeable:
            return None
        extra = " (quarantined ones with --quarantined)" if entry.state is State.QUARANTINED else ""
        return f"{entry.state.value} entries are not purged: only finished ones{extra}"
    if action.value in operations.actions_for(entry):
        return None
    if entry.state is State.ACTIVE:
        return "it is being delivered now: try again when the attempt ends"
    return f"{entry.state.value} entries cannot be {_PAST[action]}"


_PAST = {
    Action.HOLD: "held",
    Action.RELEASE: "released (only held ones)",
    Action.RETRY: "retried",
    Action.DELETE: "deleted",
}


def run(
    store: Steering,
    action: Action,
    entries: Sequence[Entry],
    now: datetime,
    *,
    dry_run: bool = False,
    force: bool = False,
    quarantined: bool = False,
) -> list[Outcome]:
    """Apply ``action`` to each entry it applies to (or, with ``dry_run``, only say so)."""
    refused, chosen = [], []
    for entry in entries:
        why_not = refusal(action, entry, force=force, quarantined=quarantined)
        if why_not is None:
            chosen.append(entry)
        else:
            refused.append(why_not)
    if dry_run:
        done = [Outcome(e.id, e.state.value, True) for e in chosen]
    elif action is Action.PURGE:
        done = _purge(store, chosen, now, force=force)
    else:
        done = [_steer(store, action, e, now, force=force) for e in chosen]
    return refused + done


def refusal(
    action: Action, entry: Entry, *, force: bool = False, quarantined: bool = False
) -> Outcome | None:
    """Why ``action`` is refused for ``entry`` (its state, or evidence without ``force``)."""
    why_not = applies(action, entry, quarantined=quarantined)
    if why_not is not None:
        return Outcome(entry.id, entry.state.value, False, BulkReason.NOT_APPLICABLE, why_not)
    held = operations.evidence_of(entry) if action in (Action.DELETE, Action.PURGE) else []
    if held and not force:
        detail = f"holds receipt evidence for {', '.join(held)}: export it, then use --force"
        return Outcome(entry.id, entry.state.value, False, OperationReason.EVIDENCE, detail)
    return None


def _steer(store: Steering, action: Action, entry: Entry, now: datetime, *, force: bool) -> Outcome:
    try:
        if action is Action.DELETE:
            operations.delete(store, entry.id, now, force=force)
        else:
            getattr(operations, action.value)(store, entry.id, now)
    except SecureMailError as error:
        return Outcome(entry.id, entry.state.value, False, error.reason.value, error.detail)
    return Outcome(entry.id, entry.state.value, True)


def _purge(
    store: Steering, entries: Sequence[Entry], now: datetime, *, force: bool
) -> list[Outcome]:
    """Purge in batches of one page; the store checks each entry's state again, so one
    that changed since it was chosen stays, and is reported."""
    outcomes = []
    states = (*PURGEABLE, State.QUARANTINED)
    for start in range(0, len(entries), operations.MAX_PAGE):
        batch = entries[start : start + operations.MAX_PAGE]
        ids = [e.id for e in batch]
        store.purge(states, now, include_evidence=force, ids=ids)
        for entry in batch:
            if store.get(entry.id) is None:
                outcomes.append(Outcome(entry.id, entry.state.value, True))
            else:
                detail = f"{entry.id} changed while it was purged: it stays"
                reason = "queue-bad-state"
                outcomes.append(Outcome(entry.id, entry.state.value, False, reason, detail))
    return outcomes


def steer(
    store: Steering,
    action: Action,
    selection: Selection,
    now: datetime,
    *,
    dry_run: bool = False,
    force: bool = False,
    quarantined: bool = False,
) -> Report:
    """Choose the entries ``selection`` names and apply ``action`` to them: one report."""
    entries, missing = select(store, selection)
    done = run(store, action, entries, now, dry_run=dry_run, force=force, quarantined=quarantined)
    return Report(action, dry_run, tuple(missing + done))
