"""The composition of structured-document delivery: each organisation's application target
wrapped around its mailbox target, business answers recorded on the queue's timeline, the
gateway's Message Level Responses queued for documents it refuses, and the pull queue's
taken rows purged after ``[structured] keep_taken``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from securemail.config.node import NodeConfig, Organisation
from securemail.deliver import Target
from securemail.node.admission import SECUREMAIL
from securemail.node.workers import PURGE_POLL_SECONDS
from securemail.queue import Direction, NewMessage, QueueError, QueueStore
from securemail.queue.access import QueueAccess
from securemail.queue.threads import RunOffLoop
from securemail.storage.engine import connect
from securemail.storage.errors import StorageError
from securemail.structured import mlr
from securemail.structured.documents import identify, parse
from securemail.structured.inbox import PURGE_BATCH, PullInbox, PullQueue
from securemail.structured.message import Outgoing, compose
from securemail.structured.schema import installed
from securemail.structured.target import ApplicationTarget, Refused
from securemail.structured.webhook import Application, application_for

log = logging.getLogger("securemail.structured")
ANSWER_EVENT = "business-answer"


class QueueAnswers:
    """See :class:`securemail.structured.target.Answers`: an event on the original entry."""

    def __init__(
        self, queue: QueueAccess, store: QueueStore, clock: Callable[[], datetime]
    ) -> None:
        self.queue, self.store, self.clock = queue, store, clock

    async def record(self, in_reply_to: str, summary: str) -> bool:
        return bool(await self.queue.db(self._record, in_reply_to.strip(), summary))

    def _record(self, in_reply_to: str, summary: str) -> bool:
        sent = [
            e
            for e in self.store.entries_by_message_id(in_reply_to)
            if e.direction.value == "outbound"
        ]
        for entry in sent:
            self.store.add_event(entry.id, ANSWER_EVENT, self.clock(), detail=summary)
        return bool(sent)


class QueueRefusals:
    """See :class:`securemail.structured.target.Refusals`: the MLR queued as an outbound
    message of the refusing organisation, signed and encrypted like any other."""

    def __init__(self, org_id: str, queue: QueueAccess, clock: Callable[[], datetime]) -> None:
        self.org_id, self.queue, self.clock = org_id, queue, clock

    async def answer(self, refused: Refused) -> None:
        message, message_id = mlr_message(refused, self.clock())
        new = NewMessage(
            direction=Direction.OUTBOUND,
            org_id=self.org_id,
            mail_from=refused.recipient,
            recipients=(refused.sender,),
            body=message,
            client="gateway message-level-response",
            message_id=message_id,
            priority=SECUREMAIL,
        )
        try:
            await self.queue.commits.enqueue(new)
        except QueueError as error:
            log.error(
                "the message level response to %s was not queued: %s", refused.message_id, error
            )
            return
        self.queue.notify(Direction.OUTBOUND)


def mlr_message(refused: Refused, now: datetime) -> tuple[bytes, str]:
    """The MLR for ``refused`` as a structured message (profile §15.1) and its Message-ID."""
    # From the delivery, so a repeat of it (a crash before the refusal was recorded)
    # writes the same cbc:ID: the application keeps one.
    delivery = f"{refused.key}:{refused.recipient.lower()}".encode()
    response_id = f"MLR-{hashlib.sha256(delivery).hexdigest()[:16]}"
    document = mlr.write(
        response_id=response_id,
        message_id=refused.message_id,
        findings=refused.findings,
        sender=refused.recipient,
        receiver=refused.sender,
        issued=now.date(),
    )
    outgoing = Outgoing(
        document,
        identify(parse(document)),
        response_id,
        refused.recipient,
        refused.sender,
        "Message level response: document refused",
        receipt=False,
        in_reply_to=refused.message_id,
    )
    return compose(outgoing, now)


def open_inbox(config: NodeConfig) -> PullInbox | None:
    """The node's one pull queue, if an organisation of the node takes documents that way
    (the node closes it when it stops)."""
    pulling = any(o.structured and o.structured.kind == "pull" for o in config.organisations)
    return PullInbox(connect(config.database)) if pulling else None


def with_application(
    org: Organisation,
    config: NodeConfig,
    mailbox: Target,
    answers: QueueAnswers,
    inbox: PullInbox | None = None,
) -> Target:
    """``mailbox`` wrapped: documents to ``org``'s application (or its mailbox when it has
    none), answers to this node's messages recorded."""
    settings = org.structured
    application: Application | None = None
    if settings is not None and settings.kind == "pull":
        assert inbox is not None  # noqa: S101 (open_inbox opens it for a pulling org)
        application = PullQueue(inbox, org.org_id, answers.clock, answers.queue.db)
    elif settings is not None:
        application = application_for(settings)
    refusals = QueueRefusals(org.org_id, answers.queue, answers.clock)
    schemas = installed(config.structured.ubl_schemas)
    return ApplicationTarget(mailbox, settings, application, schemas, answers, refusals=refusals)


async def run_inbox_purge(
    inbox: PullInbox,
    db: RunOffLoop,
    keep_taken: timedelta,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
) -> None:
    """Beside the body purge, at its pace: delete pull-queue rows taken over ``keep_taken``
    ago, a batch at a time."""
    while not stop.is_set():
        older_than = clock() - keep_taken
        try:
            while await db(inbox.purge_taken, older_than) == PURGE_BATCH and not stop.is_set():
                pass  # a full batch: there may be more
        except StorageError as error:  # the database is away: the next round tries again
            log.warning("pull queue purge: %s", error.detail)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_POLL_SECONDS)
