"""Relay: hand a protected message to a member's gateway, or to a smarthost, over SMTP.

:func:`send` makes one attempt and returns a Reply per recipient, or raises
:class:`RelayError` when the attempt failed as a whole (always temporary). The queue
worker decides what to do with both. The only state kept between attempts is the node's
:class:`RelayPool` of secured, idle sessions, when the caller passes one.
"""

from securemail.relay.client import Destination, RelayError, RelayReason, send
from securemail.relay.pool import PoolLimits, RelayPool
from securemail.relay.tls import ClientCertificate, PeerTls

__all__ = [
    "ClientCertificate",
    "Destination",
    "PeerTls",
    "PoolLimits",
    "RelayError",
    "RelayPool",
    "RelayReason",
    "send",
]
