"""One conformance run against a member's gateway: look at its door, send the cases,
collect what comes back, and judge each requirement.

Theory of operation. The kit is a small gateway of its own for one run: it listens on the
tester's directory endpoint (a peer listener, STARTTLS with the tester's TLS key, taking
mail only for the tester's domain), so the gateway under test sends its receipts and
notices there exactly as it would to any member. The kit first looks at the door
(:mod:`securemail.conformance.transport`: STARTTLS, TLS version, certificate, pin), then
sends every case over pinned STARTTLS (:func:`securemail.relay.client.send`), and waits
until each case has its answer (a receipt, a notice) or ``wait`` seconds passed. What comes
back is opened as any member would open it (:mod:`securemail.conformance.answers`) and
judged (:mod:`securemail.conformance.judge`).

Security: everything the gateway under test sends is untrusted and goes through
:func:`securemail.smime.unprotect` and the strict receipt and notice readers; the kit only
ever sends to the target given, and only test messages it built itself. What it takes in is
evidence for this run: kept in memory and written with the report, never delivered.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from securemail.conformance import ConformanceError, ConformanceReason
from securemail.conformance.answers import Answer, Opener, open_answer
from securemail.conformance.cases import Case, Tester, build_cases
from securemail.conformance.judge import Judge
from securemail.conformance.report import Finding
from securemail.conformance.transport import check_door, check_tls
from securemail.directory.model import Directory, Member
from securemail.receive import Received
from securemail.receive.model import ListenerSettings
from securemail.receive.peer import start_peer_listener
from securemail.relay.client import Destination, RelayError, send
from securemail.relay.tls import ClientCertificate, PeerTls
from securemail.replies import Reply, ok
from securemail.smime import RecipientIdentity, TrustStore

_POLL = 0.2  # seconds between looks at what came back
_SETTLE = 5.0  # seconds, at least, to wait for late answers once the awaited ones came


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
    # the tester's member TLS certificate, presented to the gateway under test (profile
    # §10.1: a peer listener lets in only clients whose key the directory pins)
    client: ClientCertificate | None = None

    @property
    def trust(self) -> TrustStore:
        return TrustStore(list(self.anchors), list(self.directory.crls))

    @property
    def local(self) -> str:
        return f"conformance.{self.tester.domain}"


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
        await _run_cases(run, kit, target)
    finally:
        await listener.close()
    return run


async def _look_at_door(run: Run, kit: Kit, target: Target) -> None:
    """The transport entries: STARTTLS and MAIL before it, then the TLS it offers."""
    offered = await check_door(run.add, target.host, target.port, kit.local, kit.tester.address)
    if not offered:
        return
    client = kit.client
    await check_tls(
        run.add, (target.host, target.port, kit.local), anchors=kit.anchors,
        pins=frozenset(target.member.tls_pins), now=kit.clock(),
        client=None if client is None else (client.certificate, client.key, client.password),
    )  # fmt: skip


async def _run_cases(run: Run, kit: Kit, target: Target) -> None:
    await _look_at_door(run, kit, target)
    built = build_cases(
        kit.tester, target.member, target.recipient, _encryption(kit, target), kit.clock()
    )
    # What must be refused goes first: a gateway that works in order has judged it by the
    # time the valid cases' receipts come back (see _await_answers for the rest).
    cases = sorted(built, key=lambda case: case.expect in ("receipt", "notice"))
    replies = await _send_all(run, kit, target, cases)
    opener = _opener(kit, target)
    answers = await _await_answers(run, kit, opener, cases, replies)
    # A refusal after 250 is silent (profile §13: no notice for an unverified sender), so
    # it is told from a gateway that answers nothing only by the valid cases' receipts.
    receipts = any(
        a.kind == "receipt"
        for c in cases
        if c.expect == "receipt"
        for a in answers.get(c.message_id, [])
    )
    judge = Judge(run.add, opener, kit.clock(), kit.wait, receipts)
    for case in cases:
        judge.case(case, replies.get(case.name), answers.get(case.message_id, []))


def _opener(kit: Kit, target: Target) -> Opener:
    tester = kit.directory.member(kit.tester.org_id)
    if tester is None:
        raise ConformanceError(ConformanceReason.MEMBER_UNKNOWN, f"{kit.tester.org_id} unknown")
    return Opener(kit.identities, kit.trust, kit.directory, tester, target.member)


def _encryption(kit: Kit, target: Target) -> x509.Certificate:
    domain = target.recipient.rpartition("@")[2]
    certificate = kit.directory.encryption_certificate(domain, kit.clock())
    if certificate is None or kit.directory.owner_of(domain) != target.member:
        detail = f"no current encryption certificate of {target.member.org_id} for {domain}"
        raise ConformanceError(ConformanceReason.MEMBER_UNKNOWN, detail)
    return certificate


async def _send_all(
    run: Run, kit: Kit, target: Target, cases: list[Case]
) -> dict[str, Reply | RelayError]:
    """Send each case over pinned STARTTLS; the reply to its recipient, or the relay error."""
    destination = Destination(
        target.host,
        target.port,
        kit.local,
        PeerTls(frozenset(target.member.tls_pins), kit.anchors, kit.client),
        timeout=60,
    )
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
    evidence = "the kit's pinned STARTTLS session" + (" held" if secured else f": {first}")
    run.add("SM-TLS-3", "send", secured, evidence)
    return replies


def _awaited(case: Case, reply: Reply | RelayError | None) -> bool:
    """Whether ``case`` waits for an answer: it was taken (250), and expects one."""
    return isinstance(reply, Reply) and reply.ok and case.expect in ("receipt", "notice")


async def _await_answers(
    run: Run,
    kit: Kit,
    opener: Opener,
    cases: list[Case],
    replies: dict[str, Reply | RelayError],
) -> dict[str | None, list[Answer]]:
    """Open what comes back until every awaited case has its answer and then as long again
    (at least ``_SETTLE`` seconds), so that a receipt for a case that must be refused, made
    as slowly as the valid ones, is still seen; never longer than ``wait``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + kit.wait
    answers: dict[str | None, list[Answer]] = {}
    seen = 0
    awaited = {c.message_id for c in cases if _awaited(c, replies.get(c.name))}
    settled = False
    while True:
        for number, body in enumerate(run.received[seen:], seen + 1):
            name = f"received-{number:02d}"
            answer = open_answer(run.add, opener, body, name, kit.clock())
            if answer is not None:
                answers.setdefault(answer.message_id, []).append(answer)
        seen = len(run.received)
        now = loop.time()
        if not settled and awaited <= set(answers):
            deadline, settled = min(deadline, now + max(_SETTLE, now - start)), True
        if now > deadline:
            return answers
        await asyncio.sleep(_POLL)
