"""Private, throw-away Postfix instances on loopback, as real peers for tests and benchmarks.

Theory of operation: an instance is its own config, queue and data directories under the
caller's temporary directory, driven with ``postfix -c DIR`` (distinct config directories
are all Postfix needs to run side by side; ``multi_instance_*`` is not used). main.cf is
written from scratch; master.cf is Debian's with smtpd on a free loopback port and chroot
off (a private queue directory lacks the files Debian copies into the system chroot). Mail
not for the instance's domain goes to ``relayhost``; with ``mailbox_dir`` the instance is
a store, virtual(8) writing Maildir ``<mailbox_dir>/<domain>/<local>/``. virtual(8) forbids
regular-expression substitution in mailbox maps, so a store lists its mailboxes.

Security: Postfix's master needs root, so this runs as root. It only reads the system
instance's master.cf, listens on 127.0.0.1 only and never asks DNS. Local parts name
Maildir paths, so only ``[A-Za-z0-9][A-Za-z0-9._+-]*`` is accepted (no "/", no leading
"."). Processes are ended by the master's process id and group, never by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL

from securemail.demo.federation import free_port as federation_free_port

TEST_DOMAIN = "store.test"
START_TIMEOUT = 30.0  # seconds; a heavily loaded CI machine is slow, a hang is not
COMMAND_TIMEOUT = 120.0
_SYSTEM_MASTER_CF = Path("/etc/postfix/master.cf")
# virtual(8) refuses uid 0 (virtual_minimum_uid is at least 1), so stored mail belongs
# to this unprivileged account.
_MAILBOX_USER = "nobody"
_PORT_ATTEMPTS = 5
_SAFE_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class PostfixError(RuntimeError):
    """A private instance failed to start, stop or run a command; the text has the log tail."""


@dataclass(frozen=True)
class PostfixInstance:
    """A running private instance; its smtpd listens on 127.0.0.1:``port``.

    ``config_dir`` and ``queue_dir`` exist while it runs; ``log_file`` and ``mailbox_dir``
    stay readable after it stopped.
    """

    config_dir: Path
    queue_dir: Path
    port: int
    log_file: Path
    domain: str
    mailbox_dir: Path | None = None

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a Postfix command (postqueue, postsuper, postconf, ...) on this instance."""
        command = [program, "-c", str(self.config_dir), *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        if done.returncode != 0:
            detail = f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}"
            raise PostfixError(detail + "\n" + self.log_tail())
        return done

    def queue_ids(self) -> list[str]:
        """Queue ids of every message in the queue (``postqueue -j``, one JSON object a line)."""
        listing = self.run("postqueue", "-j").stdout
        return [json.loads(line)["queue_id"] for line in listing.splitlines() if line.strip()]

    def flush(self) -> None:
        """Ask the queue manager to retry deferred mail now (``postqueue -f``)."""
        self.run("postqueue", "-f")

    def delivered(self, local: str) -> list[bytes]:
        """Messages stored for ``local@domain``, oldest first (a store instance only)."""
        if self.mailbox_dir is None:
            raise PostfixError("this instance stores no mail: start it with mailbox_dir")
        new = self.mailbox_dir / self.domain / local / "new"
        # Maildir file names start with the delivery time in seconds.
        return [path.read_bytes() for path in sorted(new.glob("*"))]

    def master_pid(self) -> int | None:
        """The master's process id (also its daemons' process group), once it has started."""
        return _master_pid(self.queue_dir)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of this instance's log, for failure messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        """Wait until the log holds ``text`` (e.g. "status=sent") ``count`` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(FileNotFoundError):
                if self.log_file.read_text(errors="replace").count(text) >= count:
                    return
            time.sleep(0.05)
        raise PostfixError(f"fewer than {count} log lines with {text!r}\n" + self.log_tail())


@contextmanager
def start_postfix(
    tmp: Path,
    *,
    relayhost: tuple[str, int] | None = None,
    mailbox_dir: Path | None = None,
    require_tls_to_relay: bool = False,
    domain: str = TEST_DOMAIN,
    mailboxes: Sequence[str] = ("alice", "bob"),
    port: int | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[PostfixInstance]:
    """Run a private instance for the ``with`` block; stop it and end its processes after.

    ``relayhost`` is where everything not for ``domain`` goes (``[host]:port``, no DNS);
    with ``require_tls_to_relay`` the hop must use STARTTLS (certificates not verified).
    ``mailbox_dir`` (a path not yet taken) makes the instance a store: mail for
    ``<local>@domain``, ``local`` one of ``mailboxes``, lands in Maildir
    ``<mailbox_dir>/<domain>/<local>/``; smtpd refuses other recipients of the domain
    (550 5.1.1), as a real store does. ``port`` fixes smtpd's port (a store restarted
    where a client still points); by default a free one is picked. ``settings`` are
    further main.cf parameters, applied last (e.g. ``smtpd_tls_cert_file``).
    """
    with _instance_dir(tmp, mailbox_dir) as (base, shown):
        main_cf = _main_cf(base, domain, relayhost, require_tls_to_relay)
        if mailbox_dir is not None:
            main_cf |= _store_settings(base, domain, mailboxes)
        main_cf |= settings or {}
        layout = PostfixInstance(
            base / "etc", base / "spool", 0, shown / "postfix.log", domain, mailbox_dir
        )
        instance, master = _start_on_free_port(layout, main_cf, port)
        try:
            yield instance
        finally:
            stop_postfix(instance, master)


@contextmanager
def _instance_dir(tmp: Path, mailbox_dir: Path | None) -> Iterator[tuple[Path, Path]]:
    """The instance's directory (0711, in the system temp dir) and its link in ``tmp``.

    Postfix daemons open files by absolute path without root (the master's lock file as
    mail_owner, tables and Maildir as the mailbox user), and pytest's temp dirs are 0700,
    re-tightened whenever a pytest session starts. So the instance runs outside ``tmp``;
    ``tmp/<name>`` and ``mailbox_dir`` are links to it while it runs, and afterwards the
    log, configuration and Maildir are moved there (the queue is dropped).
    """
    base = Path(tempfile.mkdtemp(prefix="securemail-postfix-"))
    base.chmod(0o711)
    (base / "mail").mkdir()
    links = [(tmp / base.name, base), (mailbox_dir, base / "mail")]
    for link, target in links:
        if link is not None:
            link.symlink_to(target, target_is_directory=True)
    try:
        yield base, tmp / base.name
    finally:
        shutil.rmtree(base / "spool", ignore_errors=True)  # sockets and fifos: no moving
        for link, target in reversed(links):
            if link is not None and link.is_symlink():
                link.unlink()
                shutil.move(target, link)
        shutil.rmtree(base, ignore_errors=True)


def wait_until_accepting(
    instance: PostfixInstance,
    master: subprocess.Popen[bytes] | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Wait until the instance's smtpd sends its 220 greeting; fail with the log tail.

    With ``master`` (the process ``start_postfix`` runs) a master that exits fails at once.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master is not None and master.poll() is not None:
            raise PostfixError(f"postfix exited ({master.returncode})\n" + instance.log_tail())
        with suppress(OSError), socket.create_connection(("127.0.0.1", instance.port), 5) as s:
            s.settimeout(5)
            if s.recv(4).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                return
        time.sleep(0.05)
    raise PostfixError(f"postfix on port {instance.port} not accepting\n" + instance.log_tail())


def stop_postfix(instance: PostfixInstance, master: subprocess.Popen[bytes]) -> None:
    """Stop the instance (``postfix stop``); kill what is left of it after 10 s."""
    master_pid = _master_pid(instance.queue_dir)
    stop = ["postfix", "-c", str(instance.config_dir), "stop"]
    subprocess.run(stop, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
    # The master is a session leader and its daemons share its process group; the master
    # ends them on its way out, this catches any that hang.
    if master_pid is not None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(master_pid, signal.SIGKILL)


def free_port() -> int:
    """A loopback TCP port nobody listened on a moment ago (the caller may still collide);
    the demo's pick, outside the range outgoing connections take ports from."""
    return federation_free_port()


def _start_on_free_port(
    layout: PostfixInstance, settings: dict[str, str], port: int | None = None
) -> tuple[PostfixInstance, subprocess.Popen[bytes]]:
    """Start with a fresh port, again if another process took that port meanwhile.

    A fixed ``port`` is tried once: a collision there is the caller's to see.

    ``postfix start-fg`` keeps the master a child of this process, so it is reaped here
    (a container's init may not reap a daemonised master).
    """
    for _ in range(1 if port is not None else _PORT_ATTEMPTS):
        instance = dataclasses.replace(layout, port=port or free_port())
        _write_config(instance, settings)
        instance.log_file.unlink(missing_ok=True)
        instance.run("postfix", "check")
        start = ["postfix", "-c", str(instance.config_dir), "start-fg"]
        master = subprocess.Popen(start, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        try:
            wait_until_accepting(instance, master)
        except PostfixError:
            stop_postfix(instance, master)
            if port is not None or "Address already in use" not in instance.log_tail():
                raise
            continue
        return instance, master
    raise PostfixError(f"no free port after {_PORT_ATTEMPTS} attempts")


def _main_cf(
    base: Path, domain: str, relayhost: tuple[str, int] | None, require_tls: bool
) -> dict[str, str]:
    """The settings of a loopback-only instance that never looks at DNS."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(base / "spool"),
        "data_directory": str(base / "data"),
        "maillog_file": str(base / "postfix.log"),
        "maillog_file_prefixes": str(base),
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "myhostname": f"mx.{domain}",
        "mydomain": domain,
        "myorigin": "$mydomain",
        "mydestination": domain,
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "relayhost": "" if relayhost is None else f"[{relayhost[0]}]:{relayhost[1]}",
        "smtp_host_lookup": "native",
        "smtp_dns_support_level": "disabled",
        "smtp_tls_security_level": "encrypt" if require_tls else "may",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        # Tests flush deferred mail themselves; keep automatic retries short anyway.
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "10s",
    }


def _store_settings(base: Path, domain: str, mailboxes: Sequence[str]) -> dict[str, str]:
    """virtual(8) delivery of the listed local parts of ``domain`` into Maildir."""
    unsafe = [local for local in mailboxes if not _SAFE_LOCAL.fullmatch(local)]
    if unsafe or not mailboxes:
        raise ValueError(f"a store needs mailboxes named [A-Za-z0-9][A-Za-z0-9._+-]*: {unsafe}")
    owner = pwd.getpwnam(_MAILBOX_USER)
    os.chown(base / "mail", owner.pw_uid, owner.pw_gid)
    maps = base / "mailboxes"
    # A result ending in "/" selects Maildir delivery (virtual(8)).
    _write_settled(maps, "".join(f"{local}@{domain} {domain}/{local}/\n" for local in mailboxes))
    return {
        "mydestination": "",
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_base": str(base / "mail"),
        "virtual_mailbox_maps": f"texthash:{maps}",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
    }


def _write_config(instance: PostfixInstance, settings: dict[str, str]) -> None:
    """Write main.cf and a master.cf whose smtpd listens on the instance's port."""
    instance.config_dir.mkdir(parents=True, exist_ok=True)
    instance.queue_dir.mkdir(exist_ok=True)  # postfix check creates what is inside it
    main_cf = "".join(f"{name} = {value}\n" for name, value in settings.items())
    _write_settled(instance.config_dir / "main.cf", main_cf)
    _write_settled(instance.config_dir / "master.cf", _master_cf(instance.port))


def _write_settled(path: Path, text: str) -> None:
    """Write a configuration file dated a minute ago.

    Postfix re-reads a file written moments ago until its time stamp settles (a guard
    against half-written files), about 2 s per program start; these files are complete.
    """
    path.write_text(text)
    settled = time.time() - 60
    os.utime(path, (settled, settled))


def _master_cf(port: int) -> str:
    """Debian's master.cf with smtpd on ``port`` and no chroot (column 5 set to "n")."""
    lines = []
    for line in _SYSTEM_MASTER_CF.read_text().splitlines():
        fields = line.split()
        if line[:1].isspace() or line.startswith("#") or len(fields) < 8:
            lines.append(line)
            continue
        if fields[:2] == ["smtp", "inet"]:
            fields[0] = str(port)
        fields[4] = "n"
        lines.append("  ".join(fields))
    return "\n".join(lines) + "\n"


def _master_pid(queue_dir: Path) -> int | None:
    """The master's process id from its pid file, if it ever started."""
    try:
        return int((queue_dir / "pid" / "master.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
