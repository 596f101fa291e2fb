"""The ordinary listener: mail from outside SecureMail for the domains this node serves.

Mail from the rest of the Internet (issue 7 §4) is taken here so the organisation needs no
second inbound server. The queue workers deliver it marked "not verified by SecureMail"
and never unprotect it: only the peer listener's mail can become "verified".

Security: the client is any host on the Internet and proves nothing. STARTTLS is offered
when the listener has a TLS context (RFC 3207) but not required, as for any public MX;
AUTH is never offered. Only recipients in domains this node serves are taken (never a
relay); the envelope, size, recipient, line-length, smuggling and hop checks are those of
every listener (:mod:`securemail.receive.conversation`). Any content is admitted, S/MIME
included: an S/MIME message that arrives here is delivered as ordinary, unverified mail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from securemail.receive.conversation import Client
from securemail.receive.model import Admit, ListenerSettings
from securemail.receive.peer import refuse_unserved
from securemail.receive.server import Listener, start_listener
from securemail.replies import Reply


@dataclass(frozen=True)
class OrdinaryGate:
    """The ordinary listener's policy; see :class:`securemail.receive.conversation.Gate`."""

    served: Callable[[str], bool]

    @property
    def listener(self) -> Literal["ordinary"]:
        return "ordinary"

    @property
    def requires_tls(self) -> bool:
        return False  # RFC 3207 §4: a publicly-referenced server must not require TLS

    @property
    def log_in(self) -> None:
        return None

    @property
    def member_of(self) -> None:
        return None

    def refuse_client(self, ip: str) -> Reply | None:
        return None

    def refuse_sender(self, client: Client, mail_from: str) -> Reply | None:
        return None

    def refuse_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        return refuse_unserved(self.served, recipient)

    def refuse_content(self, client: Client, header: bytes) -> Reply | None:
        return None


async def start_ordinary_listener(
    settings: ListenerSettings, *, served: Callable[[str], bool], admit: Admit
) -> Listener:
    """Serve the Internet on ``settings.host:port`` in the running loop; ``served(domain)``
    names the domains this node takes mail for. STARTTLS is offered if ``settings.tls``."""
    return await start_listener(settings, OrdinaryGate(served), admit)
