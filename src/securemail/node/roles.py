"""Each role's narrow context, built once from the opened node (the composition root's job).

A role gets a frozen value holding only what it uses (as the web gets its WebContext);
nothing here is kept by a role except through its context.
"""

from __future__ import annotations

from dataclasses import dataclass

from securemail.bounces import NoticeContext
from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.conformance.history import ConformanceHistory
from securemail.conformance.schedule import ConformanceContext
from securemail.node.admission import AdmissionContext
from securemail.node.context import CurrentTrust, Node, NodeError, read_passphrase
from securemail.protect.context import ProtectContext
from securemail.receive.door import SourceQuota
from securemail.relay import ClientCertificate, Destination
from securemail.unprotect.context import UnprotectContext
from securemail.upstream.context import UpstreamContext


@dataclass(frozen=True)
class Roles:
    """The contexts of a node's roles (the web's is built where the web starts)."""

    admission: AdmissionContext  # the SMTP listeners and the web's composed mail
    protect: ProtectContext  # the outbound worker
    unprotect: UnprotectContext  # the inbound worker: delivery, receipts
    notices: NoticeContext  # failure and delay notices, receipt windows
    upstream: UpstreamContext | None = None  # [upstream]: forwarding, probes, delay notices


def build_roles(node: Node) -> Roles:
    """The contexts for ``node``'s roles."""
    config = node.config
    quarantined = SourceQuota(config.peer_edge.quarantine_quota)  # counted in the queue
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
        expected=node.orgs.expected,
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
        expected=node.orgs.expected,
        hold_without_key=config.hold_without_key,
        contacts=node.contacts,
    )
    admission = AdmissionContext(config, node.directory, node.queue, node.clock, quarantined)
    upstream = None
    if config.upstream is not None:
        reporter = node.orgs.get(config.organisations[0].org_id)
        if reporter is None:
            detail = "an upstream queue signs its notices with its first organisation's key"
            raise NodeError(NodeReason.KEYS_UNAVAILABLE, detail)
        upstream = UpstreamContext(protect, config.upstream, reporter)
    return Roles(admission, protect, unprotect, notices, upstream)


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


def conformance_context(node: Node, history: ConformanceHistory) -> ConformanceContext | None:
    """The scheduled conformance role's context, if ``[conformance]`` enables it."""
    settings = node.config.conformance
    if not settings.enabled:
        return None
    passphrase = read_passphrase(node.config)
    return ConformanceContext(settings, node.directory, history, passphrase, node.clock)
