"""The relay seam: how the outbound worker hands a message to a destination over SMTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from securemail.relay.client import Destination, send
from securemail.relay.pool import RelayPool
from securemail.replies import Reply


class Relay(Protocol):
    """A way out to peer gateways and the smarthost.

    Contract for :meth:`send`: one attempt at ``destination``; exactly one Reply per
    distinct recipient (250 only once the destination accepted the message for that
    recipient), or :class:`securemail.relay.RelayError` when the attempt failed as a whole
    (always temporary: the entry stays queued). ``destination`` carries the TLS rules
    (directory pin or smarthost policy) the implementation must enforce; never a plaintext
    fallback for a destination that requires TLS.
    """

    async def send(
        self, destination: Destination, mail_from: str, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        """Send ``body`` to ``recipients`` at ``destination``; see the class contract."""
        ...


class PooledRelay:
    """See :class:`Relay`: :func:`securemail.relay.send` over a pool's secured sessions."""

    def __init__(self, pool: RelayPool) -> None:
        self.pool = pool

    async def send(
        self, destination: Destination, mail_from: str, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        return await send(destination, mail_from, recipients, body, pool=self.pool)

    async def close(self) -> None:
        """Close every idle session the pool holds."""
        await self.pool.close_all()
