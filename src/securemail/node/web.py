"""Serve the node's web app (webmail, console, API) over TLS with uvicorn, as a task.

``start_node_web`` binds ``[web] listen`` itself (so port 0 works and the bound port is
known before the app is made: the default public origin names it), builds the WebContext
from the running node and serves until :meth:`WebServer.close`. Composed mail enters the
queue through the same admission as SMTP submission.

Security: TLS only (TLS 1.2 or newer, the node's certificate unless [web] names another);
uvicorn's own signal handling is turned off so the node's stop sequence stays in charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from fastapi import APIRouter

from securemail.config.reasons import NodeReason
from securemail.node.admission import Admission
from securemail.node.context import Node, NodeError, read_passphrase
from securemail.node.listeners import cannot_listen, server_tls
from securemail.node.mailboxes import maildir_for
from securemail.records.service import node_signer
from securemail.web.app import make_app
from securemail.web.context import WebContext

_STARTUP_TIMEOUT = 30.0


class _NodeServer(uvicorn.Server):
    """uvicorn without its signal handlers: the node decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class WebServer:
    """The running web server: its bound port and origin, and how to stop it."""

    port: int
    origin: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_node_web(
    node: Node,
    admission: Admission,
    *,
    routers: Sequence[APIRouter] | None = None,
    extra: Sequence[APIRouter] = (),
) -> WebServer | None:
    """Serve [web] for ``node``; None when it has no [web] or hosts no accounts. ``extra``
    routers (monitoring) are served beside ``routers`` (by default the web app's own)."""
    settings = node.config.web
    if settings is None or node.accounts is None:
        return None
    tls = server_tls(node.config, settings.tls_certificate, settings.tls_key)
    try:
        listening = socket.create_server(
            (settings.listen.host, settings.listen.port),
            family=socket.AF_INET6 if ":" in settings.listen.host else socket.AF_INET,
        )
    except OSError as error:
        where = f"[web] listen {settings.listen.host}:{settings.listen.port}"
        raise NodeError(NodeReason.LISTEN_FAILED, cannot_listen(error, where)) from None
    port = listening.getsockname()[1]
    host = f"[{settings.listen.host}]" if ":" in settings.listen.host else settings.listen.host
    origin = settings.public_origin or f"https://{host}" + ("" if port == 443 else f":{port}")
    web = WebContext(
        config=node.config,
        accounts=node.accounts,
        store=node.store,
        db=node.queue.db,
        directory=node.directory,
        clock=node.clock,
        maildir_for=maildir_for(node.config),
        admit=admission.admit_outbound,
        seal=node.accounts.mailbox_seal,
        inbox=node.inbox,
        records_signer=lambda: node_signer(node.config, read_passphrase(node.config)),
    )
    app = make_app(web, routers=routers, origin=origin)
    for router in extra:
        app.include_router(router, include_in_schema=False)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ssl_context_factory=_fixed(tls)
    )
    server = _NodeServer(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    await _started(server, task)
    return WebServer(port, origin, server, task)


ContextFactory = Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]


def _fixed(context: ssl.SSLContext) -> ContextFactory:
    return lambda config, default: context


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _STARTUP_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the web server stopped while starting")
        if loop.time() > deadline:
            server.should_exit = True
            raise RuntimeError("the web server did not start")
        await asyncio.sleep(0.01)
