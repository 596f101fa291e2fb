"""Split-knowledge key backup: any K of N shares restore, and every wrong input is refused."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
import shamir_mnemonic  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securemail.keys import backup
from securemail.keys.backup import KeyBackupError, Reason
from securemail.keys.shares import BEGIN, END, combine_shares, format_share
from tests.conftest import NOW, Pki

Shares = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def node(pki: Pki) -> backup.NodeKeys:
    """A gateway's key and certificate, and the federation root beside them."""
    return backup.NodeKeys(
        (backup.NamedKey("agency.key", pki.agency.issued.private_key),),
        (
            backup.NamedCertificates("agency.pem", (pki.agency.certificate,)),
            backup.NamedCertificates("ca.pem", (pki.ca.certificate,)),
        ),
        "agency.govt.nz",
    )


@pytest.fixture(scope="module")
def made(node: backup.NodeKeys) -> backup.Backup:
    """One 3-of-5 backup of the node, made once for the module."""
    return backup.make_backup(node, shares=5, threshold=3, now=NOW)


def shares_of(made: backup.Backup, *numbers: int, prefix: str = "share") -> Shares:
    return [(f"{prefix}-{n}.txt", made.shares[n - 1].encode()) for n in numbers]


def key_der(node: backup.NodeKeys) -> bytes:
    return node.keys[0].key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def refusal(archive: bytes, shares: Shares) -> KeyBackupError:
    with pytest.raises(KeyBackupError) as refused:
        backup.restore_backup(archive, shares)
    return refused.value


def test_every_three_of_five_shares_restore(made: backup.Backup, node: backup.NodeKeys) -> None:
    """Each of the ten 3-share subsets restores the same keys, certificates and organisation."""
    for numbers in itertools.combinations(range(1, 6), 3):
        restored = backup.restore_backup(made.archive, shares_of(made, *reversed(numbers)))
        assert restored.shares_used == numbers
        assert key_der(restored.node) == key_der(node)
        assert restored.node.keys[0].name == "agency.key"
        assert restored.node.certificates == node.certificates
        assert restored.node.org_id == "agency.govt.nz"
        assert restored.header == made.header


def test_two_shares_never_restore(made: backup.Backup) -> None:
    """No pair of shares (K-1) is enough; the refusal says how many are needed."""
    for numbers in itertools.combinations(range(1, 6), 2):
        error = refusal(made.archive, shares_of(made, *numbers))
        assert error.reason is Reason.SHARES_INSUFFICIENT
        assert "needs any 3 of its 5" in error.detail


def test_the_same_share_twice_counts_once(made: backup.Backup) -> None:
    """Giving one custodian's share twice does not stand in for a third custodian."""
    error = refusal(made.archive, shares_of(made, 1, 2) + shares_of(made, 2, prefix="copy"))
    assert error.reason is Reason.SHARES_INSUFFICIENT


def test_shares_of_two_backups_are_refused_by_name(
    node: backup.NodeKeys, made: backup.Backup
) -> None:
    """Shares of two backups mixed are refused before combining, naming which file is which."""
    other = backup.make_backup(node, shares=5, threshold=3, now=NOW)
    mixed = shares_of(made, 1, 2) + shares_of(other, 3, prefix="other")
    error = refusal(made.archive, mixed)
    assert error.reason is Reason.SHARES_MIXED
    assert "share-1.txt, share-2.txt; other-3.txt" in error.detail
    error = refusal(made.archive, shares_of(other, 1, 2, 3, prefix="other"))
    assert error.reason is Reason.SHARES_MIXED
    assert made.header.backup_id in error.detail and "other-1.txt" in error.detail


def test_a_key_split_under_the_same_identifier_fails_the_tag(made: backup.Backup) -> None:
    """Shares that pass every SLIP-39 check but carry another key do not open the archive."""
    secret = shamir_mnemonic.EncryptedMasterSecret.from_master_secret(
        AESGCM.generate_key(bit_length=256), b"", made.header.identifier, True, 1
    )
    forged = shamir_mnemonic.split_ems(1, [(3, 5)], secret)[0]
    shares = [
        (f"forged-{n}.txt", format_share(made.header, n, share.mnemonic()).encode())
        for n, share in enumerate(forged[:3], start=1)
    ]
    assert refusal(made.archive, shares).reason is Reason.BACKUP_INTEGRITY


def test_an_altered_word_fails_the_share_checksum(made: backup.Backup) -> None:
    """One word swapped for another valid word is caught by the share's checksum, by file."""
    text = made.shares[3]
    words = text.split(BEGIN)[1].split()
    tenth = words[words.index("10.") + 1]
    replacement = next(w for w in shamir_mnemonic.wordlist.WORDLIST if w != tenth)
    altered = text.replace(f"10. {tenth}", f"10. {replacement}")
    error = refusal(made.archive, [*shares_of(made, 1, 2), ("share-4.txt", altered.encode())])
    assert error.reason is Reason.SHARE_INVALID
    assert error.detail.startswith("share-4.txt: ") and replacement not in error.detail
    unknown = text.replace(f"10. {tenth}", "10. securemail")
    error = refusal(made.archive, [*shares_of(made, 1, 2), ("share-4.txt", unknown.encode())])
    assert error.reason is Reason.SHARE_INVALID


def test_every_flipped_byte_of_the_archive_is_refused(made: backup.Backup) -> None:
    """Whatever single byte of the archive file changes, it does not open with the right key."""
    key, _ = combine_shares(made.header, shares_of(made, 1, 2, 3))
    assert backup.open_archive(backup.read_archive(made.archive), key).keys
    for at in range(len(made.archive)):
        flipped = bytearray(made.archive)
        flipped[at] ^= 0x01
        with pytest.raises(KeyBackupError) as refused:
            backup.open_archive(backup.read_archive(bytes(flipped)), key)
        assert refused.value.reason is Reason.BACKUP_INTEGRITY, at


def test_an_altered_header_is_refused_through_restore(made: backup.Backup) -> None:
    """Raising the recorded share count, even in canonical form, fails the GCM tag."""
    altered = made.archive.replace(b'"shares": 5', b'"shares": 6')
    assert altered != made.archive
    assert refusal(altered, shares_of(made, 1, 2, 3)).reason is Reason.BACKUP_INTEGRITY


def test_a_forged_archive_cannot_name_a_path(made: backup.Backup) -> None:
    """Even someone holding K shares cannot make restore write outside the keys directory."""
    key, _ = combine_shares(made.header, shares_of(made, 1, 2, 3))
    sealed = backup.read_archive(made.archive)
    aad = made.header.associated_data()
    content = json.loads(AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad))
    content["keys"][0]["name"] = "../../etc/evil.key"
    forged = AESGCM(key).encrypt(sealed.nonce, json.dumps(content).encode(), aad)
    archive = backup.encode_archive(backup.Sealed(made.header, sealed.nonce, forged))
    error = refusal(archive, shares_of(made, 1, 2, 3))
    assert error.reason is Reason.BACKUP_INTEGRITY and "plain file name" in error.detail


def test_the_archive_holds_no_key_in_clear(made: backup.Backup, node: backup.NodeKeys) -> None:
    """Neither the PEM nor any run of the key's base64 appears in the archive or a share."""
    body = base64.b64encode(key_der(node)).decode()
    for text in (made.archive.decode(), *made.shares):
        assert "PRIVATE KEY" not in text
        assert not any(body[at : at + 32] in text for at in range(0, len(body) - 32, 32))


def test_share_text_tells_the_custodian_what_to_do(made: backup.Backup) -> None:
    """A share names its backup, its number and the threshold, and lists 33 numbered words."""
    text = made.shares[1]
    assert text.startswith("SecureMail key backup: custodian share 2 of 5\n")
    assert f"Backup id: {made.header.backup_id}" in text
    assert "any 3 custodians together can restore them" in text
    assert "reveals nothing" in text and "delete every" in text
    words = text.split(BEGIN)[1].split(END)[0].split()
    assert words[-2] == "33." and len(words) == 66


def test_shares_typed_back_in_as_bare_words_restore(made: backup.Backup) -> None:
    """A custodian may type just the words (with or without numbers) into a file."""
    typed = []
    for n in (2, 3, 5):
        block = made.shares[n - 1].split(BEGIN)[1].split(END)[0]
        typed.append((f"typed-{n}.txt", block.upper().encode()))
    assert backup.restore_backup(made.archive, typed).shares_used == (2, 3, 5)


def test_a_single_custodian_split_needs_consent(node: backup.NodeKeys) -> None:
    """Threshold 1 is refused as not split knowledge; allowed, each share alone restores."""
    with pytest.raises(KeyBackupError) as refused:
        backup.make_backup(node, shares=2, threshold=1, now=NOW)
    assert refused.value.reason is Reason.SPLIT_POLICY
    single = backup.make_backup(node, shares=2, threshold=1, now=NOW, allow_single_custodian=True)
    assert "ALONE restores" in single.shares[0]
    for n in (1, 2):
        assert backup.restore_backup(single.archive, shares_of(single, n)).shares_used == (n,)


@pytest.mark.parametrize(("shares", "threshold"), [(17, 3), (3, 4), (3, 0)])
def test_impossible_splits_are_refused(shares: int, threshold: int) -> None:
    """More than 16 shares, or a threshold above the share count or below 1, is refused."""
    with pytest.raises(KeyBackupError) as refused:
        backup.check_split(shares, threshold, allow_single_custodian=True)
    assert refused.value.reason is Reason.SPLIT_POLICY


def test_a_node_without_keys_is_refused(node: backup.NodeKeys) -> None:
    """A backup of certificates alone is refused: there would be nothing to restore."""
    with pytest.raises(KeyBackupError) as refused:
        backup.make_backup(backup.NodeKeys((), node.certificates), shares=3, threshold=2, now=NOW)
    assert refused.value.reason is Reason.NO_KEYS


def test_file_names_are_plain(pki: Pki) -> None:
    """Key and certificate names cannot be paths, hidden files or carry the wrong suffix."""
    for name in ("../x.key", "a/b.key", ".hidden.key", "x.pem", "x..key", ""):
        with pytest.raises(ValueError, match="plain file name"):
            backup.NamedKey(name, pki.agency.issued.private_key)
    assert backup.NamedKey("gateway-2026.govt.nz.key", pki.agency.issued.private_key)
