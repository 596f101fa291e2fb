"""A new member's node directory: its certificates, the keys made for it, and node.toml.

Security: the private keys made for a member (when it sent no CSR) are written only here,
encrypted under the node passphrase the caller gives (the CLI refuses an empty one), into
``keys/`` (mode 0600 in a 0700 folder); the federation never keeps them. The directory must
be new or empty: nothing already there is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securemail.federation.store import Store, write_node_directory
from securemail.pki.authority import private_key_pem

if TYPE_CHECKING:
    from securemail.federation.operator import Admission


@dataclass(frozen=True)
class NodeTarget:
    """Where add-member writes the member's node directory, and the passphrase of its keys."""

    path: Path
    passphrase: bytes


def write_node(store: Store, admission: Admission, node: NodeTarget) -> None:
    """Write the node directory of a member just admitted to the federation in ``store``."""
    files = node_files(
        admission,
        federation=store.federation_name(),
        anchor=store.root_certificate(),
        directory=store.root / "directory.json",
        passphrase=node.passphrase,
    )
    write_node_directory(node.path, files)


def node_files(
    admission: Admission,
    *,
    federation: str,
    anchor: x509.Certificate,
    directory: Path,
    passphrase: bytes,
) -> dict[str, bytes]:
    """The files of a member's node directory (relative path -> content)."""
    member = admission.member
    certificates = {
        "signing": member.signing.current,
        "encryption": member.encryption.current,
        "tls": admission.tls_certificate,
        "federation-ca": anchor,
    }
    files = {
        f"certs/{use}.pem": cert.public_bytes(serialization.Encoding.PEM)
        for use, cert in certificates.items()
    }
    for use, key in admission.generated.items():
        files[f"keys/{use}.key"] = private_key_pem(key, passphrase)
    files["node.toml"] = node_config(admission, federation, directory).encode()
    return files


def node_config(admission: Admission, federation: str, directory: Path) -> str:
    """A configuration ``securemail serve`` runs as it is (docs/operations.md explains it).

    The peer listener takes the port of the member's first directory endpoint; on loopback
    endpoints (tests, the demo) it binds loopback only. Mail is delivered to Maildirs under
    ``mail/`` until the operator points [organisation.delivery] at their own mail store.
    """
    member = admission.member
    endpoint = member.endpoints[0]
    host = "127.0.0.1" if endpoint.host in ("127.0.0.1", "localhost") else "0.0.0.0"  # noqa: S104
    lines = [
        "# SecureMail node, written by `securemail federation add-member`.",
        "# Run it with: securemail serve --config node.toml",
        "# (the key passphrase is read from $SECUREMAIL_PASSPHRASE unless [keys] says otherwise)",
        "# Edits for a real organisation: docs/integration.md, section 6 (The node.toml).",
        "[node]",
        f"name = {_toml(endpoint.host)}",
        'data_dir = "data"',
        'region = "NZ"',
        "",
        "[federation]",
        f"name = {_toml(federation)}",
        'anchor = "certs/federation-ca.pem"',
        "# Where the operator publishes the directory: this path on the operator's host, or",
        "# the https URL the operator gives you.",
        f"directory = {_toml(str(directory.resolve()))}",
        "",
        "[peer]",
        f'listen = "{host}:{endpoint.port}"',
        'tls_certificate = "certs/tls.pem"',
        'tls_key = "keys/tls.key"',
        "",
        "# Your own mail servers hand outbound mail to this listener.",
        "[relay]",
        'listen = "127.0.0.1:10025"',
        'networks = ["127.0.0.0/8", "::1/128"]',
        "",
        *_POSTFIX_HINT,
        "[[organisation]]",
        f"org_id = {_toml(member.org_id)}",
        f"domains = [{', '.join(_toml(d) for d in member.domains)}]",
        'keys = "."',
        "",
        "[organisation.delivery]",
        'kind = "maildir"',
        'path = "mail"',
        *_STORE_HINT,
    ]
    return "\n".join(lines) + "\n"


# Commented settings that docs/integration.md tells an organisation to take up.
_POSTFIX_HINT = (
    "# Keep Postfix's transport map in step with the directory (remove the # signs):",
    "# [postfix]",
    '# transport_map = "/etc/postfix/securemail/transport"',
    "",
)
_STORE_HINT = (
    "# To deliver into your own mail server instead of Maildirs, replace the two lines",
    "# above with these (without the # signs) and set the store's host and port:",
    '# kind = "smtp"',
    '# host = "mail.example.govt.nz"',
    "# port = 25",
    "# starttls = true",
    '# cafile = "certs/store-ca.pem"',
    '# auth_user = "securemail"',
    '# auth_password_env = "SECUREMAIL_STORE_PASSWORD"',
)


def _toml(text: str) -> str:
    """A TOML basic string (TOML 1.0 §String): quote, backslash and controls escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
