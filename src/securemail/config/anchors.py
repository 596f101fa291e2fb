"""The federation's trust anchors, read from the file the configuration names."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from securemail.config.toml_table import ConfigError
from securemail.smime.keys import load_certificates


def load_anchors(path: Path) -> tuple[x509.Certificate, ...]:
    """The anchor certificates in ``path``; ConfigError (``bad-config``) if unreadable."""
    try:
        return tuple(load_certificates(path.read_bytes()))
    except (OSError, ValueError) as error:
        raise ConfigError(f"federation anchor {path}: {error}") from None
