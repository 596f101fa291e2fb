"""Start the node's SMTP listeners (peer, relay, and ordinary if configured) with their TLS.

Security: the peer listener's TLS key is the node's TLS key (encrypted at rest, opened with
the node passphrase); TLS 1.2 is the minimum. The relay listener takes only the networks
the configuration names. The ordinary listener offers STARTTLS with the same certificate
but, as a public MX, does not require it; its mail is never marked verified.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from securemail.node.admission import Admission
from securemail.node.context import Node, NodeError, read_passphrase
from securemail.node.reasons import NodeReason
from securemail.receive import (
    Listener,
    ListenerSettings,
    start_ordinary_listener,
    start_peer_listener,
    start_relay_listener,
)


def server_tls(node: Node) -> ssl.SSLContext:
    """The peer listener's STARTTLS context: our TLS certificate, TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(
            node.config.tls_certificate, node.config.tls_key, password=read_passphrase(node.config)
        )
    except (OSError, ssl.SSLError) as error:
        raise NodeError(NodeReason.KEYS_UNAVAILABLE, f"TLS certificate or key: {error}") from None
    return context


@dataclass(frozen=True)
class Listeners:
    peer: Listener
    relay: Listener
    ordinary: Listener | None = None

    def ports(self) -> tuple[int, int]:
        """The peer and relay ports (the ordinary port is ``ordinary.port``, if configured)."""
        return self.peer.port, self.relay.port

    async def close(self) -> None:
        await self.peer.close()
        await self.relay.close()
        if self.ordinary is not None:
            await self.ordinary.close()


async def start_listeners(node: Node, admission: Admission) -> Listeners:
    config = node.config
    tls = server_tls(node)

    def settings(host: str, port: int) -> ListenerSettings:
        return ListenerSettings(
            host=host,
            port=port,
            hostname=config.name,
            max_message_size=config.max_message_size,
            max_recipients=config.max_recipients,
            tls=tls,
        )

    peer = await start_peer_listener(
        settings(config.peer.host, config.peer.port),
        served=admission.serves,
        admit=admission.admit_inbound,
    )
    relay = await start_relay_listener(
        settings(config.relay.host, config.relay.port),
        networks=config.relay_networks,
        check_recipient=admission.check_recipient,
        sender_allowed=admission.sender_allowed,
        admit=admission.admit_outbound,
    )
    if config.ordinary is None:
        return Listeners(peer, relay)
    try:
        ordinary = await start_ordinary_listener(
            settings(config.ordinary.host, config.ordinary.port),
            served=admission.serves,
            admit=admission.admit_ordinary,
        )
    except BaseException:  # e.g. the port is taken: leave nothing listening
        await Listeners(peer, relay).close()
        raise
    return Listeners(peer, relay, ordinary)
