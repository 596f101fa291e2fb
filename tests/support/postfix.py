"""Private, throw-away Postfix instances on loopback, as real peers for tests and benchmarks.

Theory of operation: each instance gets its own configuration, queue and data directories
under a caller's temporary directory and is driven with ``postfix -c DIR`` (a distinct
config_directory is all Postfix needs to run several instances side by side; the
``multi_instance_*`` machinery is not used). main.cf is written from scratch; master.cf is
Debian's, with smtpd moved to a free loopback port and every chroot turned off, since a
private queue directory holds none of the files (/etc/services, resolv.conf, ...) that
Debian copies into the system instance's chroot. The instance relays anything that is not
for its domain to ``relayhost`` and, with ``mailbox_dir``, stores mail for its domain in
Maildir (``<mailbox_dir>/<domain>/<local>/``) through virtual(8). virtual(8) refuses
regular-expression substitution in mailbox maps (so that no address can choose a path), so
a store lists its mailboxes.

Security: Postfix's master must run as root, so this runs as root. It never reads or
changes the system instance beyond copying /etc/postfix/master.cf; it listens on 127.0.0.1
only and resolves nothing through DNS. Recipient local parts come from test traffic and
name Maildir paths, so only ``[A-Za-z0-9][A-Za-z0-9._+-]*`` is accepted (no "/", no
leading "."). Processes are ended by the master's process id and group, never by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

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
    """A running private instance; its smtpd listens on 127.0.0.1:``port``."""

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
            raise PostfixError(
                f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}\n"
                + self.log_tail()
            )
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

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of this instance's log, for failure messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``count`` log lines contain ``text`` (e.g. "status=sent")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_file.exists():
                seen = sum(text in line for line in self.log_file.read_text().splitlines())
                if seen >= count:
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
) -> Iterator[PostfixInstance]:
    """Run a private instance for the ``with`` block; stop it and end its processes after.

    ``relayhost`` is where everything not for ``domain`` goes (``[host]:port``, no DNS);
    with ``require_tls_to_relay`` the hop must use STARTTLS (certificates not verified).
    ``mailbox_dir`` makes the instance a store: mail for ``<local>@domain``, ``local`` one of
    ``mailboxes``, lands in Maildir ``<mailbox_dir>/<domain>/<local>/``; smtpd refuses
    other recipients of the domain (550 5.1.1), as a real store does.
    """
    base = Path(tempfile.mkdtemp(prefix="postfix-", dir=tmp))
    _allow_search(base)
    settings = _main_cf(base, domain, relayhost, require_tls_to_relay)
    if mailbox_dir is not None:
        settings |= _store_settings(base, domain, mailbox_dir, mailboxes)
    layout = PostfixInstance(
        base / "etc", base / "spool", 0, base / "postfix.log", domain, mailbox_dir
    )
    instance, master = _start_on_free_port(layout, settings)
    try:
        yield instance
    finally:
        stop_postfix(instance, master)


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
    subprocess.run(
        ["postfix", "-c", str(instance.config_dir), "stop"],
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
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
    """A loopback TCP port nobody listened on a moment ago (the caller may still collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_on_free_port(
    layout: PostfixInstance, settings: dict[str, str]
) -> tuple[PostfixInstance, subprocess.Popen[bytes]]:
    """Start with a fresh port, again if another process took that port meanwhile.

    ``postfix start-fg`` keeps the master a child of this process, so it is reaped here
    (a container's init may not reap a daemonised master).
    """
    for _ in range(_PORT_ATTEMPTS):
        instance = dataclasses.replace(layout, port=free_port())
        _write_config(instance, settings)
        instance.log_file.unlink(missing_ok=True)
        instance.run("postfix", "check")
        master = subprocess.Popen(
            ["postfix", "-c", str(instance.config_dir), "start-fg"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_accepting(instance, master)
        except PostfixError:
            stop_postfix(instance, master)
            if "Address already in use" not in instance.log_tail():
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


def _store_settings(
    base: Path, domain: str, mailbox_dir: Path, mailboxes: Sequence[str]
) -> dict[str, str]:
    """virtual(8) delivery of the listed local parts of ``domain`` into Maildir."""
    unsafe = [local for local in mailboxes if not _SAFE_LOCAL.fullmatch(local)]
    if unsafe or not mailboxes:
        raise ValueError(f"a store needs mailboxes named [A-Za-z0-9][A-Za-z0-9._+-]*: {unsafe}")
    owner = pwd.getpwnam(_MAILBOX_USER)
    mailbox_dir.mkdir(parents=True, exist_ok=True)
    os.chown(mailbox_dir, owner.pw_uid, owner.pw_gid)
    _allow_search(mailbox_dir)
    maps = base / "mailboxes"
    # A result ending in "/" selects Maildir delivery (virtual(8)).
    _write_settled(maps, "".join(f"{local}@{domain} {domain}/{local}/\n" for local in mailboxes))
    return {
        "mydestination": "",
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_base": str(mailbox_dir),
        "virtual_mailbox_maps": f"texthash:{maps}",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
    }


def _allow_search(directory: Path) -> None:
    """Let Postfix's unprivileged users reach ``directory``: the master opens its lock file
    and virtual(8) writes mail as them, by absolute path, and temp dirs are 0700."""
    for path in (directory, *directory.parents):
        mode = path.stat().st_mode
        if not mode & 0o001:
            path.chmod(mode | 0o001)


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
