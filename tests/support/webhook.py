"""A business application's webhook for the tests: a real HTTP server on loopback that
checks each request's signature, keeps one copy per delivery id, and can be down or hang."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from securemail.structured.webhook import DELIVERY_FIELD, SIGNATURE_FIELD, signature_valid


@dataclass
class Inbox:
    """What the application saw: every request, and one document per delivery id."""

    secret: bytes
    down_until: float = 0.0  # time.monotonic() before which the application answers 503
    requests: list[str] = field(default_factory=list)
    refused: int = 0
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    on_request: Callable[[str], None] | None = None  # called before answering

    def document(self, delivery_id: str) -> bytes:
        return base64.b64decode(self.documents[delivery_id]["document"])


async def start(inbox: Inbox) -> tuple[web.AppRunner, int]:
    """The application's server on 127.0.0.1 (a free port): (runner to clean up, port)."""

    async def take(request: web.Request) -> web.Response:
        body = await request.read()
        if not signature_valid(
            inbox.secret, request.headers.get(SIGNATURE_FIELD, ""), body, time.time()
        ):
            return web.Response(status=401)
        delivery = request.headers[DELIVERY_FIELD]
        inbox.requests.append(delivery)
        if inbox.on_request is not None:
            inbox.on_request(delivery)
        if time.monotonic() < inbox.down_until:
            inbox.refused += 1
            return web.Response(status=503)
        envelope = json.loads(body)
        assert envelope["delivery_id"] == delivery
        inbox.documents.setdefault(delivery, envelope)  # a repeat is answered 2xx, kept once
        inbox.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/invoices", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # the bound port of a port-0 site
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, port
