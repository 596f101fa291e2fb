"""The kit's look at a gateway's door: a certificate from outside the federation, or one
whose key the directory does not pin, fails its own requirement, named."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securemail.conformance.transport import chains_to_anchor, check_door, check_tls
from securemail.directory.model import spki_pin
from securemail.pki.authority import issue, make_root_ca
from securemail.receive import Received
from securemail.receive.model import ListenerSettings
from securemail.receive.peer import start_peer_listener
from securemail.replies import Reply, ok
from tests.conftest import NOW, Org, Pki

Findings = list[tuple[str, str, bool, str]]


def _server_context(org: Org, folder: Path) -> ssl.SSLContext:
    certificate, key = org.write(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


async def _look(org: Org, folder: Path, pki: Pki, pins: frozenset[str]) -> Findings:
    """Door and TLS findings for a peer listener presenting ``org``'s certificate."""
    found: Findings = []

    async def refuse(received: Received) -> Reply:
        return ok("not used")

    settings = ListenerSettings("127.0.0.1", 0, org.domain, tls=_server_context(org, folder))
    listener = await start_peer_listener(settings, served=lambda _: True, admit=refuse)
    try:
        add = lambda *finding: found.append(finding)  # noqa: E731
        local = "conformance.example.nz"
        assert await check_door(add, "127.0.0.1", listener.port, local, f"x@{local}")
        await check_tls(
            add, ("127.0.0.1", listener.port, local), anchors=(pki.ca.certificate,),
            pins=pins, client=None, now=datetime.now(UTC),
        )  # fmt: skip
    finally:
        await listener.close()
    return found


def _verdict(found: Findings, requirement: str) -> bool:
    return all(passed for r, _, passed, _ in found if r == requirement)


def test_a_member_certificate_with_its_pin_passes_each_entry(pki: Pki, tmp_path: Path) -> None:
    """A federation certificate whose pin the directory lists passes SM-TLS-3/6/7/8."""
    found = asyncio.run(
        _look(pki.agency, tmp_path, pki, frozenset({spki_pin(pki.agency.certificate)}))
    )
    assert {r for r, *_ in found} >= {"SM-TLS-3", "SM-TLS-6", "SM-TLS-7", "SM-TLS-8"}
    assert all(passed for _, _, passed, _ in found), found


def test_a_foreign_certificate_fails_tls_7_and_an_unlisted_key_tls_8(
    pki: Pki, tmp_path: Path
) -> None:
    """A certificate from a root the federation never trusted fails SM-TLS-7; its key, not in
    the directory, fails SM-TLS-8; STARTTLS and the version still pass on their own."""
    root = make_root_ca("Not the federation", now=NOW)
    stranger = Org("stranger.example.nz", issue(root, "stranger", now=NOW,
                                                 domains=["stranger.example.nz"]))  # fmt: skip
    found = asyncio.run(
        _look(stranger, tmp_path, pki, frozenset({spki_pin(pki.agency.certificate)}))
    )
    assert not _verdict(found, "SM-TLS-7") and not _verdict(found, "SM-TLS-8")
    assert _verdict(found, "SM-TLS-3") and _verdict(found, "SM-TLS-6")
    [detail] = [d for r, _, _, d in found if r == "SM-TLS-7"]
    assert "not issued by a federation anchor" in detail


def test_a_certificate_outside_its_validity_does_not_chain(pki: Pki) -> None:
    """An anchor-issued certificate is refused after it expired, accepted within its days."""
    certificate = pki.agency.certificate
    assert chains_to_anchor(certificate, (pki.ca.certificate,), NOW)[0]
    late = certificate.not_valid_after_utc + timedelta(days=1)
    passed, detail = chains_to_anchor(certificate, (pki.ca.certificate,), late)
    assert not passed and "outside its validity period" in detail
    assert chains_to_anchor(None, (pki.ca.certificate,), NOW) == (False, "no certificate presented")
