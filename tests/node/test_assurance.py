"""Sender assurance between two real nodes: the citizen's provider signs how she logged in,
the agency's gateway believes it only from her provider and shows it (issue 20).

The demo federation's provider and agency nodes on loopback, real SMTP between them, the
citizen's real logins (webmail over HTTPS with password and TOTP code, SMTP submission with
an app password or a password), the agency officer's webmail and ``securemail queue show``.
Forged assertions are made with the S/MIME core and a member's own keys and sent straight
to the agency's peer port, as a careless or hostile member gateway would.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import html
import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import httpx
from click.testing import CliRunner

from securemail.accounts import totp
from securemail.accounts.node import Accounts
from securemail.cli.main import cli
from securemail.demo.exchange import Script, header, submit
from securemail.queue import Direction, QueueStore
from securemail.smime import ProtectOptions, SealedFor, SenderAssurance, mime, protect, sign_message
from securemail.smime.encrypt import encrypt
from tests.node.conftest import WAIT, Federation, running
from tests.node.test_inbound_refusals import (
    assert_refused,
    encryption_certificate,
    refuse,
    send_to_peer,
    signer,
)
from tests.node.test_provider import _accounts

NOW = datetime.now(UTC)
HEMI = "hemi.walker@securemail.provider.nz"
MERE = "mere.tane@securemail.provider.nz"
AROHA = "aroha.ngata@agency.govt.nz"
HARBOUR = "accounts@harbourbuilders.co.nz"
TODAY = f"{NOW.day} {NOW:%b %Y}"


def _tls(federation: Federation) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(federation.config("agency").anchor))


def _enrol(accounts: Accounts, name: str) -> str:
    """TOTP on (confirmed with the previous step's code, so the next login's is fresh) and
    sole use acknowledged; the TOTP secret."""
    uri = accounts.service.totp_begin(name)
    secret = uri.split("secret=")[1].split("&")[0]
    previous = totp.time_step(datetime.now(UTC)) - 1
    accounts.service.totp_confirm(name, totp.code_at(secret, previous))
    accounts.service.acknowledge_sole_use(name)
    return secret


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


async def _webmail_send(federation: Federation, secret: str, subject: str) -> None:
    """Hemi signs in to the provider's webmail with password and code and sends to Aroha."""
    provider = federation.nodes["provider"]
    assert provider.clients is not None
    origin = f"https://127.0.0.1:{provider.web_port}"
    headers = {"Origin": origin}
    async with httpx.AsyncClient(verify=_tls(federation), base_url=origin) as client:
        first = await client.post(
            "/login",
            data={"name": HEMI, "password": provider.clients.passwords[HEMI]},
            headers=headers,
        )
        assert first.status_code == 200 and 'name="code"' in first.text, first.text
        code = totp.code_at(secret, totp.time_step(datetime.now(UTC)))
        done = await client.post(
            "/login/code", data={"code": code, "csrf": _csrf(first.text)}, headers=headers
        )
        assert done.status_code == 303, done.text
        form = await client.get("/mail/compose")
        sent = await client.post(
            "/mail/compose",
            data={
                "csrf": _csrf(form.text),
                "sender": HEMI,
                "to": AROHA,
                "subject": subject,
                "body": "Please review my benefit.",
                "action": "send",
            },
            headers=headers,
        )
        assert sent.status_code == 303, sent.text


async def _officer_reads(federation: Federation, subject: str) -> str:
    """Aroha signs in to the agency's webmail and opens the message: the page."""
    agency = federation.nodes["agency"]
    origin = f"https://127.0.0.1:{agency.web_port}"
    async with httpx.AsyncClient(
        verify=_tls(federation), base_url=origin, follow_redirects=True
    ) as client:
        listing = await client.post(
            "/login",
            data={"name": AROHA, "password": agency.officers[AROHA]},
            headers={"Origin": origin},
        )
        assert subject in listing.text, listing.text
        link = re.search(r'href="(/mail/read\?folder=INBOX&amp;key=[^"]+)"', listing.text)
        assert link is not None, listing.text
        return (await client.get(html.unescape(link.group(1)))).text


async def _arrival(federation: Federation, subject: str) -> bytes:
    """The delivered copy in Aroha's Maildir whose Subject is ``subject``."""
    mailbox = federation.nodes["agency"].mailbox(AROHA)
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        for folder in ("new", "cur"):
            for path in (mailbox / folder).glob("*") if (mailbox / folder).is_dir() else []:
                data = path.read_bytes()
                if header(data, "Subject") == subject:
                    return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"{subject!r} did not reach the agency")


def _queue_show(federation: Federation) -> str:
    """``securemail queue show`` of the agency's last inbound entry."""
    store = QueueStore.open(federation.config("agency").database)
    try:
        [entry, *_] = store.list(direction=Direction.INBOUND)
    finally:
        store.close()
    config = str(federation.nodes["agency"].config)
    result = CliRunner().invoke(cli, ["queue", "show", "--config", config, entry.id])
    assert result.exit_code == 0, result.output
    return result.output


def test_totp_login_shows_strong_login_and_sole_use_at_the_agency(
    federation: Federation,
) -> None:
    """Hemi logs in to the webmail with TOTP and sends to the agency: the agency's header
    fields, its queue and its officer's webmail say strong login and sole use since today."""
    with _accounts(federation) as accounts:
        secret = _enrol(accounts, HEMI)

    async def scenario() -> tuple[bytes, str]:
        async with running(federation, "agency", "provider"):
            await _webmail_send(federation, secret, "Benefit review")
            arrived = await _arrival(federation, "Benefit review")
            return arrived, await _officer_reads(federation, "Benefit review")

    arrived, page = asyncio.run(asyncio.wait_for(scenario(), 4 * WAIT))
    status = header(arrived, "X-SecureMail-Status")
    assert "assurance=verified; login=password-totp;" in status, status
    assert f"sole-use-since={NOW.date().isoformat()}" in status, status
    results = header(arrived, "Authentication-Results")
    assert "smime=pass" in results and "policy.assurance=password-totp+sole-use" in results
    words = f"trong login (password and one-time code), sole use since {TODAY}"
    assert "Sender assurance" in page and f"S{words}" in page, page
    assert f"verified from provider: s{words}" in _queue_show(federation)


def test_app_password_and_password_only_show_the_weaker_level(federation: Federation) -> None:
    """Hemi's mail client (an app password made under TOTP) and Mere's (a password only)
    submit over SMTP: the agency shows each login as it was, never as strong."""
    with _accounts(federation) as accounts:
        _enrol(accounts, HEMI)
        _, app_password = accounts.service.app_password_add(HEMI, "laptop")
    provider = federation.nodes["provider"]
    assert provider.clients is not None
    # Hemi's mail client holds the app password (the module's shared set-up is not changed)
    passwords = {**provider.clients.passwords, HEMI: app_password}
    provider = dataclasses.replace(
        provider, clients=dataclasses.replace(provider.clients, passwords=passwords)
    )
    by_app = Script("app password", "provider", HEMI, (AROHA,), "From my laptop", login=True)
    by_password = Script("password", "provider", MERE, (AROHA,), "From Mere", login=True)

    async def scenario() -> tuple[bytes, bytes]:
        async with running(federation, "agency", "provider"):
            for n, script in enumerate((by_app, by_password), 1):
                reply = await submit(provider, script, script.message(n, NOW))
                assert reply.startswith("250"), reply
            return (
                await _arrival(federation, "From my laptop"),
                await _arrival(federation, "From Mere"),
            )

    app, password = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    app_status = header(app, "X-SecureMail-Status")
    assert "assurance=verified; login=app-password-totp;" in app_status, app_status
    assert "policy.assurance=app-password-totp+sole-use" in header(app, "Authentication-Results")
    plain = header(password, "X-SecureMail-Status")
    assert "assurance=verified; login=password" in plain and "sole-use" not in plain, plain
    assert "policy.assurance=password " in header(password, "Authentication-Results") + " "


def _forged(federation: Federation, member: str, author: str, claim: SenderAssurance) -> bytes:
    letter = (
        f"From: {author}\r\nTo: {AROHA}\r\nSubject: Claim by {member}\r\n"
        f"Message-ID: <forged-{member}@example.nz>\r\n\r\nI logged in strongly, honest.\r\n"
    ).encode()
    options = ProtectOptions(sealed_for=SealedFor("agency", (AROHA,)), sender_assurance=claim)
    certificate = encryption_certificate(federation, "agency")
    return protect(
        letter, signer(federation, member), [certificate], now=NOW, options=options
    ).message


def test_forged_assurance_is_shown_unverified(federation: Federation) -> None:
    """A strong-login claim signed by a member that is not a provider (harbour, through its
    GSP), and one the provider signed about another address, are delivered verified as mail
    but their assurance is shown unverified, without the claimed level."""
    by_harbour = _forged(
        federation, "harbour", HARBOUR, SenderAssurance("provider", HARBOUR, "password-totp", NOW)
    )
    about_mere = _forged(
        federation, "provider", HEMI, SenderAssurance("provider", MERE, "password-totp", NOW)
    )

    async def scenario() -> tuple[bytes, bytes]:
        async with running(federation, "agency"):
            for sender, message, member in (
                (HARBOUR, by_harbour, "gsp"),
                (HEMI, about_mere, "provider"),
            ):
                reply = await send_to_peer(
                    federation, "agency", sender, message, AROHA, member=member
                )
                assert reply.startswith("2") or "OK" in reply, reply
            return (
                await _arrival(federation, "Claim by harbour"),
                await _arrival(federation, "Claim by provider"),
            )

    harbour, provider = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    for arrived, why in ((harbour, "not-a-provider"), (provider, "address-mismatch")):
        status = header(arrived, "X-SecureMail-Status")
        assert status.startswith("verified") and "assurance=unverified" in status, status
        assert f"assurance-reason={why}" in status and "login=" not in status, status
        assert "policy.assurance=unverified" in header(arrived, "Authentication-Results")


AGENCY_RULES = """
[[organisation.policy.assurance]]
from = "mere.tane@securemail.provider.nz"
require = ["strong-auth"]
below = "refuse"

[[organisation.policy.assurance]]
from = "*@securemail.provider.nz"
require = ["sole-use"]
below = "warn"
"""


def test_agency_policy_warns_or_refuses_below_its_minimum(federation: Federation) -> None:
    """With the agency's rules, Hemi's password-only mail without sole use is delivered with
    a warning; Mere's is refused, and the failure notice in her mailbox says what was missing."""
    config = federation.nodes["agency"].config
    config.write_text(config.read_text() + AGENCY_RULES)
    provider = federation.nodes["provider"]
    warned = Script("warned", "provider", HEMI, (AROHA,), "Without sole use", login=True)
    refused = Script("refused", "provider", MERE, (AROHA,), "Password only", login=True)

    async def scenario() -> tuple[bytes, bytes | None]:
        async with running(federation, "agency", "provider"):
            for n, script in enumerate((warned, refused), 1):
                reply = await submit(provider, script, script.message(n, NOW))
                assert reply.startswith("250"), reply
            arrived = await _arrival(federation, "Without sole use")
            notice = await _notice(provider.mailbox(MERE))
            return arrived, notice

    arrived, notice = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    warning = header(arrived, "X-SecureMail-Warning")
    assert "missing sole use of the mailbox acknowledged" in warning, warning
    assert "assurance-policy=below" in header(arrived, "X-SecureMail-Status")
    assert notice is not None, "Mere got no failure notice"
    text = notice.decode("utf-8", "replace")
    assert "assurance-below-policy" in text and "strong login" in text, text
    assert not [
        p
        for d in ("new", "cur")
        for p in (federation.nodes["agency"].mailbox(AROHA) / d).glob("*")
        if b"Password only" in p.read_bytes()
    ]


async def _notice(mailbox: Path) -> bytes | None:
    """The first message in ``mailbox`` (a notice: Mere sent, never received, anything else)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        for folder in ("new", "cur"):
            found = sorted((mailbox / folder).glob("*")) if (mailbox / folder).is_dir() else []
            if found:
                return found[0].read_bytes()
        await asyncio.sleep(0.1)
    return None


def test_an_assertion_edited_in_transit_is_quarantined(federation: Federation) -> None:
    """A signed login upgraded on the way ("app-password" made "password-tot") breaks the
    signature: the message is quarantined, never delivered, nothing sent back."""
    weak = SenderAssurance("agency", AROHA, "app-password")
    letter = (
        f"From: {AROHA}\r\nTo: {HEMI}\r\nSubject: Edited\r\nMessage-ID: <edited@agency.govt.nz>"
        "\r\n\r\nThe login above was upgraded on the way.\r\n"
    ).encode()
    options = ProtectOptions(sealed_for=SealedFor("provider", (HEMI,)), sender_assurance=weak)
    signed = sign_message(letter, signer(federation, "agency"), now=NOW, options=options)
    inner = signed.message[signed.message.index(b"Content-Type: application/pkcs7-mime") :]
    head, _, body = inner.partition(b"\r\n\r\n")
    der = base64.b64decode(body).replace(b"app-password", b"password-tot")
    edited = head + b"\r\n\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n")
    envelope = encrypt(edited, [encryption_certificate(federation, "provider")]).join()
    outer = (
        (
            f"From: {AROHA}\r\nTo: {HEMI}\r\nSubject: SecureMail message\r\nMIME-Version: 1.0\r\n"
        ).encode()
        + mime.entity_header("authEnveloped-data")
        + b"\r\n"
        + mime.encode_base64(envelope)
    )
    assert_refused(refuse(federation, "agency", AROHA, outer), ("signature-invalid",), AROHA)
