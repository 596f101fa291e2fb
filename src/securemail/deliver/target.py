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
    - 5xx only for a definite refusal: no such mailbox, an address the store cannot hold;
    - ``key`` (hex) identifies this message's content: delivering the same key to the same
      recipient twice stores it once, where the store can tell (so at-least-once callers get
      exactly-once there). Each implementation says whether it can;
    - ``keywords`` are IMAP keywords (RFC 3501 §2.3.2) the stored message carries, such as
      :data:`SECUREMAIL_KEYWORD` for verified SecureMail, so mail clients can filter and
      sort on them. A store that cannot set keywords ignores them (it says so); the caller
      passes them only for what deserves them, never for unverified mail;
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
    ) -> dict[str, Reply]:
        """Store ``body`` for each recipient; see the class contract."""
        ...
