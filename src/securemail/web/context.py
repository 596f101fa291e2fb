"""What the web's routers share: one WebContext per app, read with the ``web_context`` dependency.

The node builds it at start (securemail.node.web); tests build it from real parts. Nothing
in it is global: every router reads it from ``request.app.state.web``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import Request

from securemail.accounts.node import Accounts
from securemail.config.node import NodeConfig
from securemail.deliver.seal import MailboxSeal
from securemail.directory.model import Directory
from securemail.queue.access import OperatorQueue
from securemail.queue.threads import RunOffLoop
from securemail.receive.model import Admit
from securemail.smime import SignerIdentity
from securemail.structured.inbox import PullInbox


@dataclass(frozen=True)
class WebContext:
    """The node's parts the web uses (see the field comments for what each is)."""

    config: NodeConfig
    accounts: Accounts  # login (the shared Authenticator), account service, engine
    store: OperatorQueue
    db: RunOffLoop  # like Node.db
    directory: Callable[[], Directory | None]  # the current verified directory
    clock: Callable[[], datetime]
    maildir_for: Callable[[str], Path | None]  # primary address -> its Maildir
    admit: Admit  # how composed mail enters the outbound queue, as submission does
    seal: MailboxSeal  # the node's mailbox seal: what the gateway stored, and the Sent copy
    inbox: PullInbox | None = None  # structured documents waiting to be pulled (issue 21)
    # the node's own signing identity, loaded when a records export is made (issue 19)
    records_signer: Callable[[], SignerIdentity] | None = None


def web_context(request: Request) -> WebContext:
    """The app's WebContext (a FastAPI dependency)."""
    web: WebContext = request.app.state.web
    return web
