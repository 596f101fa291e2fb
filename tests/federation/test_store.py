"""The federation directory on disk: staging, append-only versions, records, key files."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.federation import FederationError, FederationReason
from securemail.federation.store import (
    Revocation,
    Store,
    write_atomic,
    write_node_directory,
)
from tests.conftest import NOW, Pki
from tests.directory.conftest import member_of


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A staged, empty federation store."""
    staged = Store.stage(tmp_path / "FED")
    staged.write_federation("SecureMail Test Federation", NOW)
    return staged.move_to(tmp_path / "FED")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stage_then_move_into_an_empty_directory(tmp_path: Path) -> None:
    """A store is built beside its place and renamed into it, leaving no staging directory."""
    (tmp_path / "FED").mkdir()
    staged = Store.stage(tmp_path / "FED")
    assert staged.root.parent == tmp_path
    staged.write_federation("SecureMail Test Federation", NOW)
    store = staged.move_to(tmp_path / "FED")
    assert store.exists()
    assert store.federation_name() == "SecureMail Test Federation"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FED"]


def test_stage_refuses_an_existing_federation_or_other_files(store: Store, tmp_path: Path) -> None:
    """Founding over a federation or over unrelated files is refused."""
    with pytest.raises(FederationError) as existing:
        Store.stage(store.root)
    assert existing.value.reason is FederationReason.FEDERATION_EXISTS
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a federation")
    with pytest.raises(FederationError) as occupied:
        Store.stage(tmp_path / "other")
    assert occupied.value.reason is FederationReason.FEDERATION_EXISTS


def test_directory_without_federation_refused(tmp_path: Path) -> None:
    """Commands on a directory that holds no federation are refused."""
    with pytest.raises(FederationError) as refused:
        Store(tmp_path).require()
    assert refused.value.reason is FederationReason.NOT_A_FEDERATION


def test_published_serial_is_never_overwritten(store: Store) -> None:
    """A second version with a published serial is refused; the kept version is untouched."""
    store.publish(1, b"first", b"signature one")
    with pytest.raises(FederationError) as refused:
        store.publish(1, b"fork", b"signature two")
    assert refused.value.reason is FederationReason.SERIAL_EXISTS
    assert (store.root / "published" / "1.json").read_bytes() == b"first"
    assert store.latest() == (b"first", b"signature one")
    assert not [p for p in (store.root / "published").iterdir() if p.name.startswith(".")]


def test_issued_certificates_keep_owner_and_use(pki: Pki, store: Store) -> None:
    """Issued certificates come back with their owner (none for the operator's) and use."""
    store.record_issued(pki.agency.certificate, "agency", "signing")
    store.record_issued(pki.ministry.certificate, None, "directory-signing")
    found = store.issued_certificate(pki.agency.certificate.serial_number)
    assert found is not None
    assert (found.certificate, found.org_id, found.use) == (
        pki.agency.certificate,
        "agency",
        "signing",
    )
    owners = {i.certificate.serial_number: i.org_id for i in store.issued()}
    assert owners[pki.ministry.certificate.serial_number] is None
    assert store.issued_certificate(12345) is None


def test_revocations_round_trip(store: Store) -> None:
    """Revocations are kept with serial, owner, time and reason, in order."""
    revocations = [
        Revocation(0xABCDEF, "agency", NOW - timedelta(days=1), "key-compromise"),
        Revocation(0x10, None, NOW, "superseded"),
    ]
    assert store.revocations() == []
    store.write_revocations(revocations)
    assert store.revocations() == revocations


def test_member_records_and_path_like_ids(pki: Pki, store: Store) -> None:
    """Member records round-trip; an org id that is not one is unknown, never a path."""
    member = member_of(pki.agency, "agency")
    store.write_member(member)
    assert store.member("agency") == member
    assert store.members() == [member]
    (store.root / "secret.json").write_text("{}")
    for org_id in ("../secret", "nobody", "AGENCY"):
        with pytest.raises(FederationError) as refused:
            store.member(org_id)
        assert refused.value.reason is FederationReason.UNKNOWN_MEMBER


def test_identity_key_is_encrypted_and_private(pki: Pki, store: Store) -> None:
    """Keys are written encrypted with mode 0600 and refuse a wrong passphrase."""
    store.write_identity("ca/root", pki.ca, b"right passphrase")
    key_path = store.root / "ca" / "root.key"
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert _mode(key_path) == 0o600
    assert _mode(store.root / "ca" / "root.pem") == 0o644
    with pytest.raises(FederationError) as refused:
        store.read_identity("ca/root", b"wrong passphrase")
    assert refused.value.reason is FederationReason.BAD_PASSPHRASE


def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A replaced file has the new content and no temporary file is left beside it."""
    target = tmp_path / "directory.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["directory.json"]


def test_node_directory_modes_and_refusal(tmp_path: Path) -> None:
    """Node keys are 0600 in a 0700 folder; an occupied node directory is refused."""
    node = tmp_path / "node"
    write_node_directory(node, {"keys/signing.key": b"k", "certs/signing.pem": b"c"})
    assert _mode(node / "keys") == 0o700
    assert _mode(node / "keys" / "signing.key") == 0o600
    assert _mode(node / "certs" / "signing.pem") == 0o644
    with pytest.raises(FederationError) as refused:
        write_node_directory(node, {"node.toml": b""})
    assert refused.value.reason is FederationReason.NODE_DIR_NOT_EMPTY
    assert not (node / "node.toml").exists()
