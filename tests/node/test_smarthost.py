"""Recipients outside SecureMail go to the operator's smarthost, as ordinary mail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from securemail.demo.exchange import Script, submit
from tests.node.conftest import WAIT, Federation, running
from tests.relay.loopback import Recorder, serving

OUTSIDE = Script(
    "agency to a business outside SecureMail",
    "agency",
    "aroha.ngata@agency.govt.nz",
    ("orders@supplier.example.com", "hemi.walker@securemail.provider.nz"),
    "Purchase order 77",
)


def test_non_member_recipient_goes_to_the_smarthost(federation: Federation) -> None:
    """The non-member copy leaves unchanged through the smarthost; the member copy stays secure."""
    sink = Recorder()

    async def scenario() -> None:
        async with serving(sink) as port:
            config = federation.nodes["agency"].config
            config.write_text(
                config.read_text()
                + f'\n[smarthost]\nhost = "127.0.0.1"\nport = {port}\nrequire_tls = false\n'
            )
            async with running(federation, "agency", "provider"):
                reply = await submit(
                    federation.nodes["agency"], OUTSIDE, OUTSIDE.message(1, datetime.now(UTC))
                )
                assert reply.startswith("250"), reply
                loop = asyncio.get_running_loop()
                deadline = loop.time() + WAIT
                while not sink.received and loop.time() < deadline:
                    await asyncio.sleep(0.1)

    asyncio.run(scenario())
    [message] = sink.received
    assert message.rcpt_tos == ("orders@supplier.example.com",)
    assert message.mail_from == "aroha.ngata@agency.govt.nz"
    assert b"Subject: Purchase order 77" in message.content
    assert b"application/pkcs7-mime" not in message.content
