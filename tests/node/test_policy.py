"""Classification and sovereignty enforced by real nodes: fail closed, split, tell the sender."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from securemail.demo.exchange import Script, header, submit, wait_for
from tests.node.conftest import WAIT, Federation, mailbox_files, running
from tests.relay.loopback import Recorder, serving

NOW = datetime.now(UTC)
SENDER = "aroha.ngata@agency.govt.nz"
CITIZEN = "hemi.walker@securemail.provider.nz"
OUTSIDER = "orders@supplier.example.com"


def notices(federation: Federation) -> list[bytes]:
    return mailbox_files(federation.nodes["agency"].mailbox(SENDER))


def add_to_agency(federation: Federation, text: str) -> None:
    config = federation.nodes["agency"].config
    config.write_text(config.read_text() + text)


async def until_notice(federation: Federation) -> list[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not notices(federation) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return notices(federation)


def test_labelled_mail_is_split_member_gets_it_outsider_is_blocked(federation: Federation) -> None:
    """[IN-CONFIDENCE] to a member and a non-member: the member gets it signed and labelled;
    the non-member's copy is never sent (not even to the smarthost); one notice names it."""
    sink = Recorder()
    message = Script("labelled", "agency", SENDER, (CITIZEN, OUTSIDER), "[IN-CONFIDENCE] Budget")

    async def scenario() -> tuple[bytes | None, list[bytes]]:
        async with serving(sink) as port:
            add_to_agency(
                federation,
                f'\n[smarthost]\nhost = "127.0.0.1"\nport = {port}\nrequire_tls = false\n',
            )
            async with running(federation, "agency", "provider"):
                reply = await submit(federation.nodes["agency"], message, message.message(1, NOW))
                assert reply.startswith("250"), reply
                mailbox = federation.nodes["provider"].mailbox(CITIZEN)
                delivered = await wait_for(mailbox, Script.message_id(1, "agency.govt.nz"), WAIT)
                return delivered, await until_notice(federation)

    delivered, found = asyncio.run(scenario())
    assert delivered is not None
    assert "label=IN-CONFIDENCE" in header(delivered, "X-SecureMail-Status").replace(" ", "")
    assert sink.received == []
    [notice] = found
    assert b"Final-Recipient: rfc822; " + OUTSIDER.encode() in notice
    assert b"X-SecureMail-Reason: label-requires-securemail" in notice
    assert CITIZEN.encode() not in notice.split(b"Final-Recipient", 1)[1].split(b"\n\n", 1)[0]


def test_unlabelled_mail_to_an_outsider_goes_through_the_smarthost(federation: Federation) -> None:
    """Ordinary (unlabelled) mail to a non-member still flows to the smarthost."""
    sink = Recorder()
    message = Script("ordinary", "agency", SENDER, (OUTSIDER,), "Lunch on Friday")

    async def scenario() -> None:
        async with serving(sink) as port:
            add_to_agency(
                federation,
                f'\n[smarthost]\nhost = "127.0.0.1"\nport = {port}\nrequire_tls = false\n',
            )
            async with running(federation, "agency"):
                await submit(federation.nodes["agency"], message, message.message(2, NOW))
                loop = asyncio.get_running_loop()
                deadline = loop.time() + WAIT
                while not sink.received and loop.time() < deadline:
                    await asyncio.sleep(0.1)

    asyncio.run(scenario())
    assert [r.rcpt_tos for r in sink.received] == [(OUTSIDER,)]


def test_labelled_mail_to_a_member_outside_the_allowed_regions_is_refused(
    federation: Federation,
) -> None:
    """A member whose directory region the organisation does not allow never gets labelled mail."""
    config = federation.nodes["agency"].config
    config.write_text(
        config.read_text().replace(
            'path = "mail"\n', 'path = "mail"\n[organisation.policy]\nallowed_regions = ["AU"]\n', 1
        )
    )
    message = Script("region", "agency", SENDER, (CITIZEN,), "[SEC=SENSITIVE] Case file")

    async def scenario() -> list[bytes]:
        async with running(federation, "agency", "provider"):
            await submit(federation.nodes["agency"], message, message.message(3, NOW))
            return await until_notice(federation)

    [notice] = asyncio.run(scenario())
    assert b"X-SecureMail-Reason: region-not-allowed" in notice
    assert not Path(federation.nodes["provider"].mailbox(CITIZEN), "new").exists()


def test_a_classification_securemail_does_not_carry_is_refused(federation: Federation) -> None:
    """[SEC=SECRET] is not carried by SecureMail: refused with a notice, sent to nobody."""
    message = Script("secret", "agency", SENDER, (CITIZEN,), "[SEC=SECRET] Plans")

    async def scenario() -> list[bytes]:
        async with running(federation, "agency", "provider"):
            await submit(federation.nodes["agency"], message, message.message(4, NOW))
            return await until_notice(federation)

    [notice] = asyncio.run(scenario())
    assert b"X-SecureMail-Reason: marking-unsupported" in notice
