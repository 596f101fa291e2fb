"""The peer listener: mail from other members' gateways (port 25 in production).

Security: the client is any host on the Internet. STARTTLS is required before MAIL (RFC
3207 §4: 530 otherwise) and AUTH is never offered. Only members get in (mutual TLS): the
TLS client certificate must chain to the federation anchor (the handshake checks that) and
its key must be pinned for a member in the directory; without one MAIL gets 530 5.7.0,
with a stranger's 550 5.7.1, and the session ends before anything is stored. Only
recipients in domains this node serves are taken (never a relay); only a message whose
top-level entity is S/MIME is admitted. That header scan is cheap and proves nothing: the
queue workers decrypt and verify the signature against the directory before anything is
delivered. Each source address and each member get a fair share of the sessions, with
handshake, pre-MAIL and whole-session deadlines (see receive.door).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from securemail.receive.conversation import Client
from securemail.receive.envelope import domain_of
from securemail.receive.message import check_smime_type
from securemail.receive.model import Admit, ListenerSettings, ReceiveReason
from securemail.receive.server import Listener, start_listener
from securemail.replies import Reply


def refuse_unserved(served: Callable[[str], bool], recipient: str) -> Reply | None:
    """550 5.7.1 unless ``served`` names the recipient's domain: a listener open to the
    Internet takes mail for this node's domains only, never relays."""
    domain = domain_of(recipient)
    if served(domain):
        return None
    detail = f"recipient domain {domain} not served here"
    return Reply(550, "5.7.1", "Relay not permitted", ReceiveReason.RELAY_DENIED, detail)


@dataclass(frozen=True)
class PeerGate:
    """The peer listener's policy; see :class:`securemail.receive.conversation.Gate`."""

    served: Callable[[str], bool]
    member_by_certificate: Callable[[bytes], str | None] | None = None

    @property
    def member_of(self) -> Callable[[bytes], str | None] | None:
        return self.member_by_certificate

    @property
    def listener(self) -> Literal["peer"]:
        return "peer"

    @property
    def requires_tls(self) -> bool:
        return True

    @property
    def log_in(self) -> None:
        return None

    def refuse_client(self, ip: str) -> Reply | None:
        return None  # membership is proved by the client certificate, asked at MAIL

    def refuse_sender(self, client: Client, mail_from: str) -> Reply | None:
        return None

    def refuse_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        return refuse_unserved(self.served, recipient)

    def refuse_content(self, client: Client, header: bytes) -> Reply | None:
        return check_smime_type(header)


async def start_peer_listener(
    settings: ListenerSettings,
    *,
    served: Callable[[str], bool],
    admit: Admit,
    member_of: Callable[[bytes], str | None] | None = None,
) -> Listener:
    """Serve peers on ``settings.host:port`` in the running loop; ``served(domain)`` names
    the domains this node takes mail for, ``member_of(certificate)`` the member a client
    certificate belongs to; then ``settings.tls`` must ask for client certificates and
    verify them against the federation anchor (the node always does this; without
    ``member_of`` no client certificate is asked, as in the listener's own tests).
    ValueError without a TLS context."""
    if settings.tls is None:
        raise ValueError("the peer listener needs a TLS context: STARTTLS is mandatory")
    return await start_listener(settings, PeerGate(served, member_of), admit)
