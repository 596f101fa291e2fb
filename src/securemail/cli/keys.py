"""``securemail keys``: split-knowledge backup and restore of a node's keys; PKCS#12 export.

A node directory holds ``keys/*.key`` (PKCS#8 PEM, encrypted with the node passphrase),
``certs/*.pem``, optionally ``node.toml`` with the node's ``[node] org_id``, and ``audit.log``, to
which every command here appends what it did: identifiers and counts, never key material.

Security: the archive and share files given to ``restore`` are untrusted until the shares
combine and the archive's GCM tag holds; everything is checked before the first file is
written, and names from the archive must be plain file names. Key material and share words
never reach stdout, stderr or the audit log; passphrases come only from the environment or
a file. New files are 0600; share files should leave this host with their custodians.

Exit status: 0 done, 1 refused (``error: <reason-code>: <detail>`` on stderr, nothing
written), 2 usage error.
"""

from __future__ import annotations

import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from securemail import audit
from securemail.cli import files
from securemail.keys import backup, export
from securemail.keys.backup import KeyBackupError
from securemail.pki.authority import private_key_pem
from securemail.smime import keys as smime_keys
from securemail.smime.errors import Reason, SmimeError

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
NODE_DIR = click.option(
    "--node-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The node directory: keys/*.key, certs/*.pem, node.toml, audit.log.",
)


@click.group()
def keys() -> None:
    """Back up and restore a node's private keys with split knowledge; export PKCS#12."""


def _refuse(error: KeyBackupError | SmimeError) -> NoReturn:
    click.echo(f"error: {error.reason.value}: {error.detail}", err=True)
    sys.exit(1)


def _record(node_dir: Path, event: str, details: dict[str, str]) -> None:
    log = node_dir / "audit.log"
    head = audit.append(log, event, details, now=datetime.now(UTC))
    click.echo(f"audit: {event} is record {head.records} of {log} (sha256 {head.digest})")


def _load_key(path: Path, passphrase: bytes | None) -> smime_keys.PrivateKey:
    try:
        return files.load_key(path, passphrase)
    except SmimeError as error:
        hint = " (is the node passphrase right?)" if error.reason is Reason.BAD_KEY else ""
        raise SmimeError(error.reason, f"{path}: {error.detail}{hint}") from None


def _named(path: Path, suffix: str) -> str:
    try:
        return backup.check_file_name(path.name, suffix)
    except ValueError as exc:
        raise click.UsageError(f"{path}: {exc}") from None


def _org_id(node_dir: Path) -> str | None:
    """The org id whose keys live in ``node_dir``, from its node.toml: the
    ``[[organisation]]`` whose ``keys`` folder is this one (add-member writes ``keys = "."``),
    or ``[node] org_id`` as written before the gateway existed."""
    path = node_dir / "node.toml"
    if not path.exists():
        return None
    try:
        config = tomllib.loads(path.read_text())
        for org in config.get("organisation", []):
            if (node_dir / str(org.get("keys", ""))).resolve() == node_dir.resolve():
                org_id = org.get("org_id")
                break
        else:
            org_id = config.get("node", {}).get("org_id")
    except (ValueError, AttributeError):
        raise click.UsageError(f"{path} is not a node configuration (TOML)") from None
    return org_id if isinstance(org_id, str) else None


def _load_node(node_dir: Path, passphrase: bytes | None) -> backup.NodeKeys:
    key_paths = sorted((node_dir / "keys").glob("*.key"))
    cert_paths = sorted((node_dir / "certs").glob("*.pem"))
    return backup.NodeKeys(
        tuple(backup.NamedKey(_named(p, ".key"), _load_key(p, passphrase)) for p in key_paths),
        tuple(
            backup.NamedCertificates(
                _named(p, ".pem"), tuple(smime_keys.load_certificates(p.read_bytes()))
            )
            for p in cert_paths
        ),
        _org_id(node_dir),
    )


@keys.command("backup")
@NODE_DIR
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The backup archive to write; share I goes to OUT.share-I-of-N.txt.",
)
@click.option(
    "--shares",
    type=click.IntRange(1, backup.MAX_SHARES),
    required=True,
    help="N: custodian shares to make (at most 16).",
)
@click.option(
    "--threshold",
    type=click.IntRange(1, backup.MAX_SHARES),
    required=True,
    help="K: shares needed to restore (2 or more; fewer reveal nothing).",
)
@click.option(
    "--allow-single-custodian",
    is_flag=True,
    help="Accept --threshold 1: then any one share alone restores every key.",
)
@files.passphrase_options
def backup_command(
    node_dir: Path,
    out: Path,
    shares: int,
    threshold: int,
    allow_single_custodian: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Seal every key and certificate of the node into OUT; split its key into N shares."""
    try:
        backup.check_split(shares, threshold, allow_single_custodian=allow_single_custodian)
    except KeyBackupError as error:
        hint = "; --allow-single-custodian accepts that knowingly" if threshold == 1 else ""
        raise click.UsageError(error.detail + hint) from None
    share_paths = [
        out.with_name(f"{out.name}.share-{i}-of-{shares}.txt") for i in range(1, shares + 1)
    ]
    if not out.parent.is_dir():
        raise click.BadParameter(f"{out.parent} is not a directory", param_hint="--out")
    passphrase = files.read_passphrase(passphrase_env, passphrase_file)
    try:
        existing = [str(path) for path in (out, *share_paths) if path.exists()]
        if existing:
            detail = f"already there: {', '.join(existing)}; a backup is never overwritten"
            raise KeyBackupError(backup.Reason.OUTPUT_EXISTS, detail)
        node = _load_node(node_dir, passphrase)
        made = backup.make_backup(
            node,
            shares=shares,
            threshold=threshold,
            now=datetime.now(UTC),
            allow_single_custodian=allow_single_custodian,
        )
    except (KeyBackupError, SmimeError) as error:
        _refuse(error)
    for path, text in zip(share_paths, made.shares, strict=True):
        files.write_output(str(path), text.encode())
    files.write_output(str(out), made.archive)
    header = made.header
    click.echo(f"backup {header.backup_id}: {_counts(node)}, sealed in {out}")
    for number, path in enumerate(share_paths, start=1):
        click.echo(f"share {number} of {shares}: {path}")
    click.echo(
        f"Any {threshold} of the {shares} shares restore the keys. Give each share to a "
        "different custodian, then delete the share files from this host."
    )
    details = {"archive": str(out), "shares": str(shares), "threshold": str(threshold)}
    _record(node_dir, "keys.backup", _about(header, node) | details)


def _counts(node: backup.NodeKeys) -> str:
    keys, certs = len(node.keys), len(node.certificates)
    return f"{keys} key{'s' * (keys != 1)}, {certs} certificate file{'s' * (certs != 1)}"


def _about(header: backup.Header, node: backup.NodeKeys) -> dict[str, str]:
    """What the audit log says about a backup: identifiers and names, never key material."""
    return {
        "backup_id": header.backup_id,
        "created": header.created,
        "org_id": header.org_id or "",
        "keys": str(len(node.keys)),
        "key_names": ",".join(k.name for k in node.keys),
        "certificate_files": str(len(node.certificates)),
    }


def _restore_paths(node_dir: Path, node: backup.NodeKeys, force: bool) -> list[Path]:
    """Where restore writes each key, then each certificate file; refuse to overwrite."""
    paths = [node_dir / "keys" / k.name for k in node.keys]
    paths += [node_dir / "certs" / c.name for c in node.certificates]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not force:
        detail = f"already there: {', '.join(existing)} (--force overwrites them)"
        raise KeyBackupError(backup.Reason.OUTPUT_EXISTS, detail)
    return paths


@keys.command("restore")
@click.option("--backup", "archive", type=FILE, required=True, help="The backup archive.")
@click.option(
    "--share",
    "share_files",
    type=FILE,
    multiple=True,
    required=True,
    help="A custodian's share file; repeat until the backup's threshold is met.",
)
@click.option(
    "--node-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The node directory to restore into (created if missing).",
)
@click.option("--force", is_flag=True, help="Overwrite key and certificate files that exist.")
@files.passphrase_options
def restore_command(
    archive: Path,
    share_files: tuple[Path, ...],
    node_dir: Path,
    force: bool,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Combine the shares, open the archive, and write its keys (under the node passphrase)."""
    passphrase = files.read_passphrase(passphrase_env, passphrase_file)
    if not passphrase:
        raise click.UsageError(
            "give --passphrase-env or --passphrase-file: restored keys are encrypted with it"
        )
    shares = [(str(path), path.read_bytes()) for path in share_files]
    try:
        restored = backup.restore_backup(archive.read_bytes(), shares)
        paths = _restore_paths(node_dir, restored.node, force)
    except KeyBackupError as error:
        _refuse(error)
    node = restored.node
    contents = [private_key_pem(k.key, passphrase) for k in node.keys]
    contents += [c.pem() for c in node.certificates]
    (node_dir / "keys").mkdir(mode=0o700, parents=True, exist_ok=True)
    (node_dir / "certs").mkdir(exist_ok=True)
    for path, data in zip(paths, contents, strict=True):
        files.write_output(str(path), data)
    used = ", ".join(str(n) for n in restored.shares_used)
    header = restored.header
    click.echo(f"restored backup {header.backup_id} ({_counts(node)}) into {node_dir}")
    click.echo(f"shares used: {used}; created {header.created}")
    details = {"archive": str(archive), "shares_used": used, "threshold": str(header.threshold)}
    _record(node_dir, "keys.restore", _about(header, node) | details)


def _member(directory: Path, name: str, suffix: str) -> Path:
    """``directory/name`` (suffix added if missing): a plain file name, never a path."""
    file_name = name if name.endswith(suffix) else name + suffix
    try:
        path = directory / backup.check_file_name(file_name, suffix)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not path.is_file():
        raise click.BadParameter(f"{path} does not exist")
    return path


def _certificate_for(
    node_dir: Path, key: smime_keys.PrivateKey, cert_name: str | None, key_stem: str = ""
) -> tuple[Path, x509.Certificate]:
    """The certificate of ``key``: in --cert if given, else the newest match in certs/."""
    if cert_name is not None:
        paths = [_member(node_dir / "certs", cert_name, ".pem")]
    else:
        paths = sorted((node_dir / "certs").glob("*.pem"))
    matches = [
        (path, cert)
        for path in paths
        for cert in smime_keys.load_certificates(path.read_bytes())
        if cert.public_key() == key.public_key()
    ]
    if not matches:
        where = paths[0] if cert_name is not None else node_dir / "certs"
        raise SmimeError(Reason.BAD_KEY, f"no certificate in {where} matches the key")
    # a key's own certificate has its name (keys/signing.key, certs/signing.pem): one key
    # may be certified twice (a CSR admission certifies it for signing and for encryption)
    named = [m for m in matches if m[0].stem == key_stem]
    return max(named or matches, key=lambda match: match[1].not_valid_before_utc)


def _export_passphrase(env: str | None, file: Path | None) -> bytes:
    if env and file:
        raise click.UsageError("give --export-passphrase-env or --export-passphrase-file, not both")
    passphrase = files.read_passphrase(env, file)
    if not passphrase:
        raise click.UsageError(
            "give a non-empty export passphrase with --export-passphrase-env VAR "
            "or --export-passphrase-file FILE"
        )
    try:
        passphrase.decode("utf-8")
    except UnicodeDecodeError:
        raise click.UsageError("the export passphrase must be UTF-8 text") from None
    return passphrase


@keys.command("export-p12")
@NODE_DIR
@click.option("--key", "key_name", required=True, metavar="NAME", help="The key in keys/.")
@click.option(
    "--cert",
    "cert_name",
    metavar="NAME",
    help="Its certificate in certs/ (default: the newest one that matches the key).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PKCS#12 file."
)
@click.option(
    "--export-passphrase-env",
    metavar="VAR",
    help="Environment variable with the export passphrase.",
)
@click.option(
    "--export-passphrase-file", type=FILE, help="File whose first line is that passphrase."
)
@files.passphrase_options
def export_command(
    node_dir: Path,
    key_name: str,
    cert_name: str | None,
    out: Path,
    export_passphrase_env: str | None,
    export_passphrase_file: Path | None,
    passphrase_env: str | None,
    passphrase_file: Path | None,
) -> None:
    """Write a key and its certificate as PKCS#12 (PBES2, AES-256-CBC, 600,000 rounds)."""
    secret = _export_passphrase(export_passphrase_env, export_passphrase_file)
    key_path = _member(node_dir / "keys", key_name, ".key")
    try:
        key = _load_key(key_path, files.read_passphrase(passphrase_env, passphrase_file))
        cert_path, cert = _certificate_for(node_dir, key, cert_name, key_path.stem)
        data = export.export_pkcs12(key, cert, secret, name=key_path.stem.encode())
    except SmimeError as error:
        _refuse(error)
    files.write_output(str(out), data)
    click.echo(f"exported {key_path.name} with {cert_path.name} to {out}")
    details = {
        "key": key_path.name,
        "certificate": cert_path.name,
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "out": str(out),
        "protection": f"pbes2 pbkdf2-hmac-sha256 {export.EXPORT_ROUNDS} aes-256-cbc",
    }
    _record(node_dir, "keys.export", details)
