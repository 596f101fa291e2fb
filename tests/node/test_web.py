"""The node serves its web app over TLS on the port it bound; the agency's officer and the
provider's citizen each sign in to their own node's webmail."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime

import httpx

from securemail.demo.exchange import Script, submit, wait_for
from tests.node.conftest import WAIT, Federation, running

AROHA = "aroha.ngata@agency.govt.nz"
TO_AROHA = Script("to the officer", "gsp", "accounts@harbourbuilders.co.nz", (AROHA,), "Invoice")


def _trusting_the_federation(federation: Federation) -> ssl.SSLContext:
    """What a browser that trusts the federation CA checks: chain and name (127.0.0.1)."""
    return ssl.create_default_context(cafile=str(federation.config("agency").anchor))


def test_web_serves_the_login_page_over_tls(federation: Federation) -> None:
    """[web] serves /login over HTTPS, certificate checked, with the CSP and HSTS."""
    port = federation.nodes["provider"].web_port

    async def scenario() -> httpx.Response:
        async with running(federation, "provider"):
            tls = _trusting_the_federation(federation)
            async with httpx.AsyncClient(verify=tls) as client:
                return await client.get(f"https://127.0.0.1:{port}/login")

    page = asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))
    assert page.status_code == 200 and "Sign in" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["strict-transport-security"].startswith("max-age=")


def test_the_agency_officer_reads_verified_mail_on_her_webmail(federation: Federation) -> None:
    """The agency's officer signs in to the agency's webmail and sees a business's message
    to her marked verified (the demo prints these credentials)."""
    agency = federation.nodes["agency"]
    origin = f"https://127.0.0.1:{agency.web_port}"

    async def scenario() -> str:
        async with running(federation, "agency", "gsp"):
            reply = await submit(federation.nodes["gsp"], TO_AROHA, TO_AROHA.message(1, _now()))
            assert reply.startswith("250"), reply
            message_id = Script.message_id(1, "harbourbuilders.co.nz")
            assert await wait_for(agency.mailbox(AROHA), message_id, WAIT) is not None
            tls = _trusting_the_federation(federation)
            async with httpx.AsyncClient(
                verify=tls, base_url=origin, follow_redirects=True
            ) as client:
                signed_in = await client.post(
                    "/login",
                    data={"name": AROHA, "password": agency.officers[AROHA]},
                    headers={"Origin": origin},
                )
                assert signed_in.url.path == "/mail", signed_in.text
                return signed_in.text

    page = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert "Invoice" in page and "Verified SecureMail" in page


def _now() -> datetime:
    return datetime.now(UTC)
