"""``securemail keys rollover | install-next | promote``: replace a gateway key without losing mail.

Security: the new private key is generated here and written encrypted with the node
passphrase; only the certificate request leaves the node. A certificate from the operator
is installed only if it certifies exactly the next key and is valid now. Each step is an
audit event (names and fingerprints, never key material).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography.hazmat.primitives import hashes

from securemail import audit
from securemail.cli import files
from securemail.keys import rollover
from securemail.smime.errors import SmimeError
from securemail.smime.keys import load_certificate

NODE_DIR = click.option(
    "--node-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The node directory: keys/, certs/, requests/, audit.log.",
)
PURPOSE = click.option(
    "--purpose",
    type=click.Choice(rollover.PURPOSES),
    default="encryption",
    show_default=True,
    help="Which of the gateway's keys to replace.",
)


def _refuse(error: rollover.RolloverError | SmimeError) -> NoReturn:
    click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
    sys.exit(1)


def _passphrase(env: str | None, file: Path | None) -> bytes:
    passphrase = files.read_passphrase(env, file)
    if not passphrase:
        raise click.UsageError("the node passphrase is required (--passphrase-env or -file)")
    return passphrase


def _audit(node_dir: Path, event: str, details: dict[str, str]) -> None:
    audit.append(node_dir / "audit.log", event, details, now=datetime.now(UTC))


@click.command("rollover")
@NODE_DIR
@PURPOSE
@click.option(
    "--key-type",
    type=click.Choice(["rsa2048", "rsa3072", "rsa4096", "p256", "p384"]),
    default="rsa2048",
    show_default=True,
)
@files.passphrase_options
def rollover_command(
    node_dir: Path,
    purpose: str,
    key_type: Any,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Make the next key pair and a certificate request for the federation operator."""
    paths = rollover.Paths(node_dir, purpose)
    try:
        request = rollover.start(
            paths, _passphrase(passphrase_env, passphrase_file), key_type=key_type
        )
    except (rollover.RolloverError, SmimeError) as error:
        _refuse(error)
    _audit(node_dir, "keys.rollover", {"purpose": purpose, "key_type": key_type})
    click.echo(
        f"next {purpose} key: {paths.key('next-')}\ncertificate request: {request}\n"
        f"Send the request to the federation operator, who runs\n"
        f"  securemail federation update-member --org-id ID "
        f"--next-{purpose}-csr {request.name}\n"
        f"then install the certificate they send back with\n"
        f"  securemail keys install-next --node-dir {node_dir} --purpose {purpose} "
        f"--cert FILE"
    )


@click.command("install-next")
@NODE_DIR
@PURPOSE
@click.option(
    "--cert",
    "cert_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The certificate the operator issued for the next key.",
)
@files.passphrase_options
def install_next_command(
    node_dir: Path,
    purpose: str,
    cert_path: Path,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Install the certificate for the next key; the node then decrypts with both keys."""
    paths = rollover.Paths(node_dir, purpose)
    try:
        installed = rollover.install(
            paths,
            cert_path.read_bytes(),
            _passphrase(passphrase_env, passphrase_file),
            now=datetime.now(UTC),
        )
    except (rollover.RolloverError, SmimeError) as error:
        _refuse(error)
    fingerprint = load_certificate(installed.read_bytes()).fingerprint(hashes.SHA256()).hex()
    _audit(node_dir, "keys.install-next", {"purpose": purpose, "sha256": fingerprint})
    click.echo(
        f"installed {installed}; once the operator publishes it as next, senders may "
        f"use it. After the operator promotes it, run: securemail keys promote"
    )


@click.command("promote")
@NODE_DIR
@PURPOSE
def promote_command(node_dir: Path, purpose: str) -> None:
    """Make the next key current; the old key is kept (retired) to decrypt queued mail."""
    try:
        key, cert = rollover.promote(rollover.Paths(node_dir, purpose), now=datetime.now(UTC))
    except rollover.RolloverError as error:
        _refuse(error)
    _audit(node_dir, "keys.promote", {"purpose": purpose, "retired": key.name})
    click.echo(
        f"{purpose} key promoted; the old one is kept as {key.name} and {cert.name} "
        "for the overlap window. Back up the node, and remove retired keys only "
        "after the window has passed."
    )
