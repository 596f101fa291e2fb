"""Found the demo federation on disk: an operator, four members on three gateway nodes.

    agency    agency.govt.nz                 its own gateway, mailboxes on the node
    provider  securemail.provider.nz         a mail service provider for citizens
    gsp       gsp.co.nz                      a gateway service provider ...
    harbour   harbourbuilders.co.nz          ... serving a business on the same node

Everything is made by the operator API exactly as an operator would (init, add-member,
publish); each node gets a configuration that ``securemail serve`` could run as it is.
The provider's node is a mail service provider's: its people have accounts (made as
``securemail user add`` makes them), log in to submit on a 587-style port and read their
Maildirs over IMAP.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from securemail.access.store import WebStore
from securemail.access.tokens import WebAccess
from securemail.accounts.events import ACCOUNTS_LOG, AccountEvents
from securemail.accounts.node import open_accounts
from securemail.config.node import NodeConfig, load_config
from securemail.federation.node import NodeTarget
from securemail.federation.operator import Application, add_member, init_federation, publish
from securemail.federation.store import Store
from securemail.smime.keys import load_private_key

FEDERATION = "SecureMail Demo Federation"


@dataclass(frozen=True)
class Org:
    org_id: str
    name: str
    domain: str
    node: str  # the gateway node that serves it


ORGS = (
    Org("agency", "Te Tari Examples (agency)", "agency.govt.nz", "agency"),
    Org(
        "provider", "Kiwi SecureMail (mail service provider)", "securemail.provider.nz", "provider"
    ),
    Org("gsp", "Gateway Services Ltd (GSP)", "gsp.co.nz", "gsp"),
    Org("harbour", "Harbour Builders Ltd", "harbourbuilders.co.nz", "gsp"),
)


# The provider's people: each gets an account with a password made up by the demo.
PEOPLE = {
    "hemi.walker@securemail.provider.nz": "Hemi Walker",
    "mere.tane@securemail.provider.nz": "Mere Tane",
    "operator@securemail.provider.nz": "Provider operations",
}
OPERATOR = "operator@securemail.provider.nz"  # may use the operator console
MSP = "provider"  # the node that hosts mailboxes for people
# The agency's officer reads her mail (delivered by the agency's gateway) on its webmail.
OFFICERS = {"aroha.ngata@agency.govt.nz": "Aroha Ngata"}
AGENCY = "agency"


@dataclass(frozen=True)
class Clients:
    """Where people's mail clients connect to a provider node, and who may log in."""

    submission_port: int  # STARTTLS, then AUTH (587 style)
    submission_tls_port: int  # TLS from the first byte (465 style)
    imap_port: int  # STARTTLS, then LOGIN (143 style)
    imap_tls_port: int  # TLS from the first byte (993 style)
    web_port: int  # HTTPS: webmail, and the console for operators
    ca: Path  # the certificate that vouches for the node's TLS certificate
    passwords: dict[str, str]  # account (its primary address) -> password


@dataclass(frozen=True)
class NodeSetup:
    name: str
    config: Path
    peer_port: int
    relay_port: int
    mail: Path
    clients: Clients | None = None
    web_port: int | None = None  # the node's webmail (HTTPS), if it serves one
    officers: dict[str, str] = field(default_factory=dict)  # web logins: address -> password

    def mailbox(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.mail / domain / local


EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago and not handed out before by this process.

    Chosen below the range the kernel gives outgoing connections (``ip_local_port_range``):
    a port the OS picks (bind to 0) comes from that range, so any client connection on the
    machine could take it between the pick and the node's bind (seen: a node's web port
    "already in use" in a loaded test run). Outside Linux, the OS picks.
    """
    try:
        low = int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low > 12_000:
        for _ in range(100):
            port = low - 1 - secrets.randbelow(10_000)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        chosen: int = probe.getsockname()[1]
        return chosen


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def found(root: Path, passphrase_file: Path, now: datetime) -> dict[str, NodeSetup]:
    """Make the federation under ``root``; return each node's set-up by node name."""
    passphrase = passphrase_file.read_bytes().strip()
    fed = root / "federation"
    init_federation(fed, FEDERATION, passphrase, now, timedelta(days=7))
    store = Store(fed)
    ports = {name: (free_port(), free_port()) for name in dict.fromkeys(o.node for o in ORGS)}
    for org in ORGS:
        tls_csr = None
        if org.node != org.org_id:  # hosted on another member's node: same TLS key and pin
            tls_csr = _csr(root / org.node / "keys" / "tls.key", passphrase, org.org_id)
        application = Application(
            org_id=org.org_id,
            name=org.name,
            domains=(org.domain,),
            endpoints=(f"127.0.0.1:{ports[org.node][0]}",),
            region="NZ",
            contact_email=f"securemail@{org.domain}",
            contact_phone="+64 4 000 0000",
            # the provider hosts people's mailboxes: its word on their logins is believed
            roles=("gateway", "msp") if org.org_id == MSP else ("gateway",),
            tls_csr=tls_csr,
        )
        add_member(store, application, passphrase, now, NodeTarget(root / org.org_id, passphrase))
    publish(store, passphrase, now, timedelta(days=7))
    nodes = {
        name: _write_config(root, name, node_ports, passphrase_file, fed)
        for name, node_ports in ports.items()
    }
    clients = _open_accounts(nodes[MSP], passphrase)
    nodes[MSP] = dataclasses.replace(nodes[MSP], clients=clients, web_port=clients.web_port)
    officers = {address: secrets.token_urlsafe(12) for address in OFFICERS}
    agency = load_config(nodes[AGENCY].config)
    add_people(agency, passphrase, officers)
    assert agency.web is not None  # noqa: S101 (written below for the agency)
    nodes[AGENCY] = dataclasses.replace(
        nodes[AGENCY], web_port=agency.web.listen.port, officers=officers
    )
    return nodes


def _open_accounts(node: NodeSetup, passphrase: bytes) -> Clients:
    """Give the provider's people their accounts, as its operator would with ``user add``."""
    config = load_config(node.config)
    submission, imap = config.submission, config.imap
    assert submission is not None and submission.listen and submission.tls_listen  # noqa: S101
    assert imap is not None and imap.listen and imap.tls_listen  # noqa: S101
    assert config.web is not None  # noqa: S101
    passwords = {address: secrets.token_urlsafe(12) for address in PEOPLE}
    add_people(config, passphrase, passwords)
    return Clients(
        submission.listen.port,
        submission.tls_listen.port,
        imap.listen.port,
        imap.tls_listen.port,
        config.web.listen.port,
        config.anchor,
        passwords,
    )


def add_people(config: NodeConfig, passphrase: bytes, passwords: dict[str, str]) -> None:
    """Make an account for each address in ``passwords`` (of ``PEOPLE`` or ``OFFICERS``)."""
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open_accounts(
        config.database,
        log_path=config.data_dir / ACCOUNTS_LOG,
        passphrase=passphrase,
        domains=config.domains,
    ) as accounts:
        for address, password in passwords.items():
            accounts.service.add(address, password, display_name=(PEOPLE | OFFICERS)[address])
        if OPERATOR in passwords:
            events = AccountEvents(config.data_dir / ACCOUNTS_LOG)
            access = WebAccess(WebStore(accounts.engine), events, lambda: datetime.now(UTC))
            access.set_operator(OPERATOR, True)


def _csr(key_path: Path, passphrase: bytes, org_id: str) -> bytes:
    key = load_private_key(key_path.read_bytes(), passphrase)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, org_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def _write_config(
    root: Path, node: str, ports: tuple[int, int], passphrase_file: Path, fed: Path
) -> NodeSetup:
    peer, relay = ports
    accounts = "accounts = true\n" if node == MSP else ""
    organisations = "\n".join(
        f"""
[[organisation]]
org_id = "{org.org_id}"
domains = ["{org.domain}"]
keys = "../{org.org_id}"
[organisation.delivery]
kind = "maildir"
path = "mail"
{accounts}"""
        for org in ORGS
        if org.node == node
    )
    clients = (
        f"""
[submission]
listen = "127.0.0.1:{free_port()}"
tls_listen = "127.0.0.1:{free_port()}"

[imap]
listen = "127.0.0.1:{free_port()}"
tls_listen = "127.0.0.1:{free_port()}"

[web]
listen = "127.0.0.1:{free_port()}"
"""
        if node == MSP
        else f'\n[web]\nlisten = "127.0.0.1:{free_port()}"\n'
        if node == AGENCY
        else ""
    )
    config = root / f"{node}.node" / "node.toml"
    config.parent.mkdir()
    (config.parent / "mail").mkdir(mode=0o700)
    config.write_text(
        f"""# Demo gateway node "{node}" (written by securemail demo)
[node]
name = "{node}.demo.securemail.test"
data_dir = "data"

[federation]
name = "{FEDERATION}"
anchor = "../{node}/certs/federation-ca.pem"
directory = "{fed / "directory.json"}"
refresh = "1m"

[peer]
listen = "127.0.0.1:{peer}"
tls_certificate = "../{node}/certs/tls.pem"
tls_key = "../{node}/keys/tls.key"

[relay]
listen = "127.0.0.1:{relay}"
networks = ["127.0.0.0/8"]

[retry]
schedule = ["2s", "5s", "10s"]
warn_after = "10m"
max_lifetime = "1h"

[keys]
passphrase_file = "{passphrase_file}"
{clients}{organisations}"""
    )
    return NodeSetup(node, config, peer, relay, config.parent / "mail")
