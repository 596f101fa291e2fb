"""The node configuration: a valid file loads; every mistake names the setting at fault."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from securemail.config.node import load_config
from securemail.config.toml_table import ConfigError

VALID = """
[node]
name = "gw.agency.govt.nz"
data_dir = "data"

[federation]
name = "Test Federation"
anchor = "certs/federation-ca.pem"
directory = "https://directory.example.nz/directory.json"

[peer]
listen = "0.0.0.0:25"
tls_certificate = "certs/tls.pem"
tls_key = "keys/tls.key"

[relay]
listen = "127.0.0.1:10025"
networks = ["10.1.0.0/16"]

[retry]
schedule = ["1m", "10m", 3600]
warn_after = "4h"
max_lifetime = "5d"

[[organisation]]
org_id = "agency"
domains = ["Agency.govt.nz"]
keys = "orgs/agency"
[organisation.delivery]
kind = "smtp"
host = "exchange.agency.internal"
port = 2525

[[organisation]]
org_id = "shop"
domains = ["shop.co.nz"]
keys = "orgs/shop"
[organisation.delivery]
kind = "maildir"
path = "mail/shop"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    """Relative paths resolve against the config file's folder; defaults fill the rest."""
    config = load_config(write(tmp_path, VALID))
    assert config.data_dir == tmp_path.resolve() / "data"
    assert config.database == f"sqlite:///{tmp_path.resolve() / 'data' / 'queue.sqlite'}"
    assert config.directory == "https://directory.example.nz/directory.json"
    assert (config.peer.host, config.peer.port) == ("0.0.0.0", 25)  # noqa: S104
    assert config.retry.schedule == (
        timedelta(minutes=1),
        timedelta(minutes=10),
        timedelta(hours=1),
    )
    assert config.max_recipients == 100
    assert config.retry.keep_body == timedelta(days=1)  # bodies of final entries, by default
    assert load_config(
        write(
            tmp_path, VALID.replace('max_lifetime = "5d"', 'max_lifetime = "5d"\nkeep_body = "2h"')
        )
    ).retry.keep_body == timedelta(hours=2)
    assert config.smarthost is None
    shop = config.organisation_for("SHOP.co.nz")
    assert shop is not None and shop.delivery.path == tmp_path.resolve() / "mail" / "shop"
    agency = config.organisation_for("agency.govt.nz")
    assert agency is not None and agency.delivery.port == 2525
    assert config.domains == {"agency.govt.nz", "shop.co.nz"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[relay]\n", "[relay]\nbogus = 1\n"), "[relay] has unknown setting(s): bogus"),
        (('listen = "0.0.0.0:25"', 'listen = "0.0.0.0"'), "peer.listen must be host:port"),
        (('listen = "0.0.0.0:25"', "listen = 25"), "peer.listen must be a string"),
        (('"10.1.0.0/16"', '"10.1.0.1/16"'), "relay.networks"),
        (('warn_after = "4h"', 'warn_after = "9d"'), "warn_after must be shorter"),
        (('"1m", "10m"', '"1 fortnight"'), "retry.schedule must be a duration"),
        (('kind = "smtp"', 'kind = "mbox"'), "kind must be maildir, smtp or lmtp"),
        (('domains = ["shop.co.nz"]', 'domains = ["agency.govt.nz"]'), "is listed by agency and"),
        (('name = "Test Federation"\n', ""), "federation.name is required"),
        (("port = 2525", "port = 99999"), "port must be between 1 and 65535"),
        (("port = 2525", "port = true"), "port must be a whole number"),
        (("[node]\n", '[node]\nin_flow_delay = "5m"\n'), "in_flow_delay must be at most 60s"),
        (("[node]\n", "[node]\nin_flow_backlog = 0\n"), "in_flow_backlog must be between"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    """A wrong setting is refused with the setting's name and what is wrong with it."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, VALID.replace(*change, 1)))
    assert message in refused.value.detail
    assert refused.value.reason == "bad-config"


def test_in_flow_control_defaults_and_settings(tmp_path: Path) -> None:
    """In-flow control is on by default as Postfix's (1 s, a backlog of 32); 0s turns it off."""
    config = load_config(write(tmp_path, VALID))
    assert (config.in_flow.delay, config.in_flow.backlog) == (1.0, 32)
    text = VALID.replace("[node]\n", '[node]\nin_flow_delay = "0s"\nin_flow_backlog = 8\n', 1)
    config = load_config(write(tmp_path, text))
    assert (config.in_flow.delay, config.in_flow.backlog) == (0.0, 8)


def test_missing_table_and_unreadable_file(tmp_path: Path) -> None:
    """No [[organisation]], bad TOML and a missing file each get a clear refusal."""
    cut = VALID[: VALID.index("[[organisation]]")]
    with pytest.raises(ConfigError, match="at least one"):
        load_config(write(tmp_path, cut))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


CONFORMANCE = """
[conformance]
interval = "12h"
tester = "conformance"
node_dir = "conformance-node"
listen = "0.0.0.0:2525"

[[conformance.target]]
member = "agency"
recipient = "conformance-test@agency.govt.nz"

[[conformance.target]]
member = "council"
recipient = "conformance-test@council.govt.nz"
endpoint = "mx.council.govt.nz:25"
"""


def test_conformance_schedule_loads_and_is_off_without_its_table(tmp_path: Path) -> None:
    """[conformance] gives the schedule, the test identity and the targets (an endpoint
    optional); without the table the node runs no conformance tests."""
    assert not load_config(write(tmp_path, VALID)).conformance.enabled
    settings = load_config(write(tmp_path, VALID + CONFORMANCE)).conformance
    assert settings.enabled and settings.interval == timedelta(hours=12)
    assert settings.node_dir == tmp_path.resolve() / "conformance-node"
    assert settings.wait == timedelta(seconds=120) and settings.revoked_signer is None
    first, second = settings.targets
    assert first.member == "agency" and first.endpoint is None
    assert second.endpoint is not None and second.endpoint.port == 25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('interval = "12h"', 'interval = "10s"'), "conformance.interval must be at least 1m"),
        (('tester = "conformance"\n', ""), "conformance.tester is required"),
        (('recipient = "conformance-test@agency.govt.nz"', 'recipient = "x"'), "an address"),
        (('endpoint = "mx.council.govt.nz:25"', 'endpoint = "mx"'), "endpoint must be host:port"),
        (("[[conformance.target]]", "[[conformance.targets]]"), "unknown setting(s): targets"),
    ],
)
def test_conformance_mistakes_are_named(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    """A wrong [conformance] setting is refused naming it."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, VALID + CONFORMANCE.replace(*change, 1)))
    assert message in refused.value.detail


def test_upstream_and_key_hold_settings(tmp_path: Path) -> None:
    """[upstream] makes an upstream queue (defaults: keep 5 days, a delay notice after 4 h,
    probe every 30 s); [keys] hold_without_key bounds how long mail waits for a key."""
    plain = load_config(write(tmp_path, VALID))
    assert plain.upstream is None and plain.hold_without_key == timedelta(days=5)
    text = VALID + '\n[upstream]\nbacks_up = ["Agency", "gsp", "agency"]\nprobe_every = "5s"\n'
    upstream = load_config(write(tmp_path, text)).upstream
    assert upstream is not None and upstream.backs_up == ("agency", "gsp")
    assert (upstream.keep_for, upstream.delay_notice_after) == (
        timedelta(days=5),
        timedelta(hours=4),
    )
    assert upstream.probe_every == timedelta(seconds=5)
    held = VALID.replace("[retry]\n", '[keys]\nhold_without_key = "2d"\n\n[retry]\n', 1)
    assert load_config(write(tmp_path, held)).hold_without_key == timedelta(days=2)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[upstream]\nbacks_up = []\n", "upstream.backs_up must name at least one member"),
        ("[upstream]\n", "upstream.backs_up is required"),
        (
            '[upstream]\nbacks_up = ["a1"]\nkeep_for = "9d"\n',
            "not be longer than retry.max_lifetime",
        ),
        ('[upstream]\nbacks_up = ["a1"]\ndelay_notice_after = "6d"\n', "must be shorter than"),
        ('[upstream]\nbacks_up = ["a1"]\nkeep = "1d"\n', "[upstream] has unknown setting(s): keep"),
    ],
)
def test_upstream_mistakes_are_named(tmp_path: Path, table: str, message: str) -> None:
    """A wrong [upstream] setting is refused with its name."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, VALID + "\n" + table))
    assert message in refused.value.detail
