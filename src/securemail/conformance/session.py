"""One conformance run against a member's gateway: send the cases, collect what comes back,
and judge each requirement.

Theory of operation. The kit is a small gateway of its own for one run: it listens on the
tester's directory endpoint (a peer listener, STARTTLS with the tester's TLS key, taking
mail only for the tester's domain), so the gateway under test sends its receipts and
notices there exactly as it would to any member. The kit first checks the door (STARTTLS
offered, MAIL refused before it), then sends every case over pinned STARTTLS
(:func:`securemail.relay.client.send`), and waits until each case has its answer (a receipt,
a notice) or ``wait`` seconds passed. What comes back is opened as any member would open it
(decrypted with the tester's keys, verified against the anchor and the directory's CRLs,
the signer checked against the directory) and judged: see :mod:`securemail.conformance.cases`
for what each case expects.

Security: everything the gateway under test sends is untrusted and goes through
:func:`securemail.smime.unprotect` and the strict receipt and notice readers; the kit only
ever sends to the target given, and only test messages it built itself. What it takes in is
evidence for this run: kept in memory and written with the report, never delivered.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiosmtplib
from cryptography import x509

from securemail import addresses, notices
from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.cases import Case, Tester, build_cases
from securemail.conformance.report import Finding
from securemail.directory.model import Directory, Member
from securemail.errors import SecureMailError
from securemail.evidence import EvidenceError, is_receipt_message, read_receipt_message
from securemail.receive import Received
from securemail.receive.model import ListenerSettings
from securemail.receive.peer import start_peer_listener
from securemail.relay.client import Destination, RelayError, send
from securemail.relay.tls import PeerTls
from securemail.replies import Reply, ok
from securemail.smime import RecipientIdentity, TrustStore, Unprotected, unprotect, verify_receipt
from securemail.smime.decrypt import decrypt
from securemail.smime.limits import Limits
from securemail.smime.mime import decode_body, header_fields, split_header

_REASON = re.compile(rb"^X-SecureMail-Reason:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_POLL = 0.2  # seconds between looks at what came back


@dataclass(frozen=True)
class Kit:
    """The tester's side: its identity and keys, the verified directory, where it listens."""

    tester: Tester
    identities: tuple[RecipientIdentity, ...]
    directory: Directory
    anchors: tuple[x509.Certificate, ...]
    listen: tuple[str, int]
    listen_tls: ssl.SSLContext
    clock: Callable[[], datetime]
    wait: float = 120.0

    @property
    def trust(self) -> TrustStore:
        return TrustStore(list(self.anchors), list(self.directory.crls))


@dataclass(frozen=True)
class Target:
    """The gateway under test: where it listens, the member it serves, a test mailbox there."""

    host: str
    port: int
    member: Member
    recipient: str


@dataclass
class Run:
    """What one run saw: the findings, the cases sent, the messages that came back."""

    findings: list[Finding] = field(default_factory=list)
    cases: list[dict[str, str]] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def add(self, requirement: str, case: str, passed: bool, evidence: str) -> None:
        self.findings.append(Finding(requirement, case, passed, evidence))


@dataclass(frozen=True)
class Answer:
    """A message from the gateway under test, opened: a receipt or a notice for a case."""

    kind: str  # "receipt" or "notice"
    message_id: str | None  # the case's Message-ID it answers
    opened: Unprotected
    receipt: bytes = b""
    recipient: str = ""
    reason: str = ""


async def run_conformance(kit: Kit, target: Target) -> Run:
    """Run every case against ``target``; the findings, and what came back."""
    run = Run()
    host, port = kit.listen

    async def collect(received: Received) -> Reply:
        run.received.append(received.body)
        return ok("Conformance kit: kept as evidence")

    settings = ListenerSettings(host, port, kit.tester.domain, tls=kit.listen_tls)
    try:
        listener = await start_peer_listener(
            settings, served=lambda domain: domain == kit.tester.domain, admit=collect
        )
    except OSError as error:
        raise ConformanceError(ConformanceReason.LISTEN_FAILED, f"{host}:{port}: {error}") from None
    try:
        await _check_door(run, kit, target)
        cases = build_cases(kit.tester, target.recipient, _encryption(kit, target), kit.clock())
        replies = await _send_all(run, kit, target, cases)
        answers = await _await_answers(run, kit, target, cases, replies)
        for case in cases:
            _judge(run, kit, case, replies.get(case.name), answers.get(case.message_id, []))
    finally:
        await listener.close()
    return run


def _encryption(kit: Kit, target: Target) -> x509.Certificate:
    domain = target.recipient.rpartition("@")[2]
    certificate = kit.directory.encryption_certificate(domain, kit.clock())
    if certificate is None or kit.directory.owner_of(domain) != target.member:
        detail = f"no current encryption certificate of {target.member.org_id} for {domain}"
        raise ConformanceError(ConformanceReason.MEMBER_UNKNOWN, detail)
    return certificate


async def _check_door(run: Run, kit: Kit, target: Target) -> None:
    """SM-TLS-3: STARTTLS is offered, and MAIL before it is refused with 530."""
    client = aiosmtplib.SMTP(
        hostname=target.host, port=target.port, start_tls=False, timeout=30,
        local_hostname=f"conformance.{kit.tester.domain}",
    )  # fmt: skip
    try:
        await client.connect()
        await client.ehlo()
        offered = client.supports_extension("starttls")
        reply = await client.execute_command(b"MAIL", f"FROM:<{kit.tester.address}>".encode())
    except (aiosmtplib.SMTPException, OSError) as error:
        run.add("SM-TLS-3", "door", False, f"could not talk SMTP: {error}")
        return
    finally:
        client.close()
    run.add("SM-TLS-3", "door", offered, "STARTTLS offered" if offered else "no STARTTLS")
    refused = reply.code == 530
    run.add("SM-TLS-3", "door", refused, f"MAIL before STARTTLS answered {reply.code}")


async def _send_all(
    run: Run, kit: Kit, target: Target, cases: list[Case]
) -> dict[str, Reply | RelayError]:
    """Send each case over pinned STARTTLS; the reply to its recipient, or the relay error."""
    destination = Destination(
        target.host, target.port, f"conformance.{kit.tester.domain}",
        PeerTls(frozenset(target.member.tls_pins), kit.anchors), timeout=60,
    )  # fmt: skip
    replies: dict[str, Reply | RelayError] = {}
    for case in cases:
        run.cases.append({"name": case.name, "title": case.title, "message_id": case.message_id})
        try:
            result = await send(destination, case.mail_from, [case.recipient], case.wire)
            replies[case.name] = result[case.recipient]
        except RelayError as error:
            replies[case.name] = error
    first = replies[cases[0].name]
    secured = not isinstance(first, RelayError)
    evidence = "chain to the anchor, key pinned in the directory" if secured else str(first)
    run.add("SM-TLS-3", "tls", secured, evidence)
    return replies


def _awaited(case: Case, reply: Reply | RelayError | None) -> bool:
    """Whether ``case`` waits for an answer: it was taken (250), and expects one."""
    return isinstance(reply, Reply) and reply.ok and case.expect != "refused-at-data"


async def _await_answers(
    run: Run,
    kit: Kit,
    target: Target,
    cases: list[Case],
    replies: dict[str, Reply | RelayError],
) -> dict[str | None, list[Answer]]:
    """Open what comes back until every awaited case has an answer or ``wait`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + kit.wait
    answers: dict[str | None, list[Answer]] = {}
    seen = 0
    awaited = {c.message_id for c in cases if _awaited(c, replies.get(c.name))}
    while True:
        for number, body in enumerate(run.received[seen:], seen + 1):
            answer = _open(run, kit, target, body, f"received-{number:02d}")
            if answer is not None:
                answers.setdefault(answer.message_id, []).append(answer)
        seen = len(run.received)
        if awaited <= set(answers) or loop.time() > deadline:
            return answers
        await asyncio.sleep(_POLL)


def _open(run: Run, kit: Kit, target: Target, body: bytes, name: str) -> Answer | None:
    """Open a message from the gateway under test (``name``: as the report's folder calls
    it), with the SM-SEND checks it allows."""
    try:
        opened = unprotect(
            body, identities=kit.identities, trust=kit.trust, now=kit.clock(),
            require_encryption=True,
        )  # fmt: skip
        author = addresses.author(opened.content)
    except SecureMailError as error:
        run.add("SM-SEND-4", name, False, f"what it sent does not open: {error.reason}")
        return None
    _check_sent(run, kit, target, body, opened=opened, domain=author.domain, name=name)
    if is_receipt_message(opened.content):
        try:
            receipt, evidence = read_receipt_message(opened.content)
        except EvidenceError as error:
            run.add("SM-RCPT-3", name, False, f"receipt message refused: {error.reason}")
            return None
        return Answer("receipt", evidence.original_message_id, opened, receipt, evidence.recipient)
    report = notices.read_failure_report(opened.content)
    if report is None:
        return None
    reason = _REASON.search(opened.content)
    code = "" if reason is None else reason.group(1).decode("ascii", "replace")
    return Answer("notice", report.original_message_id, opened, reason=code)


def _check_sent(
    run: Run, kit: Kit, target: Target, body: bytes, *, opened: Unprotected, domain: str, name: str
) -> None:
    """SM-SEND-1/3/5 and SM-DIR-4 on one message the gateway under test sent us."""
    owns = domain in target.member.domains
    signer_ok = owns and kit.directory.may_sign_for(opened.signature.signer, domain)
    run.add("SM-SEND-5", name, signer_ok, f"From: domain {domain}, signer listed: {signer_ok}")
    block = b"\r\n" + split_header(body, Limits())[0] + b"\r\n"
    subject = b"\r\nSubject: SecureMail message\r\n" in block
    run.add("SM-SEND-1", name, subject, "outer Subject is 'SecureMail message'"
            if subject else "outer Subject is not 'SecureMail message'")  # fmt: skip
    tester = kit.directory.member(kit.tester.org_id)
    capabilities = () if tester is None else tester.capabilities
    wanted = "aes256-gcm" if "aes256-gcm" in capabilities else "aes256-cbc"
    cipher = "" if opened.encryption is None else opened.encryption.content_encryption
    run.add("SM-DIR-4", name, cipher == wanted, f"encrypted with {cipher}, directory says {wanted}")
    binary = _inner_encoding(kit, body) == "binary"
    allowed = not binary or "inner-binary" in capabilities
    run.add("SM-SEND-3", name, allowed, f"inner entity {'binary' if binary else 'base64'}")


def _inner_encoding(kit: Kit, body: bytes) -> str:
    block, content = split_header(body, Limits())
    inner, _ = decrypt(decode_body(header_fields(block, Limits()), content), kit.identities)
    fields = header_fields(split_header(inner, Limits())[0], Limits())
    encoding = next((v for n, v in fields if n.lower() == "content-transfer-encoding"), b"")
    return encoding.decode("ascii", "replace").strip().lower() or "7bit"


def _judge(
    run: Run, kit: Kit, case: Case, reply: Reply | RelayError | None, answers: list[Answer]
) -> None:
    """The findings of one case from its SMTP reply and the answers that came back."""
    if not isinstance(reply, Reply):
        for requirement in case.requirements:
            run.add(requirement, case.name, False, f"not run: {reply}")
        return
    said = f"DATA answered {reply.code} {reply.status}".strip()
    if case.expect == "refused-at-data":
        run.add(case.requirements[0], case.name, not reply.ok, said)
    elif case.expect == "receipt":
        _judge_receipt(run, kit, case, reply=reply, said=said, answers=answers)
    else:
        _judge_refusal(run, case, reply, said, answers)


def _judge_receipt(
    run: Run, kit: Kit, case: Case, *, reply: Reply, said: str, answers: list[Answer]
) -> None:
    receipts = [a for a in answers if a.kind == "receipt"]
    taken = reply.ok and bool(receipts)
    detail = f"{said}; {len(receipts)} receipt(s) within {kit.wait:.0f} s"
    for requirement in ("SM-RECV-1", "SM-RECV-5", "SM-RCPT-1"):
        run.add(requirement, case.name, taken, detail)
    for answer in receipts:
        assert case.basis is not None  # noqa: S101 (a receipt case asks for a receipt)
        try:
            verified = verify_receipt(answer.receipt, case.basis, trust=kit.trust, now=kit.clock())
            bound = kit.directory.may_sign_for(verified.signer, case.recipient.rpartition("@")[2])
            run.add(
                "SM-RCPT-2",
                case.name,
                bound,
                "bound to our signature" + ("" if bound else ", signer not the member's"),
            )
        except SecureMailError as error:
            run.add("SM-RCPT-2", case.name, False, f"receipt refused: {error.reason}")
        right = answer.recipient.lower() == case.recipient.lower()
        run.add("SM-RCPT-3", case.name, right, f"evidence names {answer.recipient}")  # fmt: skip


def _judge_refusal(run: Run, case: Case, reply: Reply, said: str, answers: list[Answer]) -> None:
    check, *failures = case.requirements
    if not reply.ok:
        run.add(check, case.name, True, f"refused: {said}")
        for requirement in failures:
            run.add(requirement, case.name, True, f"refused at DATA: {said}")
        return
    receipted = any(a.kind == "receipt" for a in answers)
    found = [a for a in answers if a.kind == "notice"]
    refused = bool(found) and not receipted
    if refused:
        seen = f"notice: {found[0].reason}"
    else:
        seen = "receipted: the gateway accepted it" if receipted else "no refusal seen (no notice)"
    run.add(check, case.name, refused, f"{said}; {seen}")
    expected = f" (expected {case.reason})" if case.reason else ""
    if not found:
        run.add("SM-FAIL-1", case.name, False, f"no notice{expected}")
    for notice in found:
        named = bool(notice.reason) and (case.reason is None or notice.reason == case.reason)
        run.add(
            "SM-FAIL-1", case.name, named, f"notice names {notice.reason or 'nothing'}{expected}"
        )
        quoted = case.marker.encode() in notice.opened.content
        evidence = "quotes the refused body" if quoted else "outer header only"
        run.add("SM-FAIL-2", case.name, not quoted, evidence)
