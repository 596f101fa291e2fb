"""The store delivery (CA file, client certificate, AUTH) and [postfix] settings: read, or
refused naming the setting; a password is never accepted in node.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from securemail.config.node import StoreAuth, load_config
from securemail.config.toml_table import ConfigError
from securemail.node.context import NodeError, read_store_password
from tests.config.test_node import VALID, write

SMTP = 'kind = "smtp"\nhost = "exchange.agency.internal"\nport = 2525\n'


def _with(tmp_path: Path, delivery: str = "", tail: str = "") -> Path:
    return write(tmp_path, VALID.replace(SMTP, SMTP + delivery, 1) + tail)


def test_store_tls_and_auth_settings_load(tmp_path: Path) -> None:
    """cafile, client certificate and key resolve against the file; AUTH keeps only where
    the password is, never the password."""
    settings = (
        'starttls = true\ncafile = "certs/store-ca.pem"\nclient_certificate = "certs/c.pem"\n'
        'client_key = "keys/c.key"\nauth_user = "AGENCY\\\\svc"\nauth_password_env = "STORE_PW"\n'
    )
    agency = load_config(_with(tmp_path, settings)).organisations[0]
    tls, auth = agency.delivery.store_tls, agency.delivery.auth
    assert tls is not None and tls.cafile == tmp_path.resolve() / "certs" / "store-ca.pem"
    assert tls.client_key == tmp_path.resolve() / "keys" / "c.key"
    assert auth == StoreAuth("AGENCY\\svc", password_env="STORE_PW")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ('auth_user = "u"\nauth_password_env = "P"\n', "auth_user needs starttls = true"),
        ('cafile = "ca.pem"\n', "need starttls = true"),
        ('starttls = true\nauth_password = "secret"\n', "not kept in node.toml"),
        ('starttls = true\nauth_user = "u"\n', "give auth_password_env or auth_password_file"),
        (
            'starttls = true\nauth_user = "u"\nauth_password_env = "P"\nauth_password_file = "f"\n',
            "give auth_password_env or auth_password_file",
        ),
        ('starttls = true\nauth_password_env = "P"\n', "auth_password_* needs auth_user"),
        ('starttls = true\nclient_certificate = "c.pem"\n', "client_certificate and client_key"),
    ],
)
def test_store_mistakes_are_named(tmp_path: Path, settings: str, message: str) -> None:
    """Each wrong combination is refused with what is wrong, before anything starts."""
    with pytest.raises(ConfigError) as refused:
        load_config(_with(tmp_path, settings))
    assert message in refused.value.detail


def test_postfix_defaults_to_the_relay_listener(tmp_path: Path) -> None:
    """[postfix] with only transport_map: next hop smtp:[127.0.0.1]:10025, postmap on."""
    config = load_config(_with(tmp_path, tail='\n[postfix]\ntransport_map = "t/transport"\n'))
    assert config.postfix is not None
    assert config.postfix.next_hop == "smtp:[127.0.0.1]:10025"
    assert config.postfix.transport_map == tmp_path.resolve() / "t" / "transport"
    assert config.postfix.postmap is True and config.postfix.config_directory is None


def test_postfix_next_hop_with_spaces_is_refused(tmp_path: Path) -> None:
    """A next hop that would add a field or a comment to every map line is refused."""
    bad = '\n[postfix]\ntransport_map = "t"\nnext_hop = "smtp:[10.0.0.1] # x"\n'
    with pytest.raises(ConfigError, match=r"postfix\.next_hop must be transport:nexthop"):
        load_config(_with(tmp_path, tail=bad))


def test_store_password_from_file_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first line of the file, or the variable; empty or unset is a bad-config refusal."""
    (tmp_path / "pw").write_text("first line\nsecond\n")
    assert read_store_password(StoreAuth("u", password_file=tmp_path / "pw")) == "first line"
    monkeypatch.setenv("STORE_PW", "from the environment")
    assert read_store_password(StoreAuth("u", password_env="STORE_PW")) == "from the environment"
    monkeypatch.delenv("STORE_PW")
    with pytest.raises(NodeError, match=r"\$STORE_PW"):
        read_store_password(StoreAuth("u", password_env="STORE_PW"))
    (tmp_path / "empty").write_text("")
    with pytest.raises(NodeError, match="empty"):
        read_store_password(StoreAuth("u", password_file=tmp_path / "empty"))
