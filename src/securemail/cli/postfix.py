"""``securemail postfix-maps``: write the Postfix transport map from the verified directory.

Exit status: 0 the map is in place (written, or already up to date), 1 refused
(``error: <reason-code>: <detail>``; the old map stays), 2 usage error. The running node
rewrites the same map after each directory refresh when node.toml has a [postfix] table;
this command is for the first install, for a node without [postfix], and for a look
(``--output -``).

Security: only the directory in the node's state is used, verified again against the
federation anchors; the node's own domains are left out (see
securemail.directory.postfix_maps). Nothing in the node's state is created or changed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from securemail.cli.files import fail
from securemail.cli.serve import CONFIG_OPTION, read_config
from securemail.config.anchors import load_anchors
from securemail.config.node import NodeConfig, relay_next_hop, unsafe_next_hop
from securemail.config.reasons import NodeReason
from securemail.directory.document import DirectoryError
from securemail.directory.model import Directory
from securemail.directory.postfix_maps import (
    MapError,
    TransportMap,
    install_map,
    transport_map,
)
from securemail.directory.store import DirectoryStore
from securemail.errors import SecureMailError


@click.command("postfix-maps")
@CONFIG_OPTION
@click.option(
    "--output",
    "-o",
    metavar="PATH",
    help="Where to write the map ('-' prints it); default: [postfix] transport_map.",
)
@click.option("--next-hop", help="transport:nexthop for member domains; default: [postfix].")
@click.option(
    "--postmap/--no-postmap",
    default=None,
    help="Build hash:PATH with postmap after writing; default: [postfix] postmap (true).",
)
@click.option(
    "--postfix-config",
    type=click.Path(file_okay=False, path_type=Path),
    help="Postfix's configuration directory for postmap -c; default: [postfix].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object describing the result.")
def postfix_maps_command(
    config_path: Path,
    output: str | None,
    next_hop: str | None,
    postmap: bool | None,
    postfix_config: Path | None,
    as_json: bool,
) -> None:
    """Write the transport map sending member domains (not this node's own) to the node."""
    config = read_config(config_path)
    settings = config.postfix
    target = output or (None if settings is None else str(settings.transport_map))
    if target is None:
        raise click.UsageError("give --output PATH (or '-'), or a [postfix] table in node.toml")
    hop = next_hop or (settings.next_hop if settings else relay_next_hop(config.relay))
    if unsafe_next_hop(hop):
        raise click.BadParameter(f"transport:nexthop, not {hop!r}", param_hint="--next-hop")
    rendered = transport_map(_verified_directory(config), config.domains, hop)
    if target == "-":
        click.echo(json.dumps(_summary(rendered, None, False)) if as_json else rendered.text[:-1])
        return
    build = postmap if postmap is not None else (settings is None or settings.postmap)
    folder = postfix_config or (settings.config_directory if settings else None)
    try:
        changed = install_map(Path(target), rendered, postmap=build, config_directory=folder)
    except MapError as error:
        fail(error)
    if as_json:
        click.echo(json.dumps(_summary(rendered, target, changed)))
        return
    state = "written" if changed else "unchanged"
    click.echo(
        f"{target}: {state}, {len(rendered.routed)} member domains to {hop} "
        f"(directory serial {rendered.serial}; left out: {', '.join(rendered.excluded) or 'none'})"
    )


def _verified_directory(config: NodeConfig) -> Directory:
    """The node's last good directory, verified again; exit 1 if there is none."""
    try:
        store = DirectoryStore(
            config.data_dir / "directory",
            load_anchors(config.anchor),
            federation=config.federation,
        )
        stored = store.load(datetime.now(UTC))
    except (SecureMailError, DirectoryError) as error:
        fail(error)
    except OSError as error:
        fail(SecureMailError(NodeReason.NO_DIRECTORY, f"{config.data_dir}: {error.strerror}"))
    if stored is None:
        fail(
            SecureMailError(
                NodeReason.NO_DIRECTORY,
                f"no verified directory in {config.data_dir / 'directory'}: start the node "
                "once, or run `securemail directory fetch --state` on that folder",
            )
        )
    return stored.directory


def _summary(rendered: TransportMap, path: str | None, changed: bool) -> dict[str, object]:
    return {
        "map": path,
        "changed": changed,
        "serial": rendered.serial,
        "next_hop": rendered.next_hop,
        "routed": list(rendered.routed),
        "excluded": list(rendered.excluded),
    }
