"""What an operator can see and do on a node: the one service layer the CLI and the web share.

Node status, the queue (filtered lists, an entry's headers and history, hold / release /
retry / delete), quarantine, recent failures, the directory's members and certificates,
this node's own certificates, message tracking, and login lockouts. Every function takes
the values it works on (a queue store, the directory, ``now``) and returns values; none
reads the clock or keeps state, and each store call is its own transaction, so callers on
an event loop run them off it (``await web.db(fn, ...)``).

Security: entry ids, filters and message ids come from operators and API clients: they
reach the database only as bound parameters (see :meth:`QueueStore.list`). An entry's
detail shows its header block only, never a body. Deleting an entry that holds receipt
evidence needs ``force``, as purging does. Nothing here returns key material: certificates
are public and private keys are never opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import StrEnum

from cryptography import x509
from sqlalchemy import Engine

from securemail.accounts.service import AccountService
from securemail.accounts.throttle import ACCOUNT, SOURCE, Key, Lock, LoginThrottle, ThrottlePolicy
from securemail.config.node import NodeConfig
from securemail.directory.model import Directory, Member
from securemail.errors import SecureMailError
from securemail.queue import Direction, Entry, Event, ReceiptState, State
from securemail.queue.access import OperatorQueue
from securemail.queue.holds import KeyHolds
from securemail.queue.steering import Steering
from securemail.queue.upstream import Backlog, UpstreamBacklog
from securemail.smime.keys import load_certificate

EVIDENCE = (ReceiptState.AWAITING, ReceiptState.RECEIPTED)
FAILED = (State.BOUNCED, State.QUARANTINED)
MAX_HEADERS = 200  # a header block longer than this is shown cut, not refused
# How the queue's history events read in a sender's timeline (``securemail track``).
TIMELINE = {
    "accepted": "queued",
    "protected": "signed and encrypted",
    "delivered": "relayed",
    "deferred": "deferred",
    "bounced": "failed",
    "expired": "failed (expired)",
    "receipted": "receipted",
    "receipt-expired": "no receipt in time",
    "receipt-late": "receipt came too late",
    "business-answer": "business answer",  # an Invoice Response (issue 21)
}


class OperationReason(StrEnum):
    NOT_FOUND = "queue-entry-not-found"
    EVIDENCE = "entry-holds-evidence"
    NOT_SENT = "message-not-sent"
    NOT_LOCKED = "not-locked"
    BAD_SCOPE = "bad-lock-scope"
    BAD_PAGE = "bad-page"


class OperationError(SecureMailError[OperationReason]):
    """An operation refused: no such entry or message, or evidence that needs ``force``."""


MAX_PAGE = 500  # entries in one page of a listing; a larger page is refused
DEFAULT_PAGE = 100
MAX_OFFSET = 2**31 - 1  # any queue is smaller; a larger offset is refused, not sent to SQL


@dataclass(frozen=True)
class QueueFilter:
    """Which queue entries to list: any of ``states`` (all when empty), one direction, a
    reason code, and text in the sender, Message-ID or a recipient; and which page of them
    (``limit`` entries after ``offset``, newest first unless ``oldest_first``)."""

    states: tuple[State, ...] = ()
    direction: Direction | None = None
    reason: str | None = None
    text: str | None = None
    limit: int = DEFAULT_PAGE
    offset: int = 0
    oldest_first: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise OperationError(
                OperationReason.BAD_PAGE, f"limit must be 1 to {MAX_PAGE}, not {self.limit}"
            )
        if not 0 <= self.offset <= MAX_OFFSET:
            raise OperationError(
                OperationReason.BAD_PAGE, f"offset must be 0 to {MAX_OFFSET}, not {self.offset}"
            )


@dataclass(frozen=True)
class Page:
    """One page of a listing: its entries, where it starts, and how many match in all.

    A listing never stops silently: ``more`` says whether entries follow this page, and
    ``total`` how many there are.
    """

    entries: tuple[Entry, ...]
    offset: int
    limit: int
    total: int
    oldest_first: bool = False

    @property
    def more(self) -> bool:
        return self.offset + len(self.entries) < self.total

    @property
    def next_offset(self) -> int | None:
        return self.offset + len(self.entries) if self.more else None


@dataclass(frozen=True)
class DirectorySummary:
    """The directory a node works from: its serial, age and how many members."""

    serial: int
    issued_at: datetime
    next_update: datetime
    members: int
    stale: bool


@dataclass(frozen=True)
class NodeStatus:
    name: str
    region: str
    organisations: tuple[tuple[str, tuple[str, ...], str], ...]  # org id, domains, delivery
    directory: DirectorySummary | None
    counts: dict[State, int]


@dataclass(frozen=True)
class EntryDetail:
    """One entry, its header block (never the body) and its history."""

    entry: Entry
    headers: tuple[tuple[str, str], ...]
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Certificate:
    """A certificate as an operator checks it: whose, which serial, valid when."""

    role: str  # "signing current", "encryption next", …
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    expired: bool
    days_left: int


@dataclass(frozen=True)
class MemberView:
    member: Member
    certificates: tuple[Certificate, ...]


@dataclass(frozen=True)
class OrgKeysView:
    """The certificates of one organisation this node serves (from its key folder)."""

    org_id: str
    certificates: tuple[Certificate, ...]


@dataclass(frozen=True)
class Step:
    time: datetime
    what: str
    detail: str


@dataclass(frozen=True)
class RecipientTrack:
    """One recipient of a message sent: its receipt state and its timeline."""

    entry_id: str
    recipient: str
    receipt: str
    timeline: tuple[Step, ...]
    evidence: str | None


def directory_summary(directory: Directory | None, now: datetime) -> DirectorySummary | None:
    if directory is None:
        return None
    return DirectorySummary(
        directory.serial,
        directory.issued_at,
        directory.next_update,
        len(directory.members),
        directory.is_stale(now),
    )


def node_status(
    config: NodeConfig, store: Steering, directory: Directory | None, now: datetime
) -> NodeStatus:
    """The node's organisations, its directory and its queue counts by state."""
    organisations = tuple((o.org_id, o.domains, o.delivery.kind) for o in config.organisations)
    summary = directory_summary(directory, now)
    return NodeStatus(config.name, config.region, organisations, summary, store.counts())


def list_entries(
    store: Steering, wanted: QueueFilter, *, changed_since: datetime | None = None
) -> Page:
    """The page of queue entries ``wanted`` asks for, and how many match in all."""
    states, reason, text = wanted.states or None, wanted.reason or None, wanted.text or None
    entries = store.list(
        states,
        wanted.direction,
        wanted.limit,
        reason=reason,
        text=text,
        changed_since=changed_since,
        offset=wanted.offset,
        newest_first=not wanted.oldest_first,
    )
    total = store.total(
        states, wanted.direction, reason=reason, text=text, changed_since=changed_since
    )
    return Page(tuple(entries), wanted.offset, wanted.limit, total, wanted.oldest_first)


def entry(store: Steering, entry_id: str) -> Entry:
    found = store.get(entry_id)
    if found is None:
        raise OperationError(OperationReason.NOT_FOUND, f"no queue entry {entry_id}")
    return found


def entry_detail(store: Steering, entry_id: str) -> EntryDetail:
    """An entry with its header block and history; the body is never returned."""
    found = entry(store, entry_id)
    return EntryDetail(found, header_block(store.body(entry_id)), tuple(store.events(entry_id)))


def header_block(message: bytes) -> tuple[tuple[str, str], ...]:
    """The (name, value) pairs of a message's header block, unfolded, in order."""
    end = message.find(b"\r\n\r\n")
    end = message.find(b"\n\n") if end < 0 else end
    head = message if end < 0 else message[:end]
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    return tuple(
        (name, " ".join(str(value).split())) for name, value in parsed.items()[:MAX_HEADERS]
    )


def hold(store: Steering, entry_id: str, now: datetime) -> Entry:
    return store.hold(entry_id, now)


def release(store: Steering, entry_id: str, now: datetime) -> Entry:
    return store.release(entry_id, now)


def retry(store: Steering, entry_id: str, now: datetime) -> Entry:
    return store.retry(entry_id, now)


_ACTIONS_BY_STATE = {
    State.INCOMING: ("hold", "delete"),
    State.DEFERRED: ("hold", "retry", "delete"),
    State.HELD: ("release", "retry", "delete"),
    State.ACTIVE: (),  # being tried: nothing until the attempt ends
}


def actions_for(found: Entry) -> tuple[str, ...]:
    """The operator actions that apply to ``found`` in its state (the store refuses the
    others): a finished entry can only be deleted, never held or retried."""
    return _ACTIONS_BY_STATE.get(found.state, ("delete",))


def evidence_of(found: Entry) -> list[str]:
    """The recipients of ``found`` that hold, or await, a receipt."""
    return [r.address for r in found.recipients if r.receipt_state in EVIDENCE]


def delete(store: Steering, entry_id: str, now: datetime, *, force: bool = False) -> None:
    """Delete an entry for good; one holding receipt evidence only with ``force``."""
    held = evidence_of(entry(store, entry_id))
    if held and not force:
        raise OperationError(
            OperationReason.EVIDENCE,
            f"{entry_id} holds receipt evidence for {', '.join(held)}: "
            "export it, then delete with --force",
        )
    if not store.delete(entry_id, now):
        raise OperationError(OperationReason.NOT_FOUND, f"no queue entry {entry_id}")


def upstream_backlog(store: UpstreamBacklog) -> list[Backlog]:
    """An upstream queue's backlog per member (securemail.queue.upstream)."""
    return store.backlog()


def held_for_key(store: KeyHolds) -> dict[str, int]:
    """Per organisation, the mail held until its key is installed (``key-unavailable``)."""
    return store.held_for_key()


def quarantine(store: Steering, page: QueueFilter = QueueFilter()) -> Page:
    """Quarantined entries: one page of ``page`` (its states are ignored)."""
    return list_entries(store, replace(page, states=(State.QUARANTINED,)))


def recent_failures(
    store: Steering,
    now: datetime,
    hours: int = 24,
    page: QueueFilter = QueueFilter(),
) -> Page:
    """Entries bounced or quarantined in the last ``hours``: one page of ``page``."""
    since = now - timedelta(hours=hours)
    return list_entries(store, replace(page, states=tuple(FAILED)), changed_since=since)


def certificate(role: str, cert: x509.Certificate, now: datetime) -> Certificate:
    after = cert.not_valid_after_utc
    return Certificate(
        role=role,
        subject=cert.subject.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc,
        not_after=after,
        expired=after < now,
        days_left=(after - now).days,
    )


def directory_members(directory: Directory | None, now: datetime) -> list[MemberView]:
    """Every member of the directory with its signing and encryption certificates."""
    if directory is None:
        return []
    views = []
    for member in directory.members:
        certs = []
        for purpose, pair in (("signing", member.signing), ("encryption", member.encryption)):
            certs.append(certificate(f"{purpose} current", pair.current, now))
            if pair.next is not None:
                certs.append(certificate(f"{purpose} next", pair.next, now))
        views.append(MemberView(member, tuple(certs)))
    return views


def node_keys(config: NodeConfig, now: datetime) -> list[OrgKeysView]:
    """The certificates in each organisation's key folder: current, next and retired.

    Only ``certs/*.pem`` are read; private keys stay closed. A file that cannot be read
    is shown as an unreadable certificate rather than hiding the others.
    """
    views = []
    for org in config.organisations:
        certs = []
        for path in sorted((org.keys / "certs").glob("*.pem")):
            role = path.stem.replace("-", " ")
            try:
                certs.append(certificate(role, load_certificate(path.read_bytes()), now))
            except (OSError, ValueError) as error:
                certs.append(_unreadable(role, str(error), now))
        views.append(OrgKeysView(org.org_id, tuple(certs)))
    return views


def _unreadable(role: str, why: str, now: datetime) -> Certificate:
    return Certificate(role, f"unreadable: {why}", "", now, now, True, 0)


def track(
    store: OperatorQueue,
    message_id: str,
    *,
    sender: Sequence[str] = (),
    submitted_by: str | None = None,
) -> list[RecipientTrack]:
    """The per-recipient timeline of a message this node sent, by its Message-ID.

    With ``sender`` (an account's addresses), only entries sent from one of them count;
    with ``submitted_by`` (an account name), only entries that account submitted: an
    account tracks its own messages and learns nothing of anyone else's.
    """
    message_id = normalise_message_id(message_id)
    entries = [
        e
        for e in store.entries_by_message_id(message_id)
        if e.direction is Direction.OUTBOUND and _sent_by(e, sender, submitted_by)
    ]
    if not entries:
        detail = f"no message {message_id} was sent through this node"
        raise OperationError(OperationReason.NOT_SENT, detail)
    records = {(r.entry_id, r.recipient.lower()): r for r in store.receipt_records(message_id)}
    tracks = []
    for sent in entries:
        history = store.events(sent.id)
        for recipient in sent.recipients:
            record = records.get((sent.id, recipient.address.lower()))
            steps = tuple(
                Step(e.time, TIMELINE[e.event], e.detail)
                for e in history
                if e.event in TIMELINE and e.recipient in (None, recipient.address)
            )
            state = record.state.value if record else recipient.disposition.value
            evidence = record.evidence if record else None
            tracks.append(RecipientTrack(sent.id, recipient.address, state, steps, evidence))
    return tracks


def _sent_by(entry: Entry, sender: Sequence[str], submitted_by: str | None) -> bool:
    mine = {address.lower() for address in sender}
    if mine and entry.mail_from.lower() not in mine:
        return False
    return submitted_by is None or entry.auth == submitted_by


def normalise_message_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def lockouts(engine: Engine, now: datetime) -> list[Lock]:
    """The account names and sources the login throttle has locked at ``now``."""
    return LoginThrottle(engine, ThrottlePolicy()).locks(now)


def unlock(engine: Engine, accounts: AccountService, scope: str, value: str) -> None:
    """Lift a lock: an account's through the account service (it logs the release), a
    source's directly."""
    if scope == ACCOUNT:
        cleared = accounts.unlock(value)
    elif scope == SOURCE:
        cleared = LoginThrottle(engine, ThrottlePolicy()).clear(Key(SOURCE, value))
    else:
        detail = f"scope must be {ACCOUNT} or {SOURCE}, not {scope!r}"
        raise OperationError(OperationReason.BAD_SCOPE, detail)
    if not cleared:
        raise OperationError(OperationReason.NOT_LOCKED, f"{scope} {value} is not locked")
