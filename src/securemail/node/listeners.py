"""Start the node's SMTP listeners (peer, relay; ordinary and submission if configured).

Security: the peer listener's TLS key is the node's TLS key (encrypted at rest, opened with
the node passphrase); TLS 1.2 is the minimum. The peer listener asks every client for its
TLS certificate and trusts only chains to the federation anchor, not the system's CAs
(mutual TLS: only members get in, profile §Transport), and shares its sessions out by
``[peer]``'s door limits. The relay listener takes only the networks
the configuration names. The ordinary listener offers STARTTLS with the same certificate
but, as a public MX, does not require it; its mail is never marked verified. The submission
listeners (587 STARTTLS, 465 implicit TLS) take only logged-in accounts, checked by the
account :class:`~securemail.accounts.model.Authenticator`, sending as their own addresses.
If one listener cannot start, those already started are closed: nothing is left half-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from securemail.accounts.model import Authenticator
from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.node.admission import Admission
from securemail.node.context import NodeError, read_passphrase
from securemail.receive import (
    Listener,
    ListenerSettings,
    start_ordinary_listener,
    start_peer_listener,
    start_relay_listener,
    start_submission_listener,
)
from securemail.receive.flow import InFlow

SettingsFor = Callable[[str, int], ListenerSettings]


def server_tls(
    config: NodeConfig, certificate: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A listener's TLS context: the peer certificate and key unless others are named
    (their key encrypted with the node passphrase, as every key file), TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(
            certificate or config.tls_certificate,
            key or config.tls_key,
            password=read_passphrase(config),
        )
    except (OSError, ssl.SSLError) as error:
        raise NodeError(NodeReason.KEYS_UNAVAILABLE, f"TLS certificate or key: {error}") from None
    return context


def peer_server_tls(config: NodeConfig) -> ssl.SSLContext:
    """The peer listener's context: the node's certificate, and a request for the client's,
    which must chain to a federation anchor (the only CAs loaded) for the handshake to pass.

    CERT_OPTIONAL rather than REQUIRED: a client without a certificate then completes the
    handshake and is told why at MAIL (530 5.7.0 client-certificate-required) instead of
    seeing a bare TLS alert.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(
            config.tls_certificate, config.tls_key, password=read_passphrase(config)
        )
        context.load_verify_locations(cafile=config.anchor)
    except (OSError, ssl.SSLError) as error:
        detail = f"TLS certificate, key or federation anchor: {error}"
        raise NodeError(NodeReason.KEYS_UNAVAILABLE, detail) from None
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


@dataclasses.dataclass(frozen=True)
class Listeners:
    peer: Listener
    relay: Listener
    ordinary: Listener | None = None
    submission: Listener | None = None  # STARTTLS, port 587 style
    submission_tls: Listener | None = None  # implicit TLS, port 465 style

    def ports(self) -> tuple[int, int]:
        """The peer and relay ports (the optional listeners' are on ``ordinary`` etc.)."""
        return self.peer.port, self.relay.port

    def all(self) -> list[Listener]:
        """Every listener that runs."""
        listeners = (self.peer, self.relay, self.ordinary, self.submission, self.submission_tls)
        return [listener for listener in listeners if listener is not None]

    async def close(self) -> None:
        for listener in self.all():
            await listener.close()


def cannot_listen(error: OSError, where: str = "") -> str:
    """One line for a bind that failed: what, where and why."""
    if not where:
        return str(error).removeprefix(f"[Errno {error.errno}] ")
    return f"{where}: {os.strerror(error.errno) if error.errno else error}"


def _settings_for(config: NodeConfig, tls: ssl.SSLContext, inflow: InFlow) -> SettingsFor:
    def settings(host: str, port: int) -> ListenerSettings:
        return ListenerSettings(
            host=host,
            port=port,
            hostname=config.name,
            max_message_size=config.max_message_size,
            max_recipients=config.max_recipients,
            tls=tls,
            inflow=inflow,
        )

    return settings


class _Started:
    """Awaits a listener's start and registers its close, so a later failure closes it."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    async def __call__(self, start: Awaitable[Listener]) -> Listener:
        try:
            listener = await start
        except OSError as error:  # asyncio's text names the address: "… ('0.0.0.0', 25): …"
            raise NodeError(NodeReason.LISTEN_FAILED, cannot_listen(error)) from None
        self._stack.push_async_callback(listener.close)
        return listener


async def start_listeners(
    config: NodeConfig, admission: Admission, authenticator: Authenticator | None = None
) -> Listeners:
    """Start every configured listener; NodeError if [submission] has no ``authenticator``."""
    if config.submission is not None and authenticator is None:
        detail = "[submission] is configured but the node was given no account authenticator"
        raise NodeError(NodeReason.BAD_CONFIG, detail)
    async with contextlib.AsyncExitStack() as stack:
        started = _Started(stack)
        listeners = await _start_transfer(config, admission, started)
        if authenticator is not None:
            submission = await _start_submission(config, admission, authenticator, started)
            listeners = dataclasses.replace(listeners, **submission)
        stack.pop_all()  # all up: from here the caller closes them
    return listeners


async def _start_transfer(config: NodeConfig, admission: Admission, started: _Started) -> Listeners:
    """The peer, relay and (if configured) ordinary listeners."""
    settings = _settings_for(config, server_tls(config), admission.inflow)
    peer_settings = dataclasses.replace(
        settings(config.peer.host, config.peer.port),
        tls=peer_server_tls(config),
        door=config.peer_edge.door,
    )
    peer = await started(
        start_peer_listener(
            peer_settings,
            served=admission.serves_peer,
            admit=admission.admit_inbound,
            member_of=admission.member_of,
        )
    )
    relay = await started(
        start_relay_listener(
            settings(config.relay.host, config.relay.port),
            networks=config.relay_networks,
            check_recipient=admission.check_recipient,
            sender_allowed=admission.sender_allowed,
            admit=admission.admit_outbound,
        )
    )
    if config.ordinary is None:
        return Listeners(peer, relay)
    ordinary = start_ordinary_listener(
        settings(config.ordinary.host, config.ordinary.port),
        served=admission.serves,
        admit=admission.admit_ordinary,
    )
    return Listeners(peer, relay, await started(ordinary))


async def _start_submission(
    config: NodeConfig, admission: Admission, authenticator: Authenticator, started: _Started
) -> dict[str, Listener]:
    """The configured submission listeners, by their field in :class:`Listeners`.

    Accepted mail goes the way of the relay listener's (outbound, same recipient check),
    with the account name as the queue entry's ``auth``.
    """
    submission = config.submission
    if submission is None:
        return {}
    tls = server_tls(config, submission.tls_certificate, submission.tls_key)
    settings = _settings_for(config, tls, admission.inflow)
    wanted = {
        "submission": (submission.listen, False),
        "submission_tls": (submission.tls_listen, True),
    }
    return {
        field: await started(
            start_submission_listener(
                settings(listen.host, listen.port),
                authenticator=authenticator,
                check_recipient=admission.check_submission_recipient,
                admit=admission.admit_outbound,
                implicit_tls=implicit_tls,
            )
        )
        for field, (listen, implicit_tls) in wanted.items()
        if listen is not None
    }
