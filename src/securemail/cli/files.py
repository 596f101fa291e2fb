"""Reading keys, certificates and messages for the CLI; writing output only on success.

Security: passphrases come from an environment variable or a file, never from the command
line (argv is visible to every user of the host). Output files are written to a temporary
name and renamed into place only when the whole operation succeeded, so a refused message
never leaves partial plaintext behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from cryptography import x509

from securemail.config.node import NodeConfig
from securemail.config.reasons import NodeReason
from securemail.durable import write_atomic
from securemail.errors import SecureMailError
from securemail.node.context import NodeError
from securemail.queue import QueueError, QueueReason
from securemail.smime import keys
from securemail.storage.engine import sqlite_path

F = TypeVar("F", bound=Callable[..., Any])


def passphrase_options(func: F) -> F:
    """Add --passphrase-env and --passphrase-file to a command."""
    func = click.option(
        "--passphrase-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File whose first line is the passphrase of encrypted private keys.",
    )(func)
    return click.option(
        "--passphrase-env",
        metavar="VAR",
        help="Environment variable holding the passphrase of encrypted private keys.",
    )(func)


def read_passphrase(env: str | None, file: Path | None) -> bytes | None:
    if env and file:
        raise click.UsageError("give --passphrase-env or --passphrase-file, not both")
    if env:
        value = os.environ.get(env)
        if value is None:
            raise click.UsageError(f"environment variable {env} is not set")
        return value.encode()
    if file:
        return file.read_bytes().splitlines()[0] if file.read_bytes() else b""
    return None


def load_key(path: Path, passphrase: bytes | None) -> keys.PrivateKey:
    data = path.read_bytes()
    if passphrase is None and b"ENCRYPTED" in data:
        raise click.UsageError(
            f"{path} is encrypted: give --passphrase-env VAR or --passphrase-file FILE"
        )
    return keys.load_private_key(data, passphrase)


def load_cert(path: Path) -> x509.Certificate:
    return keys.load_certificate(path.read_bytes())


def load_certs(paths: tuple[Path, ...]) -> list[x509.Certificate]:
    return [cert for path in paths for cert in keys.load_certificates(path.read_bytes())]


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def write_output(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (or stdout for ``-``) atomically, 0600: what the CLI writes
    (cleartext, keys, archives) is for the operator who asked for it."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(Path(path), data)


def fail(error: SecureMailError[Any]) -> NoReturn:
    """Report a refusal as ``error: <reason-code>: <detail>`` and exit 1."""
    click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
    sys.exit(1)


def refuse_missing_database(config: NodeConfig) -> None:
    """Exit with one error line unless the node's data folder and (SQLite) database are
    there: commands that read a node never create them (a wrong ``data_dir`` must not look
    like an empty node)."""
    if not config.data_dir.is_dir():
        detail = f"node.data_dir {config.data_dir} does not exist: is this the node's config?"
        fail(NodeError(NodeReason.BAD_CONFIG, detail))
    database = sqlite_path(config.database)
    if database is not None and not database.is_file():
        detail = f"no queue database at {database}: the node has not run with this config"
        fail(QueueError(QueueReason.UNAVAILABLE, detail))
