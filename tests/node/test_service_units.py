"""contrib/systemd: the node's hardened unit and the maintenance timer pass ``systemd-analyze
verify``, keep the sandbox the docs promise, and run commands that work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.main import cli
from tests.cli.conftest import provider_config

UNITS = Path(__file__).parents[2] / "contrib" / "systemd"
NAMES = ("securemail.service", "securemail-maintenance.service", "securemail-maintenance.timer")
INSTALLED = "/usr/local/bin/securemail"
HARDENING = {
    "Type": "notify",
    "WatchdogSec": "60",
    "User": "securemail",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/securemail",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
}


def analyze() -> str:
    """The systemd-analyze command (Debian's systemd package), or skip (fail under
    SECUREMAIL_REQUIRE_ALL=1)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and SECUREMAIL_REQUIRE_ALL=1")
        pytest.skip(reason)
    return found


def settings(name: str) -> dict[str, list[str]]:
    """Each key of a unit file with its values, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as installed, their ExecStart naming this checkout's ``securemail``."""
    ours = Path(sys.executable).with_name("securemail")
    assert ours.is_file(), ours
    for name in NAMES:
        text = (UNITS / name).read_text().replace(INSTALLED, str(ours))
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
def test_units_verify(units: Path, name: str) -> None:
    """``systemd-analyze verify`` finds nothing wrong with each unit."""
    done = subprocess.run(
        [analyze(), "verify", "--man=no", str(units / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and name not in done.stderr, done.stderr


def test_the_node_unit_keeps_its_sandbox() -> None:
    """The unit runs as its own user with only CAP_NET_BIND_SERVICE, in the sandbox the
    docs describe, and refuses the privileged system calls."""
    unit = settings("securemail.service")
    for key, value in HARDENING.items():
        assert value in unit.get(key, []), key
    assert any(v.startswith("~@privileged") for v in unit["SystemCallFilter"])
    assert unit["ExecStart"] == [f"{INSTALLED} serve --config /etc/securemail/node.toml"]


@pytest.mark.parametrize("name", ["securemail.service", "securemail-maintenance.service"])
def test_exposure_is_low(units: Path, name: str) -> None:
    """``systemd-analyze security`` rates each service's exposure at most 2.0 (of 10)."""
    done = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(units / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert level is not None, done.stdout + done.stderr
    assert float(level.group(1)) <= 2.0, done.stdout


def test_the_timer_starts_the_maintenance_purge(tmp_path: Path) -> None:
    """The timer fires daily and persistently; the service's commands (with its
    SECUREMAIL_CONFIG) purge a real node's queue, then dispose of its records, each exit 0."""
    timer = settings("securemail-maintenance.timer")
    assert timer["OnCalendar"] and timer["Persistent"] == ["true"]
    service = settings("securemail-maintenance.service")
    purge, dispose = (command.split() for command in service["ExecStart"])
    assert purge[0] == INSTALLED and purge[1:3] == ["queue", "purge"]
    assert dispose == [INSTALLED, "records", "dispose"]
    config = provider_config(tmp_path, "provider.nz")
    assert CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    runner = CliRunner(env={"SECUREMAIL_CONFIG": str(config)})
    result = runner.invoke(cli, purge[1:])
    assert result.exit_code == 0 and result.stdout == "purged 0 entries\n", result.output
    disposed = runner.invoke(cli, dispose[1:])
    assert disposed.exit_code == 0, disposed.output
