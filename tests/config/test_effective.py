"""``check-config -n``: the settings a node.toml sets that are not at their defaults."""

from __future__ import annotations

from pathlib import Path

from securemail.config.effective import non_default_settings
from tests.cli.conftest import provider_config


def test_defaults_written_out_are_not_listed_and_paths_are_absolute(tmp_path: Path) -> None:
    """A setting written at its default value (``region = "NZ"``, ``refresh = "5m"``) is
    left out; required and changed ones are listed, relative paths resolved."""
    path = provider_config(tmp_path, "provider.nz", more='[retry]\nkeep_body = "2d"\n')
    text = path.read_text().replace("[node]\n", '[node]\nregion = "NZ"\n', 1)
    path.write_text(text.replace("[federation]\n", '[federation]\nrefresh = "5m"\n', 1))
    settings = dict(non_default_settings(path))
    assert "node.region" not in settings and "federation.refresh" not in settings
    assert settings["retry.keep_body"] == "2d"
    assert settings["node.data_dir"] == str(tmp_path / "data")
    assert settings["organisation[0].domains"] == ["provider.nz"]
    assert settings["organisation[0].delivery.path"] == str(tmp_path / "mail")
