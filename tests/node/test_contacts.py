"""Address verification between two real nodes: the agency asks, the citizen confirms from
her webmail after a strong login, the agency's register holds the provider's attestation;
her withdrawal takes it out (issue 20 item 3)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
from click.testing import CliRunner

from securemail.accounts import totp
from securemail.cli.main import cli
from tests.node.conftest import WAIT, Federation, running
from tests.node.test_assurance import HEMI, _csrf, _enrol, _tls
from tests.node.test_provider import _accounts

CONTACTS = "securemail-contacts@agency.govt.nz"


def _contacts(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["contacts", *args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


async def _until(config: Path, ident: str, status: str) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        shown = json.loads(await asyncio.to_thread(_contacts, config, "show", ident))
        if shown["status"] == status:
            return dict(shown)
        await asyncio.sleep(0.3)
    raise AssertionError(f"{ident} never became {status}: {shown}")


async def _request_arrives(federation: Federation, ident: str) -> None:
    mailbox = federation.nodes["provider"].mailbox(HEMI)
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        for folder in ("new", "cur"):
            for path in (mailbox / folder).glob("*") if (mailbox / folder).is_dir() else []:
                if ident.encode() in path.read_bytes():
                    return
        await asyncio.sleep(0.2)
    raise AssertionError("the verification request did not reach Hemi")


async def _send(client: httpx.AsyncClient, origin: str, subject: str) -> None:
    form = await client.get("/mail/compose")
    sent = await client.post(
        "/mail/compose",
        data={
            "csrf": _csrf(form.text),
            "sender": HEMI,
            "to": CONTACTS,
            "subject": subject,
            "body": "",
            "action": "send",
        },
        headers={"Origin": origin},
    )
    assert sent.status_code == 303, sent.text


def test_verification_round_trip_and_withdrawal(federation: Federation) -> None:
    """verify -> request in Hemi's mailbox -> she confirms from the webmail with password and
    code -> verified with the provider's attestation and an expiry -> she withdraws."""

    with _accounts(federation) as accounts:
        secret = _enrol(accounts, HEMI)
    agency = federation.nodes["agency"].config
    provider = federation.nodes["provider"]
    assert provider.clients is not None
    password = provider.clients.passwords[HEMI]
    origin = f"https://127.0.0.1:{provider.web_port}"

    async def scenario() -> tuple[dict[str, object], dict[str, object], str]:
        async with running(federation, "agency", "provider"):
            args = (
                "verify",
                "--address",
                HEMI,
                "--purpose",
                "benefit payments",
                "--require",
                "strong-auth,sole-use",
                "--valid",
                "30d",
            )
            ident = (await asyncio.to_thread(_contacts, agency, *args)).strip()
            await _request_arrives(federation, ident)
            async with httpx.AsyncClient(verify=_tls(federation), base_url=origin) as client:
                first = await client.post(
                    "/login",
                    data={"name": HEMI, "password": password},
                    headers={"Origin": origin},
                )
                code = totp.code_at(secret, totp.time_step(datetime.now(UTC)))
                await client.post(
                    "/login/code",
                    data={"code": code, "csrf": _csrf(first.text)},
                    headers={"Origin": origin},
                )
                await _send(client, origin, f"Confirm {ident}")
                verified = await _until(agency, ident, "verified")
                listing = await asyncio.to_thread(_contacts, agency, "list")
                await _send(client, origin, f"Withdraw {ident}")
                withdrawn = await _until(agency, ident, "withdrawn")
            return verified, withdrawn, listing

    verified, withdrawn, listing = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    assert verified["attested"] is not None
    assert str(verified["attested"]).startswith("provider: strong login (password and one-time")
    assert "sole use since" in str(verified["attested"])
    assert verified["expires_at"] is not None and verified["note"] == "verified"
    assert f"verified  {HEMI}  benefit payments until" in listing
    assert withdrawn["note"] == "withdrawn by the holder"
