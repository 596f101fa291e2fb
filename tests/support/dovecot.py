"""Private, throw-away Dovecot instances on loopback, serving Maildirs with exported accounts.

Theory of operation: an instance is one directory (config, base_dir, state, log, the
exported passwd-files and the Maildirs) driven with ``dovecot -c CONF -F``, so the master
stays a child of this process and is stopped by its process id. The configuration is
written from scratch and includes nothing from /etc/dovecot. IMAP listens on two free
loopback ports: ``imap_port`` (STARTTLS) and ``imaps_port`` (TLS from the first byte),
with a certificate from a throw-away CA whose file (``ca_file``) clients verify against.
Authentication is the chain :func:`securemail.accounts.dovecot.auth_config` writes, over
files from :func:`~securemail.accounts.dovecot.export_users`.

Dovecot delays logins from an address that recently failed (its auth penalty: 2 s, 4 s,
8 s ... per failure from 127.0.0.1). Tests that check refusals would mostly wait, so the
penalty is off unless ``auth_penalty`` is set (the documented way: the penalty socket's
mode 0); the auth process then logs one error, failing to reach that socket.

Security: Dovecot's master needs root, so this runs as root; mail is read as an
unprivileged user (``nobody``: Dovecot refuses mail access as uid 0). The instance lives in
the system temp directory (0711) because pytest's 0700 directories cannot be entered by
that user; a link in the caller's directory points to it, and the log and Maildirs are
moved there after the stop. It listens on 127.0.0.1 only and never touches /etc/dovecot
or a system service. Processes are ended by the master's id and process group, never by
name.
"""

from __future__ import annotations

import dataclasses
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from subprocess import DEVNULL

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securemail.accounts.dovecot import (
    DEFAULT_SLOTS,
    USERS_FILE,
    DovecotFiles,
    auth_config,
    export_users,
    password_file,
)
from securemail.pki.authority import Issued, make_root_ca, private_key_pem
from tests.support.postfix import free_port

START_TIMEOUT = 30.0  # seconds; a heavily loaded CI machine is slow, a hang is not
COMMAND_TIMEOUT = 60.0
MAIL_USER = "nobody"
AUTH_GROUP = "dovecot"  # default_internal_user's group (Debian's package makes it)
HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5


class DovecotError(RuntimeError):
    """A private instance failed to start, stop or run a command; the text has the log tail."""


@dataclass(frozen=True)
class DovecotInstance:
    """A running private instance on 127.0.0.1: ``imap_port`` (STARTTLS) and ``imaps_port``.

    ``mail_root`` is where Maildirs go (``<mail_root>/<domain>/<local>/``); hand what a
    test wrote there to the mail user with :meth:`hand_over`. ``auth_dir`` holds the
    exported files (:meth:`install`).
    """

    base: Path
    imap_port: int
    imaps_port: int
    ca_file: Path
    mail_root: Path
    auth_dir: Path
    slots: int
    sasl_port: int = 0  # Dovecot's SASL (auth-client) service for Postfix, if asked for

    @property
    def config_file(self) -> Path:
        return self.base / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        return self.base / "dovecot.log"

    def install(self, files: DovecotFiles) -> None:
        """Put exported files in place, each written aside and renamed over the old one.

        Dovecot re-reads a passwd-file, at most once a second, when its size or its
        modification time in whole seconds changed; a file replaced within the second with
        the same size would go unseen, so a replacement is dated at least a second later.
        """
        if len(files.passwords) != self.slots:
            raise DovecotError(f"{len(files.passwords)} password files for {self.slots} slots")
        # Password files first: an account removed from them is refused at once, even
        # while Dovecot still holds the old users file.
        named = [(password_file(slot), text) for slot, text in enumerate(files.passwords)]
        named.append((USERS_FILE, files.users))
        for name, text in named:
            aside = self.auth_dir / f".{name}.new"
            aside.write_text(text)
            aside.chmod(0o640)
            os.chown(aside, 0, grp.getgrnam(AUTH_GROUP).gr_gid)
            _date_after(aside, self.auth_dir / name)
            aside.replace(self.auth_dir / name)

    def hand_over(self, path: Path) -> None:
        """Give ``path`` and everything below it to the mail user (the test wrote it as root)."""
        owner = pwd.getpwnam(MAIL_USER)
        for folder, _, names in os.walk(path):
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            for name in names:
                os.chown(os.path.join(folder, name), owner.pw_uid, owner.pw_gid)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of this instance's log, for failure messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])


def _date_after(new: Path, old: Path) -> None:
    """Date ``new`` at least one whole second after ``old`` (if there is one)."""
    try:
        previous = int(old.stat().st_mtime)
    except FileNotFoundError:
        return
    stamp = max(time.time(), previous + 1.0)
    os.utime(new, (stamp, stamp))


def mail_owner() -> tuple[int, int]:
    """The uid and gid Dovecot reads Maildirs as (for ``export_users``)."""
    owner = pwd.getpwnam(MAIL_USER)
    return owner.pw_uid, owner.pw_gid


@contextmanager
def start_dovecot(
    tmp: Path, *, slots: int = DEFAULT_SLOTS, auth_penalty: bool = False, sasl: bool = False
) -> Iterator[DovecotInstance]:
    """Run a private instance for the ``with`` block; stop it and end its processes after.

    It starts with no accounts: :meth:`DovecotInstance.install` an export of accounts
    whose Maildirs lie below ``mail_root``, with ``slots`` password slots. With ``sasl``
    its authentication service also listens on 127.0.0.1:``sasl_port`` for Postfix
    (``smtpd_sasl_type = dovecot``, ``smtpd_sasl_path = inet:127.0.0.1:<port>``).
    """
    base = Path(tempfile.mkdtemp(prefix="securemail-dovecot-"))
    base.chmod(0o711)
    link = tmp / base.name
    link.symlink_to(base, target_is_directory=True)
    try:
        layout = _layout(base, slots)
        layout.install(export_users([], uid=1, gid=1, slots=slots))  # no entries: ids unused
        instance, master = _start_on_free_ports(layout, auth_penalty, sasl)
        try:
            yield instance
        finally:
            stop_dovecot(instance, master)
    finally:
        shutil.rmtree(base / "run", ignore_errors=True)  # sockets: no moving
        link.unlink()
        shutil.move(base, link)


def _layout(base: Path, slots: int) -> DovecotInstance:
    """Folders, certificate and a not yet running instance in ``base``."""
    for name in ("run", "state", "auth"):
        (base / name).mkdir(mode=0o700)
    # Dovecot's auth process reads the passwd-files as its internal user.
    (base / "auth").chmod(0o750)
    os.chown(base / "auth", 0, grp.getgrnam(AUTH_GROUP).gr_gid)
    (base / "mail").mkdir(mode=0o700)
    uid, gid = mail_owner()
    os.chown(base / "mail", uid, gid)
    _write_certificate(base)
    return DovecotInstance(base, 0, 0, base / "ca.pem", base / "mail", base / "auth", slots)


def _write_certificate(base: Path) -> None:
    """A throw-away CA (``ca.pem``) and the server's key and certificate for 127.0.0.1.

    The address is named twice: as an IP address, which Python's ssl checks, and as a DNS
    name, the only kind mbsync 1.4 compares with its ``Host``.
    """
    now = datetime.now(UTC)  # OpenSSL checks validity against the system clock
    ca = make_root_ca("SecureMail Dovecot Test CA", now=now, key_type="p256")
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address(HOST))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    (base / "ca.pem").write_bytes(ca.certificate_pem())
    (base / "server.pem").write_bytes(Issued(certificate, key).certificate_pem())
    (base / "server.key").write_bytes(private_key_pem(key, None))
    (base / "server.key").chmod(0o600)


def _start_on_free_ports(
    layout: DovecotInstance, auth_penalty: bool, sasl: bool = False
) -> tuple[DovecotInstance, subprocess.Popen[bytes]]:
    """Start on fresh ports, again if another process took one of them meanwhile.

    ``-F`` keeps the master in the foreground, a child of this process (reaped here); its
    own session makes it a process group leader, so what it leaves behind can be ended.
    """
    for _ in range(_PORT_ATTEMPTS):
        instance = dataclasses.replace(
            layout,
            imap_port=free_port(),
            imaps_port=free_port(),
            sasl_port=free_port() if sasl else 0,
        )
        instance.config_file.write_text(_config(instance, auth_penalty))
        instance.log_file.unlink(missing_ok=True)
        start = ["dovecot", "-c", str(instance.config_file), "-F"]
        master = subprocess.Popen(
            start, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL, start_new_session=True
        )
        try:
            wait_until_greeting(instance, master)
        except DovecotError:
            stop_dovecot(instance, master)
            if "Address already in use" not in instance.log_tail():
                raise
            continue
        return instance, master
    raise DovecotError(f"no free ports after {_PORT_ATTEMPTS} attempts")


def wait_until_greeting(
    instance: DovecotInstance, master: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> None:
    """Wait until the STARTTLS port greets with ``* OK``; fail with the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise DovecotError(f"dovecot exited ({master.returncode})\n" + instance.log_tail())
        with suppress(OSError), socket.create_connection((HOST, instance.imap_port), 5) as s:
            s.settimeout(5)
            if s.recv(4).startswith(b"* OK"):
                s.sendall(b"a LOGOUT\r\n")
                return
        time.sleep(0.05)
    raise DovecotError(f"dovecot on port {instance.imap_port} not greeting\n" + instance.log_tail())


def stop_dovecot(instance: DovecotInstance, master: subprocess.Popen[bytes]) -> None:
    """Stop the master (SIGTERM, it ends its children); kill its process group after 10 s."""
    with suppress(ProcessLookupError):
        master.terminate()
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(master.pid, signal.SIGKILL)


def _config(instance: DovecotInstance, auth_penalty: bool) -> str:
    """dovecot.conf: IMAP only, TLS required, the exported passdb chain and userdb."""
    base = instance.base
    settings = f"""\
base_dir = {base / "run"}
state_dir = {base / "state"}
log_path = {instance.log_file}
protocols = imap
listen = {HOST}
ssl = required
ssl_cert = <{base / "server.pem"}
ssl_key = <{base / "server.key"}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
mail_location = maildir:~
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {instance.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {instance.imaps_port}
    ssl = yes
  }}
}}
"""
    penalty_off = "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
    auth = auth_config(PurePosixPath(instance.auth_dir), instance.slots)
    sasl = (
        f"service auth {{\n  inet_listener sasl {{\n    address = {HOST}\n"
        f"    port = {instance.sasl_port}\n  }}\n}}\n"
        if instance.sasl_port
        else ""
    )
    return settings + ("" if auth_penalty else penalty_off) + sasl + auth
