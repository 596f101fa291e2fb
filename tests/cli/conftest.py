"""The node federation fixtures, and a minimal provider node configuration for ``user``."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import federation, founded

__all__ = ["federation", "founded", "provider_config"]


def provider_config(
    tmp: Path, domain: str, *, mail_root: Path | str = "mail", more: str = ""
) -> Path:
    """``tmp/node.toml``: a node serving ``domain`` with Maildir delivery under ``mail_root``
    (plus the TOML in ``more``), and its passphrase file. Nothing else exists: enough for
    commands that open the database, not for ``serve``."""
    (tmp / "passphrase").write_text("node passphrase\n")
    (tmp / "data").mkdir(mode=0o700, exist_ok=True)
    path = tmp / "node.toml"
    path.write_text(
        f"""
[node]
name = "mx.{domain}"
data_dir = "data"
[federation]
name = "test"
anchor = "anchor.pem"
directory = "directory.json"
[peer]
listen = "127.0.0.1:0"
tls_certificate = "tls.pem"
tls_key = "tls.key"
[relay]
listen = "127.0.0.1:0"
[keys]
passphrase_file = "passphrase"
[[organisation]]
org_id = "provider"
domains = ["{domain}"]
keys = "keys"
[organisation.delivery]
kind = "maildir"
path = "{mail_root}"
{more}"""
    )
    return path
