"""The verified directory as a Postfix transport map: member domains to the node's relay.

Theory of operation. Every domain of every member (active or suspended: the node, not
Postfix, decides what a suspended member gets, and an unmapped domain would leave by the
Internet unprotected) maps to one next hop, ``smtp:[127.0.0.1]:10025`` by default, the
node's relay listener. The domains of the organisations the node itself serves are left
out: mail for them comes *from* the node into the organisation's own Postfix, and mapping
them to the node would send it back (a loop). Lines are sorted, and the header names the
directory's serial but no time, so an unchanged directory gives a byte-identical map and
nothing is rewritten. The map is written with the one atomic write (0644: Postfix reads
it), then postmap(1) builds ``hash:<map>``; Postfix's daemons notice the new ``.db`` and
reopen it, with no reload.

Security: only a verified directory is rendered (the caller's :class:`Directory`); its
domains were validated by the model (letters, digits, hyphens, dots), so no line can carry
a second field, a comment or a line end. postmap runs without a shell.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from securemail.directory.model import Directory
from securemail.durable import write_atomic
from securemail.errors import SecureMailError

MAP_MODE = 0o644  # Postfix's daemons read the map as an unprivileged user
POSTMAP_TIMEOUT = 60.0  # seconds: measured 0.16-0.7 s for 5,000 lines


class MapReason(StrEnum):
    WRITE_FAILED = "map-write-failed"
    POSTMAP_FAILED = "postmap-failed"


class MapError(SecureMailError[MapReason]):
    """The map could not be written or built; the old one stays in force."""


@dataclass(frozen=True)
class TransportMap:
    """A rendered map: its text, the domains it routes and the own domains it left out."""

    serial: int
    routed: tuple[str, ...]
    excluded: tuple[str, ...]
    next_hop: str
    text: str


def transport_map(directory: Directory, own_domains: Set[str], next_hop: str) -> TransportMap:
    """Render the transport map of ``directory`` without ``own_domains`` (see the module)."""
    own = {d.lower() for d in own_domains}
    every = sorted({d for member in directory.members for d in member.domains})
    routed = tuple(d for d in every if d not in own)
    excluded = tuple(d for d in every if d in own)
    width = max((len(d) for d in routed), default=0)
    header = [
        f"# SecureMail transport map from directory serial {directory.serial} of "
        f"{_comment(directory.federation)}.",
        "# Written by the node (securemail postfix-maps); edits are overwritten.",
        f"# Left out, served by this node: {' '.join(excluded) or 'none'}.",
    ]
    lines = [f"{domain.ljust(width)}  {next_hop}" for domain in routed]
    text = "\n".join([*header, *lines]) + "\n"
    return TransportMap(directory.serial, routed, excluded, next_hop, text)


def _comment(text: str) -> str:
    """A federation name made safe inside a one-line comment."""
    return "".join(c if c.isprintable() else "?" for c in text)


def install_map(
    path: Path, rendered: TransportMap, *, postmap: bool, config_directory: Path | None
) -> bool:
    """Write ``rendered`` to ``path`` if it differs, then build it; True if it was written.

    A ``.db`` that is missing or older than the map is built even when the text is
    unchanged (postmap may have failed last time). Raises MapError naming the file or
    postmap's complaint.
    """
    data = rendered.text.encode("utf-8")
    try:
        changed = not path.is_file() or path.read_bytes() != data
        if changed:
            write_atomic(path, data, mode=MAP_MODE)
    except OSError as error:
        raise MapError(MapReason.WRITE_FAILED, f"{path}: {error.strerror}") from None
    if postmap and (changed or _database_stale(path)):
        run_postmap(path, config_directory)
    return changed


def _database_stale(path: Path) -> bool:
    """``<map>.db`` missing or older than the map (a postmap that failed after a write)."""
    try:
        return path.with_name(path.name + ".db").stat().st_mtime_ns < path.stat().st_mtime_ns
    except FileNotFoundError:
        return True


def run_postmap(path: Path, config_directory: Path | None) -> None:
    """``postmap [-c DIR] hash:PATH``; MapError with its last line if it fails."""
    program = shutil.which("postmap") or "/usr/sbin/postmap"
    command = [program]
    if config_directory is not None:
        command += ["-c", str(config_directory)]
    command.append(f"hash:{path}")
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=POSTMAP_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MapError(MapReason.POSTMAP_FAILED, f"{program}: {error}") from None
    if done.returncode != 0:
        complaint = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise MapError(MapReason.POSTMAP_FAILED, complaint)
