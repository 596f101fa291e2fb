"""The node's configuration file (TOML): read, validate, and turn into typed settings.

Every mistake is reported as a ConfigError naming the key (``peer.listen``) and what is
wrong with it, before anything starts. Relative paths are relative to the config file, so a
node directory can be moved as a whole.

    [node]            name (our host name), data_dir, database, region, workers, lease,
                      in_flow_delay, in_flow_backlog
    [federation]      name, anchor, directory (file path or https URL), refresh
    [peer]            listen, tls_certificate, tls_key            (mail from member gateways)
                      unsealed (refuse | mark: peer mail whose signature names no recipients)
                      max_sessions_per_source, max_sessions_per_member, tls_handshake_timeout,
                      pre_mail_timeout, max_session, drain_deadline, quarantine_quota
    [relay]           listen, networks                             (the organisation's own MTAs)
    [ordinary]        listen             (optional: mail from outside SecureMail, unverified)
    [submission]      listen, tls_listen, tls_certificate, tls_key (optional: mail clients)
    [smarthost]       host, port, require_tls, cafile              (optional: non-members)
    [limits]          max_message_size, max_recipients
    [retry]           schedule, warn_after, max_lifetime, keep_body
    [keys]            passphrase_env | passphrase_file             (key files are encrypted)
                      hold_without_key (mail for an organisation whose key is missing)
    [upstream]        backs_up, keep_for, delay_notice_after, probe_every (optional: an
                      upstream queue for other members' gateways, docs/recovery.md)
    [imap]            listen, tls_listen, tls_certificate, tls_key (optional: mailboxes)
    [web]             listen, tls_certificate, tls_key, public_origin, metrics_from (optional)
    [log]             format ("text": logfmt lines, or "json"), level
    [records]         checkpoint_interval, retention and authority per class (docs/records.md)
    [conformance]     enabled, interval, tester, node_dir, listen, wait, revoked_signer,
                      [[conformance.target]] member, recipient, endpoint  (optional)
    [postfix]         transport_map, next_hop, postmap, config_directory (optional: the
                      Postfix transport map kept in step with the directory)
    [[organisation]]  org_id, domains, keys (folder with keys/ and certs/), [delivery]
                      (kind, path | host, port, starttls, cafile, client_certificate,
                      client_key, auth_user, auth_password_env | auth_password_file)
    [structured]      ubl_schemas; per organisation [organisation.structured] (see
                      securemail.config.structured)
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from securemail.config.structured import (
    StructuredSettings,
    StructuredTarget,
    structured_settings,
    structured_target,
)
from securemail.config.toml_table import (
    REQUIRED,
    ConfigError,
    Listen,
    Table,
    parse_duration,
)
from securemail.policy.assurance import AssuranceRule
from securemail.policy.model import NodePolicy, OrgPolicy
from securemail.receive.door import Door
from securemail.receive.flow import FlowLimits
from securemail.records.retention import RecordsSettings, parse_records

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Delivery:
    """Where verified mail for an organisation goes: hosted Maildirs or its own store."""

    kind: Literal["maildir", "smtp", "lmtp"]
    path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    accounts: bool = False  # maildir only: deliver by mailbox accounts (aliases, quotas)
    store_tls: StoreTls | None = None  # smtp/lmtp with starttls: CA, client certificate
    auth: StoreAuth | None = None  # smtp/lmtp with starttls: AUTH (PLAIN or LOGIN)


@dataclass(frozen=True)
class StoreTls:
    """How the node proves itself to, and checks, the organisation's own store over TLS.

    ``cafile`` verifies the store's certificate (None: the system's CA store); a client
    certificate and key (the key may be encrypted under the node's key passphrase) are
    presented to a store that asks for one.
    """

    cafile: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None


@dataclass(frozen=True)
class StoreAuth:
    """SMTP AUTH to the store (RFC 4954): a user name, and where its password is read.

    The password is never in node.toml: it comes from the environment variable
    ``password_env`` or the first line of ``password_file``, read when the node starts.
    """

    user: str
    password_env: str | None = None
    password_file: Path | None = None


@dataclass(frozen=True)
class PostfixSettings:
    """[postfix]: the transport map the node rewrites after each directory refresh.

    Every member domain except the node's own is mapped to ``next_hop`` (by default the
    node's relay listener, ``smtp:[host]:port``); after writing, with ``postmap`` true,
    postmap(1) builds ``hash:<transport_map>``, with ``-c config_directory`` when
    Postfix's configuration is not in /etc/postfix.
    """

    transport_map: Path
    next_hop: str
    postmap: bool = True
    config_directory: Path | None = None


@dataclass(frozen=True)
class ClientPorts:
    """Where people's mail clients connect ([submission], [imap]): at least one of the two.

    ``listen`` offers STARTTLS and takes logins only after it (submission port 587, RFC
    6409; IMAP 143); ``tls_listen`` speaks TLS from the first byte (465 and 993, RFC 8314).
    The certificate and key default to the peer listener's.
    """

    listen: Listen | None
    tls_listen: Listen | None
    tls_certificate: Path
    tls_key: Path


@dataclass(frozen=True)
class WebSettings:
    """The web server ([web]): webmail, operator console and JSON API, over TLS only.

    ``public_origin`` is the origin browsers see (``https://mail.provider.nz``), which every
    form post must come from; None means ``https://<listen>`` once the port is bound.
    """

    listen: Listen
    tls_certificate: Path
    tls_key: Path
    public_origin: str | None
    metrics_from: tuple[IPNetwork, ...] = ()  # who may read /metrics (loopback by default)


@dataclass(frozen=True)
class LogSettings:
    """The operations log ([log]): its form (see securemail.logbook) and its level (queue
    lines are INFO)."""

    format: Literal["text", "json"] = "text"
    level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR


@dataclass(frozen=True)
class ConformanceTarget:
    """One gateway the node tests on schedule: a member, a test mailbox there, and where to
    reach it (None: the member's first endpoint in the directory)."""

    member: str
    recipient: str
    endpoint: Listen | None = None


@dataclass(frozen=True)
class ConformanceSettings:
    """[conformance]: the node runs the conformance kit against ``targets`` every
    ``interval`` as the test identity ``tester`` (its keys in ``node_dir``, its directory
    endpoint ``listen``); see docs/conformance.md."""

    enabled: bool = False
    interval: timedelta = timedelta(hours=24)
    tester: str = ""
    node_dir: Path | None = None
    listen: Listen | None = None
    wait: timedelta = timedelta(seconds=120)
    revoked_signer: Path | None = None  # signing.pem + signing.key the federation revoked
    targets: tuple[ConformanceTarget, ...] = ()


RECEIPTS_LOCAL_PART = "securemail-receipts"


@dataclass(frozen=True)
class ReceiptPolicy:
    """When the sending gateway asks for a signed receipt, and how long it waits for one.

    A sender asks with ``Disposition-Notification-To:`` or ``X-SecureMail-Receipt:
    requested``; ``always_for`` lists senders (``user@domain``, ``*@domain`` or ``*``) for
    whom the organisation always asks.
    """

    always_for: tuple[str, ...] = ()
    window: timedelta = timedelta(hours=1)  # the Direct Project's default

    def always(self, sender: str) -> bool:
        sender = sender.lower()
        domain = sender.rpartition("@")[2]
        return any(p in ("*", sender, f"*@{domain}") for p in self.always_for)


@dataclass(frozen=True)
class Organisation:
    org_id: str
    domains: tuple[str, ...]
    keys: Path
    delivery: Delivery
    receipts: ReceiptPolicy = field(default_factory=ReceiptPolicy)
    policy: OrgPolicy = field(default_factory=OrgPolicy)
    structured: StructuredTarget | None = None  # where its business application takes documents

    @property
    def receipt_address(self) -> str:
        """Where peers send the receipts this organisation asks for (the ESS receiptsTo)."""
        return f"{RECEIPTS_LOCAL_PART}@{self.domains[0]}"

    @property
    def contacts_address(self) -> str:
        """Where holders answer this organisation's address verifications (docs/assurance.md)."""
        return f"securemail-contacts@{self.domains[0]}"


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    require_tls: bool
    cafile: Path | None


Unsealed = Literal["refuse", "mark"]
# The peer listener's door by default (THREATS.md K): see PeerEdge.
PEER_DOOR = Door(
    per_source=20,
    per_member=20,
    handshake_timeout=10.0,
    pre_mail_timeout=30.0,
    max_session=600.0,
    drain_deadline=5.0,
)


@dataclass(frozen=True)
class PeerEdge:
    """[peer] rules for what member gateways send, beyond where the listener binds.

    ``unsealed`` is what happens to verified peer mail whose signature has no sealedFor
    attribute, from a member whose directory entry does not list ``sealed-for`` (a gateway
    that does not implement the profile's recipient binding): "mark" (the default) delivers
    it marked "recipient not bound"; "refuse" quarantines it as ``recipient-not-sealed``.
    A signer whose entry lists ``sealed-for`` (every SecureMail gateway) is always held to
    it. The default admits other vendors' gateways with the difference shown (an unbound
    signature can be re-sent or re-encrypted to another person, THREATS.md K); an
    organisation that exchanges only with sealing members sets "refuse".
    """

    unsealed: Unsealed = "mark"
    # The door (THREATS.md K): a host or a member may hold 20 of the listener's 100 slots
    # (a sending gateway runs at most 16 relays at once), must finish TLS within 10 s and
    # reach MAIL within 30 s, and no session lives past 10 minutes; on stop a DATA
    # transfer gets 5 s. A source whose mail was quarantined 20 times in an hour gets 451
    # at DATA until the hour has passed.
    door: Door = field(default_factory=lambda: PEER_DOOR)
    quarantine_quota: int = 20


@dataclass(frozen=True)
class Retry:
    schedule: tuple[timedelta, ...]
    warn_after: timedelta
    max_lifetime: timedelta
    keep_body: timedelta = timedelta(days=1)  # a final entry's body, then only its digest


@dataclass(frozen=True)
class UpstreamSettings:
    """[upstream]: this node is an upstream queue for the members ``backs_up`` names.

    Their mail is taken on the peer listener as ciphertext, never decrypted, forwarded
    unchanged to the member's gateway as soon as it answers (probed every ``probe_every``),
    kept at most ``keep_for`` (then the sender gets a failure notice), and the sender is
    told once, in a signed delay notice, when a message has waited ``delay_notice_after``.
    """

    backs_up: tuple[str, ...]
    keep_for: timedelta = timedelta(days=5)
    delay_notice_after: timedelta = timedelta(hours=4)
    probe_every: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class NodeConfig:
    name: str
    data_dir: Path
    database: str
    region: str
    federation: str
    anchor: Path
    directory: str
    refresh: timedelta
    peer: Listen
    tls_certificate: Path
    tls_key: Path
    relay: Listen
    relay_networks: tuple[IPNetwork, ...]
    smarthost: Smarthost | None
    max_message_size: int
    max_recipients: int
    retry: Retry
    node_policy: NodePolicy
    passphrase_env: str | None
    passphrase_file: Path | None
    organisations: tuple[Organisation, ...]
    ordinary: Listen | None = None  # STARTTLS offered with the peer certificate, not required
    submission: ClientPorts | None = None
    imap: ClientPorts | None = None
    web: WebSettings | None = None
    peer_edge: PeerEdge = field(default_factory=PeerEdge)
    log: LogSettings = field(default_factory=LogSettings)
    records: RecordsSettings = field(default_factory=RecordsSettings)
    postfix: PostfixSettings | None = None
    # Worker processes beside the listeners: 1 runs every role in one process; N > 1 runs
    # the outbound and inbound workers in N processes that meet the listeners at the queue.
    workers: int = 1
    lease: timedelta = timedelta(seconds=60)  # how long a claim holds without renewal
    # in_flow_delay, in_flow_backlog: the pause before MAIL while the workers are behind
    in_flow: FlowLimits = field(default_factory=FlowLimits)
    # [keys] hold_without_key: mail for an organisation here whose decryption key is not
    # installed is held (key-unavailable) this long before the normal failure path
    hold_without_key: timedelta = timedelta(days=5)
    upstream: UpstreamSettings | None = None  # [upstream]: a queue for other members
    structured: StructuredSettings = field(default_factory=StructuredSettings)
    source: Path | None = None  # the file it was read from (worker processes read it too)
    conformance: ConformanceSettings = field(default_factory=ConformanceSettings)

    def organisation_for(self, domain: str) -> Organisation | None:
        domain = domain.lower()
        return next((o for o in self.organisations if domain in o.domains), None)

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(d for o in self.organisations for d in o.domains)


def load_config(path: Path) -> NodeConfig:
    """Read and validate the node configuration at ``path``; raise ConfigError if wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return replace(parse_config(data, path.resolve().parent), source=path.resolve())


def parse_config(data: dict[str, Any], base: Path) -> NodeConfig:
    """Validate a parsed configuration; relative paths are taken from ``base``."""
    root = Table(data, "config", base)
    node = _required(root, "node")
    federation = _required(root, "federation")
    peer = _required(root, "peer")
    relay = _required(root, "relay")
    tls_certificate, tls_key = peer.path("tls_certificate"), peer.path("tls_key")
    data_dir = node.path("data_dir", ".")
    database = node.text("database", f"sqlite:///{data_dir / 'queue.sqlite'}")
    organisations = _organisations(root, base)
    max_message_size, max_recipients = _limits(root.table("limits"))
    region = node.text("region", "NZ").upper()
    tls_pair = (tls_certificate, tls_key)
    config = NodeConfig(
        name=node.text("name"),
        data_dir=data_dir,
        database=database,
        region=region,
        federation=federation.text("name"),
        anchor=federation.path("anchor"),
        directory=_directory_location(federation.text("directory"), base),
        refresh=federation.duration("refresh", "5m"),
        peer=peer.listen("listen"),
        tls_certificate=tls_certificate,
        tls_key=tls_key,
        relay=relay.listen("listen"),
        relay_networks=_networks(relay.strings("networks", ["127.0.0.0/8", "::1/128"])),
        smarthost=_smarthost(root.table("smarthost")),
        max_message_size=max_message_size,
        max_recipients=max_recipients,
        retry=_retry(root.table("retry")),
        node_policy=NodePolicy(region, node.flag("allow_offshore_labelled", False)),
        **_keys(root.table("keys")),
        organisations=organisations,
        ordinary=_ordinary(root.table("ordinary")),
        submission=_client_ports(root.table("submission"), "submission", tls_pair),
        imap=_client_ports(root.table("imap"), "imap", tls_pair),
        web=_web(root.table("web"), tls_pair),
        peer_edge=_peer_edge(peer),
        log=_log(root.table("log")),
        records=parse_records(root.table("records")),
        postfix=_postfix(root.table("postfix"), relay.listen("listen")),
        workers=_workers(node),
        lease=node.duration("lease", "60s"),
        in_flow=_in_flow(node),
        conformance=_conformance(root.table("conformance")),
        upstream=_upstream(root.table("upstream")),
        structured=structured_settings(root.table("structured")),
    )
    if config.upstream is not None and config.upstream.keep_for > config.retry.max_lifetime:
        raise ConfigError("upstream.keep_for must not be longer than retry.max_lifetime")
    for table in (root, node, federation, peer, relay):
        table.finish()
    return config


def _peer_edge(peer: Table) -> PeerEdge:
    unsealed = peer.text("unsealed", "mark")
    if unsealed not in ("refuse", "mark"):
        raise ConfigError(f"peer.unsealed must be refuse or mark, not {unsealed!r}")
    try:
        door = Door(
            per_source=peer.integer("max_sessions_per_source", 20, 1, 10_000),
            per_member=peer.integer("max_sessions_per_member", 20, 1, 10_000),
            handshake_timeout=peer.duration("tls_handshake_timeout", "10s").total_seconds(),
            pre_mail_timeout=peer.duration("pre_mail_timeout", "30s").total_seconds(),
            max_session=peer.duration("max_session", "10m").total_seconds(),
            drain_deadline=peer.duration("drain_deadline", "5s").total_seconds(),
        )
    except ValueError as error:
        raise ConfigError(f"peer: {error}") from None
    return PeerEdge(
        unsealed="refuse" if unsealed == "refuse" else "mark",
        door=door,
        quarantine_quota=peer.integer("quarantine_quota", 20, 1, 1_000_000),
    )


def _in_flow(node: Table) -> FlowLimits:
    """``[node] in_flow_delay`` (0s: off) and ``in_flow_backlog`` (securemail.receive.flow)."""
    if node.data.get("in_flow_delay") in (0, "0", "0s"):  # a duration must be positive
        node.used.add("in_flow_delay")
        delay = 0.0
    else:
        delay = node.duration("in_flow_delay", "1s").total_seconds()
    if delay > 60:
        raise ConfigError("node.in_flow_delay must be at most 60s")
    return FlowLimits(delay=delay, backlog=node.integer("in_flow_backlog", 32, 1, 1_000_000))


def _workers(node: Table) -> int:
    """``[node] workers``: a number of processes, or "auto" for one per core."""
    value = node.data.get("workers", 1)
    if value == "auto":
        node.used.add("workers")
        return max(os.cpu_count() or 1, 1)
    if isinstance(value, str):
        raise ConfigError(f'node.workers must be a number or "auto", not {value!r}')
    return node.integer("workers", 1, 1, 256)


def _required(root: Table, key: str) -> Table:
    table = root.table(key)
    if table is None:
        raise ConfigError(f"the [{key}] table is required")
    return table


def _directory_location(value: str, base: Path) -> str:
    return value if "://" in value else str((base / value).resolve())


def _networks(values: tuple[str, ...], key: str = "relay.networks") -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(v, strict=True) for v in values)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None


def _smarthost(table: Table | None) -> Smarthost | None:
    if table is None:
        return None
    smarthost = Smarthost(
        host=table.text("host"),
        port=table.integer("port", 25, 1, 65535),
        require_tls=table.flag("require_tls", True),
        cafile=table.path("cafile", None),
    )
    table.finish()
    return smarthost


def _ordinary(table: Table | None) -> Listen | None:
    if table is None:
        return None
    listen = table.listen("listen")
    table.finish()
    return listen


_USUAL_PORTS = {"submission": (587, 465), "imap": (143, 993)}  # STARTTLS, implicit TLS


def _client_ports(
    table: Table | None, name: str, peer_tls: tuple[Path, Path]
) -> ClientPorts | None:
    """[submission] or [imap]; the TLS pair defaults to the peer listener's."""
    if table is None:
        return None
    peer_certificate, peer_key = peer_tls
    client = ClientPorts(
        listen=_optional_listen(table, "listen"),
        tls_listen=_optional_listen(table, "tls_listen"),
        tls_certificate=table.path("tls_certificate", None) or peer_certificate,
        tls_key=table.path("tls_key", None) or peer_key,
    )
    if client.listen is None and client.tls_listen is None:
        raise ConfigError(
            f"[{name}] needs listen (STARTTLS, {_USUAL_PORTS[name][0]}) "
            f"or tls_listen (TLS, {_USUAL_PORTS[name][1]})"
        )
    if ("tls_certificate" in table.data) != ("tls_key" in table.data):
        raise ConfigError(f"{name}: give tls_certificate and tls_key together")
    listen = client.listen
    if listen is not None and listen == client.tls_listen and listen.port != 0:
        raise ConfigError(f"{name}.listen and {name}.tls_listen are the same address")
    table.finish()
    return client


def _web(table: Table | None, peer_tls: tuple[Path, Path]) -> WebSettings | None:
    """[web]; the TLS pair defaults to the peer listener's, as for the client ports."""
    if table is None:
        return None
    if ("tls_certificate" in table.data) != ("tls_key" in table.data):
        raise ConfigError("web: give tls_certificate and tls_key together")
    web = WebSettings(
        listen=table.listen("listen", "127.0.0.1:8443"),
        tls_certificate=table.path("tls_certificate", None) or peer_tls[0],
        tls_key=table.path("tls_key", None) or peer_tls[1],
        public_origin=_origin(table.text("public_origin", None)),
        metrics_from=_networks(
            table.strings("metrics_from", ["127.0.0.0/8", "::1/128"]), "web.metrics_from"
        ),
    )
    table.finish()
    return web


def _log(table: Table | None) -> LogSettings:
    if table is None:
        return LogSettings()
    form, level = table.text("format", "text"), str(table.text("level", "INFO")).upper()
    if form not in ("text", "json"):
        raise ConfigError(f'log.format must be "text" or "json", not {form!r}')
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    table.finish()
    return LogSettings(form, level)


def _conformance(table: Table | None) -> ConformanceSettings:
    if table is None:
        return ConformanceSettings()
    enabled = table.flag("enabled", True)
    targets = tuple(_conformance_target(t, table) for t in _array(table, "target"))
    settings = ConformanceSettings(
        enabled=enabled,
        interval=table.duration("interval", "24h"),
        tester=table.text("tester", REQUIRED if enabled else ""),
        node_dir=table.path("node_dir", REQUIRED if enabled else None),
        listen=table.listen("listen", REQUIRED if enabled else "127.0.0.1:0"),
        wait=table.duration("wait", "120s"),
        revoked_signer=table.path("revoked_signer", None),
        targets=targets,
    )
    if settings.interval < timedelta(minutes=1):
        raise ConfigError("conformance.interval must be at least 1m")
    if enabled and not targets:
        raise ConfigError("conformance: give at least one [[conformance.target]]")
    table.finish()
    return settings


def _postfix(table: Table | None, relay: Listen) -> PostfixSettings | None:
    """[postfix]; the next hop defaults to the relay listener (loopback for a wildcard)."""
    if table is None:
        return None
    settings = PostfixSettings(
        transport_map=table.path("transport_map"),
        next_hop=table.text("next_hop", relay_next_hop(relay)),
        postmap=table.flag("postmap", True),
        config_directory=table.path("config_directory", None),
    )
    if unsafe_next_hop(settings.next_hop):
        raise ConfigError(f"postfix.next_hop must be transport:nexthop, not {settings.next_hop!r}")
    table.finish()
    return settings


def _array(table: Table, key: str) -> list[Table]:
    table.used.add(key)
    value = table.data.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(
            f"{table.where}.{key} must be an array of tables ([[{table.where}.{key}]])"
        )
    return [Table(item, f"{table.where}.{key}", table.base) for item in value]


def _conformance_target(target: Table, parent: Table) -> ConformanceTarget:
    endpoint = target.text("endpoint", None)
    result = ConformanceTarget(
        member=target.text("member"),
        recipient=target.text("recipient"),
        endpoint=None if endpoint is None else target.listen("endpoint"),
    )
    if "@" not in result.recipient:
        raise ConfigError(f"{parent.where}.target.recipient must be an address")
    target.finish()
    return result


def relay_next_hop(relay: Listen) -> str:
    """``smtp:[host]:port`` of the relay listener; loopback when it binds every address."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(relay.host, relay.host)  # noqa: S104
    return f"smtp:[{host}]:{relay.port}"


def unsafe_next_hop(value: str) -> bool:
    """A next hop that is not one ``transport:nexthop`` token of a Postfix map line."""
    transport, colon, _ = value.partition(":")
    return not colon or not transport or any(c.isspace() or c == "#" for c in value)


def _origin(value: str | None) -> str | None:
    """An https origin (scheme, host, optional port; no path), lower-cased."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"web.public_origin must be https://host[:port], not {value!r}")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"web.public_origin must be https://host[:port], not {value!r}")
    return f"https://{parts.netloc.lower()}"


def _optional_listen(table: Table, key: str) -> Listen | None:
    return table.listen(key) if key in table.data else None


def _limits(table: Table | None) -> tuple[int, int]:
    """The largest message (bytes) and the most recipients per transaction."""
    if table is None:
        return 25 * 2**20, 100
    limits = (
        table.integer("max_message_size", 25 * 2**20, 1024, 2**31),
        table.integer("max_recipients", 100, 1, 1000),
    )
    table.finish()
    return limits


def _retry(table: Table | None) -> Retry:
    if table is None:
        table = Table({}, "retry", Path())
    schedule = table._get("schedule", list, ["1m", "5m", "15m", "30m", "1h"])
    retry = Retry(
        schedule=tuple(parse_duration(v, "retry.schedule") for v in schedule),
        warn_after=table.duration("warn_after", "4h"),
        max_lifetime=table.duration("max_lifetime", "5d"),
        keep_body=table.duration("keep_body", "1d"),
    )
    if not retry.schedule:
        raise ConfigError("retry.schedule must list at least one interval")
    if retry.warn_after >= retry.max_lifetime:
        raise ConfigError("retry.warn_after must be shorter than retry.max_lifetime")
    table.finish()
    return retry


def _keys(table: Table | None) -> dict[str, Any]:
    if table is None:
        table = Table({}, "keys", Path())
    env, file = table.text("passphrase_env", None), table.path("passphrase_file", None)
    if env is not None and file is not None:
        raise ConfigError("keys: give passphrase_env or passphrase_file, not both")
    hold = table.duration("hold_without_key", "5d")
    table.finish()
    return {
        "passphrase_env": env or (None if file else "SECUREMAIL_PASSPHRASE"),
        "passphrase_file": file,
        "hold_without_key": hold,
    }


def _upstream(table: Table | None) -> UpstreamSettings | None:
    if table is None:
        return None
    backs_up = table.strings("backs_up", REQUIRED)
    if not backs_up:
        raise ConfigError("upstream.backs_up must name at least one member")
    settings = UpstreamSettings(
        backs_up=tuple(dict.fromkeys(b.lower() for b in backs_up)),
        keep_for=table.duration("keep_for", "5d"),
        delay_notice_after=table.duration("delay_notice_after", "4h"),
        probe_every=table.duration("probe_every", "30s"),
    )
    if settings.delay_notice_after >= settings.keep_for:
        raise ConfigError("upstream.delay_notice_after must be shorter than upstream.keep_for")
    table.finish()
    return settings


def _organisations(root: Table, base: Path) -> tuple[Organisation, ...]:
    root.used.add("organisation")
    items = root.data.get("organisation")
    if not isinstance(items, list) or not items:
        raise ConfigError("at least one [[organisation]] is required")
    organisations = tuple(
        _organisation(Table(item, f"organisation[{i}]", base)) for i, item in enumerate(items)
    )
    seen: dict[str, str] = {}
    for org in organisations:
        for domain in org.domains:
            if domain in seen:
                raise ConfigError(f"domain {domain} is listed by {seen[domain]} and {org.org_id}")
            seen[domain] = org.org_id
    if len({o.org_id for o in organisations}) != len(organisations):
        raise ConfigError("two [[organisation]] entries have the same org_id")
    return organisations


def _organisation(table: Table) -> Organisation:
    delivery = table.table("delivery")
    if delivery is None:
        raise ConfigError(f"{table.where}.delivery is required")
    org = Organisation(
        org_id=table.text("org_id"),
        domains=tuple(d.lower().rstrip(".") for d in table.strings("domains", REQUIRED)),
        keys=table.path("keys"),
        delivery=_delivery(delivery),
        receipts=_receipts(table.table("receipts")),
        policy=_policy(table.table("policy")),
        structured=structured_target(table.table("structured")),
    )
    if not org.domains:
        raise ConfigError(f"{table.where}.domains must list at least one domain")
    table.finish()
    return org


def _policy(table: Table | None) -> OrgPolicy:
    if table is None:
        return OrgPolicy()
    try:
        policy = OrgPolicy(
            default_label=table.text("default_label", None),
            secure_from=table.text("secure_from", "IN-CONFIDENCE"),
            allowed_regions=tuple(r.upper() for r in table.strings("allowed_regions", ["NZ"])),
            personal_domains=tuple(d.lower() for d in table.strings("personal_domains", [])),
            assurance=_assurance_rules(table),
        )
    except ValueError as error:
        raise ConfigError(f"{table.where}: {error}") from None
    table.finish()
    return policy


def _assurance_rules(policy: Table) -> tuple[AssuranceRule, ...]:
    """``[[organisation.policy.assurance]]``: docs/assurance.md, "Agency policy"."""
    items = policy.data.get("assurance", [])
    policy.used.add("assurance")
    if not isinstance(items, list):
        raise ConfigError(f"{policy.where}.assurance must be a list of tables")
    rules = []
    for number, item in enumerate(items):
        table = Table(item, f"{policy.where}.assurance[{number}]", policy.base)
        rules.append(
            AssuranceRule(
                require=table.strings("require", REQUIRED),
                senders=table.text("from", "*"),
                recipients=table.text("to", "*"),
                below="refuse" if table.text("below", "warn") == "refuse" else "warn",
            )
        )
        if table.data.get("below", "warn") not in ("warn", "refuse"):
            raise ValueError(f"below must be warn or refuse, not {table.data['below']!r}")
        table.finish()
    return tuple(rules)


def _receipts(table: Table | None) -> ReceiptPolicy:
    if table is None:
        return ReceiptPolicy()
    policy = ReceiptPolicy(
        always_for=tuple(p.lower() for p in table.strings("always_for", [])),
        window=table.duration("window", "1h"),
    )
    table.finish()
    return policy


def _delivery(table: Table) -> Delivery:
    kind = table.text("kind")
    if kind == "maildir":
        delivery = Delivery(
            "maildir", path=table.path("path"), accounts=table.flag("accounts", False)
        )
    elif kind in ("smtp", "lmtp"):
        starttls = table.flag("starttls", False)
        delivery = Delivery(
            kind,
            host=table.text("host"),
            port=table.integer("port", 25 if kind == "smtp" else 24, 1, 65535),
            starttls=starttls,
            store_tls=_store_tls(table, starttls),
            auth=_store_auth(table, starttls),
        )
    else:
        raise ConfigError(f"{table.where}.kind must be maildir, smtp or lmtp, not {kind!r}")
    table.finish()
    return delivery


def _store_tls(table: Table, starttls: bool) -> StoreTls | None:
    """cafile, client_certificate and client_key of an SMTP/LMTP store (STARTTLS only)."""
    tls = StoreTls(
        cafile=table.path("cafile", None),
        client_certificate=table.path("client_certificate", None),
        client_key=table.path("client_key", None),
    )
    if tls == StoreTls():
        return None
    if not starttls:
        raise ConfigError(f"{table.where}: cafile and client certificates need starttls = true")
    if (tls.client_certificate is None) != (tls.client_key is None):
        raise ConfigError(f"{table.where}: give client_certificate and client_key together")
    return tls


def _store_auth(table: Table, starttls: bool) -> StoreAuth | None:
    """auth_user with auth_password_env or auth_password_file; never over plain text."""
    user = table.text("auth_user", None)
    env = table.text("auth_password_env", None)
    file = table.path("auth_password_file", None)
    if "auth_password" in table.data:
        raise ConfigError(
            f"{table.where}.auth_password: the password is not kept in node.toml; "
            "give auth_password_env or auth_password_file"
        )
    if user is None:
        if env is not None or file is not None:
            raise ConfigError(f"{table.where}: auth_password_* needs auth_user")
        return None
    if not starttls:
        raise ConfigError(f"{table.where}: auth_user needs starttls = true (no password in clear)")
    if (env is None) == (file is None):
        raise ConfigError(f"{table.where}: give auth_password_env or auth_password_file (one)")
    return StoreAuth(user, env, file)
