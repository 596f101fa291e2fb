"""The node.toml ``add-member --node-dir`` writes runs for a real organisation after exactly
the edits docs/integration.md §6 lists: ``securemail serve`` on it becomes ready (/readyz)."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemail.cli.federation import federation
from securemail.pki.authority import make_root_ca
from tests.conftest import NOW
from tests.support.postfix import free_port

ENV = {"FED_PASS": "federation passphrase for tests", "NODE_PASS": "node passphrase for tests"}
WAIT = 60.0


def _federation(*args: str | Path) -> None:
    result = CliRunner().invoke(federation, [str(a) for a in args], env=ENV)
    assert result.exit_code == 0, result.output


def _admit(fed: Path, org_id: str, domain: str, node_dir: Path) -> None:
    """add-member with a real-looking endpoint (gw.<domain>:25) and its node directory."""
    _federation(
        "add-member", "--dir", fed, "--org-id", org_id, "--name", f"Test {org_id}",
        "--domain", domain, "--endpoint", f"gw.{domain}:25", "--region", "NZ",
        "--contact-email", f"securemail@{domain}", "--contact-phone", "+64 4 000 0000",
        "--role", "gateway", "--passphrase-env", "FED_PASS", "--node-dir", node_dir,
        "--node-passphrase-env", "NODE_PASS",
    )  # fmt: skip


def _uncomment(text: str, line: str) -> str:
    """Remove the ``# `` before ``line`` (it must be there, commented, exactly once)."""
    assert text.count(f"# {line}\n") == 1, line
    return text.replace(f"# {line}\n", f"{line}\n")


def _documented_edits(text: str, ports: dict[str, int], tmp: Path, store_port: int) -> str:
    """docs/integration.md §6 steps 2 to 6, as an administrator makes them."""
    # 2. the peer listener on a free port for the trial (0.0.0.0:25 needs the port right)
    text = text.replace('listen = "0.0.0.0:25"', f'listen = "127.0.0.1:{ports["peer"]}"')
    # 3. the relay listener where the MTA reaches it (here: loopback, another port)
    text = text.replace('listen = "127.0.0.1:10025"', f'listen = "127.0.0.1:{ports["relay"]}"')
    # 4. delivery into the store: the Maildir lines out, the commented ones in
    text = text.replace('kind = "maildir"\npath = "mail"\n', "")
    for line in ('kind = "smtp"', 'host = "mail.example.govt.nz"', "port = 25", "starttls = true",
                 'cafile = "certs/store-ca.pem"', 'auth_user = "securemail"',
                 'auth_password_env = "SECUREMAIL_STORE_PASSWORD"'):  # fmt: skip
        text = _uncomment(text, line)
    text = text.replace(
        'host = "mail.example.govt.nz"\nport = 25', f'host = "127.0.0.1"\nport = {store_port}'
    )
    # 5. the transport map, in a folder the node may write, for a Postfix configured there
    text = _uncomment(text, "[postfix]")
    text = _uncomment(text, 'transport_map = "/etc/postfix/securemail/transport"')
    text = text.replace(
        'transport_map = "/etc/postfix/securemail/transport"',
        f'transport_map = "{tmp / "postfix" / "securemail" / "transport"}"\n'
        f'config_directory = "{tmp / "postfix"}"',
    )
    # 6. monitoring
    return text + f'\n[web]\nlisten = "127.0.0.1:{ports["web"]}"\n'


def _readyz(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the node's certificate names gw.agency.govt.nz
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/readyz", context=context, timeout=5
        ) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_add_member_node_toml_with_the_documented_edits_becomes_ready(tmp_path: Path) -> None:
    """Federation with agency and council; agency's node.toml edited as documented; ``serve``
    answers /readyz 200, and the node wrote the transport map with council, not agency."""
    fed, node = tmp_path / "FED", tmp_path / "agency-node"
    _federation("init", "--dir", fed, "--name", "Test Federation", "--passphrase-env", "FED_PASS")
    _admit(fed, "agency", "agency.govt.nz", node)
    _admit(fed, "council", "council.govt.nz", tmp_path / "council-node")
    _federation("publish", "--dir", fed, "--passphrase-env", "FED_PASS")
    (tmp_path / "postfix" / "securemail").mkdir(parents=True)
    (tmp_path / "postfix" / "main.cf").write_text("compatibility_level = 3.6\n")
    pointer = re.search(
        r"docs/integration\.md, section (\d+) \((.+?)\)", (node / "node.toml").read_text()
    )
    assert pointer is not None, "node.toml points at the guide"
    guide = (Path(__file__).parents[2] / "docs" / "integration.md").read_text()
    assert re.search(rf"^## {pointer[1]}\. {re.escape(pointer[2])}", guide, re.MULTILINE)
    (node / "certs" / "store-ca.pem").write_bytes(
        make_root_ca("Store CA", now=NOW).certificate_pem()
    )
    ports = {"peer": free_port(), "relay": free_port(), "web": free_port()}
    config = node / "node.toml"
    config.write_text(_documented_edits(config.read_text(), ports, tmp_path, free_port()))
    environ = {**os.environ, "SECUREMAIL_PASSPHRASE": ENV["NODE_PASS"],
               "SECUREMAIL_STORE_PASSWORD": "store password for the node"}  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "securemail", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=environ,
        )  # fmt: skip
    try:
        status, deadline = 0, time.monotonic() + WAIT
        while status != 200 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            status = _readyz(ports["web"])
    finally:
        child.terminate()
        child.wait(WAIT)
    assert status == 200, log.read_text()
    transport = (tmp_path / "postfix" / "securemail" / "transport").read_text()
    assert re.search(
        rf"^council\.govt\.nz +smtp:\[127\.0\.0\.1\]:{ports['relay']}$", transport, re.M
    )
    assert "agency.govt.nz  " not in transport
    if _postmap_present():
        assert (tmp_path / "postfix" / "securemail" / "transport.db").is_file(), log.read_text()


def _postmap_present() -> bool:
    if shutil.which("postmap") is None and os.environ.get("SECUREMAIL_REQUIRE_ALL") == "1":
        pytest.fail("postmap is not installed and SECUREMAIL_REQUIRE_ALL=1")
    return shutil.which("postmap") is not None
