"""The node's key passphrase: read from the configured file or variable, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from securemail.config.node import load_config
from securemail.node.context import NodeError, read_passphrase
from tests.config.test_node import VALID, write


def test_passphrase_file_gives_its_first_line(tmp_path: Path) -> None:
    """Like the CLI's --passphrase-file: the first line, without its line end."""
    (tmp_path / "pass").write_bytes(b"correct horse\r\ncomment\n")
    config = load_config(write(tmp_path, VALID + '\n[keys]\npassphrase_file = "pass"\n'))
    assert read_passphrase(config) == b"correct horse"
    (tmp_path / "pass").write_bytes(b"\n")
    with pytest.raises(NodeError, match="empty"):
        read_passphrase(config)


def test_missing_variable_is_refused_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the variable the node refuses to start and names it."""
    monkeypatch.delenv("SECUREMAIL_PASSPHRASE", raising=False)
    config = load_config(write(tmp_path, VALID))
    with pytest.raises(NodeError, match=r"\$SECUREMAIL_PASSPHRASE") as refused:
        read_passphrase(config)
    assert refused.value.reason == "keys-unavailable"
    monkeypatch.setenv("SECUREMAIL_PASSPHRASE", "s3cret")
    assert read_passphrase(config) == b"s3cret"
