"""Sending one message onward over SMTP: to a member gateway (pinned STARTTLS) or a smarthost.

Theory of operation: connect; EHLO; STARTTLS (required for members, and for smarthosts
unless the operator turned it off); for a member, check the leaf key against the directory
pins before saying anything else; EHLO again (RFC 3207 §4.2: forget what was learnt in
plaintext); then the transaction (:mod:`securemail.relay.transaction`); QUIT. With a
:class:`~securemail.relay.pool.RelayPool` the secured session outlives the message instead.
Every recipient gets a Reply: the remote server's 2xx or 5xx, or a 4xx. A failure of the
whole attempt (no connection, no TLS, a drop, a timeout) raises :class:`RelayError`, which
is always temporary: the queue retries. A drop after DATA but before the final reply is
such a failure too; the receiving gateway de-duplicates the second copy (THREATS.md A).

Security: the remote server, its certificate and its replies are untrusted. When TLS is
required, no part of the envelope or body is sent before TLS is up and checked (THREATS.md
C); a member's certificate must chain to a federation anchor and its key match a pin from
the signed directory; remote reply text reaches only ``detail``.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aiosmtplib import (
    SMTP,
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
)

from securemail.errors import SecureMailError
from securemail.relay.tls import PeerTls, leaf_pin, peer_context
from securemail.relay.transaction import transact
from securemail.replies import Reply
from securemail.smtpwire.tls import smarthost_context
from securemail.smtpwire.wire import clean_detail, unsafe_text

if TYPE_CHECKING:  # the pool uses this module; only its type is needed here
    from securemail.relay.pool import RelayPool

_QUIT_TIMEOUT = 10.0  # seconds: QUIT is a courtesy once the outcome is known


class RelayReason(StrEnum):
    """Why a whole relay attempt failed (every one is temporary)."""

    CONNECT_FAILED = "connect-failed"
    TLS_UNAVAILABLE = "tls-unavailable"
    TLS_FAILED = "tls-failed"
    TLS_PIN_MISMATCH = "tls-pin-mismatch"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol-error"


class RelayError(SecureMailError[RelayReason]):
    """The attempt failed as a whole; always temporary (the queue retries every recipient)."""


@dataclass(frozen=True)
class Destination:
    """Where to send: a member gateway (``peer_tls`` set) or a smarthost (``peer_tls`` None).

    A member always needs STARTTLS, a chain to ``peer_tls.anchors`` and a leaf key pinned in
    ``peer_tls.pins``; its host name is not checked, the pin is its identity (ARCHITECTURE
    §5). A smarthost needs STARTTLS verified against ``cafile`` (else the system store) and
    its host name, unless ``require_tls`` is False: then TLS is used when offered, verified
    only if ``cafile`` is given.
    """

    host: str
    port: int
    helo: str
    peer_tls: PeerTls | None
    require_tls: bool = True
    cafile: str | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if not self.helo or not self.helo.isascii() or unsafe_text(self.helo):
            raise ValueError(f"not a usable EHLO name: {self.helo!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.peer_tls is not None and not self.require_tls:
            raise ValueError("a member gateway is only ever reached over TLS")


async def send(
    dest: Destination,
    mail_from: str,
    recipients: Sequence[str],
    body: bytes,
    *,
    pool: RelayPool | None = None,
) -> dict[str, Reply]:
    """Send ``body`` to ``recipients`` at ``dest``; one Reply per distinct recipient.

    Without ``pool`` the session is opened for this message and closed with QUIT after it;
    with one, a session ``pool`` holds for ``dest`` is reused and the session goes back to
    it (see :class:`securemail.relay.pool.RelayPool`). Raises RelayError when the attempt as
    a whole failed (temporary for every recipient).
    """
    wanted = list(dict.fromkeys(recipients))
    if not wanted:
        return {}
    if pool is not None:
        return await pool.transact(dest, mail_from, wanted, body)
    try:
        client = await open_session(dest)
        try:
            results = await transact(client, mail_from, wanted, body)
        except BaseException:
            client.close()
            raise
    except (SMTPException, OSError, TimeoutError) as exc:
        raise relay_error(exc, dest) from exc
    await quit_session(client)
    return results


async def open_session(dest: Destination) -> SMTP:
    """A connected session, secured as ``dest`` demands and greeted again: ready for MAIL.

    Raises what the library or the socket raised, or RelayError for a TLS refusal; the
    connection is closed on any failure.
    """
    client = SMTP(
        hostname=dest.host,
        port=dest.port,
        local_hostname=dest.helo,
        timeout=dest.timeout,
        start_tls=False,  # STARTTLS is decided in _secure, never left to the library
    )
    try:
        await client.connect()
        await _secure(client, dest)
    except BaseException:
        client.close()
        raise
    return client


async def quit_session(client: SMTP) -> None:
    """QUIT, then close: a courtesy once the outcome is known, so no failure is raised."""
    with suppress(SMTPException, OSError, TimeoutError):
        await client.quit(timeout=min(_QUIT_TIMEOUT, client.timeout or _QUIT_TIMEOUT))
    client.close()


async def _secure(client: SMTP, dest: Destination) -> None:
    """EHLO, then STARTTLS as ``dest`` demands, then EHLO again over TLS."""
    await client.ehlo()
    required = dest.peer_tls is not None or dest.require_tls
    if not client.supports_extension("starttls"):
        if required:
            raise RelayError(RelayReason.TLS_UNAVAILABLE, f"{dest.host} did not offer STARTTLS")
        return
    try:
        await client.starttls(tls_context=_context(dest), server_hostname=dest.host)
    except SMTPResponseException as exc:
        if required:
            detail = clean_detail(f"{dest.host} refused STARTTLS: {exc.code} {exc.message}")
            raise RelayError(RelayReason.TLS_UNAVAILABLE, detail) from exc
        return  # RFC 3207 §4: optional TLS refused, the session goes on in plaintext
    if dest.peer_tls is not None:
        _check_pin(client, dest.peer_tls, f"{dest.host}:{dest.port}")
    await client.ehlo()


def _context(dest: Destination) -> ssl.SSLContext:
    if dest.peer_tls is not None:
        return peer_context(dest.peer_tls)
    return smarthost_context(dest.cafile, verify=dest.require_tls or dest.cafile is not None)


def _check_pin(client: SMTP, peer: PeerTls, where: str) -> None:
    """Refuse the session unless the leaf key is one the directory lists for this member."""
    pin = leaf_pin(client.get_transport_info("ssl_object"))
    if pin not in peer.pins:
        raise RelayError(
            RelayReason.TLS_PIN_MISMATCH, f"{where} presented key {pin}, not a directory pin"
        )


def relay_error(exc: BaseException, dest: Destination) -> RelayError:
    """Translate a library or socket failure into the reason the queue and notices carry."""
    where = f"{dest.host}:{dest.port}"
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts subclass TimeoutError
        return RelayError(RelayReason.TIMEOUT, f"{where}: {exc}")
    if isinstance(exc, SMTPConnectError):
        return RelayError(RelayReason.CONNECT_FAILED, clean_detail(f"{where}: {exc}"))
    if isinstance(exc, ssl.SSLError):
        return RelayError(RelayReason.TLS_FAILED, f"{where}: {exc}")
    if isinstance(exc, SMTPServerDisconnected | ConnectionError):
        return RelayError(RelayReason.PROTOCOL, f"{where}: connection lost: {exc}")
    return RelayError(RelayReason.PROTOCOL, clean_detail(f"{where}: {exc}"))
