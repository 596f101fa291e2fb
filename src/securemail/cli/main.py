"""Entry point of the ``securemail`` command."""

from __future__ import annotations

import click

from securemail import __version__
from securemail.cli.audit import audit_group
from securemail.cli.check import check_config_command
from securemail.cli.conformance import conformance
from securemail.cli.contacts import contacts_group
from securemail.cli.db import db_group
from securemail.cli.demo import demo
from securemail.cli.directory import directory
from securemail.cli.federation import federation
from securemail.cli.grammar import Grammar
from securemail.cli.keys import keys
from securemail.cli.log import log_group
from securemail.cli.policy import policy_group
from securemail.cli.postfix import postfix_maps_command
from securemail.cli.queue import queue_group, status_command
from securemail.cli.queue_steer import COMMANDS as QUEUE_STEERING
from securemail.cli.records import records_group
from securemail.cli.rollover import install_next_command, promote_command, rollover_command
from securemail.cli.serve import serve_command
from securemail.cli.smime import smime
from securemail.cli.structured import structured
from securemail.cli.track import evidence_group, track_command
from securemail.cli.user import user_group


@click.group(cls=Grammar, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="securemail")
def cli() -> None:
    """SecureMail: signed, encrypted, receipted mail between federation members."""


cli.add_command(demo)
cli.add_command(smime)
cli.add_command(federation)
cli.add_command(conformance)
cli.add_command(directory)
cli.add_command(keys)
cli.add_command(audit_group)
cli.add_command(serve_command)
cli.add_command(queue_group)
cli.add_command(status_command)
cli.add_command(track_command)
cli.add_command(evidence_group)
cli.add_command(policy_group)
cli.add_command(user_group)
cli.add_command(log_group)
cli.add_command(contacts_group)
cli.add_command(structured)
cli.add_command(records_group)
cli.add_command(check_config_command)
cli.add_command(db_group)
cli.add_command(postfix_maps_command)
keys.add_command(rollover_command)
keys.add_command(install_next_command)
keys.add_command(promote_command)
for _steering in QUEUE_STEERING:
    queue_group.add_command(_steering)


def main() -> None:
    cli()
