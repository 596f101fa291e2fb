"""The node serves its web app over TLS on the port it bound, and stops it cleanly."""

from __future__ import annotations

import asyncio

import httpx

from securemail.node.run import open_node
from securemail.node.web import start_node_web
from tests.node.conftest import Federation


def test_web_serves_the_login_page_over_tls(federation: Federation) -> None:
    """[web] with port 0 serves /login over HTTPS with the CSP, on the reported port."""
    path = federation.nodes["provider"].config
    path.write_text(path.read_text() + '\n[web]\nlisten = "127.0.0.1:0"\n')

    async def scenario() -> None:
        node = await open_node(federation.config("provider"))
        web = await start_node_web(node, routers=())
        assert web is not None and web.origin == f"https://127.0.0.1:{web.port}"
        try:
            # the loopback test only: the node certificate names the node, not 127.0.0.1
            async with httpx.AsyncClient(verify=False) as client:  # noqa: S501
                page = await client.get(f"https://127.0.0.1:{web.port}/login")
            assert page.status_code == 200 and "Sign in" in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["strict-transport-security"].startswith("max-age=")
        finally:
            await web.close()
            await node.db(node.store.close)
            node.close_db()
            assert node.accounts is not None
            node.accounts.close()

    asyncio.run(scenario())
