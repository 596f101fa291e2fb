"""Reading one TOML table with every mistake named by its key path (``peer.listen``).

``Table`` checks types (true/false is not a number), ranges, durations and host:port
values, resolves relative paths against the config file's folder, and refuses settings it
was never asked for, so a typo is an error instead of a silently ignored line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from securemail.config.reasons import NodeReason
from securemail.errors import SecureMailError

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(SecureMailError[NodeReason]):
    """The configuration file is unreadable or a setting is invalid."""

    def __init__(self, detail: str) -> None:
        super().__init__(NodeReason.BAD_CONFIG, detail)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


REQUIRED: Any = object()


class Table:
    """One TOML table, read with the key path kept for error messages; unknown keys refused."""

    def __init__(self, data: Any, where: str, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"[{where}] must be a table")
        self.data, self.where, self.base, self.used = data, where, base, set[str]()

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key, default)
        if value is REQUIRED:
            raise ConfigError(f"{self.where}.{key} is required")
        if value is not None and not _is_kind(value, kind):
            raise ConfigError(f"{self.where}.{key} must be a {_kind_name(kind)}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, str, default)
        if value is not None and not value.strip():
            raise ConfigError(f"{self.where}.{key} must not be empty")
        return value

    def integer(self, key: str, default: Any, low: int = 1, high: int = 2**62) -> int:
        value: int = self._get(key, int, default)
        if not low <= value <= high:
            raise ConfigError(f"{self.where}.{key} must be between {low} and {high}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        return bool(self._get(key, bool, default))

    def path(self, key: str, default: Any = REQUIRED) -> Any:
        value = self.text(key, default)
        return None if value is None else (self.base / value).resolve()

    def strings(self, key: str, default: Any) -> tuple[str, ...]:
        value = self._get(key, list, default)
        if not all(isinstance(item, str) and item for item in value):
            raise ConfigError(f"{self.where}.{key} must be a list of non-empty strings")
        return tuple(value)

    def duration(self, key: str, default: str) -> timedelta:
        value = self._get(key, (str, int), default)
        return parse_duration(value, f"{self.where}.{key}")

    def listen(self, key: str, default: Any = REQUIRED) -> Listen:
        value = self.text(key, default)
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{self.where}.{key} must be host:port, not {value!r}")
        return Listen(host.strip("[]"), int(port))

    def table(self, key: str) -> Table | None:
        self.used.add(key)
        value = self.data.get(key)
        where = key if self.where == "config" else f"{self.where}.{key}"
        return None if value is None else Table(value, where, self.base)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"[{self.where}] has unknown setting(s): {', '.join(unknown)}")


def _is_kind(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that true/false is not a whole number (bool subclasses int)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", int: "whole number", bool: "true/false", list: "list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_duration(value: str | int, where: str) -> timedelta:
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value.strip())
        if match is None:
            raise ConfigError(f"{where} must be a duration such as 90s, 5m, 4h or 5d")
        seconds = int(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ConfigError(f"{where} must be positive")
    return timedelta(seconds=seconds)
