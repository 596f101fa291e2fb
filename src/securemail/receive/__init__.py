"""The gateway's SMTP front doors: peer, relay, ordinary and submission listeners; receive only.

A listener checks the SMTP conversation and hands each message to an :class:`Admit`
(which commits it to the durable queue); it never delivers or relays anything itself.

    start_peer_listener(settings, served=, admit=)          peers' gateways, STARTTLS, S/MIME only
    start_relay_listener(settings, networks=, check_recipient=, sender_allowed=, admit=,
                         authenticate=None)                 the organisation's own servers
    start_ordinary_listener(settings, served=, admit=)      the Internet, optional TLS, any mail
    start_submission_listener(settings, authenticator=, check_recipient=, admit=,
                              implicit_tls=False)           people's mail clients, after login
"""

from securemail.receive.envelope import check_envelope_address, domain_of
from securemail.receive.model import (
    Admit,
    CheckRecipient,
    ListenerSettings,
    Received,
    ReceiveReason,
)
from securemail.receive.ordinary import start_ordinary_listener
from securemail.receive.peer import start_peer_listener
from securemail.receive.relay import start_relay_listener
from securemail.receive.server import Listener
from securemail.receive.submission import start_submission_listener

__all__ = [
    "Admit",
    "CheckRecipient",
    "Listener",
    "ListenerSettings",
    "ReceiveReason",
    "Received",
    "check_envelope_address",
    "domain_of",
    "start_ordinary_listener",
    "start_peer_listener",
    "start_relay_listener",
    "start_submission_listener",
]
