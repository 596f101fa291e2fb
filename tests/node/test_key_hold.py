"""Issue 18 §3: a gateway that runs without an organisation's keys holds that organisation's
mail (``key-unavailable``) and delivers it, not bounced, once ``securemail keys restore``
has put the keys back: the key watch notices and releases it with no command typed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from securemail.cli.main import cli
from securemail.federation.operator import Changes, publish, update_member
from securemail.federation.store import Store
from securemail.node.keyring import KeyRing
from securemail.queue import Direction, QueueStore, State
from tests.node.conftest import Federation, mailbox_files, running
from tests.node.test_upstream import TO_AGENCY, entries, send, until

SMIME_KEYS = ("signing.key", "encryption.key")
PASSPHRASE = b"node passphrase for the tests"  # the demo federation's and its nodes'


def back_up(federation: Federation, out: Path) -> list[Path]:
    """``securemail keys backup`` of the agency's keys, 3 of 5; the share files."""
    passphrase = str(federation.root / "passphrase.txt")
    args = ["keys", "backup", "--node-dir", str(federation.root / "agency"), "--out", str(out)]
    args += ["--shares", "5", "--threshold", "3", "--passphrase-file", passphrase]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return [out.with_name(f"{out.name}.share-{i}-of-5.txt") for i in range(1, 6)]


def restore(federation: Federation, archive: Path, shares: list[Path], into: Path) -> str:
    """``securemail keys restore`` with the given shares into ``into``; its output."""
    args = ["keys", "restore", "--backup", str(archive), "--node-dir", str(into), "--force"]
    args += [a for share in shares for a in ("--share", str(share))]
    args += ["--passphrase-file", str(federation.root / "passphrase.txt")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def remove_smime_keys(folder: Path) -> None:
    for name in SMIME_KEYS:
        (folder / "keys" / name).unlink()


def test_key_ring_starts_without_keys_and_reloads_them(federation: Federation) -> None:
    """An organisation without its keys is left out of the ring (the node still starts);
    the keys put back are loaded at the next look, a damaged file is not."""
    config = federation.config("agency")
    folder = federation.root / "agency"
    saved = {name: (folder / "keys" / name).read_bytes() for name in SMIME_KEYS}
    remove_smime_keys(folder)
    ring = KeyRing.open(config, PASSPHRASE)
    assert "agency" not in ring and ring.expected == {"agency"}
    assert ring.reload_changed() == []
    (folder / "keys" / "signing.key").write_bytes(b"not a key")
    (folder / "keys" / "encryption.key").write_bytes(saved["encryption.key"])
    assert ring.reload_changed() == [] and "agency" not in ring
    (folder / "keys" / "signing.key").write_bytes(saved["signing.key"])
    assert ring.reload_changed() == ["agency"]
    assert ring["agency"].identities and ring.reload_changed() == []


def test_mail_arriving_before_the_key_is_restored_is_delivered_after_it(
    federation: Federation, tmp_path: Path
) -> None:
    """The agency's gateway runs without its S/MIME keys: the provider's mail is taken (250),
    held key-unavailable, and delivered once after keys restore from 3 of 5 shares; the
    sender sees no bounce."""
    shares = back_up(federation, tmp_path / "agency-keys.backup")
    folder = federation.root / "agency"
    remove_smime_keys(folder)
    agency_box = federation.nodes["agency"].mailbox(TO_AGENCY.to[0])

    def inbound() -> list[tuple[State, str | None]]:
        found = entries(federation, "agency")
        return [(e.state, e.reason) for e in found if e.direction is Direction.INBOUND]

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            await send(federation, TO_AGENCY, 1)
            await until(lambda: inbound() == [(State.HELD, "key-unavailable")], "the hold")
            await asyncio.sleep(1.0)  # it stays held: nothing else happens to it
            assert inbound() == [(State.HELD, "key-unavailable")]
            assert not mailbox_files(agency_box)
            held_for = CliRunner().invoke(
                cli, ["queue", "backlog", "--config", str(federation.nodes["agency"].config)]
            )
            assert "held for its key (key-unavailable)" in held_for.output
            output = restore(federation, tmp_path / "agency-keys.backup", shares[::2], folder)
            assert "shares used: 1, 3, 5" in output
            await until(lambda: len(mailbox_files(agency_box)) == 1, "delivery after restore")
            await until(lambda: inbound() == [(State.DELIVERED, None)], "the delivered record")

    asyncio.run(scenario())
    with QueueStore.open(federation.config("agency").database) as store:
        [entry] = [e for e in store.list() if e.direction is Direction.INBOUND]
        history = [e.event for e in store.events(entry.id)]
    assert history.index("held") < history.index("released") < history.index("delivered")
    provider = entries(federation, "provider")
    assert [e.state for e in provider if e.kind == "mail"] == [State.DELIVERED]
    assert not [e for e in provider if e.kind == "notice"]


def test_mail_to_a_next_key_not_yet_installed_is_delivered_after_install_next(
    federation: Federation, tmp_path: Path
) -> None:
    """The agency rolled its encryption key over and the operator published the next
    certificate, but the agency has not run install-next: senders already encrypt to the
    next key, so its mail is held (key-unavailable); install-next releases it."""
    root, passphrase_file = federation.root, str(federation.root / "passphrase.txt")
    node_dir = root / "agency"
    secret = ("--passphrase-file", passphrase_file)
    invoke("keys", "rollover", "--node-dir", str(node_dir), "--purpose", "encryption", *secret)
    csr = (node_dir / "requests" / "next-encryption.csr").read_bytes()
    store, now = Store(root / "federation"), datetime.now(UTC)
    member = update_member(store, "agency", Changes(next_encryption_csr=csr), PASSPHRASE, now)
    publish(store, PASSPHRASE, now, timedelta(days=7))
    assert member.encryption.next is not None
    next_cert = tmp_path / "next.pem"
    next_cert.write_bytes(member.encryption.next.public_bytes(serialization.Encoding.PEM))
    agency_box = federation.nodes["agency"].mailbox(TO_AGENCY.to[0])

    def inbound() -> list[tuple[State, str | None]]:
        found = entries(federation, "agency")
        return [(e.state, e.reason) for e in found if e.direction is Direction.INBOUND]

    async def scenario() -> None:
        async with running(federation, "agency", "provider"):
            await send(federation, TO_AGENCY, 1)
            await until(lambda: inbound() == [(State.HELD, "key-unavailable")], "the hold")
            install = ("keys", "install-next", "--node-dir", str(node_dir), "--purpose")
            invoke(*install, "encryption", "--cert", str(next_cert), *secret)
            await until(lambda: len(mailbox_files(agency_box)) == 1, "delivery after install")
            await until(lambda: inbound() == [(State.DELIVERED, None)], "the delivered record")

    asyncio.run(scenario())


def invoke(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
