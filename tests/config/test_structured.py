"""The [structured] and [organisation.structured] settings: read, and mistakes named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from securemail.config.structured import StructuredTarget, structured_settings, structured_target
from securemail.config.toml_table import ConfigError, Table


def _target(data: dict[str, object]) -> StructuredTarget | None:
    return structured_target(Table(data, "organisation[0].structured", Path("/etc/securemail")))


def test_a_webhook_and_a_drop_folder_are_read_with_paths_from_the_config_folder() -> None:
    """Relative paths are the config file's; copy_to and the timeout are kept."""
    hook = _target(
        {
            "kind": "webhook",
            "url": "https://erp.council.govt.nz/in",
            "secret_file": "hook.key",
            "copy_to": "ap@council.govt.nz",
        }
    )
    assert hook == _target(
        {
            "kind": "webhook",
            "url": "https://erp.council.govt.nz/in",
            "secret_file": "/etc/securemail/hook.key",
            "copy_to": "ap@council.govt.nz",
        }
    )
    drop = _target({"kind": "drop", "path": "inbox"})
    assert drop is not None and drop.path == Path("/etc/securemail/inbox")
    settings = structured_settings(Table({"ubl_schemas": "ubl"}, "structured", Path("/srv")))
    assert settings.ubl_schemas == Path("/srv/ubl")
    assert settings.keep_taken == timedelta(days=7)
    settings = structured_settings(Table({"keep_taken": "12h"}, "structured", Path("/srv")))
    assert settings.keep_taken == timedelta(hours=12)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"kind": "webhook", "url": "http://erp.example.nz/in", "secret_file": "k"},
            "must be https://",
        ),
        ({"kind": "webhook", "url": "https://erp.example.nz/in"}, "secret_file is required"),
        ({"kind": "ftp", "path": "x"}, "must be webhook, drop or pull"),
        ({"kind": "pull", "url": "https://x.nz/"}, "unknown setting(s): url"),
        ({"kind": "drop", "path": "x", "colour": "red"}, "unknown setting(s): colour"),
    ],
)
def test_mistakes_are_named(data: dict[str, object], message: str) -> None:
    """Plain http off the machine, a missing secret, an unknown kind or key: ConfigError."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _target(data)


def test_plain_http_to_loopback_is_allowed() -> None:
    """An application on the node itself may take plain http on loopback."""
    hook = _target({"kind": "webhook", "url": "http://127.0.0.1:8080/in", "secret_file": "k"})
    assert hook is not None and hook.url == "http://127.0.0.1:8080/in"
