"""The routing decision as a table: sender, recipient, label, directory and node state in;
kind and reason code out (issue 7: fail closed, sovereignty, ordinary mail beside)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

import pytest

from securemail.directory import Directory, Endpoint, UpstreamQueue, next_version
from securemail.policy.model import NodePolicy, OrgPolicy
from securemail.policy.routing import (
    Route,
    RouteKind,
    RouteReason,
    choose_inner_encoding,
    hops,
    primary_hops,
    route,
)
from securemail.smime.labels import SecurityLabel
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, member_of

DEFER, MEMBER, REFUSE, SMARTHOST = (
    RouteKind.DEFER,
    RouteKind.MEMBER,
    RouteKind.REFUSE,
    RouteKind.SMARTHOST,
)
R = RouteReason


@dataclass(frozen=True)
class Case:
    """One row: the situation (defaults: an ordinary member-to-member message) and the result."""

    expect: tuple[RouteKind, RouteReason]
    label: str | None = None  # the message's classification
    privacy: str | None = None
    sender: str = "active"  # the sending organisation in the directory: active|suspended|absent
    recipient: str = "active"  # the recipient's member: active|suspended|absent
    region: str = "NZ"  # the recipient member's declared region
    certificate: str = "valid"  # the recipient's encryption certificate: valid|expired
    endpoint: bool = True  # the recipient member publishes a gateway endpoint and TLS pin
    directory: bool = True  # a verified directory is loaded
    smarthost: bool = True
    node_region: str = "NZ"
    offshore_allowed: bool = False
    secure_from: str = "IN-CONFIDENCE"
    allowed_regions: tuple[str, ...] = ("NZ",)


CASES = {
    # ordinary mail beside SecureMail
    "unlabelled to a member": Case((MEMBER, R.MEMBER)),
    "unlabelled to a non-member goes to the smarthost": Case(
        (SMARTHOST, R.NOT_A_MEMBER), recipient="absent"
    ),
    "unlabelled to a non-member without smarthost": Case(
        (REFUSE, R.NOT_A_MEMBER), recipient="absent", smarthost=False
    ),
    "below the threshold to a non-member": Case(
        (SMARTHOST, R.NOT_A_MEMBER), label="UNCLASSIFIED", recipient="absent"
    ),
    "privacy mark only to a non-member": Case(
        (SMARTHOST, R.NOT_A_MEMBER), privacy="PERSONAL", recipient="absent"
    ),
    "raised threshold lets IN-CONFIDENCE out": Case(
        (SMARTHOST, R.NOT_A_MEMBER),
        label="IN-CONFIDENCE",
        recipient="absent",
        secure_from="SENSITIVE",
    ),
    # fail closed: labelled mail never leaves SecureMail
    "IN-CONFIDENCE to a member": Case((MEMBER, R.MEMBER), label="IN-CONFIDENCE"),
    "RESTRICTED to a member": Case((MEMBER, R.MEMBER), label="RESTRICTED"),
    "IN-CONFIDENCE to a non-member, smarthost or not": Case(
        (REFUSE, R.LABEL_REQUIRES_SECUREMAIL), label="IN-CONFIDENCE", recipient="absent"
    ),
    "SENSITIVE to a non-member without smarthost": Case(
        (REFUSE, R.LABEL_REQUIRES_SECUREMAIL),
        label="SENSITIVE",
        recipient="absent",
        smarthost=False,
    ),
    "labelled PERSONAL to a non-member": Case(
        (REFUSE, R.LABEL_REQUIRES_SECUREMAIL),
        label="IN-CONFIDENCE",
        privacy="PERSONAL",
        recipient="absent",
    ),
    "unlabelled to a suspended member": Case((REFUSE, R.MEMBER_SUSPENDED), recipient="suspended"),
    "labelled to a suspended member": Case(
        (REFUSE, R.MEMBER_SUSPENDED), label="SENSITIVE", recipient="suspended"
    ),
    "unlabelled, certificate expired": Case((DEFER, R.NO_CERTIFICATE), certificate="expired"),
    "labelled, certificate expired: wait, never plaintext": Case(
        (DEFER, R.NO_CERTIFICATE), label="IN-CONFIDENCE", certificate="expired"
    ),
    "labelled, no endpoint": Case((DEFER, R.NO_ENDPOINT), label="IN-CONFIDENCE", endpoint=False),
    # sovereignty: the recipient's declared region
    "unlabelled to an AU member": Case((MEMBER, R.MEMBER), region="AU"),
    "below the threshold to an AU member": Case(
        (MEMBER, R.MEMBER), label="UNCLASSIFIED", region="AU"
    ),
    "labelled to an AU member": Case(
        (REFUSE, R.REGION_NOT_ALLOWED), label="IN-CONFIDENCE", region="AU"
    ),
    "labelled to an AU member the organisation allows": Case(
        (MEMBER, R.MEMBER), label="IN-CONFIDENCE", region="AU", allowed_regions=("NZ", "AU")
    ),
    "labelled to a suspended AU member: suspension first": Case(
        (REFUSE, R.MEMBER_SUSPENDED), label="SENSITIVE", region="AU", recipient="suspended"
    ),
    "labelled to an AU member with an expired certificate: region first": Case(
        (REFUSE, R.REGION_NOT_ALLOWED), label="SENSITIVE", region="AU", certificate="expired"
    ),
    # sovereignty: this node's declared region
    "labelled on an offshore node": Case(
        (REFUSE, R.NODE_OFFSHORE), label="IN-CONFIDENCE", node_region="AU"
    ),
    "labelled on an offshore node, even to a non-member": Case(
        (REFUSE, R.NODE_OFFSHORE), label="IN-CONFIDENCE", node_region="AU", recipient="absent"
    ),
    "labelled on an offshore node without a directory": Case(
        (REFUSE, R.NODE_OFFSHORE), label="RESTRICTED", node_region="AU", directory=False
    ),
    "labelled on an offshore node the operator allows": Case(
        (MEMBER, R.MEMBER), label="IN-CONFIDENCE", node_region="AU", offshore_allowed=True
    ),
    "unlabelled on an offshore node": Case((MEMBER, R.MEMBER), node_region="AU"),
    "unlabelled on an offshore node to a non-member": Case(
        (SMARTHOST, R.NOT_A_MEMBER), node_region="AU", recipient="absent"
    ),
    # the gateway itself
    "no directory yet": Case((DEFER, R.NO_DIRECTORY), directory=False),
    "labelled, no directory yet": Case((DEFER, R.NO_DIRECTORY), label="SENSITIVE", directory=False),
    "sender organisation suspended": Case((DEFER, R.SENDER_NOT_MEMBER), sender="suspended"),
    "sender organisation not in the directory": Case(
        (DEFER, R.SENDER_NOT_MEMBER), sender="absent", recipient="absent"
    ),
}


def _directory(pki: Pki, case: Case) -> Directory:
    members = []
    if case.sender != "absent":
        members.append(member_of(pki.agency, "agency", status=case.sender))
    if case.recipient != "absent":
        ministry = member_of(pki.ministry, "ministry", status=case.recipient)
        ministry = dataclasses.replace(ministry, region=case.region)
        if not case.endpoint:
            ministry = dataclasses.replace(ministry, endpoints=(), tls_pins=())
        members.append(ministry)
    return next_version(
        None, None, federation=FEDERATION, members=tuple(members), crls=(pki.crl,), now=NOW
    )


def _decide(pki: Pki, case: Case) -> tuple[RouteKind, RouteReason]:
    label = None
    if case.label is not None or case.privacy is not None:
        label = SecurityLabel(case.label, case.privacy)
    expired = pki.ministry.certificate.not_valid_after_utc + timedelta(days=1)
    decision = route(
        "ministry.govt.nz" if case.recipient != "absent" else "example.com",
        sender_org="agency",
        directory=_directory(pki, case) if case.directory else None,
        smarthost=case.smarthost,
        now=expired if case.certificate == "expired" else NOW,
        label=label,
        org_policy=OrgPolicy(secure_from=case.secure_from, allowed_regions=case.allowed_regions),
        node_policy=NodePolicy(case.node_region, case.offshore_allowed),
    )
    return decision.kind, decision.reason


@pytest.mark.parametrize("name", list(CASES))
def test_decision_table(pki: Pki, name: str) -> None:
    """Each situation in the table gets its decision and its stable reason code."""
    assert _decide(pki, CASES[name]) == CASES[name].expect


def test_every_reason_has_an_explanation_and_a_kebab_case_code() -> None:
    """Senders and operators are told why in words, and scripts match on a stable code."""
    for reason in RouteReason:
        assert reason.value == reason.value.lower() and " " not in reason.value
        assert len(Route(RouteKind.REFUSE, reason, "example.com").explanation) > 20


def test_defaults_keep_the_behaviour_before_labels(pki: Pki) -> None:
    """Callers that pass no label or policy get the decisions they always got."""
    directory = _directory(pki, Case((MEMBER, R.MEMBER)))
    outside = route(
        "example.com", sender_org="agency", directory=directory, smarthost=True, now=NOW
    )
    assert (outside.kind, outside.reason) == (SMARTHOST, R.NOT_A_MEMBER)
    member = route(
        "MINISTRY.govt.nz.", sender_org="agency", directory=directory, smarthost=True, now=NOW
    )
    assert member.kind is MEMBER and member.domain == "ministry.govt.nz"
    assert member.certificate == pki.ministry.certificate and member.cipher == "aes256-gcm"


def test_refusals_name_the_member_when_there_is_one(pki: Pki) -> None:
    """A region refusal carries the member, so a notice can name whom the mail did not reach."""
    case = Case((REFUSE, R.REGION_NOT_ALLOWED), label="IN-CONFIDENCE", region="AU")
    decision = route(
        "ministry.govt.nz",
        sender_org="agency",
        directory=_directory(pki, case),
        smarthost=True,
        now=NOW,
        label=SecurityLabel("IN-CONFIDENCE"),
    )
    assert decision.reason is R.REGION_NOT_ALLOWED
    assert decision.member is not None and decision.member.region == "AU"
    assert decision.certificate is None


def test_inner_entity_is_base64_unless_the_peer_lists_inner_binary(pki: Pki) -> None:
    """The inner signed entity is base64 (what OpenSSL's S/MIME reader needs) unless the
    peer's directory entry lists the inner-binary capability (profile §1)."""
    plain = member_of(pki.ministry, "ministry")
    compact = dataclasses.replace(plain, capabilities=(*plain.capabilities, "inner-binary"))
    assert choose_inner_encoding(plain) == "base64"
    assert choose_inner_encoding(compact) == "binary"


def test_hops_are_the_endpoints_then_the_upstream_queues_each_with_its_own_pins(
    pki: Pki,
) -> None:
    """A sender tries the member's endpoints in order, then its upstream queues; a queue is
    pinned to its own key, never the gateway's, and the forwarder sees the endpoints only."""
    queue_pin = "sha256:" + "Q" * 43 + "="
    member = dataclasses.replace(
        member_of(pki.ministry, "ministry"),
        endpoints=(Endpoint("mx1.ministry.govt.nz"), Endpoint("mx2.ministry.govt.nz", 2525)),
        upstream=(UpstreamQueue("queue.gsp.co.nz", 25, (queue_pin,), "NZ", "gsp"),),
    )
    tried = [(h.where, h.pins, h.operator) for h in hops(member)]
    assert tried == [
        ("mx1.ministry.govt.nz:25", member.tls_pins, None),
        ("mx2.ministry.govt.nz:2525", member.tls_pins, None),
        ("queue.gsp.co.nz:25", (queue_pin,), "gsp"),
    ]
    assert primary_hops(member) == hops(member)[:2]
