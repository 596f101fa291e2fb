"""The queue's values: entry states, a message to enqueue, entries, recipients and events.

States follow Postfix's queue manager::

    incoming ─→ active ─→ delivered | bounced      (no recipient left pending)
                  │  ↑
                  ↓  │ due again
                deferred ⇄ held                    (operator: hold, release, retry)

``incoming`` may be held too, and a live entry that cannot be read or verified goes to
``quarantined`` (kept with its body, never purged unless asked).

An entry is final once DELIVERED, BOUNCED or QUARANTINED. Each recipient has its own
disposition (RFC 5321 §4.5.4: one transaction may succeed for some recipients and fail
for others); the entry is done when no recipient is pending.

A recipient relayed under a signature that requested an ESS receipt (RFC 2634 §2) also has
a receipt state, with exactly one final outcome::

    none ─→ awaiting ─→ receipted | expired        (a receipt after that is "late")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from securemail.errors import SecureMailError
from securemail.replies import Reply

# ordinary: inbound mail from outside SecureMail; upstream: another member's ciphertext an
# upstream queue holds for it (securemail.queue.upstream)
KINDS = ("mail", "notice", "ordinary", "upstream")
PRIORITIES = range(10)  # claimed lowest first: SecureMail 0, ordinary mail 1
MAX_CONTENT_IDENTIFIER_HEX = 256  # RFC 2634 leaves the size open; smime caps it at 128 bytes
_HEX_DIGITS = frozenset("0123456789abcdef")


class State(StrEnum):
    INCOMING = "incoming"
    ACTIVE = "active"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    HELD = "held"
    QUARANTINED = "quarantined"


FINAL_STATES = frozenset({State.DELIVERED, State.BOUNCED, State.QUARANTINED})


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Disposition(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    BOUNCED = "bounced"


class ReceiptState(StrEnum):
    NONE = "none"
    AWAITING = "awaiting"
    RECEIPTED = "receipted"
    EXPIRED = "expired"


class ReceiptOutcome(StrEnum):
    """What :meth:`QueueStore.accept_receipt` made of a receipt."""

    ACCEPTED = "accepted"  # the recipient's one final outcome
    DUPLICATE = "duplicate"  # this recipient was receipted before: nothing changed
    LATE = "late"  # the recipient expired or never awaited one: logged, nothing changed
    UNKNOWN = "unknown"  # no such signature, or the recipient is not one it went to


class Reservation(StrEnum):
    """What :meth:`Deduplication.reserve` found for one idempotency key."""

    RESERVED = "reserved"  # this entry holds the key: deliver, then record it delivered
    # As RESERVED, and the key had no row: no entry held it, so nothing was ever handed to
    # a store under it (a reservation is dropped only by a record whose results say its
    # delivery failed, and a store's failure leaves nothing stored: see
    # securemail.queue.dedup); a store need not look for an earlier copy.
    FRESH = "fresh"
    DELIVERED = "delivered"  # a copy was delivered under this key: suppress this one
    BUSY = "busy"  # another live entry holds the key, delivering now: try again shortly
    # This entry handed the message to the store under this key in an attempt whose record
    # never committed (its process died after the store's 250, see Deduplication.handed):
    # record it delivered (and issue what rides that record), do not hand it over again.
    HANDED = "handed"


class QueueReason(StrEnum):
    UNAVAILABLE = "queue-unavailable"
    UNSAFE_SETTINGS = "queue-unsafe-settings"
    NOT_FOUND = "queue-entry-not-found"
    BAD_STATE = "queue-bad-state"
    # A process recorded (or deferred, quarantined) an entry another process holds now: its
    # lease expired and the entry was taken over, or the node returned it to the queue.
    LEASE_LOST = "queue-lease-lost"


class QueueError(SecureMailError[QueueReason]):
    """The queue refused: database unavailable or unsafe, unknown entry, or wrong state."""


@dataclass(frozen=True)
class NewMessage:
    """A message accepted by a receive service, before it has a queue id.

    ``recipients`` is de-duplicated case-insensitively, keeping the first spelling and the
    order; at least one is required. ``mail_from`` is "" for the null sender ``<>``.
    ``priority`` (0 to 9) orders claims when entries wait: lower first, then oldest first.
    """

    direction: Direction
    org_id: str
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes
    client: str
    message_id: str | None = None
    kind: str = "mail"
    auth: str | None = None
    priority: int = 0
    # How the mailbox holder who submitted it logged in, and what the provider knows of the
    # account then: JSON of securemail.accounts.assurance.Submitted; None if not submitted.
    assurance: str | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        unique: list[str] = []
        for address in self.recipients:
            if not address:
                raise ValueError("an envelope recipient is empty")
            if address.casefold() not in seen:
                seen.add(address.casefold())
                unique.append(address)
        if not unique:
            raise ValueError("a message needs at least one envelope recipient")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.priority not in PRIORITIES:
            raise ValueError(f"priority must be 0 to 9, not {self.priority!r}")
        object.__setattr__(self, "direction", Direction(self.direction))
        object.__setattr__(self, "recipients", tuple(unique))


@dataclass(frozen=True)
class Recipient:
    """One envelope recipient of an entry and the outcome of its last attempt."""

    address: str
    disposition: Disposition
    attempts: int
    last_reply: str | None
    reason: str | None
    updated_at: datetime
    receipt_state: ReceiptState = ReceiptState.NONE


@dataclass(frozen=True)
class Entry:
    """A queued message, usually without its body (read that with ``QueueStore.body``).

    ``id`` is URL-safe and sorts by arrival; ``attempts`` counts delivery attempts of the
    whole entry; ``last_reply``/``reason`` describe the latest attempt's worst outcome;
    ``priority`` is :attr:`NewMessage.priority`; ``claimed_by`` names the process
    (``node/pid``) that claimed it last (None if unnamed or returned to the queue): a
    worker hands it back as the :attr:`Attempt.holder` of its outcome. ``body`` is the
    message when the entry was read with it (a worker's claim: one round trip less per
    message), else None.
    """

    id: str
    direction: Direction
    state: State
    kind: str
    org_id: str
    mail_from: str
    message_id: str | None
    client: str
    auth: str | None
    size: int
    created_at: datetime
    next_attempt_at: datetime | None
    attempts: int
    last_reply: str | None
    reason: str | None
    warned: bool
    recipients: tuple[Recipient, ...]
    priority: int = 0
    claimed_by: str | None = None
    assurance: str | None = None  # NewMessage.assurance
    body: bytes | None = field(default=None, repr=False, compare=False)

    def pending(self) -> tuple[str, ...]:
        """The addresses still to be delivered, in envelope order."""
        return tuple(r.address for r in self.recipients if r.disposition is Disposition.PENDING)


@dataclass(frozen=True)
class Event:
    """One line of an entry's history (accepted, deferred, delivered, held, …)."""

    entry_id: str
    time: datetime
    event: str
    recipient: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class NewSignature:
    """One receipt-requesting signature an attempt made for one peer, kept as evidence.

    ``content_identifier`` is the hex of the ESS contentIdentifier (RFC 2634 §2.7), unique
    per signature; it is stored in lower case. ``signed_data`` is the DER SignedData that
    ``openssl cms -verify_receipt`` checks a receipt against, ``basis`` the
    ``securemail.smime.ReceiptBasis`` JSON, ``window`` how long to wait for the receipt.
    """

    content_identifier: str
    peer_org: str
    recipients: tuple[str, ...]
    signed_data: bytes
    basis: str
    window: timedelta

    def __post_init__(self) -> None:
        identifier = self.content_identifier.lower()
        size_ok = 0 < len(identifier) <= MAX_CONTENT_IDENTIFIER_HEX and not len(identifier) % 2
        if not size_ok or not set(identifier) <= _HEX_DIGITS:
            raise ValueError("a content identifier is 1 to 128 bytes in hex")
        if not self.recipients:
            raise ValueError("a signature went to at least one recipient")
        if self.window <= timedelta(0):
            raise ValueError(f"a receipt window must be positive, not {self.window}")
        object.__setattr__(self, "content_identifier", identifier)
        object.__setattr__(self, "recipients", tuple(self.recipients))


@dataclass(frozen=True)
class SentSignature:
    """A stored :class:`NewSignature` (kept after its entry is deleted: it is evidence)."""

    entry_id: str
    content_identifier: str
    peer_org: str
    recipients: tuple[str, ...]
    signed_data: bytes
    basis: str
    created_at: datetime


@dataclass(frozen=True)
class ReceiptRecord:
    """One recipient's receipt tracking: state, deadline, and the receipt once it came.

    ``receipt`` is the DER of the ESS signed receipt, ``evidence`` the JSON that came with it.
    """

    entry_id: str
    message_id: str | None
    mail_from: str
    recipient: str
    state: ReceiptState
    deadline: datetime | None
    receipted_at: datetime | None
    receipt: bytes | None
    evidence: str | None


@dataclass(frozen=True)
class ReceiptTaken:
    """A verified receipt to settle (:meth:`QueueStore.accept_receipts`): for the
    recipient ``recipient`` of the signature ``content_identifier``, the receipt's DER, its
    evidence JSON, and the notice to queue if it is the one accepted."""

    content_identifier: str
    recipient: str
    receipt: bytes
    evidence: str
    enqueue: tuple[NewMessage, ...] = ()


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome for :meth:`QueueStore.record_many`: per-recipient replies,
    history events (name, detail) and idempotency keys to store with it, the signatures
    that requested receipts, follow-up messages (notices) to enqueue with it, and where
    each recipient was relayed (``host:port``, for the operations log only).

    ``holder`` fences the record: the claim (``Entry.claimed_by``) the attempt was made
    under. If the entry is held by anyone else now (its lease expired and another process
    took it over, or it was returned to the queue), the record is refused (QueueError
    LEASE_LOST) and nothing is written. None records without that check (operators' tools
    and claims made without a name).
    """

    entry_id: str
    results: Mapping[str, Reply]
    events: tuple[tuple[str, str], ...] = ()
    remember: tuple[str, ...] = ()
    signatures: tuple[NewSignature, ...] = ()
    enqueue: tuple[NewMessage, ...] = ()
    holder: str | None = None
    relays: tuple[tuple[str, str], ...] = ()  # (recipient, host:port)
