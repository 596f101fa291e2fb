"""What the outbound worker may hold: a small frozen value the composition root builds once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from securemail.bounces import NoticeContext
from securemail.directory.model import Directory
from securemail.keys.org import OrgKeys
from securemail.policy.model import NodePolicy
from securemail.queue.access import QueueAccess
from securemail.relay import ClientCertificate, Destination, PeerTls
from securemail.relay.transport import Relay


@dataclass(frozen=True)
class ProtectContext:
    """The node's parts the outbound worker uses (see the field comments)."""

    helo: str  # this node's name, said to every peer
    orgs: Mapping[str, OrgKeys]  # org_id -> the sending organisation's signing key
    directory: Callable[[], Directory | None]  # the current verified directory
    anchors: tuple[x509.Certificate, ...]  # the federation's, for peers' TLS certificates
    node_policy: NodePolicy  # the node's region and its offshore rule
    smarthost: Destination | None  # where mail outside the federation goes, if anywhere
    relay: Relay  # the way out
    queue: QueueAccess
    notices: NoticeContext  # failure notices for what an attempt bounced
    clock: Callable[[], datetime]
    client_tls: ClientCertificate | None = None  # ours, shown to peers (mutual TLS)
    expected: frozenset[str] = frozenset()  # every organisation served, keys installed or not

    def peer_destination(self, host: str, port: int, pins: tuple[str, ...]) -> Destination:
        """A member gateway's endpoint, its TLS certificate bound to the directory's pins;
        we present our own TLS client certificate (peers let in members only)."""
        peer_tls = PeerTls(frozenset(pins), self.anchors, self.client_tls)
        return Destination(host, port, helo=self.helo, peer_tls=peer_tls)
