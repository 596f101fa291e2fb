"""``securemail log grep``: follow one message through one or more nodes' operations logs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from securemail import logbook


@click.group("log")
def log_group() -> None:
    """Read the operations log (text or JSON lines, as [log] format writes it)."""


@log_group.command("grep")
@click.argument("wanted", metavar="QUEUE-ID|MESSAGE-ID")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: file and fields.")
def grep_command(wanted: str, files: tuple[Path, ...], as_json: bool) -> None:
    """Print every line about the message: its queue ids on each node, found through its
    Message-ID. With several files each line starts with its file's name, as grep does."""
    named: list[tuple[Path, str]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            click.echo(f"error: unreadable: {path}: {error.strerror}", err=True)
            sys.exit(2)
        named += [(path, line) for line in text.splitlines()]
    found = logbook.follow([line for _, line in named], wanted)
    if not found:
        click.echo(f"error: not-found: no log line names {wanted}", err=True)
        sys.exit(1)
    for index in found:
        path, line = named[index]
        if as_json:
            click.echo(json.dumps({"file": str(path), **logbook.parse(line)}))
        else:
            click.echo(f"{path}:{line}" if len(files) > 1 else line)
