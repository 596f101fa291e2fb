"""The mail service provider end to end: people's clients submit, read over IMAP and sync.

Real nodes on loopback (the demo federation's agency and provider), real clients
(aiosmtplib, imaplib, mbsync), the node's own accounts in its SQLite database.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import aiosmtplib

from securemail import audit
from securemail.accounts.events import ACCOUNTS_LOG
from securemail.accounts.model import AccountReason
from securemail.accounts.node import Accounts, open_accounts
from securemail.demo.exchange import Script, client_tls, header, submit, wait_for
from securemail.demo.federation import Clients
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, running
from tests.support.mbsync import ImapAccount, Tls, sync_mailbox

NOW = datetime.now(UTC)
HEMI = "hemi.walker@securemail.provider.nz"
AROHA = "aroha.ngata@agency.govt.nz"
TO_AGENCY = Script("citizen to agency", "provider", HEMI, (AROHA,), "Benefit review", login=True)
TO_HEMI = Script("agency to citizen", "agency", AROHA, (HEMI,), "Re: Benefit review")
HEMI_ID = Script.message_id(1, "securemail.provider.nz")
AGENCY_ID = Script.message_id(2, "agency.govt.nz")


@dataclass(frozen=True)
class Fetched:
    """The one message hemi's client found by ``SEARCH KEYWORD $SecureMail``: flags, head."""

    flags: tuple[str, ...]
    head: Message


def _clients(federation: Federation) -> Clients:
    clients = federation.nodes["provider"].clients
    assert clients is not None
    return clients


def _accounts(federation: Federation) -> Accounts:
    """The provider's accounts, opened on its database as the ``securemail user`` CLI does."""
    config = federation.config("provider")
    return open_accounts(
        config.database,
        log_path=config.data_dir / ACCOUNTS_LOG,
        passphrase=federation.root.joinpath("passphrase.txt").read_bytes().strip(),
        domains=config.domains,
    )


async def _agency_writes_to_hemi(federation: Federation) -> bytes:
    """The agency's mail server relays TO_HEMI; the provider delivers it into hemi's Maildir."""
    reply = await submit(federation.nodes["agency"], TO_HEMI, TO_HEMI.message(2, NOW))
    assert reply.startswith("250"), reply
    mailbox = federation.nodes["provider"].mailbox(HEMI)
    delivered = await wait_for(mailbox, AGENCY_ID, WAIT)
    assert delivered is not None, "the agency's mail did not reach hemi's Maildir"
    return delivered


async def _smtp_login(clients: Clients, name: str, password: str) -> tuple[int, str]:
    """AUTH PLAIN on the 587-style port after STARTTLS (certificate checked); the reply.

    One mechanism only: aiosmtplib's ``login`` retries a refused password with each
    mechanism offered, which would count two failures per attempt."""
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=clients.submission_port,
        start_tls=True,
        tls_context=client_tls(clients),
        timeout=WAIT,
    )
    async with smtp:
        await smtp.ehlo()  # again after STARTTLS, as RFC 3207 requires
        try:
            reply = await smtp.auth_plain(name, password)
        except aiosmtplib.SMTPResponseException as refused:
            return refused.code, refused.message
        return reply.code, reply.message


def _imap_login(clients: Clients, name: str, password: str) -> str:
    """LOGIN after STARTTLS: "OK", or the server's refusal text. Blocking (imaplib)."""
    with imaplib.IMAP4("127.0.0.1", clients.imap_port, timeout=WAIT) as imap:
        imap.starttls(ssl_context=client_tls(clients))
        try:
            status, _ = imap.login(name, password)
        except imaplib.IMAP4.error as refused:
            return str(refused)
        return str(status)


def _imap_fetch(clients: Clients) -> Fetched:
    """Hemi's client: STARTTLS, LOGIN, SEARCH KEYWORD $SecureMail, FETCH the one message."""
    with imaplib.IMAP4("127.0.0.1", clients.imap_port, timeout=WAIT) as imap:
        imap.starttls(ssl_context=client_tls(clients))
        imap.login(HEMI, clients.passwords[HEMI])
        imap.select("INBOX", readonly=True)
        _, found = imap.uid("SEARCH", "KEYWORD", "$SecureMail")
        uids = found[0].decode().split() if found and found[0] else []
        assert len(uids) == 1, found
        _, data = imap.uid("FETCH", uids[0], "(FLAGS BODY.PEEK[HEADER])")
        part = next(p for p in data if isinstance(p, tuple))
        flags = re.search(rb"FLAGS \(([^)]*)\)", part[0])
        assert flags is not None, part[0]
        return Fetched(tuple(flags.group(1).decode().split()), email.message_from_bytes(part[1]))


def _events(log: Path) -> list[tuple[str, dict[str, str]]]:
    """(event, details) of every record in an audit log."""
    return [(r["event"], r["details"]) for r in map(json.loads, log.read_bytes().splitlines())]


def _assert_verified(message: Message | bytes, signer: str) -> None:
    """The receiving gateway's verdict: smime=pass and verified, naming ``signer``."""
    if isinstance(message, Message):
        results = " ".join(str(message["Authentication-Results"]).split())
        status = " ".join(str(message["X-SecureMail-Status"]).split())
    else:
        results = header(message, "Authentication-Results")
        status = header(message, "X-SecureMail-Status")
    assert "smime=pass" in results, results
    assert status.startswith("verified") and f"signer={signer}" in status, status


def test_citizen_writes_to_the_agency_and_reads_its_verified_reply(
    federation: Federation,
) -> None:
    """Hemi submits after STARTTLS and AUTH; the agency gets it verified as the provider's,
    and its reply reaches her IMAP inbox verified as the agency's, flagged $SecureMail."""
    clients = _clients(federation)

    async def scenario() -> tuple[bytes, Fetched]:
        async with running(federation, "agency", "provider"):
            reply = await submit(federation.nodes["provider"], TO_AGENCY, TO_AGENCY.message(1, NOW))
            assert reply.startswith("250"), reply
            mailbox = federation.nodes["agency"].mailbox(AROHA)
            at_agency = await wait_for(mailbox, HEMI_ID, WAIT)
            assert at_agency is not None, "hemi's mail did not reach the agency"
            await _agency_writes_to_hemi(federation)
            return at_agency, await asyncio.to_thread(_imap_fetch, clients)

    at_agency, seen = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    _assert_verified(at_agency, "provider")
    assert header(at_agency, "Subject") == TO_AGENCY.subject
    assert "$SecureMail" in seen.flags
    assert " ".join(str(seen.head["Message-ID"]).split()) == AGENCY_ID
    _assert_verified(seen.head, "agency")


def _mbsync(federation: Federation, trusted: Path, work: Path) -> dict[str, list[bytes]]:
    """The agency writes to hemi, then mbsync (trusting only ``trusted``) pulls her mailbox
    over STARTTLS and over implicit TLS; the messages each sync put in the INBOX."""
    require_tool("mbsync")
    clients = _clients(federation)

    def sync(tls: Tls, port: int) -> list[bytes]:
        account = ImapAccount("127.0.0.1", port, tls, trusted, HEMI, clients.passwords[HEMI])
        (work / tls).mkdir()
        synced = sync_mailbox(account, work / tls / "Mail", work / tls)
        # every mailbox has the special-use folders (RFC 6154); mbsync syncs them all, and
        # only the INBOX holds mail here
        special = {"Archive", "Drafts", "Junk", "Sent", "Trash"}
        assert set(synced.folders) == {"INBOX", *special}, synced.output
        assert all(synced.folders[name] == [] for name in special), synced.output
        return synced.folders["INBOX"]

    async def scenario() -> dict[str, list[bytes]]:
        async with running(federation, "agency", "provider"):
            await _agency_writes_to_hemi(federation)
            return {
                "STARTTLS": await asyncio.to_thread(sync, "STARTTLS", clients.imap_port),
                "IMAPS": await asyncio.to_thread(sync, "IMAPS", clients.imap_tls_port),
            }

    return asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))


def test_mbsync_pulls_verified_mail_with_its_verdict(
    federation: Federation, tmp_path: Path
) -> None:
    """mbsync, trusting only the CA a provider hands its people (``Clients.ca``), copies
    hemi's verified mail into a local Maildir over STARTTLS and over implicit TLS, the
    verification headers intact."""
    synced = _mbsync(federation, _clients(federation).ca, tmp_path)

    assert list(synced) == ["STARTTLS", "IMAPS"]
    for tls, messages in synced.items():
        assert len(messages) == 1, tls
        _assert_verified(messages[0], "agency")
        assert header(messages[0], "Message-ID") == AGENCY_ID


def test_failed_logins_on_smtp_lock_imap_until_the_operator_unlocks(
    federation: Federation,
) -> None:
    """Five wrong passwords over SMTP (answered exactly as for an unknown name) lock hemi out
    of IMAP even with her right password; the lockout is in the verified accounts log, and
    the operator's unlock lets her in again."""
    clients = _clients(federation)
    right = clients.passwords[HEMI]

    async def scenario() -> tuple[tuple[int, str], list[tuple[int, str]], str, str]:
        async with running(federation, "provider"):
            unknown = await _smtp_login(clients, "nobody@securemail.provider.nz", "guess")
            wrong = [await _smtp_login(clients, HEMI, f"guess {n}") for n in range(5)]
            locked = await asyncio.to_thread(_imap_login, clients, HEMI, right)
            with await asyncio.to_thread(_accounts, federation) as accounts:
                assert await asyncio.to_thread(accounts.service.unlock, HEMI)
            unlocked = await asyncio.to_thread(_imap_login, clients, HEMI, right)
            return unknown, wrong, locked, unlocked

    unknown, wrong, locked, unlocked = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert unknown == (535, "5.7.8 Authentication credentials invalid")
    assert wrong == [unknown] * 5
    assert "UNAVAILABLE" in locked and "try again later" in locked
    assert unlocked == "OK"
    log = federation.config("provider").data_dir / ACCOUNTS_LOG
    assert audit.verify(log).ok
    events = _events(log)
    lockouts = [d for e, d in events if e == "account.lockout" and d["scope"] == "account"]
    assert [(d["key"], d["failures"]) for d in lockouts] == [(HEMI, "5")]
    throttled = [d for e, d in events if e == "account.login.failed" and d["service"] == "imap"]
    assert [d["reason"] for d in throttled] == [AccountReason.THROTTLED.value]
    assert ("account.release", {"scope": "account", "key": HEMI, "reason": "operator"}) in events


def test_a_disabled_account_cannot_log_in_but_still_receives_mail(
    federation: Federation,
) -> None:
    """Disabling hemi's account refuses her submission and IMAP logins with her right password
    (the same answers as a wrong one), while mail sent to her is still delivered verified."""
    clients = _clients(federation)
    right = clients.passwords[HEMI]
    with _accounts(federation) as accounts:
        assert accounts.service.disable(HEMI).disabled

    async def scenario() -> tuple[tuple[int, str], str, bytes]:
        async with running(federation, "agency", "provider"):
            smtp = await _smtp_login(clients, HEMI, right)
            imap = await asyncio.to_thread(_imap_login, clients, HEMI, right)
            return smtp, imap, await _agency_writes_to_hemi(federation)

    smtp, imap, delivered = asyncio.run(asyncio.wait_for(scenario(), 3 * WAIT))
    assert smtp == (535, "5.7.8 Authentication credentials invalid")
    assert "AUTHENTICATIONFAILED" in imap and "Invalid credentials" in imap
    _assert_verified(delivered, "agency")
    events = _events(federation.config("provider").data_dir / ACCOUNTS_LOG)
    refused = [d for e, d in events if e == "account.login.failed"]
    assert [(d["service"], d["reason"]) for d in refused] == [
        ("smtp", AccountReason.DISABLED.value),
        ("imap", AccountReason.DISABLED.value),
    ]
