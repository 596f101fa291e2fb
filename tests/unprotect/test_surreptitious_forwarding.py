"""THREATS.md K, surreptitious forwarding: a signature opens only for whom it was sealed.

The attacks of issue 16 against the provider node: a genuine agency message re-sent in a
new SMTP transaction to another recipient, and a genuine agency → harbour message that the
GSP (which may decrypt harbour's mail) re-encrypts to the provider for a citizen. Both
verify; both must end quarantined, delivered to no one. Mail without the sealedFor
attribute is refused from a member whose directory entry lists sealed-for and otherwise
follows ``[peer] unsealed``; Bcc recipients still receive their copy.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from securemail.config.node import Unsealed
from securemail.demo.exchange import Script, header, submit, wait_for
from securemail.queue import Direction, State
from securemail.queue.model import FINAL_STATES
from securemail.smime import (
    ProtectOptions,
    RecipientIdentity,
    SealedFor,
    decrypt,
    encrypt,
    limits,
    mime,
    protect,
)
from securemail.smime.keys import load_private_key
from securemail.unprotect.sealing import NotSealedError, check_sealed
from tests.node.conftest import WAIT, Federation, mailbox_files, running
from tests.node.test_inbound_refusals import (
    AGENCY_USER,
    HARBOUR_USER,
    encryption_certificate,
    entries,
    letter,
    quarantine_reason,
    send_to_peer,
    signer,
    wait_until,
)

NOW = datetime.now(UTC)
HEMI = "hemi.walker@securemail.provider.nz"
MERE = "mere.tane@securemail.provider.nz"


def agency_message(federation: Federation, n: int, to: str, member: str) -> bytes:
    """A genuine agency message to ``to``, sealed for ``member`` and encrypted to it."""
    message = letter(AGENCY_USER, n).replace(f"To: {HEMI}".encode(), f"To: {to}".encode())
    return protect(
        message,
        signer(federation, "agency"),
        [encryption_certificate(federation, member)],
        now=NOW,
        options=ProtectOptions(sealed_for=SealedFor(member, (to,))),
    ).message


def verdicts(federation: Federation, count: int) -> list[tuple[State, str | None]]:
    """The provider's inbound entries in order, once ``count`` of them are final."""
    inbound = entries(federation, "provider", Direction.INBOUND)
    finished = [e for e in inbound if e.state in FINAL_STATES]
    if len(finished) < count:
        return []
    return [(e.state, _reason(federation, e.id, e.state)) for e in finished]


def _reason(federation: Federation, entry_id: str, state: State) -> str | None:
    if state is not State.QUARANTINED:
        return None
    return quarantine_reason(federation, "provider", entry_id)


def test_message_resent_with_another_rcpt_is_quarantined(federation: Federation) -> None:
    """A message sealed for Mere, re-sent with RCPT TO Hemi, is quarantined: Hemi gets nothing."""
    message = agency_message(federation, 31, MERE, "provider")

    async def scenario() -> list[tuple[State, str | None]]:
        async with running(federation, "provider"):
            assert (await send_to_peer(federation, "provider", AGENCY_USER, message, MERE))[
                0
            ] == "2"
            await wait_until(lambda: verdicts(federation, 1) or None, "the genuine delivery")
            assert (await send_to_peer(federation, "provider", AGENCY_USER, message, HEMI))[
                0
            ] == "2"
            return await wait_until(lambda: verdicts(federation, 2) or None, "the re-sent copy")

    found = asyncio.run(scenario())
    assert sorted(found, key=str) == sorted(
        [(State.DELIVERED, None), (State.QUARANTINED, "recipient-not-sealed")], key=str
    )
    assert len(mailbox_files(federation.nodes["provider"].mailbox(MERE))) == 1
    assert mailbox_files(federation.nodes["provider"].mailbox(HEMI)) == []


def reencrypted_by_the_gsp(federation: Federation, sealed_for_harbour: bytes) -> bytes:
    """What the GSP can do with harbour's mail: decrypt it, keep the agency's signed entity,
    and encrypt that again to the provider under a new outer header."""
    passphrase = (federation.root / "passphrase.txt").read_bytes().rstrip(b"\r\n")
    harbour = RecipientIdentity(
        encryption_certificate(federation, "harbour"),
        load_private_key(
            (federation.root / "harbour" / "keys" / "encryption.key").read_bytes(), passphrase
        ),
    )
    entity = mime.read_entity(sealed_for_harbour, limits.Limits())
    inner, _ = decrypt.decrypt(entity.der, [harbour])
    envelope = encrypt.encrypt(inner, [encryption_certificate(federation, "provider")])
    outer = (
        f"From: {AGENCY_USER}\r\nTo: {HEMI}\r\nSubject: SecureMail message\r\nMIME-Version: 1.0\r\n"
    ).encode()
    return (
        outer
        + mime.entity_header("authEnveloped-data")
        + mime.CRLF
        + (mime.encode_base64(envelope.join()))
    )


def test_member_that_reencrypts_anothers_message_gets_it_quarantined(
    federation: Federation,
) -> None:
    """Agency → harbour re-encrypted by the GSP to the provider for Hemi: wrong-member."""
    genuine = agency_message(federation, 32, HARBOUR_USER, "harbour")
    forwarded = reencrypted_by_the_gsp(federation, genuine)

    async def scenario() -> list[tuple[State, str | None]]:
        async with running(federation, "provider"):
            reply = await send_to_peer(federation, "provider", AGENCY_USER, forwarded, HEMI)
            assert reply.startswith("2"), reply
            found = await wait_until(lambda: verdicts(federation, 1) or None, "a verdict")
            await asyncio.sleep(0.5)
            return found

    assert asyncio.run(scenario()) == [(State.QUARANTINED, "wrong-member")]
    assert mailbox_files(federation.nodes["provider"].mailbox(HEMI)) == []
    assert entries(federation, "provider", Direction.OUTBOUND) == []  # and no notice


def unsealed(federation: Federation, n: int) -> bytes:
    """Mail as a gateway without the profile's recipient binding signs it."""
    return protect(
        letter(AGENCY_USER, n),
        signer(federation, "agency"),
        [encryption_certificate(federation, "provider")],
        now=NOW,
    ).message


def test_unsealed_mail_from_a_sealing_member_is_refused_even_when_marking(
    federation: Federation,
) -> None:
    """The agency's directory entry lists sealed-for, so its signature without sealedFor is a
    downgrade: quarantined recipient-not-sealed even under [peer] unsealed = "mark"."""
    config = federation.nodes["provider"].config
    config.write_text(config.read_text().replace("[peer]\n", '[peer]\nunsealed = "mark"\n', 1))

    async def scenario() -> list[tuple[State, str | None]]:
        async with running(federation, "provider"):
            await send_to_peer(federation, "provider", AGENCY_USER, unsealed(federation, 33))
            return await wait_until(lambda: verdicts(federation, 1) or None, "a verdict")

    assert asyncio.run(scenario()) == [(State.QUARANTINED, "recipient-not-sealed")]
    assert mailbox_files(federation.nodes["provider"].mailbox(HEMI)) == []


@pytest.mark.parametrize(
    ("unsealed_rule", "signer_seals", "outcome"),
    [
        ("mark", False, False),
        ("refuse", False, "recipient-not-sealed"),
        ("mark", True, "recipient-not-sealed"),
        ("refuse", True, "recipient-not-sealed"),
    ],
)
def test_the_unsealed_rule_and_the_directory(
    unsealed_rule: Unsealed, signer_seals: bool, outcome: bool | str
) -> None:
    """A signature without sealedFor is admitted (marked unbound) only under "mark" and only
    from a signer whose directory entry does not list sealed-for (profile §2.1)."""
    try:
        bound: bool | str = check_sealed(
            None,
            org_id="provider",
            recipients=[HEMI],
            unsealed=unsealed_rule,
            signer_seals=signer_seals,
        )
    except NotSealedError as error:
        bound = error.reason
    assert bound == outcome


def test_bcc_recipients_at_two_members_still_receive_their_copies(
    federation: Federation,
) -> None:
    """To: Hemi, Bcc: Mere and a harbour address: each member gets a copy sealed for its own."""
    script = Script("agency with Bcc", "agency", AGENCY_USER, (HEMI,), "Bcc test")
    envelope = Script("agency with Bcc", "agency", AGENCY_USER, (HEMI, MERE, HARBOUR_USER), "")
    message_id = Script.message_id(35, "agency.govt.nz")

    async def scenario() -> list[bytes | None]:
        async with running(federation, "agency", "provider", "gsp"):
            reply = await submit(federation.nodes["agency"], envelope, script.message(35, NOW))
            assert reply.startswith("250"), reply
            return [
                await wait_for(federation.nodes[node].mailbox(to), message_id, WAIT)
                for node, to in (("provider", HEMI), ("provider", MERE), ("gsp", HARBOUR_USER))
            ]

    for delivered in asyncio.run(scenario()):
        assert delivered is not None
        assert "verified" in header(delivered, "X-SecureMail-Status")
        assert MERE not in header(delivered, "To")
