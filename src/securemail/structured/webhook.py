"""The application's end: an HTTPS webhook (HMAC-signed) or a drop folder (atomic files).

Webhook request: ``POST url`` with the JSON envelope (docs/structured.md) and
``SecureMail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
and ``SecureMail-Delivery-Id`` (the same id on every retry of one delivery: an application
that saw it already answers 2xx again and keeps one copy).

Drop folder: ``<delivery id>.xml`` (the document) then ``<delivery id>.json`` (the
envelope), each written atomically; the JSON appears last and says the pair is complete.

Security: the request goes only to the configured URL (https, or http to loopback); no
redirect is followed; the reply body is never read beyond its status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any, Protocol

import aiohttp

from securemail.config.structured import StructuredTarget
from securemail.durable import write_atomic
from securemail.replies import Reply, ok, temporary

SIGNATURE_FIELD = "SecureMail-Signature"
DELIVERY_FIELD = "SecureMail-Delivery-Id"
UNAVAILABLE = "structured-target-unavailable"


class Application(Protocol):
    """A business application's intake.

    Contract for :meth:`deliver`: 250 only once the application has the document (2xx, or
    both files written); 4xx otherwise; never raises for the application's trouble.
    """

    @property
    def keeps_one_copy(self) -> bool: ...

    async def deliver(self, envelope: dict[str, Any], document: bytes) -> Reply: ...


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature field's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_valid(
    secret: bytes, field: str, body: bytes, now: float, tolerance: float = 300
) -> bool:
    """What a receiving application checks (see docs/structured.md): the MAC and the age."""
    parts = dict(p.partition("=")[::2] for p in field.split(","))
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, field) and abs(now - timestamp) <= tolerance


class Webhook:
    """See :class:`Application`; one webhook URL."""

    keeps_one_copy = False  # an application's 2xx cannot tell a second copy

    def __init__(self, settings: StructuredTarget) -> None:
        assert settings.url is not None  # noqa: S101 (the settings parser requires it)
        self.url, self.secret, self.timeout = settings.url, settings.secret(), settings.timeout

    async def deliver(self, envelope: dict[str, Any], document: bytes) -> Reply:
        body = json.dumps(envelope, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_FIELD: sign(self.secret, int(time.time()), body),
            DELIVERY_FIELD: envelope["delivery_id"],
        }
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, data=body, headers=headers, allow_redirects=False) as answer,
            ):
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return temporary(UNAVAILABLE, f"webhook: {type(error).__name__}: {error}"[:200])
        if 200 <= status < 300:
            return ok(f"webhook answered {status}")
        return temporary(UNAVAILABLE, f"webhook answered {status}")


class DropFolder:
    """See :class:`Application`; one folder."""

    keeps_one_copy = True  # the names come from the delivery id: a second copy overwrites

    def __init__(self, settings: StructuredTarget) -> None:
        assert settings.path is not None  # noqa: S101 (the settings parser requires it)
        self.path = settings.path

    async def deliver(self, envelope: dict[str, Any], document: bytes) -> Reply:
        name = hashlib.sha256(envelope["delivery_id"].encode()).hexdigest()[:40]
        data = json.dumps(envelope, sort_keys=True, indent=1).encode()
        try:
            await asyncio.to_thread(self._write, name, document, data)
        except OSError as error:
            return temporary(UNAVAILABLE, f"drop folder: {error.strerror}")
        return ok(f"written as {name}")

    def _write(self, name: str, document: bytes, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / f"{name}.xml", document)
        write_atomic(self.path / f"{name}.json", data)


def application_for(settings: StructuredTarget) -> Application:
    """The webhook or drop folder of ``settings`` (a pull queue needs the database: see
    :class:`securemail.structured.inbox.PullQueue`)."""
    return Webhook(settings) if settings.kind == "webhook" else DropFolder(settings)
