"""The package structure: no part of ``src/securemail`` imports a part it must never import.

The parts and the "never" pairs are the design's (ARCHITECTURE §3a, STYLE "What we take"),
copied here as data. The import graph is read with ``ast`` from the source files, so every
import counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "securemail"

# part -> the paths (below src/) it is made of; a path ending in "/" is a package
PARTS: dict[str, tuple[str, ...]] = {
    "PureCore": (
        "securemail/smime/",
        "securemail/policy/",
        "securemail/directory/model.py",
        "securemail/directory/document.py",
        "securemail/addresses.py",
        "securemail/marking.py",
        "securemail/notices.py",
    ),
    "Queue": ("securemail/queue/",),
    "Receive": ("securemail/receive/",),
    "Protect": ("securemail/protect/",),
    "Relay": ("securemail/relay/",),
    "Unprotect": ("securemail/unprotect/",),
    "Deliver": ("securemail/deliver/",),
    "Node": ("securemail/node/",),
    "Accounts": ("securemail/accounts/",),
    "Web": ("securemail/web/",),
    "CLI": ("securemail/cli/",),
}

# (importer, imported, why never)
NEVER: tuple[tuple[str, str, str], ...] = (
    ("PureCore", "Queue", "a pure core knows no database"),
    ("PureCore", "Node", "a pure core knows no process"),
    ("PureCore", "Web", "a pure core knows no face"),
    ("Receive", "Relay", "network in and out meet only at the queue"),
    ("Receive", "Protect", "receiving never protects"),
    ("Receive", "Unprotect", "receiving never unprotects"),
    ("Relay", "Receive", "relay never accepts"),
    ("Relay", "Queue", "relay is a client, handed its work"),
    ("Protect", "Node", "a role gets a narrow context, not the root"),
    ("Unprotect", "Node", "a role gets a narrow context, not the root"),
    ("Web", "Node", "the face gets a context, not the root"),
    ("Accounts", "Node", "accounts sit below the node"),
    ("Accounts", "Queue", "accounts own their storage; queue is no storage layer"),
    ("Deliver", "Relay", "deliver and relay share an SMTP wire package below"),
    ("CLI", "Web", "CLI and web share an operations package below"),
    ("Queue", "Node", "the queue is ground"),
)


def module_name(path: Path) -> str:
    """``src/securemail/queue/store.py`` -> ``securemail.queue.store``."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> str | None:
    """The source path (below src/) of module ``name``, or None if it is not ours."""
    base = SOURCE.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py").relative_to(SOURCE).as_posix()
    if (base / "__init__.py").is_file():
        return (base / "__init__.py").relative_to(SOURCE).as_posix()
    return None


def part_of(path: str) -> str | None:
    for part, members in PARTS.items():
        if any(path == m or (m.endswith("/") and path.startswith(m)) for m in members):
            return part
    return None


def imported(path: Path) -> Iterator[tuple[str, int]]:
    """Every module of ours that ``path`` imports, with the line of the import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:  # ``from securemail import notices`` imports a module
                if module_path(f"{base}.{alias.name}") is not None:
                    yield f"{base}.{alias.name}", node.lineno


@functools.cache
def import_graph() -> tuple[tuple[str, str, str, int], ...]:
    """(importing path, its part, imported module, line) for every import across parts."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.relative_to(SOURCE).as_posix()
        for name, line in imported(path):
            if not name.startswith("securemail"):
                continue
            target = module_path(name)
            if target is not None:
                edges.append((source, part_of(source) or "", name, line))
    return tuple(edges)


def broken(importer: str, imported_part: str) -> list[str]:
    """One line per import from ``importer`` into ``imported_part``: ``module:line imports``."""
    found = []
    for source, part, name, line in import_graph():
        target = module_path(name)
        if part == importer and target is not None and part_of(target) == imported_part:
            found.append(f"{source}:{line} imports {name}")
    return found


def test_parts_exist() -> None:
    """Every path the parts name exists, so a move cannot make a never-pair silently empty."""
    missing = [m for ms in PARTS.values() for m in ms if not (SOURCE / m).exists()]
    assert missing == []


def test_graph_is_read() -> None:
    """The graph reader sees a known import (the node imports the queue), so it reads."""
    edges = {(part, module) for _, part, module, _ in import_graph()}
    assert ("Node", "securemail.queue") in edges


@pytest.mark.parametrize(
    ("importer", "imported_part", "why"),
    [pytest.param(*never, id=f"{never[0]}-{never[1]}") for never in NEVER],
)
def test_never_import(importer: str, imported_part: str, why: str) -> None:
    """No module of one part imports a part the design says it must never import."""
    found = broken(importer, imported_part)
    assert not found, f"{importer} must never import {imported_part} ({why}):\n" + "\n".join(found)
