"""``securemail queue`` and ``securemail status``: see and steer a node's queue.

The equivalents of Postfix's ``mailq`` and ``postsuper``. They open the node's database
directly, so they work whether or not the node is running (changes are transactions; a
running node sees them at its next claim).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail import logbook, operations
from securemail.cli.files import fail, refuse_missing_database
from securemail.cli.output import JSON_OPTION, echo_json
from securemail.cli.serve import CONFIG_OPTION, ports_file, read_config
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig
from securemail.directory.model import Directory
from securemail.directory.store import DirectoryStore
from securemail.queue import Direction, Entry, QueueError, QueueStore, State
from securemail.records.access import opened
from securemail.storage.engine import connect
from securemail.storage.errors import StorageError

STATES = [s.value for s in State]


@contextmanager
def open_store(config_path: Path) -> Iterator[QueueStore]:
    """The node's queue, which must exist: these commands never create one (a wrong
    ``data_dir`` must not look like an empty queue)."""
    config = read_config(config_path)
    refuse_missing_database(config)
    try:
        store = QueueStore.open(config.database)
    except QueueError as error:
        fail(error)
    try:
        yield store
    except QueueError as error:
        fail(error)
    finally:
        store.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _line(entry: Entry) -> str:
    pending = len(entry.pending())
    when = "" if entry.next_attempt_at is None else f" next {entry.next_attempt_at:%H:%M:%S}"
    sender = entry.mail_from or "<>"
    error = f"\n    {entry.last_reply}" if entry.last_reply else ""
    return (
        f"{entry.id}  {entry.state.value:<11} {entry.direction.value:<8} {entry.size:>8}  "
        f"{entry.created_at:%Y-%m-%d %H:%M:%S}  {sender} -> {len(entry.recipients)} "
        f"recipient(s), {pending} pending{when}{error}"
    )


def _as_json(entry: Entry) -> dict[str, object]:
    return {
        "id": entry.id,
        "state": entry.state.value,
        "direction": entry.direction.value,
        "kind": entry.kind,
        "org_id": entry.org_id,
        "mail_from": entry.mail_from,
        "client": entry.client,  # which listener and address it came in on
        "auth": entry.auth,  # the account that logged in to submit it, if any
        # how that account logged in, sole use and identity, as signed (docs/assurance.md)
        "assurance": None if entry.assurance is None else json.loads(entry.assurance),
        "message_id": entry.message_id,
        "size": entry.size,
        "created_at": entry.created_at.isoformat(),
        "attempts": entry.attempts,
        "reason": entry.reason,
        "last_reply": entry.last_reply,
        "recipients": [
            {
                "address": r.address,
                "disposition": r.disposition.value,
                "attempts": r.attempts,
                "reason": r.reason,
                "last_reply": r.last_reply,
            }
            for r in entry.recipients
        ],
    }


@click.group("queue")
def queue_group() -> None:
    """List, inspect, hold, release, retry and delete queue entries."""


@queue_group.command("list")
@CONFIG_OPTION
@click.option("--state", "states", multiple=True, type=click.Choice(STATES))
@click.option("--direction", type=click.Choice([d.value for d in Direction]))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", default=operations.DEFAULT_PAGE, show_default=True, type=int)
@click.option("--offset", default=0, show_default=True, type=int, help="Entries to skip.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
def list_command(
    config_path: Path,
    states: tuple[str, ...],
    direction: str | None,
    as_json: bool,
    limit: int,
    offset: int,
    oldest_first: bool,
) -> None:
    """Entries in the queue, newest first (all states unless --state is given), one page
    at a time: the last line (on stderr) says how many there are and how to see more."""
    try:
        wanted = operations.QueueFilter(
            states=tuple(State(s) for s in states),
            direction=None if direction is None else Direction(direction),
            limit=limit,
            offset=offset,
            oldest_first=oldest_first,
        )
    except operations.OperationError as error:
        fail(error)
    with open_store(config_path) as store:
        page = operations.list_entries(store, wanted)
    for entry in page.entries:
        click.echo(json.dumps(_as_json(entry)) if as_json else _line(entry))
    click.echo(_footer(page), err=True)


def _footer(page: operations.Page) -> str:
    """``-- entries 1-100 of 1661; more: --offset 100`` (never a silent cap)."""
    if not page.entries:
        return f"-- no entries here; {page.total} in all"
    first, last = page.offset + 1, page.offset + len(page.entries)
    more = f"; more: --offset {page.next_offset}" if page.more else ""
    return f"-- entries {first}-{last} of {page.total}{more}"


@queue_group.command("backlog")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per member.")
def backlog_command(config_path: Path, as_json: bool) -> None:
    """An upstream queue's backlog per member: messages waiting for its gateway, and
    (on any node) messages held for an organisation whose key is not installed."""
    with open_store(config_path) as store:
        backlog = operations.upstream_backlog(store)
        held = operations.held_for_key(store)
    now = _now()
    for waiting in backlog:
        if as_json:
            line = {
                "member": waiting.org_id,
                "waiting": waiting.waiting,
                "octets": waiting.octets,
                "oldest": waiting.oldest.isoformat(),
            }
            click.echo(json.dumps(line))
            continue
        age = str(now - waiting.oldest).split(".")[0]
        click.echo(
            f"{waiting.org_id:<20} {waiting.waiting:>6} waiting  {waiting.octets:>10} octets"
            f"  oldest {age} ago"
        )
    for org_id, count in sorted(held.items()):
        note = {"organisation": org_id, "held": count, "reason": "key-unavailable"}
        text = f"{org_id:<20} {count:>6} held for its key (key-unavailable)"
        click.echo(json.dumps(note) if as_json else text)
    if not backlog and not held:
        click.echo("-- nothing waits for a gateway or a key", err=True)


@queue_group.command("show")
@CONFIG_OPTION
@click.argument("entry_id")
@JSON_OPTION
def show_command(config_path: Path, entry_id: str, as_json: bool) -> None:
    """One entry: per-recipient state, last error and reason, and its event history."""
    with open_store(config_path) as store:
        entry = _entry(store, entry_id)
        events = store.events(entry_id)
    _opened(read_config(config_path), entry)
    if as_json:
        echo_json(_as_json(entry) | {"events": events})
        return
    for line in _details(entry):
        click.echo(line)
    click.echo("events:")
    for event in events:
        who = f" {event.recipient}" if event.recipient else ""
        reason = f" [{event.reason}]" if event.reason else ""
        detail = logbook.shown_detail(event.event, event.detail, headers=True)
        click.echo(f"  {event.time:%Y-%m-%d %H:%M:%S} {event.event}{who}{reason} {detail}")


def _details(entry: Entry) -> list[str]:
    """The entry as aligned ``name: value`` lines and one line per recipient (the same
    fields as ``--json``, for a person to read)."""
    fields = _as_json(entry)
    assurance = fields.pop("assurance")
    del fields["recipients"]
    lines = [f"{k + ':':<12} {'-' if v is None else v}" for k, v in fields.items()]
    if assurance is not None:
        lines.append(f"{'assurance:':<12} {json.dumps(assurance, sort_keys=True)}")
    lines.append("recipients:")
    for r in entry.recipients:
        reason = f" [{r.reason}]" if r.reason else ""
        reply = f" {r.last_reply}" if r.last_reply else ""
        lines.append(f"  {r.address}  {r.disposition.value}  attempts {r.attempts}{reason}{reply}")
    return lines


def _opened(config: NodeConfig, entry: Entry) -> None:
    """Record that the operator opened the entry (securemail.records.access)."""
    engine = connect(config.database)
    try:
        opened(engine, entry, by=f"cli:{getpass.getuser()}", via="cli", now=_now())
    except StorageError as error:
        fail(error)
    finally:
        engine.dispose()


def _entry(store: QueueStore, entry_id: str) -> Entry:
    try:
        return operations.entry(store, entry_id)
    except operations.OperationError as error:
        fail(error)


@queue_group.command("recover")
@CONFIG_OPTION
@click.option("--node", "owner", help="Take back the entries this (dead) node held.")
@click.option("--all", "every", is_flag=True, help="Take back every active entry.")
@JSON_OPTION
def recover_command(config_path: Path, owner: str | None, every: bool, as_json: bool) -> None:
    """Return entries left active by a node that will not come back to the queue.

    A node does this for its own entries when it starts. Never use --all while other nodes
    sharing the database are running: their work in hand would be tried twice.
    """
    if (owner is None) == (not every):
        raise click.UsageError("give --node NAME or --all")
    with open_store(config_path) as store:
        count = store.recover(_now(), owner=owner)
    if as_json:
        echo_json({"recovered": count})
        return
    click.echo(f"recovered {count} entr{'y' if count == 1 else 'ies'}")


@click.command("status")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def status_command(config_path: Path, as_json: bool) -> None:
    """A node summary: organisations, directory, listeners and queue counts by state."""
    config = read_config(config_path)
    ports = ports_file(config)
    listeners = json.loads(ports.read_text()) if ports.exists() else None
    directory, problem = _directory(config)
    with open_store(config_path) as store:
        status = operations.node_status(config, store, directory, _now())
    if as_json:
        summary = status.directory
        click.echo(
            json.dumps(
                {
                    "node": status.name,
                    "region": status.region,
                    "organisations": [
                        {"org_id": org_id, "domains": list(domains), "delivery": kind}
                        for org_id, domains, kind in status.organisations
                    ],
                    "directory": None
                    if summary is None
                    else {
                        "serial": summary.serial,
                        "members": summary.members,
                        "next_update": summary.next_update.isoformat(),
                        "stale": summary.stale,
                    },
                    "directory_problem": problem,
                    "listeners": listeners,
                    "queue": {state.value: status.counts.get(state, 0) for state in State},
                },
                indent=2,
            )
        )
        return
    click.echo(f"node        {config.name} (region {config.region})")
    for org in config.organisations:
        click.echo(f"serves      {org.org_id}: {', '.join(org.domains)} -> {org.delivery.kind}")
    click.echo(f"directory   {problem or _directory_line(status.directory)}")
    running = ", ".join(f"{name} {port}" for name, port in (listeners or {}).items() if port)
    click.echo(f"listeners   {running or 'not running'}")
    counts = status.counts
    click.echo("queue       " + ", ".join(f"{s.value} {counts.get(s, 0)}" for s in State))


def _directory(config: NodeConfig) -> tuple[Directory | None, str | None]:
    """The stored directory, or why it could not be read (a status line, not a decision)."""
    try:
        return stored_directory(config, _now()), None
    except Exception as error:  # any failure is shown, not raised
        return None, f"unreadable: {error}"


def _directory_line(summary: operations.DirectorySummary | None) -> str:
    if summary is None:
        return "none accepted yet"
    stale = " (STALE: past next update)" if summary.stale else ""
    return f"serial {summary.serial}, {summary.members} members{stale}"


def stored_directory(config: NodeConfig, now: datetime) -> Directory | None:
    """The last directory this node accepted and verified, as kept in its data folder."""
    store = DirectoryStore(
        config.data_dir / "directory", load_anchors(config.anchor), federation=config.federation
    )
    stored = store.load(now)
    return None if stored is None else stored.directory
