"""The gateway's state directory: what it accepts, what it refuses, and what survives a crash."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from securemail.directory import (
    Directory,
    DirectoryError,
    DirectoryReason,
    canonical,
    digest,
    next_version,
    sign_document,
)
from securemail.directory.fetch import Fetched
from securemail.directory.model import HistoryEntry
from securemail.directory.store import DirectoryStore
from securemail.smime import SignerIdentity
from tests.conftest import NOW, Pki
from tests.directory.conftest import FEDERATION, Operator, member_of


@dataclass(frozen=True)
class Version:
    """One signed version of the directory, as the operator publishes it."""

    directory: Directory
    document: bytes
    signature: bytes

    @property
    def fetched(self) -> Fetched:
        return Fetched(self.document, self.signature)

    def publish(self, path: Path) -> None:
        """Write the document to ``path`` and its signature to ``path.p7s``."""
        path.write_bytes(self.document)
        path.with_name(path.name + ".p7s").write_bytes(self.signature)


def signed(directory: Directory, signer: SignerIdentity) -> Version:
    document, signature = sign_document(directory, signer, now=NOW)
    return Version(directory, document, signature)


def successor(previous: Directory, pki: Pki, *, extra: bool = True) -> Directory:
    """The next version: with the council added (``extra``) or the same members."""
    members = (*previous.members, member_of(pki.council, "council")) if extra else previous.members
    return next_version(
        previous,
        digest(canonical(previous)),
        federation=previous.federation,
        members=tuple(sorted({m.org_id: m for m in members}.values(), key=lambda m: m.org_id)),
        crls=previous.crls,
        now=previous.issued_at + timedelta(hours=1),
    )


def chain(first: Directory, pki: Pki, signer: SignerIdentity, count: int) -> list[Version]:
    """Serials 1 to ``count``, each descending from the one before, signed by ``signer``."""
    directories = [first]
    while len(directories) < count:
        directories.append(successor(directories[-1], pki))
    return [signed(d, signer) for d in directories]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` by name, with its bytes (none if it does not exist)."""
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def versions(pki: Pki, operator: Operator, first: Directory) -> list[Version]:
    """Serials 1, 2 and 3 of the test federation's directory."""
    return chain(first, pki, operator.signer, 3)


@pytest.fixture
def store(pki: Pki, tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation=FEDERATION)


def test_accepts_each_newer_version_and_records_it(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """Serial 1 then 2 are accepted; the state holds the version exactly as received."""
    stored, changed = store.accept(versions[0].fetched, NOW)
    assert changed and stored.directory.serial == 1
    stored, changed = store.accept(versions[1].fetched, NOW + timedelta(minutes=1))
    assert changed and stored.directory == versions[1].directory
    assert (store.state / "directory.json").read_bytes() == versions[1].document
    assert (store.state / "directory.json.p7s").read_bytes() == versions[1].signature
    record = json.loads((store.state / "accepted.json").read_bytes())
    assert record == {
        "serial": 2,
        "digest": digest(versions[1].document),
        "federation": FEDERATION,
        "accepted_at": "2026-11-29T12:01:00Z",
    }


def test_same_version_again_is_unchanged(store: DirectoryStore, versions: list[Version]) -> None:
    """Fetching the accepted version again changes nothing and says so."""
    store.accept(versions[0].fetched, NOW)
    before = snapshot(store.state)
    stored, changed = store.accept(versions[0].fetched, NOW + timedelta(hours=1))
    assert not changed and stored.directory.serial == 1 and stored.accepted_at == NOW
    assert snapshot(store.state) == before


def test_a_gap_is_bridged_by_the_history(store: DirectoryStore, versions: list[Version]) -> None:
    """Serial 3 is accepted after serial 1: its history holds serial 1's digest."""
    store.accept(versions[0].fetched, NOW)
    stored, changed = store.accept(versions[2].fetched, NOW)
    assert changed and stored.directory.serial == 3


def _refused(store: DirectoryStore, fetched: Fetched, reason: DirectoryReason) -> None:
    """Assert that ``fetched`` is refused for ``reason`` and no file in the state changes."""
    before = snapshot(store.state)
    with pytest.raises(DirectoryError) as refused:
        store.accept(fetched, NOW)
    assert refused.value.reason is reason
    assert snapshot(store.state) == before


def test_rollback_refused_and_state_unchanged(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """Serial 1 after serial 2 is a rollback; the state stays as it was, byte for byte."""
    store.accept(versions[0].fetched, NOW)
    store.accept(versions[1].fetched, NOW)
    _refused(store, versions[0].fetched, DirectoryReason.ROLLBACK)


def test_fork_refused(
    store: DirectoryStore, versions: list[Version], pki: Pki, operator: Operator
) -> None:
    """Another signed document with the accepted serial is a fork."""
    store.accept(versions[0].fetched, NOW)
    store.accept(versions[1].fetched, NOW)
    other = signed(successor(versions[0].directory, pki, extra=False), operator.signer)
    assert other.directory.serial == 2 and other.document != versions[1].document
    _refused(store, other.fetched, DirectoryReason.FORK)


def test_broken_chain_refused(
    store: DirectoryStore, versions: list[Version], operator: Operator
) -> None:
    """A version whose history does not contain the accepted serial is refused."""
    store.accept(versions[0].fetched, NOW)
    restarted = dataclasses.replace(
        versions[2].directory, history=(HistoryEntry(2, digest(versions[1].document)),)
    )
    _refused(store, signed(restarted, operator.signer).fetched, DirectoryReason.BROKEN_CHAIN)


def test_tampered_document_refused(store: DirectoryStore, versions: list[Version]) -> None:
    """A document changed after signing is refused; the state keeps serial 1."""
    store.accept(versions[0].fetched, NOW)
    tampered = versions[1].document.replace(b"council.govt.nz", b"counci1.govt.nz")
    _refused(store, Fetched(tampered, versions[1].signature), DirectoryReason.SIGNATURE_INVALID)


def test_signed_by_a_gateway_certificate_refused(
    store: DirectoryStore, versions: list[Version], pki: Pki
) -> None:
    """A member gateway's certificate, though issued by the anchor, cannot sign the directory."""
    store.accept(versions[0].fetched, NOW)
    forged = signed(versions[1].directory, pki.agency.signer)
    _refused(store, forged.fetched, DirectoryReason.UNTRUSTED_SIGNER)


def test_wrong_federation_refused(pki: Pki, tmp_path: Path, versions: list[Version]) -> None:
    """A gateway configured for another federation refuses this one, even on first use."""
    store = DirectoryStore(tmp_path / "state", [pki.ca.certificate], federation="Other")
    _refused(store, versions[0].fetched, DirectoryReason.WRONG_FEDERATION)
    assert not (store.state / "accepted.json").exists()


def test_accepted_federation_is_kept_without_configuration(
    pki: Pki, operator: Operator, tmp_path: Path, versions: list[Version]
) -> None:
    """Once a federation's directory is accepted, another federation's is refused."""
    store = DirectoryStore(tmp_path / "state", [pki.ca.certificate])
    store.accept(versions[0].fetched, NOW)
    other = dataclasses.replace(versions[1].directory, federation="Other")
    _refused(store, signed(other, operator.signer).fetched, DirectoryReason.WRONG_FEDERATION)


def test_load_verifies_the_stored_version_again(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """A restarted gateway gets back the version it accepted, with when it accepted it."""
    assert store.load(NOW) is None
    store.accept(versions[1].fetched, NOW)
    stored = store.load(NOW + timedelta(days=1))
    assert stored is not None
    assert stored.directory == versions[1].directory and stored.accepted_at == NOW
    assert not stored.is_stale(NOW + timedelta(days=1))


def test_stale_version_is_still_loaded(store: DirectoryStore, versions: list[Version]) -> None:
    """Past its next update the last good version is still served, marked stale."""
    store.accept(versions[0].fetched, NOW)
    later = versions[0].directory.next_update + timedelta(days=1)
    stored = store.load(later)
    assert stored is not None and stored.is_stale(later)


TAMPER: dict[str, Callable[[bytes], bytes]] = {
    "directory.json": lambda data: data.replace(b"ministry.govt.nz", b"ministrx.govt.nz"),
    "directory.json.p7s": lambda data: data[:-40] + bytes(40),
    "accepted.json": lambda data: b"not json",
}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("directory.json", DirectoryReason.SIGNATURE_INVALID),
        ("directory.json.p7s", DirectoryReason.SIGNATURE_INVALID),
        ("accepted.json", DirectoryReason.MALFORMED),
    ],
)
def test_tampered_state_file_refused_on_load(
    store: DirectoryStore, versions: list[Version], name: str, reason: DirectoryReason
) -> None:
    """An edited document, a damaged signature or a garbled record is refused, not trusted."""
    store.accept(versions[0].fetched, NOW)
    path = store.state / name
    path.write_bytes(TAMPER[name](path.read_bytes()))
    with pytest.raises(DirectoryError) as refused:
        store.load(NOW)
    assert refused.value.reason is reason


def test_older_version_copied_into_state_refused_on_load(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """A genuine but older signed pair put back into the state is a rollback, not a restore."""
    store.accept(versions[1].fetched, NOW)
    versions[0].publish(store.state / "directory.json")
    with pytest.raises(DirectoryError) as refused:
        store.load(NOW)
    assert refused.value.reason is DirectoryReason.ROLLBACK


def test_crash_while_staging_keeps_the_old_version(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """Staged files left by a crash before the renames are discarded; serial 1 stays."""
    store.accept(versions[0].fetched, NOW)
    (store.state / "directory.json.new").write_bytes(versions[1].document)
    (store.state / "directory.json.p7s.new").write_bytes(versions[1].signature[:100])
    stored = store.load(NOW)
    assert stored is not None and stored.directory.serial == 1
    assert set(snapshot(store.state)) == {
        ".lock",
        "accepted.json",
        "directory.json",
        "directory.json.p7s",
    }


def test_crash_between_the_renames_completes_the_new_version(
    store: DirectoryStore, versions: list[Version]
) -> None:
    """A new document with its signature still staged is completed and then recorded."""
    store.accept(versions[0].fetched, NOW)
    (store.state / "directory.json").write_bytes(versions[1].document)
    (store.state / "directory.json.p7s.new").write_bytes(versions[1].signature)
    stored = store.load(NOW + timedelta(minutes=5))
    assert stored is not None and stored.directory.serial == 2
    record = json.loads((store.state / "accepted.json").read_bytes())
    assert record["serial"] == 2 and record["digest"] == digest(versions[1].document)
    assert not (store.state / "directory.json.p7s.new").exists()
