"""The delivery contract: how verified inbound mail is put into its recipients' stores."""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Protocol

from securemail.deliver.seal import Origin
from securemail.replies import Reply

SECUREMAIL_KEYWORD = "$SecureMail"  # IMAP keyword on mail the inbound gateway verified


class Target(Protocol):
    """A store for verified inbound mail: a Maildir the node hosts, or the organisation's server.

    Contract for :meth:`deliver`:

    - exactly one Reply per distinct recipient; a store problem is a Reply, never an
      exception (an exception is a bug, and the worker treats it as temporary);
    - 250 only once the message is durably in that recipient's store;
    - 4xx when it may succeed later: store down, disk full, timeout, a drop before the answer;
    - a Reply that is not 2xx leaves nothing of this delivery in that recipient's store
      where the store can tell (the queue then releases the recipient's key, and a later
      reservation of it is FRESH); a store that did something it can neither make durable
      nor take back raises :class:`StoreUncertainError` instead (the one exception of the
      contract): the attempt is deferred whole and keeps its keys;
    - 5xx only for a definite refusal: no such mailbox, an address the store cannot hold;
    - ``key`` (hex) identifies this message's content: delivering the same key to the same
      recipient twice stores it once, where the store can tell (so at-least-once callers get
      exactly-once there). Each implementation says whether it can;
    - ``keywords`` are IMAP keywords (RFC 3501 §2.3.2) the stored message carries, such as
      :data:`SECUREMAIL_KEYWORD` for verified SecureMail, so mail clients can filter and
      sort on them. A store that cannot set keywords ignores them (it says so); the caller
      passes them only for what deserves them, never for unverified mail;
    - ``fresh`` names recipients whose key the caller reserved FRESH (:mod:`securemail
      .queue.dedup`): no store was ever handed the message under it, so a store that
      looks for an earlier copy before storing may skip looking for them;
    - ``origin`` says who wrote the message: mail the gateway delivers from a peer or from
      outside (:attr:`Origin.DELIVERED`, its trust fields already written by the gateway),
      or the gateway's own notice or receipt (:attr:`Origin.NOTICE`). A store the node
      hosts seals what it stores with it (:mod:`securemail.deliver.seal`), so the webmail
      and IMAP can tell the gateway's messages from what a mail client put there; a store
      the node does not host ignores it.
    """

    @property
    def keeps_one_copy(self) -> bool:
        """Whether delivering one ``key`` to one recipient twice stores it once (above)."""
        ...

    async def deliver(
        self,
        mail_from: str,
        recipients: Sequence[str],
        body: bytes,
        key: str,
        *,
        keywords: Set[str] = frozenset(),
        origin: Origin = Origin.DELIVERED,
        fresh: Set[str] = frozenset(),
    ) -> dict[str, Reply]:
        """Store ``body`` for each recipient; see the class contract."""
        ...


class StoreUncertainError(Exception):
    """The store cannot tell whether it holds the message for a recipient: it made it
    visible, could not make that durable, and could not durably take it back either. The
    caller defers the whole attempt with ``reply`` and keeps its keys reserved, so the next
    attempt looks in the store (see :class:`Target`)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.reason}: {reply.detail}")
        self.reply = reply
