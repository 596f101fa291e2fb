"""Each role's narrow context, built once from the opened node (the composition root's job).

A role gets a frozen value holding only what it uses (as the web gets its WebContext);
nothing here is kept by a role except through its context.
"""

from __future__ import annotations

from dataclasses import dataclass

from securemail.bounces import NoticeContext
from securemail.config.node import NodeConfig
from securemail.node.admission import AdmissionContext
from securemail.node.context import CurrentTrust, Node, read_passphrase
from securemail.protect.context import ProtectContext
from securemail.receive.door import SourceQuota
from securemail.relay import ClientCertificate, Destination
from securemail.unprotect.context import UnprotectContext


@dataclass(frozen=True)
class Roles:
    """The contexts of a node's roles (the web's is built where the web starts)."""

    admission: AdmissionContext  # the SMTP listeners and the web's composed mail
    protect: ProtectContext  # the outbound worker
    unprotect: UnprotectContext  # the inbound worker: delivery, receipts
    notices: NoticeContext  # failure and delay notices, receipt windows


def build_roles(node: Node, quarantined: SourceQuota | None = None) -> Roles:
    """The contexts for ``node``'s roles; ``quarantined`` is the peer listener's quarantine
    quota, counted by the inbound worker (receive.door)."""
    config = node.config
    quarantined = quarantined or SourceQuota(config.peer_edge.quarantine_quota)
    client_tls = ClientCertificate(
        str(config.tls_certificate), str(config.tls_key), read_passphrase(config)
    )
    notices = NoticeContext(
        reporting_mta=config.name,
        orgs=node.orgs,
        organisation_for=config.organisation_for,
        queue=node.queue,
        clock=node.clock,
    )
    protect = ProtectContext(
        helo=config.name,
        orgs=node.orgs,
        directory=node.directory,
        anchors=node.anchors,
        node_policy=config.node_policy,
        smarthost=smarthost(config),
        relay=node.relay,
        queue=node.queue,
        notices=notices,
        clock=node.clock,
        client_tls=client_tls,
    )
    unprotect = UnprotectContext(
        name=config.name,
        orgs=node.orgs,
        targets=node.targets,
        directory=node.directory,
        trust=CurrentTrust(node.anchors, node.directory),
        queue=node.queue,
        notices=notices,
        clock=node.clock,
        unsealed=config.peer_edge.unsealed,
        quarantined=quarantined,
        contacts=node.contacts,
    )
    admission = AdmissionContext(config, node.directory, node.queue, node.clock, quarantined)
    return Roles(admission, protect, unprotect, notices)


def smarthost(config: NodeConfig) -> Destination | None:
    """Where mail for outside the federation goes, if the operator set a smarthost."""
    settings = config.smarthost
    if settings is None:
        return None
    cafile = None if settings.cafile is None else str(settings.cafile)
    return Destination(
        settings.host,
        settings.port,
        helo=config.name,
        peer_tls=None,
        require_tls=settings.require_tls,
        cafile=cafile,
    )
