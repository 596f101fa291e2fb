"""What the inbound worker may hold: a small frozen value the composition root builds once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from securemail.bounces import NoticeContext
from securemail.config.node import Unsealed
from securemail.contacts.store import ContactRegister
from securemail.deliver.target import Target
from securemail.directory.model import Directory
from securemail.keys.org import OrgKeys
from securemail.queue.access import QueueAccess
from securemail.smime import TrustStore


@dataclass(frozen=True)
class UnprotectContext:
    """The node's parts the inbound worker (and the receipts it issues and takes) uses."""

    name: str  # this node's name: authserv-id, the receipt's receiving gateway
    orgs: Mapping[str, OrgKeys]  # org_id -> the receiving organisation's keys
    targets: Mapping[str, Target]  # org_id -> where its verified mail is delivered
    directory: Callable[[], Directory | None]  # the current verified directory
    trust: Callable[[], TrustStore]  # federation anchors + the current directory's CRLs
    queue: QueueAccess
    notices: NoticeContext  # failure notices, and org_for (a sender's organisation here)
    clock: Callable[[], datetime]
    unsealed: Unsealed = "mark"  # [peer] unsealed: mail whose signature names no recipients
    # every organisation the node serves, keys installed or not, and how long mail for one
    # whose key is not installed is held (securemail.unprotect.holding)
    expected: frozenset[str] = frozenset()
    hold_without_key: timedelta = timedelta(days=5)
    contacts: ContactRegister | None = None  # address verifications (securemail.contacts)
