"""``securemail check-config``: is this node ready to run? (``postfix check``, ``doveconf -n``).

Prints one line per finding, ``<level>: <reason-code>: <detail>`` (level error, warning
or ok), and exits 1 if any is an
error. ``-n`` prints instead the settings the file sets that differ from their defaults,
with relative paths made absolute, as the node will use them. Nothing is created or
written (see :mod:`securemail.node.check`).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.cli.serve import CONFIG_OPTION, ports_file, read_config
from securemail.config.effective import non_default_settings
from securemail.node.check import ERROR, OK, check


@click.command("check-config")
@CONFIG_OPTION
@click.option(
    "-n", "non_default", is_flag=True, help="Print the settings that differ from the defaults."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors.")
def check_config_command(config_path: Path, non_default: bool, as_json: bool, quiet: bool) -> None:
    """Check the node's configuration, files, permissions, ports, database and directory."""
    config = read_config(config_path)
    if non_default:
        settings = non_default_settings(config_path)
        if as_json:
            click.echo(json.dumps(dict(settings), indent=2))
        else:
            for key, value in settings:
                click.echo(f"{key} = {json.dumps(value)}")
        return
    findings = check(config, datetime.now(UTC), running=ports_file(config).exists())
    errors = [f for f in findings if f.level == ERROR]
    if as_json:
        click.echo(
            json.dumps({"ok": not errors, "findings": [f.__dict__ for f in findings]}, indent=2)
        )
    else:
        for finding in findings:
            if not (quiet and finding.level == OK):
                click.echo(f"{finding.level}: {finding.reason}: {finding.detail}")
        click.echo(f"-- {len(errors)} error(s), {len(findings)} checks", err=True)
    if errors:
        sys.exit(1)
