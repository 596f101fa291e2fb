"""``securemail queue hold|release|retry|delete|purge``: steer one entry, many, or ALL.

Like Postfix's ``postsuper -h/-H/-r/-d``: entry ids as arguments, ``ALL``, or ``-`` for ids
on stdin (one a line, as ``queue list`` prints them), narrowed by ``--state``, ``--sender``,
``--recipient`` and ``--reason``; ``--dry-run`` prints what would change and changes
nothing. The choosing and steering is :mod:`securemail.bulk`, which the console uses too.

An action applies only where it can: a delivered entry is never held or retried. An id
named on the command line that it does not apply to is an error (exit 1); an entry chosen
by ``ALL`` or a filter that it does not apply to is skipped and said so on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from securemail import bulk
from securemail.bulk import Action, Report, Selection
from securemail.cli.files import fail
from securemail.cli.queue import STATES, open_store
from securemail.cli.serve import CONFIG_OPTION
from securemail.config.toml_table import parse_duration
from securemail.errors import SecureMailError
from securemail.queue import State

_DONE = {
    Action.HOLD: "hold done",
    Action.RELEASE: "release done",
    Action.RETRY: "retry done",
    Action.DELETE: "delete done",
    Action.PURGE: "purged",
}


def _selection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            CONFIG_OPTION,
            click.argument("words", nargs=-1, metavar="[ID|ALL|-]..."),
            click.option("--state", "states", multiple=True, type=click.Choice(STATES)),
            click.option("--sender", help="Only entries from this envelope sender."),
            click.option("--recipient", help="Only entries with this envelope recipient."),
            click.option("--reason", help="Only entries with this reason code."),
            click.option(
                "--dry-run", is_flag=True, help="Print what would change; change nothing."
            ),
            click.option("--json", "as_json", is_flag=True, help="One JSON report."),
        ]
    ):
        func = option(func)
    return func


def _selection(
    words: tuple[str, ...],
    states: tuple[str, ...],
    sender: str | None,
    recipient: str | None,
    reason: str | None,
) -> Selection:
    lines = sys.stdin.read().splitlines() if "-" in words else []
    ids, every = bulk.parse_ids(words, lines)
    return Selection(
        ids=ids,
        every=every,
        by_id=bool(ids) or "-" in words,
        states=tuple(State(s) for s in states),
        sender=sender or None,
        recipient=recipient or None,
        reason=reason or None,
    )


def _run(
    config_path: Path,
    action: Action,
    selection: Selection,
    *,
    dry_run: bool,
    as_json: bool,
    force: bool = False,
    quarantined: bool = False,
) -> None:
    now = datetime.now(UTC)
    try:
        with open_store(config_path) as store:
            report = bulk.steer(
                store,
                action,
                selection,
                now,
                dry_run=dry_run,
                force=force,
                quarantined=quarantined,
            )
    except SecureMailError as error:
        fail(error)
    _show(report, by_id=selection.by_id and not selection.every, as_json=as_json)


def _show(report: Report, *, by_id: bool, as_json: bool) -> None:
    """The report: one line per entry, a summary on stderr; exit 1 if anything named by
    id was refused, or anything failed."""
    errors = [o for o in report.refused if by_id or o.reason != bulk.BulkReason.NOT_APPLICABLE]
    skipped = [o for o in report.refused if o not in errors]
    if as_json:
        click.echo(json.dumps(_as_json(report), indent=2))
    else:
        _show_changed(report)
        for o in skipped:
            click.echo(f"{o.entry_id}: skipped: {o.detail}", err=True)
    for o in errors:
        click.echo(f"error: {o.reason}: {o.entry_id}: {o.detail}", err=True)
    verb = "would change" if report.dry_run else "changed"
    summary = f"-- {report.action.value}: {len(report.changed)} {verb}"
    click.echo(f"{summary}, {len(skipped)} skipped, {len(errors)} refused", err=True)
    if errors:
        sys.exit(1)


def _show_changed(report: Report) -> None:
    """A line per entry changed; a real purge, which may remove thousands, only counts."""
    if report.action is Action.PURGE and not report.dry_run:
        count = len(report.changed)
        click.echo(f"purged {count} entr{'y' if count == 1 else 'ies'}")
        return
    for done in report.changed:
        what = f"would {report.action.value}" if report.dry_run else _DONE[report.action]
        click.echo(f"{done.entry_id}: {what} ({done.state})")


def _as_json(report: Report) -> dict[str, object]:
    return {
        "action": report.action.value,
        "dry_run": report.dry_run,
        "outcomes": [
            {
                "id": o.entry_id,
                "state": o.state,
                "done": o.done,
                "reason": o.reason,
                "detail": o.detail,
            }
            for o in report.outcomes
        ],
    }


def _simple(action: Action, help_text: str) -> click.Command:
    @click.command(action.value, help=help_text)
    @_selection_options
    def command(
        config_path: Path,
        words: tuple[str, ...],
        states: tuple[str, ...],
        sender: str | None,
        recipient: str | None,
        reason: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        selection = _selection(words, states, sender, recipient, reason)
        _run(config_path, action, selection, dry_run=dry_run, as_json=as_json)

    return command


hold_command = _simple(
    Action.HOLD, "Hold entries (incoming or deferred): no delivery attempts until released."
)
release_command = _simple(Action.RELEASE, "Release held entries; they are tried at once.")
retry_command = _simple(
    Action.RETRY, "Try deferred or held entries now instead of at their scheduled time."
)


@click.command("delete")
@_selection_options
@click.option("--force", is_flag=True, help="Also delete entries that hold receipt evidence.")
def delete_command(
    config_path: Path,
    words: tuple[str, ...],
    states: tuple[str, ...],
    sender: str | None,
    recipient: str | None,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
    force: bool,
) -> None:
    """Delete entries (and their message) from the queue, for good; not one being tried.

    An entry whose recipients hold a receipt, or still await one, is evidence: it is kept
    unless --force is given (export it first with `securemail evidence export`).
    """
    selection = _selection(words, states, sender, recipient, reason)
    _run(config_path, Action.DELETE, selection, dry_run=dry_run, as_json=as_json, force=force)


@click.command("purge")
@_selection_options
@click.option("--older-than", default="7d", show_default=True, help="e.g. 12h, 7d")
@click.option("--quarantined", is_flag=True, help="Also purge quarantined entries.")
@click.option(
    "--include-evidence",
    is_flag=True,
    help="Also purge entries holding receipts (after the records period).",
)
def purge_command(
    config_path: Path,
    words: tuple[str, ...],
    states: tuple[str, ...],
    sender: str | None,
    recipient: str | None,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
    older_than: str,
    quarantined: bool,
    include_evidence: bool,
) -> None:
    """Remove finished (delivered and bounced) entries last changed over --older-than ago,
    with their history: all of them unless ids or filters are given.

    Quarantined entries only with --quarantined; entries holding receipt evidence only
    with --include-evidence.
    """
    age: timedelta = parse_duration(older_than, "--older-than")
    selection = _selection(words, states, sender, recipient, reason)
    if not (selection.by_id or selection.every or selection.filtered):
        selection = Selection(every=True)
    before = datetime.now(UTC) - age
    selection = replace(selection, before=before)
    _run(
        config_path,
        Action.PURGE,
        selection,
        dry_run=dry_run,
        as_json=as_json,
        force=include_evidence,
        quarantined=quarantined,
    )


COMMANDS = (hold_command, release_command, retry_command, delete_command, purge_command)
