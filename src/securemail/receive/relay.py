"""The relay listener: outbound mail from the organisation's own mail servers.

Security: only clients in the configured networks may send, or, when ``authenticate`` is
given, clients that proved a user with AUTH PLAIN/LOGIN, which is offered and accepted only
after STARTTLS (passwords never cross in clear). The sender must be in a domain this node
serves (or ``<>``); every recipient passes the envelope checks and then ``CheckRecipient``,
so the listener is never an open relay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from securemail.receive.conversation import Authenticate, Client, LogIn, Proved
from securemail.receive.model import Admit, CheckRecipient, ListenerSettings, ReceiveReason
from securemail.receive.server import Listener, start_listener
from securemail.replies import Reply

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _in_networks(ip: str, networks: Sequence[Network]) -> bool:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 clients this way
    return any(address in network for network in networks)


def _not_allowed(code: int, status: str, text: str, ip: str) -> Reply:
    detail = f"client {ip} outside the relay networks"
    return Reply(code, status, text, ReceiveReason.CLIENT_NOT_ALLOWED, detail)


@dataclass(frozen=True)
class _PasswordLogIn:
    """The relay's ``(user, password) -> bool`` check as a :class:`LogIn`."""

    check: Authenticate

    async def __call__(self, ip: str, user: str, password: bytes) -> Proved | Reply:
        if self.check(user, password):
            return Proved(user)
        detail = f"relay credentials for {user!r} refused"
        text = "Authentication credentials invalid"
        return Reply(535, "5.7.8", text, ReceiveReason.AUTH_FAILED, detail)


@dataclass(frozen=True)
class RelayGate:
    """The relay listener's policy; see :class:`securemail.receive.conversation.Gate`."""

    networks: tuple[Network, ...]
    check_recipient: CheckRecipient
    sender_allowed: Callable[[str], bool]
    authenticate: Authenticate | None = None

    @property
    def listener(self) -> Literal["relay"]:
        return "relay"

    @property
    def requires_tls(self) -> bool:
        return False  # internal servers may speak plain SMTP; AUTH alone requires TLS

    @property
    def log_in(self) -> LogIn | None:
        return None if self.authenticate is None else _PasswordLogIn(self.authenticate)

    @property
    def member_of(self) -> None:
        return None

    def refuse_client(self, ip: str) -> Reply | None:
        if self.authenticate is not None or _in_networks(ip, self.networks):
            return None
        return _not_allowed(554, "5.7.1", "Access denied", ip)

    def refuse_sender(self, client: Client, mail_from: str) -> Reply | None:
        if client.auth_user is None and not _in_networks(client.ip, self.networks):
            # RFC 4954 §6: 530 5.7.0 when policy requires authentication for MAIL.
            return _not_allowed(530, "5.7.0", "Authentication required", client.ip)
        if mail_from and not self.sender_allowed(mail_from):
            detail = "sender domain not served by this node"
            return Reply(
                553, "5.7.1", "Sender not allowed", ReceiveReason.SENDER_NOT_ALLOWED, detail
            )
        return None

    def refuse_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        return self.check_recipient(mail_from, recipient)

    def refuse_content(self, client: Client, header: bytes) -> Reply | None:
        return None


async def start_relay_listener(
    settings: ListenerSettings,
    *,
    networks: Sequence[Network],
    check_recipient: CheckRecipient,
    sender_allowed: Callable[[str], bool],
    admit: Admit,
    authenticate: Authenticate | None = None,
) -> Listener:
    """Serve the organisation's servers on ``settings.host:port`` in the running loop.

    Raises ValueError if ``authenticate`` is given without a TLS context: AUTH is only
    ever offered after STARTTLS.
    """
    if authenticate is not None and settings.tls is None:
        raise ValueError("AUTH on the relay listener needs a TLS context (STARTTLS first)")
    gate = RelayGate(tuple(networks), check_recipient, sender_allowed, authenticate)
    return await start_listener(settings, gate, admit)
