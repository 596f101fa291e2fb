"""Relay: hand a protected message to a member's gateway, or to a smarthost, over SMTP.

:func:`send` makes one attempt and returns a Reply per recipient, or raises
:class:`RelayError` when the attempt failed as a whole (always temporary). The queue
worker decides what to do with both; this package holds no state between attempts.
"""

from securemail.relay.client import Destination, RelayError, RelayReason, send
from securemail.relay.tls import PeerTls

__all__ = ["Destination", "PeerTls", "RelayError", "RelayReason", "send"]
