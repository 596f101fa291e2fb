"""The composition of structured-document delivery: each organisation's application target
wrapped around its mailbox target, and business answers recorded on the queue's timeline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from securemail.config.node import NodeConfig, Organisation
from securemail.deliver import Target
from securemail.queue import QueueStore
from securemail.queue.access import QueueAccess
from securemail.storage.engine import connect
from securemail.structured.inbox import PullInbox, PullQueue
from securemail.structured.schema import installed
from securemail.structured.target import ApplicationTarget
from securemail.structured.webhook import Application, application_for

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


def with_application(
    org: Organisation, config: NodeConfig, mailbox: Target, answers: QueueAnswers
) -> Target:
    """``mailbox`` wrapped: documents to ``org``'s application (or its mailbox when it has
    none), answers to this node's messages recorded."""
    settings = org.structured
    application: Application | None = None
    if settings is not None and settings.kind == "pull":
        application = PullQueue(PullInbox(connect(config.database)), org.org_id, answers.clock)
    elif settings is not None:
        application = application_for(settings)
    return ApplicationTarget(
        mailbox, settings, application, installed(config.structured.ubl_schemas), answers
    )
