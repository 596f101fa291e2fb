"""Settings of structured documents (e-invoices): where the schemas are, where documents go.

    [structured]                  ubl_schemas (folder holding the UBL 2.1 maindoc/ and common/)
                                  keep_taken (how long a taken pull-queue row stays; "7d")
    [organisation.structured]     kind = "webhook" | "drop" | "pull"
                                  webhook: url (https, or http to loopback), secret_file
                                  drop:    path
                                  pull:    (nothing: GET /api/v1/structured/inbox)
                                  copy_to (optional: a mailbox that also gets a readable copy)

A document for an organisation without ``[organisation.structured]`` is delivered to its
mailbox like any message. Retries of a webhook follow the node's ``[retry] schedule``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from securemail.config.toml_table import ConfigError, Table


@dataclass(frozen=True)
class StructuredSettings:
    ubl_schemas: Path | None = None  # no schema check without them (reports say so)
    keep_taken: timedelta = timedelta(days=7)  # a taken pull-queue row, then it is purged


@dataclass(frozen=True)
class StructuredTarget:
    """Where an organisation's business application takes its documents."""

    kind: Literal["webhook", "drop", "pull"]
    url: str | None = None
    secret_file: Path | None = None
    path: Path | None = None
    copy_to: str | None = None
    timeout: float = 30.0  # seconds for the application to answer

    def secret(self) -> bytes:
        """The HMAC key the webhook requests are signed with (read when the node starts)."""
        assert self.secret_file is not None  # noqa: S101 (the parser requires it)
        return self.secret_file.read_bytes().strip()


def structured_settings(table: Table | None) -> StructuredSettings:
    if table is None:
        return StructuredSettings()
    settings = StructuredSettings(
        ubl_schemas=table.path("ubl_schemas", None),
        keep_taken=table.duration("keep_taken", "7d"),
    )
    table.finish()
    return settings


def structured_target(table: Table | None) -> StructuredTarget | None:
    if table is None:
        return None
    kind = table.text("kind")
    copy_to = table.text("copy_to", None)
    timeout = float(table.integer("timeout_seconds", 30, 1, 600))
    if kind == "webhook":
        url = table.text("url")
        _check_url(url, table.where)
        target = StructuredTarget(
            "webhook",
            url=url,
            secret_file=table.path("secret_file"),
            copy_to=copy_to,
            timeout=timeout,
        )
    elif kind == "drop":
        target = StructuredTarget("drop", path=table.path("path"), copy_to=copy_to)
    elif kind == "pull":
        target = StructuredTarget("pull", copy_to=copy_to)
    else:
        raise ConfigError(f"{table.where}.kind must be webhook, drop or pull, not {kind!r}")
    table.finish()
    return target


def _check_url(url: str, where: str) -> None:
    """https anywhere; plain http only to a loopback address (an application on the node)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise ConfigError(f"{where}.url must be https://, or http:// to a loopback address: {url!r}")
