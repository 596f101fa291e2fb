"""The outbound worker on a real queue, with a recording relay: protect, route, record."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from securemail.directory.model import Directory, UpstreamQueue, spki_pin
from securemail.policy.model import NodePolicy
from securemail.protect.context import ProtectContext
from securemail.protect.service import Outbound
from securemail.queue import Direction, Entry, NewMessage, State
from securemail.relay import Destination, RelayError, RelayReason
from securemail.replies import Reply
from securemail.smime import unprotect
from tests.conftest import MESSAGE, NOW, Pki
from tests.support.roles import RecordingRelay, directory, notices_for, open_queue, org_keys

BOB = "bob@ministry.govt.nz"


def outbound(body: bytes = MESSAGE) -> NewMessage:
    return NewMessage(
        Direction.OUTBOUND, "agency", "alice@agency.govt.nz", (BOB,), body, client="test"
    )


def attempt(
    pki: Pki,
    tmp_path: Path,
    relay: RecordingRelay,
    body: bytes = MESSAGE,
    directory_of: Callable[[Pki], Directory] = directory,
) -> list[Entry]:
    """One claimed outbound entry processed; every entry of the queue after it."""

    async def scenario() -> list[Entry]:
        async with open_queue(tmp_path / "queue.sqlite") as queue:
            orgs = {"agency": org_keys(pki.agency, "agency", tmp_path)}
            context = ProtectContext(
                helo="gw.test",
                orgs=orgs,
                directory=lambda: directory_of(pki),
                anchors=(pki.ca.certificate,),
                node_policy=NodePolicy(),
                smarthost=None,
                relay=relay,
                queue=queue.access,
                notices=notices_for(orgs, queue.access),
                clock=lambda: NOW,
            )
            queue.store.enqueue(outbound(body), NOW)
            [claimed] = queue.store.claim(Direction.OUTBOUND, NOW, 1)
            await Outbound(context).process(claimed)
            return queue.store.list()

    return asyncio.run(scenario())


def test_member_mail_is_signed_encrypted_and_relayed_to_the_pinned_endpoint(
    pki: Pki, tmp_path: Path
) -> None:
    """Mail to a member goes once to its directory endpoint, pinned, and only the member can
    read it; the peer's 250 delivers the entry."""
    relay = RecordingRelay()
    [entry] = attempt(pki, tmp_path, relay)
    [sent] = relay.sent
    assert (sent.destination.host, sent.destination.port) == ("mx.ministry.govt.nz", 25)
    assert sent.destination.peer_tls is not None
    assert sent.destination.peer_tls.pins == frozenset({spki_pin(pki.ministry.certificate)})
    assert sent.recipients == (BOB,) and MESSAGE not in sent.body
    opened = unprotect(sent.body, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW)
    assert opened.content == MESSAGE
    assert entry.state is State.DELIVERED


def test_a_from_outside_the_organisation_bounces_with_a_notice_and_nothing_is_sent(
    pki: Pki, tmp_path: Path
) -> None:
    """A From: in another organisation's domain is never signed: the recipient bounces with
    from-not-authorised and the sender gets a notice, queued for local delivery."""
    forged = MESSAGE.replace(b"alice@agency.govt.nz", b"mallory@ministry.govt.nz")
    relay = RecordingRelay()
    entries = attempt(pki, tmp_path, relay, forged)
    assert relay.sent == []
    [bounced] = [e for e in entries if e.kind == "mail"]
    assert bounced.state is State.BOUNCED
    assert bounced.recipients[0].reason == "from-not-authorised"
    [notice] = [e for e in entries if e.kind == "notice"]
    assert notice.direction is Direction.INBOUND
    assert [r.address for r in notice.recipients] == ["alice@agency.govt.nz"]


def test_a_relay_failure_defers_the_entry(pki: Pki, tmp_path: Path) -> None:
    """When the relay fails as a whole the entry stays queued for a retry, nothing bounces."""
    relay = RecordingRelay(failure=RelayError(RelayReason.CONNECT_FAILED, "connection refused"))
    [entry] = attempt(pki, tmp_path, relay)
    assert entry.state is State.DEFERRED
    assert entry.recipients[0].reason == RelayReason.CONNECT_FAILED


@dataclass
class DownAt(RecordingRelay):
    """A relay whose sends to ``down`` hosts fail as a whole (connection refused)."""

    down: frozenset[str] = frozenset()

    async def send(
        self, destination: Destination, mail_from: str, recipients: Sequence[str], body: bytes
    ) -> dict[str, Reply]:
        self.tried.append(destination.host)
        if destination.host in self.down:
            raise RelayError(RelayReason.CONNECT_FAILED, f"{destination.host} refused")
        return await super().send(destination, mail_from, recipients, body)

    tried: list[str] = field(default_factory=list)


QUEUE_PIN = "sha256:" + "Q" * 43 + "="


def with_upstream(pki: Pki) -> Directory:
    """The test directory, the ministry naming an upstream queue run by a GSP."""
    found = directory(pki)
    queue = UpstreamQueue("queue.gsp.co.nz", 2525, (QUEUE_PIN,), "NZ", "gsp")
    members = tuple(
        dataclasses.replace(m, upstream=(queue,)) if m.org_id == "ministry" else m
        for m in found.members
    )
    return dataclasses.replace(found, members=members)


def test_gateway_down_sends_to_the_upstream_queue_pinned_to_its_own_key(
    pki: Pki, tmp_path: Path
) -> None:
    """With the member's gateway down, the same protected copy goes to its upstream queue,
    pinned to the queue's key; the entry is delivered and its history says where."""
    relay = DownAt(down=frozenset({"mx.ministry.govt.nz"}))
    [entry] = attempt(pki, tmp_path, relay, directory_of=with_upstream)
    assert relay.tried == ["mx.ministry.govt.nz", "queue.gsp.co.nz"]
    [sent] = relay.sent
    assert (sent.destination.host, sent.destination.port) == ("queue.gsp.co.nz", 2525)
    assert sent.destination.peer_tls is not None
    assert sent.destination.peer_tls.pins == frozenset({QUEUE_PIN})
    opened = unprotect(sent.body, identities=[pki.ministry.recipient], trust=pki.trust(), now=NOW)
    assert opened.content == MESSAGE
    assert entry.state is State.DELIVERED


def test_gateway_up_never_touches_the_upstream_queue(pki: Pki, tmp_path: Path) -> None:
    """The upstream queue is a fallback only: a gateway that answers gets the mail."""
    relay = DownAt()
    attempt(pki, tmp_path, relay, directory_of=with_upstream)
    assert relay.tried == ["mx.ministry.govt.nz"]


def test_gateway_and_upstream_down_defers(pki: Pki, tmp_path: Path) -> None:
    """When every hop fails the entry stays queued with the last failure, nothing bounces."""
    relay = DownAt(down=frozenset({"mx.ministry.govt.nz", "queue.gsp.co.nz"}))
    [entry] = attempt(pki, tmp_path, relay, directory_of=with_upstream)
    assert relay.tried == ["mx.ministry.govt.nz", "queue.gsp.co.nz"]
    assert entry.state is State.DEFERRED
    assert entry.recipients[0].reason == RelayReason.CONNECT_FAILED
