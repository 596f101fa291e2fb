"""``securemail policy explain`` for mail from outside: the sender assurance rules.

When the sender is not served by this node and every recipient is, ``policy explain``
answers as the receiving gateway would: for each recipient, the first
``[[organisation.policy.assurance]]`` rule that covers the sender and the recipient, and
what a message with the assurance given by ``--assurance`` would lack under it.

``--assurance`` names what the sender's provider verifiably vouched for: ``none`` (no
verified assertion: a gateway's relayed mail, or a claim that was not believed), or a
login word (``password``, ``app-password``, ``app-password-totp``, ``password-totp``)
followed by ``,sole-use`` and ``,identity`` as they hold.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from securemail.config.node import NodeConfig
from securemail.policy.assurance import decide_assurance, describe
from securemail.smime.assurance import LOGINS, IdentityCheck, SenderAssurance


def parse_assurance(text: str, sender: str) -> SenderAssurance | None:
    """``--assurance`` as the verified assertion it stands for (None for ``none``)."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words in ([], ["none"]):
        return None
    login, extra = words[0], set(words[1:])
    if login not in LOGINS or extra - {"sole-use", "identity"}:
        raise click.BadParameter(
            f"{text!r}: none, or one of {', '.join(LOGINS)} then ,sole-use and ,identity",
            param_hint="--assurance",
        )
    now = datetime.now(UTC)
    identity = IdentityCheck("as stated", "as stated", now.date()) if "identity" in extra else None
    since = now if "sole-use" in extra else None
    return SenderAssurance("provider", sender, login, since, identity)


def explain_inbound(
    config: NodeConfig, sender: str, recipients: tuple[str, ...], assurance: str
) -> None:
    """Print each recipient's decision under its organisation's assurance rules; exit 1
    with an ``error:`` line when any would be refused."""
    verified = parse_assurance(assurance, sender.lower())
    shown = "none verified" if verified is None else describe(verified)
    click.echo(f"mail from outside: {sender}, sender assurance: {shown}")
    refused = []
    for recipient in recipients:
        org = config.organisation_for(recipient.rpartition("@")[2].lower())
        assert org is not None  # noqa: S101 (the caller checked every recipient is served)
        rules = org.policy.assurance
        decision = decide_assurance(rules, sender=sender, recipient=recipient, verified=verified)
        number = "" if decision.rule is None else f" (rule {rules.index(decision.rule) + 1})"
        click.echo(f"{recipient}: {decision.action}{number}: {decision.explain()}")
        if decision.action == "refuse":
            refused.append(recipient)
    if refused:
        click.echo(f"error: assurance-below-policy: refused for {', '.join(refused)}", err=True)
        sys.exit(1)
