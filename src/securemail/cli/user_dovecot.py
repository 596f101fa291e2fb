"""``securemail user export-dovecot``: write the accounts as Dovecot passwd-files.

See docs/dovecot.md: what is exported (one passdb slot per secret), the safe order of the
writes, and what Dovecot does not take over.

Security: the files hold password hashes only; they are written aside, mode 0640 and of the
output directory's group, and renamed into place (password slots before the users file).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

import click

from securemail.accounts.dovecot import DEFAULT_SLOTS, auth_config, export_users
from securemail.accounts.dovecot_files import Selection, Written, dovecot_users, write_files
from securemail.cli.user_node import open_node_accounts


@click.command("export-dovecot")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The existing directory Dovecot reads the files from (its group: Dovecot's).",
)
@click.option("--uid", type=click.IntRange(min=0), help="Owner of the Maildirs [this user].")
@click.option("--gid", type=click.IntRange(min=0), help="Group of the Maildirs [this group].")
@click.option("--slots", type=click.IntRange(min=1), default=DEFAULT_SLOTS, show_default=True)
@click.option("--print-config", is_flag=True, help="Print Dovecot's passdb/userdb part only.")
def export_dovecot_command(
    out: Path, uid: int | None, gid: int | None, slots: int, print_config: bool
) -> None:
    """Write the accounts as Dovecot passwd-files into OUT (see docs/dovecot.md)."""
    directory = out.absolute()
    if print_config:
        click.echo(auth_config(PurePosixPath(directory), slots), nl=False)
        return
    if not directory.is_dir():
        click.echo(f"error: not-a-directory: {directory} is not a directory", err=True)
        sys.exit(1)
    with open_node_accounts() as (config, service):
        selection = dovecot_users(service.imap_secrets(), config.organisations)
        owner = (os.getuid() if uid is None else uid, os.getgid() if gid is None else gid)
        files = export_users(selection.users, uid=owner[0], gid=owner[1], slots=slots)
        try:
            written = write_files(directory, files)
        except OSError as error:
            click.echo(
                f"error: unwritable: cannot write the export into {directory}: {error}", err=True
            )
            sys.exit(1)
    _report(directory, selection, written, slots)


def _report(directory: Path, selection: Selection, written: Written, slots: int) -> None:
    for line in selection.skipped:
        click.echo(f"warning: skipped {line}", err=True)
    for name, entries in written.entries:
        click.echo(f"{directory / name}  {entries} entries")
    for name in written.removed:
        click.echo(f"{directory / name}  removed (beyond {slots} slots)")
    disabled = sum(user.disabled for user in selection.users)
    exported = len(selection.users) - disabled
    click.echo(
        f"exported {exported} accounts with {slots} password slots "
        f"({disabled} disabled left out, {len(selection.skipped)} skipped)"
    )
