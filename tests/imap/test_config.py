"""The [imap] settings and the accounts flag of Maildir delivery: loaded, or refused by name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from securemail.accounts.model import Mailbox
from securemail.config.node import load_config
from securemail.config.toml_table import ConfigError, Listen
from securemail.deliver import MaildirTarget
from securemail.node.context import make_target
from tests.config.test_node import VALID, write


class NoAccounts:
    def mailbox_for(self, address: str) -> Mailbox | None:
        return None


def test_imap_listeners_and_node_certificate_by_default(tmp_path: Path) -> None:
    """Both listeners load; without a pair of its own, IMAP uses the node's certificate."""
    text = VALID + '\n[imap]\nlisten = "127.0.0.1:143"\ntls_listen = "[::1]:993"\n'
    config = load_config(write(tmp_path, text))
    assert config.imap is not None
    assert (config.imap.listen, config.imap.tls_listen) == (
        Listen("127.0.0.1", 143),
        Listen("::1", 993),
    )
    assert config.imap.tls_certificate == tmp_path.resolve() / "certs" / "tls.pem"
    assert config.imap.tls_key == tmp_path.resolve() / "keys" / "tls.key"


def test_imap_with_its_own_certificate(tmp_path: Path) -> None:
    """tls_certificate and tls_key in [imap] replace the node's, relative to the file."""
    text = VALID + '\n[imap]\ntls_listen = "127.0.0.1:993"\n'
    text += 'tls_certificate = "certs/imap.pem"\ntls_key = "keys/imap.key"\n'
    config = load_config(write(tmp_path, text))
    assert config.imap is not None and config.imap.listen is None
    assert config.imap.tls_certificate == tmp_path.resolve() / "certs" / "imap.pem"


def test_no_imap_table_means_no_imap(tmp_path: Path) -> None:
    """Without [imap] the node serves no IMAP."""
    assert load_config(write(tmp_path, VALID)).imap is None


@pytest.mark.parametrize(
    ("imap", "message"),
    [
        ("", "[imap] needs listen (STARTTLS, 143) or tls_listen (TLS, 993)"),
        ('listen = "127.0.0.1"', "imap.listen must be host:port"),
        ("tls_listen = 993", "imap.tls_listen must be a string"),
        ('listen = "127.0.0.1:143"\ntls_key = "k.pem"', "tls_certificate and tls_key together"),
        ('listen = "127.0.0.1:143"\nport = 143', "[imap] has unknown setting(s): port"),
    ],
)
def test_imap_mistakes_are_named(tmp_path: Path, imap: str, message: str) -> None:
    """A wrong [imap] setting is refused naming the setting."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, f"{VALID}\n[imap]\n{imap}\n"))
    assert message in refused.value.detail


def test_accounts_flag_makes_a_target_that_uses_them(tmp_path: Path) -> None:
    """accounts = true on Maildir delivery needs the Mailboxes, and unknown addresses get 550."""
    text = VALID.replace('path = "mail/shop"', 'path = "mail/shop"\naccounts = true')
    config = load_config(write(tmp_path, text))
    shop = config.organisation_for("shop.co.nz")
    assert shop is not None and shop.delivery.accounts
    with pytest.raises(ValueError, match="mailboxes"):
        make_target(shop, config)
    target = make_target(shop, config, NoAccounts())
    assert isinstance(target, MaildirTarget)
    (tmp_path / "mail" / "shop").mkdir(parents=True)
    reply = asyncio.run(target.deliver("a@x.example", ["c@shop.co.nz"], b"\r\n", "ab"))
    assert reply["c@shop.co.nz"].code == 550


def test_accounts_flag_only_for_maildir(tmp_path: Path) -> None:
    """accounts is a Maildir setting: on an SMTP delivery it is an unknown setting."""
    text = VALID.replace("port = 2525", "port = 2525\naccounts = true")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(write(tmp_path, text))
