"""Check a node's configuration and its surroundings before it runs (``check-config``).

Like ``postfix check``: the node.toml is read and validated, then each thing the node
will need is tried without starting it: files and their permissions (private keys and
the passphrase file 0600, the data folder not open to others), the listening ports
(bindable now), the database (reachable, and at the schema this version expects), the TLS
certificate and key (they open and match) and the directory (present and verified).
Each finding carries a reason code; an ``error`` would stop the node or lose mail.

Security: nothing is written or created: not the data folder, the database, nor the
directory state (the stored copy is verified from its files, the state lock untouched).
Key files are opened only to check that they load with the passphrase and match their
certificate; nothing of them is printed.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securemail.config.anchors import load_anchors
from securemail.config.node import Delivery, NodeConfig, Organisation
from securemail.config.toml_table import Listen
from securemail.directory.document import verify_document
from securemail.directory.fetch import Source
from securemail.directory.store import DOCUMENT, SIGNATURE
from securemail.errors import SecureMailError
from securemail.node.context import read_passphrase
from securemail.node.keyring import installed
from securemail.storage.versions import schema_version

ERROR, WARNING, OK = "error", "warning", "ok"


@dataclass(frozen=True)
class Finding:
    """One thing checked: ``level`` (error, warning, ok), a reason code and what was seen."""

    level: str
    reason: str
    detail: str


def check(config: NodeConfig, now: datetime, *, running: bool = False) -> list[Finding]:
    """Every finding for ``config``; ``running`` (the node's ports file is there) skips
    the port tries, which the running node itself would fail."""
    findings = [*_files(config), *_data_dir(config)]
    findings += [*_tls(config)]
    findings += [*_ports(config)] if not running else [_ok("ports-held", "the node is running")]
    findings += [_database(config), *_directory(config, now)]
    return findings


def _ok(reason: str, detail: str) -> Finding:
    return Finding(OK, reason, detail)


def private_files(config: NodeConfig) -> list[Path]:
    """The files that must be readable by the node's user only: TLS keys, the passphrase
    file, organisation keys, and the secrets of delivery to the organisation's store."""
    files = [config.tls_key]
    for ports in (config.submission, config.imap):
        if ports is not None:
            files.append(ports.tls_key)
    if config.web is not None:
        files.append(config.web.tls_key)
    if config.passphrase_file is not None:
        files.append(config.passphrase_file)
    for org in config.organisations:
        files += sorted((org.keys / "keys").glob("*"))
        files += _store_secrets(org.delivery)
    return list(dict.fromkeys(files))


def _store_secrets(delivery: Delivery) -> list[Path]:
    """The client key and AUTH password file of delivery to an organisation's own store."""
    found = []
    if delivery.store_tls is not None and delivery.store_tls.client_key is not None:
        found.append(delivery.store_tls.client_key)
    if delivery.auth is not None and delivery.auth.password_file is not None:
        found.append(delivery.auth.password_file)
    return found


def _files(config: NodeConfig) -> Iterator[Finding]:
    needed = [config.anchor, config.tls_certificate, *private_files(config)]
    for org in config.organisations:
        if not (org.keys / "keys").is_dir():
            yield Finding(ERROR, "missing-file", f"organisation {org.org_id}: no {org.keys}/keys")
        elif not installed(org):
            detail = (
                f"organisation {org.org_id}: {org.keys}/keys holds no signing or encryption "
                "key: the node starts, but holds its mail as key-unavailable (keys restore)"
            )
            yield Finding(WARNING, "keys-not-installed", detail)
        yield from _store_root(org)
    private = set(private_files(config))
    for path in needed:
        yield _file(path, private=path in private)


def _store_root(org: Organisation) -> Iterator[Finding]:
    """A hosted Maildir root should be a folder the node may write. The node never makes
    it (an unmounted volume must not look like an empty one) and starts without it, as
    ``serve`` warns: its mail waits (451) until the folder is there."""
    path = org.delivery.path
    if org.delivery.kind != "maildir" or path is None:
        return
    if not path.is_dir():
        detail = (
            f"organisation {org.org_id}: delivery.path {path} is not a folder: mail waits (451)"
        )
        yield Finding(WARNING, "maildir-missing", detail)
    elif not os.access(path, os.W_OK | os.X_OK):
        yield Finding(WARNING, "maildir-missing", f"{path}: not writable by this user")
    else:
        yield _ok("maildir", f"organisation {org.org_id}: {path}")


def _file(path: Path, *, private: bool) -> Finding:
    try:
        mode = path.stat().st_mode
        with path.open("rb"):
            pass
    except OSError as error:
        return Finding(ERROR, "unreadable-file", f"{path}: {error.strerror}")
    if not stat.S_ISREG(mode):
        return Finding(ERROR, "unreadable-file", f"{path}: not a file")
    if private and mode & 0o077:
        detail = f"{path} is {stat.S_IMODE(mode):04o}: keys and passphrases must be 0600"
        return Finding(ERROR, "key-permissions", detail)
    return _ok("file", f"{path}")


def _data_dir(config: NodeConfig) -> Iterator[Finding]:
    path = config.data_dir
    if path.exists() and not path.is_dir():
        yield Finding(ERROR, "data-dir-missing", f"node.data_dir {path} is not a folder")
        return
    if not path.exists():
        detail = f"node.data_dir {path} is not there yet: the first start makes it (0700)"
        yield Finding(WARNING, "data-dir-missing", detail)
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o002:
        detail = f"{path} is {mode:04o}: anyone may write there (chmod 700)"
        yield Finding(ERROR, "data-dir-permissions", detail)
    elif mode & 0o077:
        detail = f"{path} is {mode:04o}: others may read queued mail (chmod 700)"
        yield Finding(WARNING, "data-dir-permissions", detail)
    if not os.access(path, os.W_OK | os.X_OK):
        yield Finding(ERROR, "data-dir-permissions", f"{path}: not writable by this user")
    else:
        yield _ok("data-dir", f"{path} ({mode:04o})")


def _tls(config: NodeConfig) -> Iterator[Finding]:
    """Each listener's certificate and key open with the passphrase and match."""
    try:
        password = read_passphrase(config)
    except SecureMailError as error:
        yield Finding(ERROR, error.reason.value, error.detail)
        return
    pairs = {(config.tls_certificate, config.tls_key)}
    for ports in (config.submission, config.imap, config.web):
        if ports is not None:
            pairs.add((ports.tls_certificate, ports.tls_key))
    for certificate, key in sorted(pairs):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(certificate, key, password=password)
        except (OSError, ssl.SSLError) as error:
            detail = f"{certificate} with {key}: {error.strerror or error}"
            yield Finding(ERROR, "tls-key-mismatch", detail)
        else:
            yield _ok("tls", f"{certificate} matches {key}")


def listeners(config: NodeConfig) -> list[tuple[str, Listen]]:
    """Every address the node listens on, by the setting that names it."""
    found = [("peer.listen", config.peer), ("relay.listen", config.relay)]
    if config.ordinary is not None:
        found.append(("ordinary.listen", config.ordinary))
    for name, ports in (("submission", config.submission), ("imap", config.imap)):
        if ports is not None:
            found += [(f"{name}.listen", ports.listen)] if ports.listen else []
            found += [(f"{name}.tls_listen", ports.tls_listen)] if ports.tls_listen else []
    if config.web is not None:
        found.append(("web.listen", config.web.listen))
    return found


def _ports(config: NodeConfig) -> Iterator[Finding]:
    for setting, listen in listeners(config):
        if listen.port == 0:
            continue
        yield _bind(setting, listen)


def _bind(setting: str, listen: Listen) -> Finding:
    where = f"{setting} {listen.host}:{listen.port}"
    try:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((listen.host, listen.port))
    except OSError as error:
        hint = {
            errno.EADDRINUSE: "another program listens there",
            errno.EACCES: "a port below 1024 needs CAP_NET_BIND_SERVICE",
            errno.EADDRNOTAVAIL: "the address is not this host's",
        }.get(error.errno or 0, "")
        detail = f"{where}: {error.strerror}" + (f" ({hint})" if hint else "")
        return Finding(ERROR, "port-unavailable", detail)
    return _ok("port", f"{where} is free")


def _database(config: NodeConfig) -> Finding:
    try:
        current, head = schema_version(config.database)
    except SecureMailError as error:
        return Finding(ERROR, error.reason.value, error.detail)
    if current is None:
        return Finding(
            WARNING,
            "database-not-migrated",
            "no schema yet: `securemail db upgrade` or the first start makes it",
        )
    if current != head:
        detail = f"schema {current}, this version wants {head}: `securemail db upgrade`"
        return Finding(WARNING, "database-not-migrated", detail)
    return _ok("database", f"reachable, schema {current} (the newest)")


def _directory(config: NodeConfig, now: datetime) -> Iterator[Finding]:
    try:
        anchors = load_anchors(config.anchor)
    except (OSError, ValueError, SecureMailError) as error:
        yield Finding(ERROR, "bad-anchor", f"federation.anchor {config.anchor}: {error}")
        return
    state = config.data_dir / "directory"
    sources = []
    if (state / DOCUMENT).is_file():
        sources.append(("stored", state / DOCUMENT))
    if "://" not in config.directory:
        sources.append(("federation.directory", Path(config.directory)))
    for name, path in sources:
        try:
            document = path.read_bytes()
            signature = path.with_name(path.name + SIGNATURE.removeprefix(DOCUMENT)).read_bytes()
            directory = verify_document(
                document, signature, anchors=list(anchors), now=now, federation=config.federation
            )
        except OSError as error:
            yield Finding(ERROR, "no-directory", f"{name} {path}: {error.strerror}")
        except SecureMailError as error:
            yield Finding(ERROR, error.reason.value, f"{name} {path}: {error.detail}")
        else:
            stale = " (STALE: past its next update)" if directory.is_stale(now) else ""
            yield _ok("directory", f"{name}: serial {directory.serial} verified{stale}")
    if not sources:
        Source(config.directory)  # an http:// location is refused here, in its words
        yield Finding(WARNING, "directory-not-fetched", f"{config.directory}: fetched at start")
