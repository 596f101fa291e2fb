"""``securemail serve``: run a gateway node from its configuration file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import click

from securemail import logbook
from securemail.cli.files import fail
from securemail.config.node import NodeConfig, load_config
from securemail.errors import SecureMailError
from securemail.node import systemd
from securemail.node.processes import watch_parent
from securemail.node.run import Ports, describe, serve, serve_worker
from securemail.node.systemd import keep_watchdog

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    required=True,
    envvar="SECUREMAIL_CONFIG",
    type=click.Path(path_type=Path),  # read_config names what is wrong with it, in one line
    help="The node's configuration file (TOML); or $SECUREMAIL_CONFIG.",
)


def read_config(path: Path) -> NodeConfig:
    try:
        return load_config(path)
    except SecureMailError as error:
        fail(error)


def ports_file(config: NodeConfig) -> Path:
    """Where a running node writes the ports it listens on (port 0 in the config = any)."""
    return config.data_dir / "ports.json"


@click.command("serve")
@CONFIG_OPTION
@click.option(
    "--log-level",
    default=None,
    help="DEBUG, INFO, WARNING or ERROR (default: [log] level, INFO); queue lines are INFO.",
)
@click.option(
    "--role",
    type=click.Choice(["all", "worker"]),
    default="all",
    show_default=True,
    help="all: the node (its listeners, and [node] workers processes); worker: one worker "
    "process (started by the node; or on another host sharing its PostgreSQL database).",
)
def serve_command(config_path: Path, log_level: str | None, role: str) -> None:
    """Run the node: peer and relay listeners, queue workers, directory refresh."""
    if log_level is not None and log_level.upper() not in LOG_LEVELS:
        wanted = ", ".join(LOG_LEVELS)
        click.echo(
            f"error: bad-config: --log-level must be one of {wanted}, not {log_level!r}", err=True
        )
        sys.exit(2)
    config = read_config(config_path)
    logbook.configure(config.log.format, (log_level or config.log.level).upper())
    # aiosmtpd logs every SMTP command at INFO and every DATA line at DEBUG: addresses and
    # message content have no place in the operations log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(config) if role == "all" else _run_worker(config))
    except SecureMailError as error:
        fail(error)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): measured 20-30 % more SMTP throughput."""
    try:
        import uvloop  # noqa: PLC0415 (optional at run time)
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run_worker(config: NodeConfig) -> None:
    """One worker process: stops on SIGTERM/SIGINT, or when its stdin ends (a node that
    started it is gone); either way it finishes the entries in hand first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started_by_a_node = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    watching = asyncio.create_task(watch_parent(stop)) if started_by_a_node else None
    try:
        await serve_worker(config, stop=stop)
    finally:
        if watching is not None:
            watching.cancel()


async def _run(config: NodeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(ports: Ports) -> None:
        ports_file(config).write_text(
            json.dumps({"peer": ports.peer, "relay": ports.relay, "ordinary": ports.ordinary})
        )
        click.echo(
            f"{config.name}: peer listener {config.peer.host}:{ports.peer}, "
            f"relay listener {config.relay.host}:{ports.relay}",
            err=True,
        )

    def ready_for_systemd(ports: Ports) -> None:
        ready(ports)
        systemd.notify(f"READY=1\nSTATUS=serving; {', '.join(describe(ports))}")

    interval = systemd.watchdog_interval()
    watchdog = None if interval is None else asyncio.create_task(keep_watchdog(interval, stop))
    try:
        await serve(config, stop=stop, ready=ready_for_systemd)
    finally:
        systemd.notify("STOPPING=1")
        stop.set()
        if watchdog is not None:
            await watchdog
        ports_file(config).unlink(missing_ok=True)
