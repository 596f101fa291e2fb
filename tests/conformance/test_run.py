"""``securemail conformance run`` against our own node and the OpenSSL/Postfix gateway (all
pass) and against broken peers (the failing requirement named), its signed report checked
with ``openssl cms -verify``.

The command runs as its own process, as an operator runs it; the node under test runs in
the test's event loop, the other gateways are private Postfix instances (the foreign
gateway, answered by OpenSSL; a store that takes everything and answers nothing; one
without STARTTLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from securemail.conformance.history import ConformanceHistory
from tests.conformance.conftest import TESTER, node_dir_of_tester
from tests.conftest import require_tool
from tests.node.conftest import WAIT, Federation, running
from tests.support import foreign_peer as fp
from tests.support.postfix import PostfixInstance, start_postfix

AROHA = "aroha.ngata@agency.govt.nz"
HEMI = "hemi.walker@securemail.provider.nz"  # the provider hosts mailboxes: no catch-all


async def conformance_run(
    federation: Federation,
    target: int,
    member: str,
    recipient: str,
    out: Path,
    *,
    wait: int,
    record: Path | None = None,
) -> tuple[int, str]:
    """Run the command against 127.0.0.1:``target`` (recording the result in the node of
    ``record``, a node.toml, if given); (exit status, stdout and stderr)."""
    command = [
        sys.executable, "-m", "securemail", "conformance", "run",
        "--target", f"127.0.0.1:{target}", "--member", member, "--recipient", recipient,
        "--node-dir", str(node_dir_of_tester(federation)), "--tester", TESTER,
        "--directory", str(federation.root / "federation" / "directory.json"),
        "--listen", f"127.0.0.1:{endpoint_of(federation, TESTER)}", "--wait", str(wait),
        "--out", str(out), "--passphrase-file", str(federation.root / "passphrase.txt"),
        "--revoked-signer", str(federation.root / "revoked-signer"),
        *(["--record", str(record)] if record is not None else []),
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), wait + WAIT + 120)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def endpoint_of(federation: Federation, org_id: str) -> int:
    """The port of ``org_id``'s first endpoint in the published directory."""
    directory = json.loads((federation.root / "federation" / "directory.json").read_bytes())
    [member] = [m for m in directory["members"] if m["org_id"] == org_id]
    return int(member["endpoints"][0]["port"])


def report(out: Path) -> dict[str, Any]:
    """The report, after ``openssl cms -verify`` accepted its signature by the tester."""
    anchor = federation_anchor(out)
    done = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
         str(out / "report.json.p7s"), "-content", str(out / "report.json"),
         "-CAfile", str(anchor), "-out", os.devnull],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    document: dict[str, Any] = json.loads((out / "report.json").read_bytes())
    return document


def federation_anchor(out: Path) -> Path:
    return out.parent / "fed" / TESTER / "certs" / "federation-ca.pem"


def results(document: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["result"] for r in document["requirements"]}


def test_conformance_run_passes_against_our_node(federation: Federation, tmp_path: Path) -> None:
    """Every case against a `securemail serve` node passes; the signed report verifies with
    `openssl cms -verify`, names each requirement it checked, has its HTML page, and is kept
    in the node's history with --record."""
    require_tool("openssl")
    provider = federation.nodes["provider"]
    out = tmp_path / "report"

    async def scenario() -> tuple[int, str]:
        async with running(federation, "provider"):
            return await conformance_run(federation, provider.peer_port, "provider", HEMI, out,
                                         wait=int(WAIT), record=provider.config)  # fmt: skip

    status, output = asyncio.run(scenario())
    assert status == 0, output
    document = report(out)
    assert document["result"] == "pass", json.dumps(document, indent=1)
    checked = set(results(document))
    expected = {"SM-TLS-3", "SM-TLS-6", "SM-TLS-7", "SM-TLS-8", "SM-RECV-1", "SM-RECV-2",
                "SM-RECV-3", "SM-RECV-5", "SM-RECV-6", "SM-RCPT-1", "SM-RCPT-2", "SM-RCPT-3",
                "SM-FAIL-1", "SM-FAIL-2", "SM-FAIL-3", "SM-SEND-1", "SM-SEND-3", "SM-SEND-4",
                "SM-SEND-5", "SM-SEND-6", "SM-DIR-3", "SM-DIR-4", "SM-DIR-5",
                "SM-SEAL-2"}  # fmt: skip
    assert checked == expected, json.dumps(document, indent=1)
    names = {c["name"] for c in document["cases"]}
    assert names >= {"valid-gcm", "labelled", "downgrade-cbc", "unsealed", "tampered-signed",
                     "revoked"}  # fmt: skip
    # 3 receipts (valid-gcm, labelled, downgrade-cbc) and the unknown mailbox's notice; no
    # notice to strangers
    assert len(list((out / "received").iterdir())) == 4
    [notice] = evidence(document, "SM-FAIL-3")
    assert "unknown-mailbox: pass: signed, encrypted RFC 3464 notice" in notice
    page = (out / "report.html").read_text()
    assert all(f'<tr id="{requirement}">' in page for requirement in expected)
    history = ConformanceHistory.open(federation.config("provider").database)
    [kept] = history.runs()
    assert history.report(kept.id) == ((out / "report.json").read_bytes(),
                                       (out / "report.json.p7s").read_bytes())  # fmt: skip
    history.close()


def evidence(document: dict[str, Any], requirement: str) -> list[str]:
    """The evidence lines of ``requirement`` in the report."""
    return [line for r in document["requirements"] if r["id"] == requirement
            for line in r["evidence"]]  # fmt: skip


@contextlib.asynccontextmanager
async def broken_peer(
    tmp: Path, federation: Federation, **settings: str
) -> AsyncIterator[PostfixInstance]:
    """The foreign member's endpoint served by a plain Postfix store: no gateway behind it."""
    keys = fp.ForeignKeys(federation.root / "foreign-gateway")
    tmp.mkdir()
    manager = start_postfix(
        tmp, domain=fp.DOMAIN, mailbox_dir=tmp / "mail", mailboxes=fp.MAILBOXES,
        port=endpoint_of(federation, fp.ORG_ID), settings=fp.postfix_settings(keys) | settings,
    )  # fmt: skip
    instance = await asyncio.to_thread(manager.__enter__)
    try:
        yield instance
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _need_postfix() -> None:
    require_tool("postfix")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root (its master process does)")


def test_conformance_run_names_what_a_silent_peer_fails(
    federation: Federation, tmp_path: Path
) -> None:
    """A gateway that takes everything (tampered, forged, plaintext, MAIL before STARTTLS) and
    never answers fails SM-RECV-2/3/5/6, SM-RCPT-1 and SM-TLS-3, each named; the
    evidence shows its pinned STARTTLS itself was good."""
    _need_postfix()
    out = tmp_path / "report"

    async def scenario() -> tuple[int, str]:
        async with broken_peer(tmp_path / "peer", federation):
            officer = f"officer@{fp.DOMAIN}"
            return await conformance_run(federation, endpoint_of(federation, fp.ORG_ID),
                                         fp.ORG_ID, officer, out, wait=5)  # fmt: skip

    status, output = asyncio.run(scenario())
    assert status == 1, output
    failed = {"SM-RECV-2", "SM-RECV-3", "SM-RECV-5", "SM-RECV-6", "SM-RCPT-1", "SM-TLS-3"}
    line = next(x for x in output.splitlines() if x.startswith("error: conformance-failed: "))
    assert all(requirement in line for requirement in failed), output
    document = report(out)
    assert {r for r, result in results(document).items() if result == "fail"} >= failed
    assert "door: FAIL: MAIL before STARTTLS answered 250" in evidence(document, "SM-TLS-3")
    assert results(document)["SM-TLS-7"] == results(document)["SM-TLS-8"] == "pass"


def test_conformance_run_fails_sm_tls_3_without_starttls(
    federation: Federation, tmp_path: Path
) -> None:
    """A gateway that offers no STARTTLS fails SM-TLS-3, and the kit sends it nothing."""
    _need_postfix()
    out = tmp_path / "report"

    async def scenario() -> tuple[int, str, PostfixInstance]:
        async with broken_peer(
            tmp_path / "peer", federation, smtpd_tls_security_level="none"
        ) as peer:
            officer = f"officer@{fp.DOMAIN}"
            status, output = await conformance_run(
                federation, peer.port, fp.ORG_ID, officer, out, wait=5
            )
            return status, output, peer

    status, output, peer = asyncio.run(scenario())
    assert status == 1, output
    assert "SM-TLS-3" in output
    assert results(report(out))["SM-TLS-3"] == "fail"
    assert peer.delivered("officer") == []  # not one case went in plaintext


Respond = Callable[[fp.OpenSslPeer, fp.Directory, bytes, str], "fp.Reply | None"]


async def answer_as_foreign_gateway(
    federation: Federation,
    mta: PostfixInstance,
    stop: asyncio.Event,
    work: Path,
    respond: Respond = fp.respond,
) -> list[str]:
    """The foreign gateway's automation: each message its Postfix stores for the officer
    goes through :func:`foreign_peer.respond` (OpenSSL only), and the receipt or notice goes
    with swaks to the endpoint the directory lists for its address. What it sent, by kind."""
    keys = fp.ForeignKeys(federation.root / "foreign-gateway")
    directory = fp.read_directory(keys, federation.root / "federation" / "directory.json")
    peer = fp.OpenSslPeer(keys, work)
    officer, handled, sent = f"officer@{fp.DOMAIN}", 0, []
    while not stop.is_set():
        stored = mta.delivered("officer")
        for message in stored[handled:]:
            reply = await asyncio.to_thread(respond, peer, directory, message, officer)
            if reply is None:
                continue
            member = directory.member_for(reply.to.rpartition("@")[2])
            port = member["endpoints"][0]["port"]  # type: ignore[index]
            transcript = await asyncio.to_thread(
                functools.partial(fp.swaks, client_cert=(keys.tls, keys.tls_key)),
                port, reply.mail_from, reply.to, reply.wire,
            )  # fmt: skip
            sent.append(reply.kind if "<~  250 " in transcript else f"{reply.kind} refused")
        handled = len(stored)
        await asyncio.sleep(0.2)
    return sent


def test_conformance_run_passes_against_the_openssl_postfix_peer(
    federation: Federation, tmp_path: Path
) -> None:
    """The foreign gateway built from OpenSSL, Postfix and swaks (STARTTLS required, only
    S/MIME at DATA, receipts made with openssl cms, silence for what it refuses) passes every
    requirement."""
    _need_postfix()
    out = tmp_path / "report"
    # Postfix's cleanup reads header_checks without root: a folder it can enter.
    checks = Path(tempfile.mkdtemp(prefix="securemail-checks-"))
    checks.chmod(0o755)
    keys = fp.ForeignKeys(federation.root / "foreign-gateway")
    settings = fp.foreign_gateway_settings(keys, checks / "header_checks")

    async def scenario() -> tuple[int, str, list[str]]:
        async with broken_peer(tmp_path / "peer", federation, **settings) as mta:
            stop = asyncio.Event()
            gateway = asyncio.create_task(
                answer_as_foreign_gateway(federation, mta, stop, tmp_path / "work")
            )
            officer = f"officer@{fp.DOMAIN}"
            try:
                status, output = await conformance_run(
                    federation, mta.port, fp.ORG_ID, officer, out, wait=int(WAIT)
                )
            finally:
                stop.set()
            return status, output, await gateway

    try:
        status, output, sent = asyncio.run(scenario())
    finally:
        shutil.rmtree(checks, ignore_errors=True)
    assert sorted(sent) == ["receipt"] * 3, sent  # the refused cases get no notice
    assert status == 0, output
    assert report(out)["result"] == "pass"


def respond_without_checks(
    peer: fp.OpenSslPeer, directory: fp.Directory, stored: bytes, recipient: str
) -> fp.Reply | None:
    """A broken gateway's pipeline: it decrypts, then receipts whatever it finds, checking
    neither the signature nor the signer nor the From: (``-verify -noverify -nosigs``)."""
    try:
        inner = fp.run(
            "openssl", "cms", "-decrypt", "-in", peer.scratch("in.eml", stored),
            "-recip", peer.keys.encryption, "-inkey", peer.keys.smime_key,
        )  # fmt: skip
    except fp.ForeignPeerError:
        return None  # not even it can read a broken GCM tag
    content = peer.work / f"{secrets.token_hex(4)}-content.eml"
    request = fp.run(
        "openssl", "cms", "-verify", "-noverify", "-nosigs",
        "-in", peer.scratch("inner.eml", inner), "-out", content, "-receipt_request_print",
        stderr=True,
    ).decode(errors="replace")  # fmt: skip
    if "Receipts To:" not in request:
        return None
    to = fp.receipts_to(request)
    evidence = fp.evidence_json(
        original=content.read_bytes(), identifier=fp.content_identifier(request),
        recipient=recipient, delivered_at=fp.now(),
    )  # fmt: skip
    receipt = fp.receipt_message(
        receipt_der=peer.sign_receipt(inner), evidence=evidence,
        sender=f"postmaster@{fp.DOMAIN}", to=to, now=fp.now(),
    )  # fmt: skip
    certificate = fp.certificate_of(peer.keys, directory, to.rpartition("@")[2], "encryption")
    header = fp.wire_header(f"postmaster@{fp.DOMAIN}", to, f"<{secrets.token_hex(8)}@x>", fp.now())
    wire = peer.encrypt(peer.sign(receipt), certificate, header)
    return fp.Reply("receipt", f"postmaster@{fp.DOMAIN}", to, wire)


def test_conformance_run_names_what_a_peer_that_takes_tampered_mail_fails(
    federation: Federation, tmp_path: Path
) -> None:
    """A gateway that receipts what it decrypts without verifying it (a changed signed
    content, a stranger's signature, a revoked signer, a From: its signer does not own)
    fails SM-RECV-5, SM-RECV-6 and SM-DIR-3, each named; the GCM tag it cannot skip."""
    _need_postfix()
    out = tmp_path / "report"
    checks = Path(tempfile.mkdtemp(prefix="securemail-checks-"))
    checks.chmod(0o755)
    keys = fp.ForeignKeys(federation.root / "foreign-gateway")
    settings = fp.foreign_gateway_settings(keys, checks / "header_checks")

    async def scenario() -> tuple[int, str]:
        async with broken_peer(tmp_path / "peer", federation, **settings) as mta:
            stop = asyncio.Event()
            gateway = asyncio.create_task(answer_as_foreign_gateway(
                federation, mta, stop, tmp_path / "work", respond_without_checks))  # fmt: skip
            try:
                officer = f"officer@{fp.DOMAIN}"
                return await conformance_run(federation, mta.port, fp.ORG_ID, officer, out,
                                             wait=int(WAIT))  # fmt: skip
            finally:
                stop.set()
                await gateway

    try:
        status, output = asyncio.run(scenario())
    finally:
        shutil.rmtree(checks, ignore_errors=True)
    assert status == 1, output
    line = next(x for x in output.splitlines() if x.startswith("error: conformance-failed: "))
    assert all(r in line for r in ("SM-RECV-5", "SM-RECV-6", "SM-DIR-3")), output
    document = report(out)
    receipted = "DATA answered 250 2.0.0; receipted: the gateway delivered it"
    assert f"tampered-signed: FAIL: {receipted}" in evidence(document, "SM-RECV-5")
    assert f"revoked: FAIL: {receipted}" in evidence(document, "SM-DIR-3")
    assert results(document)["SM-RECV-2"] == "pass"
