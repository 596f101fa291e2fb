"""The settings a node.toml sets that differ from their defaults (``check-config -n``).

A setting counts when leaving it out would give a different configuration (or none: a
required one): each leaf of the file is removed in turn and the rest parsed again. Paths
are shown as the node resolves them (relative to the file's folder).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from securemail.config.node import parse_config
from securemail.config.toml_table import ConfigError

PATH_KEYS = frozenset(
    {"data_dir", "anchor", "directory", "tls_certificate", "tls_key", "keys"}
    | {"passphrase_file", "path", "cafile", "client_certificate", "client_key"}
    | {"auth_password_file"}
)
Key = tuple[str | int, ...]


def non_default_settings(path: Path) -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` for each setting of the file at ``path`` that is not at its
    default, in the file's order. The file must already load (see ``load_config``)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    base = path.resolve().parent
    whole = parse_config(data, base)
    found = []
    for key, value in _leaves(data, ()):
        try:
            same = parse_config(_without(data, key), base) == whole
        except ConfigError:
            same = False  # required, or needed by another setting
        if not same:
            found.append((_dotted(key), _shown(key, value, base)))
    return found


def _leaves(value: Any, key: Key) -> Iterator[tuple[Key, Any]]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _leaves(inner, (*key, name))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, inner in enumerate(value):
            yield from _leaves(inner, (*key, index))
    else:
        yield key, value


def _without(data: dict[str, Any], key: Key) -> dict[str, Any]:
    trimmed = copy.deepcopy(data)
    parent: Any = trimmed
    for part in key[:-1]:
        parent = parent[part]
    del parent[key[-1]]
    return trimmed


def _dotted(key: Key) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in key).lstrip(".")


def _shown(key: Key, value: Any, base: Path) -> Any:
    if key[-1] in PATH_KEYS and isinstance(value, str) and "://" not in value:
        return str((base / value).resolve())
    return value
