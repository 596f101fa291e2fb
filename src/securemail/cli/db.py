"""``securemail db current|upgrade|downgrade|history``: the node database's schema.

A node migrates its database to the newest schema when it starts; these commands do it by
hand: before an upgrade (to see what will change), and to go back before a rollback to the
previous version (``db downgrade REVISION``, then install that version). Each migration
runs in one transaction; on PostgreSQL under the advisory lock that keeps two nodes from
migrating at once. Stop the node (every node on a shared database) before a downgrade.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from alembic.util.exc import CommandError

from securemail.cli.files import fail
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.reasons import NodeReason
from securemail.node.context import NodeError
from securemail.storage.engine import connect, downgrade, upgrade
from securemail.storage.errors import StorageError, StorageReason
from securemail.storage.versions import chain, schema_version


@click.group("db")
def db_group() -> None:
    """See and migrate the node database's schema (upgrade, and downgrade for a rollback)."""


@db_group.command("current")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def current_command(config_path: Path, as_json: bool) -> None:
    """The database's schema revision and the one this version expects (creates nothing)."""
    config = read_config(config_path)
    try:
        current, head = schema_version(config.database)
    except StorageError as error:
        fail(error)
    if as_json:
        click.echo(json.dumps({"current": current, "head": head, "up_to_date": current == head}))
        return
    state = "up to date" if current == head else "behind: `securemail db upgrade`"
    click.echo(f"current {current or 'none (no schema)'}\nhead    {head} ({state})")


@db_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, oldest first.")
def history_command(as_json: bool) -> None:
    """The revisions of the migration chain, oldest first."""
    revisions = chain()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in revisions], indent=2))
        return
    for revision in revisions:
        click.echo(f"{revision.id}  (after {revision.down or 'nothing'})  {revision.doc}")


@db_group.command("upgrade")
@CONFIG_OPTION
@click.argument("revision", default="head")
@JSON_OPTION
def upgrade_command(config_path: Path, revision: str, as_json: bool) -> None:
    """Migrate the database to REVISION (default: the newest), creating it if needed."""
    _migrate(config_path, revision, up=True, as_json=as_json)


@db_group.command("downgrade")
@CONFIG_OPTION
@click.argument("revision")
@JSON_OPTION
def downgrade_command(config_path: Path, revision: str, as_json: bool) -> None:
    """Take the database back to REVISION (see `db history`), for a rollback.

    Stop every node using the database first. A downgrade drops what later revisions
    added: take a backup first.
    """
    _migrate(config_path, revision, up=False, as_json=as_json)


def _migrate(config_path: Path, revision: str, *, up: bool, as_json: bool) -> None:
    config = read_config(config_path)
    known = {r.id for r in chain()} | {"head", "base"}
    if revision not in known:
        detail = f"no revision {revision!r}: one of {', '.join(sorted(known))}"
        fail(NodeError(NodeReason.BAD_CONFIG, detail))
    if not config.data_dir.is_dir():
        detail = f"node.data_dir {config.data_dir} does not exist: is this the node's config?"
        fail(NodeError(NodeReason.BAD_CONFIG, detail))
    try:
        before, _ = schema_version(config.database)
        if before is None and not up:
            fail(StorageError(StorageReason.UNAVAILABLE, "no schema to downgrade"))
        engine = connect(config.database)
        try:
            (upgrade if up else downgrade)(engine, revision)
        finally:
            engine.dispose()
        after, _ = schema_version(config.database)
    except StorageError as error:
        fail(error)
    except CommandError as error:  # a revision the database is not on the way to
        fail(StorageError(StorageReason.UNAVAILABLE, f"migrate to {revision}: {error}"))
    if as_json:
        echo_json({"before": before, "after": after})
        return
    click.echo(f"schema {before or 'none'} -> {after or 'none'}")
