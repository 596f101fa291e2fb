"""``securemail policy explain``: what the gateway would decide for a message, and why.

Reads the node's configuration and the last directory the node verified, classifies a
synthetic message (From, Subject, and an ``X-Protective-Marking`` for ``--label``) under the
sending organisation's policy exactly as the relay does, and prints for each recipient the
routing decision, its reason code and the explanation. It sends nothing and changes nothing.

Exit status: 0 explained, 1 refused (``error: <reason-code>: <detail>`` on stderr), 2 usage.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from datetime import UTC, datetime
from email.header import Header
from enum import StrEnum
from pathlib import Path

import click

from securemail.cli.files import fail
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.policy_assurance import explain_inbound
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig, Organisation
from securemail.directory.model import Directory, ModelError, normalise_domain
from securemail.directory.store import DirectoryStore
from securemail.errors import SecureMailError
from securemail.policy.labels import FIELD, Classified, classify, protective_marking
from securemail.policy.labels import subject_marking as subject_form
from securemail.policy.routing import Route, RouteKind, route
from securemail.smime.labels import CLASSIFICATIONS, SecurityLabel

_LOCAL = re.compile(r"[!#$%&'*+\-/=?^_`{|}~.0-9A-Za-z]{1,64}")  # RFC 5321 dot-atom characters
_MAX_SUBJECT = 900  # characters: the field stays under RFC 5322's 998-octet line limit


class ExplainReason(StrEnum):
    """Why ``policy explain`` refused its input. Values are the printed reason codes."""

    BAD_ADDRESS = "bad-address"
    SENDER_NOT_SERVED = "sender-not-served"
    BAD_LABEL = "bad-label"
    BAD_SUBJECT = "bad-subject"


class ExplainError(SecureMailError[ExplainReason]):
    """An address, label or subject given to ``policy explain`` that it cannot use."""


@click.group("policy")
def policy_group() -> None:
    """Classification labels, sovereignty and fail-closed routing (docs/policy.md)."""


@policy_group.command("explain")
@CONFIG_OPTION
@click.option("--from", "sender", required=True, metavar="ADDRESS", help="The sender.")
@click.option(
    "--to", "recipients", required=True, multiple=True, metavar="ADDRESS", help="A recipient."
)
@click.option("--label", metavar="CLASSIFICATION", help="e.g. IN-CONFIDENCE (a marking header).")
@click.option("--subject", default="", help="The Subject, which may carry a [SEC=...] marking.")
@click.option(
    "--assurance",
    default="none",
    show_default=True,
    help="Mail from outside: what its provider vouched for, e.g. password-totp,sole-use.",
)
@JSON_OPTION
def explain_command(
    config_path: Path,
    sender: str,
    recipients: tuple[str, ...],
    label: str | None,
    subject: str,
    assurance: str,
    as_json: bool,
) -> None:
    """Print the label and, per recipient, the decision and why; send nothing. Exit 1, with
    an ``error:`` line naming the reason, when any recipient would be refused. A sender from
    outside writing to this node's recipients gets the sender assurance rules instead."""
    config = read_config(config_path)
    now = datetime.now(UTC)
    if _from_outside(config, sender, recipients):
        explain_inbound(config, sender, recipients, assurance)
        return
    try:
        org = _organisation(config, _address(sender))
        domains = [_address(recipient)[1] for recipient in recipients]
        message = synthetic_message(sender, subject, _label(label))
        directory = _directory(config, now)
    except SecureMailError as error:
        fail(error)
    classified = classify(message, org.policy, sender=sender)
    refused: list[tuple[str, str]] = []
    decisions: list[dict[str, object]] = []
    if not as_json:
        _describe(config, org, classified, directory, now)
    for recipient, domain in zip(recipients, domains, strict=True):
        decision = route(
            domain,
            sender_org=org.org_id,
            directory=directory,
            smarthost=config.smarthost is not None,
            now=now,
            label=classified.label,
            org_policy=org.policy,
            node_policy=config.node_policy,
        )
        if as_json:
            decisions.append(_decision_json(recipient, decision))
        else:
            click.echo(_decision_line(recipient, decision))
        if decision.kind is RouteKind.REFUSE:
            refused.append((recipient, decision.reason.value))
    if as_json:
        label_json = None if classified.label is None else classified.label.marking
        summary = {"organisation": org.org_id, "label": label_json, "source": classified.source}
        echo_json(summary | {"directory": _serial(directory), "decisions": decisions})
    if refused:  # a refusal is an answer, but not a yes: scripts must see it (exit 1)
        names = ", ".join(recipient for recipient, _ in refused)
        click.echo(f"error: {refused[0][1]}: refused for {names}", err=True)
        sys.exit(1)


def _from_outside(config: NodeConfig, sender: str, recipients: tuple[str, ...]) -> bool:
    """The sender is not served here and every recipient is: mail this node receives."""
    served = {d.lower() for d in config.domains}
    return _domain_of(sender) not in served and all(_domain_of(r) in served for r in recipients)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def synthetic_message(sender: str, subject: str, label: SecurityLabel | None) -> bytes:
    """The header the relay would see: From, Subject and (for a label) its marking field."""
    lines = [f"From: <{sender}>", f"Subject: {_subject_text(subject)}"]
    if label is not None:
        lines.append(f"{FIELD}: {protective_marking(label, origin=sender)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _address(text: str) -> tuple[str, str]:
    local, at, domain = text.rpartition("@")
    try:
        if not at or not _LOCAL.fullmatch(local):
            raise ModelError("expected local@domain")
        return local, normalise_domain(domain)
    except ModelError as error:
        raise ExplainError(ExplainReason.BAD_ADDRESS, f"{text!r}: {error}") from None


def _organisation(config: NodeConfig, address: tuple[str, str]) -> Organisation:
    """The organisation sending from the domain (or from one of its personal-use domains)."""
    domain = address[1]
    org = config.organisation_for(domain) or next(
        (o for o in config.organisations if domain in o.policy.personal_domains), None
    )
    if org is None:
        served = ", ".join(sorted(config.domains))
        detail = f"{domain} is not a domain this node sends for ({served})"
        raise ExplainError(ExplainReason.SENDER_NOT_SERVED, detail)
    return org


def _label(text: str | None) -> SecurityLabel | None:
    if text is None:
        return None
    word = "-".join(text.upper().split())
    if word not in CLASSIFICATIONS:
        known = ", ".join(CLASSIFICATIONS)
        raise ExplainError(ExplainReason.BAD_LABEL, f"{text!r} is not one of {known}")
    return SecurityLabel(word)


def _subject_text(subject: str) -> str:
    if len(subject) > _MAX_SUBJECT:
        raise ExplainError(ExplainReason.BAD_SUBJECT, f"longer than {_MAX_SUBJECT} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in subject):
        raise ExplainError(ExplainReason.BAD_SUBJECT, "control characters are not allowed")
    if subject.isascii():
        return subject
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")


def _directory(config: NodeConfig, now: datetime) -> Directory | None:
    """The last directory the node verified (verified again here), or None."""
    store = DirectoryStore(
        config.data_dir / "directory", load_anchors(config.anchor), federation=config.federation
    )
    stored = store.load(now)
    return None if stored is None else stored.directory


def _describe(
    config: NodeConfig,
    org: Organisation,
    classified: Classified,
    directory: Directory | None,
    now: datetime,
) -> None:
    policy, node = org.policy, config.node_policy
    offshore = ", offshore labelled mail allowed" if node.allow_offshore_labelled else ""
    click.echo(f"organisation {org.org_id} (node region {node.region}{offshore})")
    regions = ", ".join(policy.allowed_regions)
    click.echo(f"policy       {policy.secure_from} and above: SecureMail only, to {regions}")
    click.echo(f"label        {_label_text(classified)}")
    if classified.conflict is not None:
        click.echo(f"note         {classified.conflict}")
    if directory is None:
        click.echo("directory    none verified yet")
    else:
        stale = " (STALE: past next update)" if directory.is_stale(now) else ""
        click.echo(f"directory    serial {directory.serial}{stale}")


def _label_text(classified: Classified) -> str:
    if classified.label is None:
        return f"unlabelled (source: {classified.source})"
    form = subject_form(classified.label)
    return f"{classified.label.marking} {form} (source: {classified.source})"


def _serial(directory: Directory | None) -> int | None:
    return None if directory is None else directory.serial


def _decision_json(recipient: str, decision: Route) -> dict[str, object]:
    member = decision.member
    return {
        "recipient": recipient,
        "decision": decision.kind.value,
        "reason": decision.reason.value,
        "member": None if member is None else member.org_id,
        "explanation": decision.explanation,
    }


def _decision_line(recipient: str, decision: Route) -> str:
    member = decision.member
    where = "" if member is None else f" [member {member.org_id}, region {member.region}]"
    kind, reason = decision.kind.value, decision.reason.value
    return f"{recipient}: {kind} ({reason}){where}: {decision.explanation}"
