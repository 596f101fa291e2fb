"""RFC 2920 pipelining of the relay's transaction, against a scripted loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvloop

from securemail.relay import Destination, RelayError, RelayPool, RelayReason, send
from securemail.replies import Reply
from tests.relay.loopback import WAIT, Recorder, TlsPki, serving

BODY = b"Subject: test\r\n\r\n.a line that starts with a dot\r\nend\r\n"
STUFFED = b"Subject: test\r\n\r\n..a line that starts with a dot\r\nend\r\n"
_DEFAULTS = {"MAIL": "250 2.1.0 OK", "RCPT": "250 2.1.5 OK", "DATA": "354 Go ahead"}


@dataclass
class Script:
    """A server that answers each command from ``replies`` (by its whole line, else its
    verb; "." is the end of the data). Offering PIPELINING, it holds every reply until
    it has read DATA, so a client that waits for each reply never gets one; ``drop_after``
    replies of that group are sent before it closes the connection in the middle of the
    next one; ``hold`` sends nothing after EHLO. It records what each read brought."""

    replies: dict[str, str] = field(default_factory=dict)
    pipelining: bool = True
    drop_after: int | None = None
    hold: bool = False
    chunks: list[bytes] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def answer(self, line: str) -> str:
        verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
        return self.replies.get(line) or self.replies.get(verb) or _DEFAULTS.get(verb, "250 OK")

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        buffer, held, in_body = b"", list[str](), False
        try:
            while data := await reader.read(65536):
                self.chunks.append(data)
                buffer += data
                while True:
                    if in_body:  # the data, up to its "." line (RFC 5321 §4.1.1.4)
                        end = 0 if buffer.startswith(b".\r\n") else buffer.find(b"\r\n.\r\n") + 2
                        if end == 1:
                            break
                        self.bodies.append(buffer[:end])
                        buffer, in_body = buffer[end + 3 :], False
                        writer.write(self.answer(".").encode() + b"\r\n")
                        continue
                    line, sep, buffer = buffer.partition(b"\r\n")
                    if not sep:
                        buffer = line
                        break
                    step = self.step(line.decode(), held, writer)
                    if step is None:
                        return
                    in_body = step
        finally:
            writer.close()

    def step(self, line: str, held: list[str], writer: asyncio.StreamWriter) -> bool | None:
        """Answer (or hold the answer to) one command line; True: the data follows, None:
        the session ends."""
        self.lines.append(line)
        if line.startswith("EHLO"):
            extensions = "250-PIPELINING\r\n" if self.pipelining else ""
            writer.write(f"250-scripted\r\n{extensions}250 8BITMIME\r\n".encode())
            return False
        if self.hold:
            return False
        held.append(self.answer(line))
        if self.pipelining and line.split(" ", maxsplit=1)[0] in ("MAIL", "RCPT"):
            return False
        if self.drop_after is not None:
            sent = "".join(f"{reply}\r\n" for reply in held[: self.drop_after])
            writer.write(sent.encode() + b"250-partial")
            return None
        writer.write("".join(f"{reply}\r\n" for reply in held).encode())
        data = line == "DATA" and held[-1].startswith("3")
        held.clear()
        return None if line == "QUIT" else data


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    server = await asyncio.start_server(script.session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


def relay(script: Script, recipients: list[str], timeout: float = WAIT) -> dict[str, Reply]:
    """One message through ``send`` to a smarthost in plaintext (TLS: test_tls.py)."""

    async def run() -> dict[str, Reply]:
        async with scripted(script) as port:
            dest = Destination(
                "127.0.0.1", port, "gw.example", None, require_tls=False, timeout=timeout
            )
            return await send(dest, "alice@x.example", recipients, BODY)

    return asyncio.run(run())


def test_one_write_carries_mail_every_rcpt_and_data() -> None:
    """With PIPELINING offered, MAIL, each RCPT and DATA arrive in one read, and each
    recipient still gets its own 250, 450 or 550; the body is dot-stuffed on the wire."""
    script = Script(
        {"RCPT TO:<busy@y.example>": "450 4.2.1 Busy", "RCPT TO:<gone@y.example>": "550 5.1.1 No"}
    )
    results = relay(script, ["ok@y.example", "busy@y.example", "gone@y.example"])
    group = (
        b"MAIL FROM:<alice@x.example>\r\nRCPT TO:<ok@y.example>\r\n"
        b"RCPT TO:<busy@y.example>\r\nRCPT TO:<gone@y.example>\r\nDATA\r\n"
    )
    assert group in script.chunks
    assert script.bodies == [STUFFED]
    assert (results["ok@y.example"].code, results["ok@y.example"].ok) == (250, True)
    assert (results["busy@y.example"].status, results["busy@y.example"].temporary) == (
        "4.2.1",
        True,
    )
    assert (results["gone@y.example"].status, results["gone@y.example"].permanent) == (
        "5.1.1",
        True,
    )


def test_final_reply_applies_to_every_accepted_recipient() -> None:
    """A 554 after the pipelined body refuses the accepted recipients, not the refused one."""
    script = Script({"RCPT TO:<gone@y.example>": "550 5.1.1 No", ".": "554 5.7.1 Policy"})
    results = relay(script, ["a@y.example", "gone@y.example"])
    assert results["a@y.example"].status == "5.7.1"
    assert results["gone@y.example"].status == "5.1.1"


def test_every_rcpt_refused_but_data_354_sends_a_lone_dot() -> None:
    """RFC 2920 §3.1: DATA's 354 after every RCPT was refused gets a lone "." (an empty
    message, no body); the recipients keep their RCPT replies."""
    script = Script({"RCPT": "550 5.1.1 No", ".": "554 5.5.1 No valid recipients"})
    results = relay(script, ["a@y.example", "b@y.example"])
    assert script.bodies == [b""]
    assert {reply.status for reply in results.values()} == {"5.1.1"}
    assert script.lines[-1] == "QUIT"


def test_every_rcpt_refused_and_data_refused_sends_no_body() -> None:
    """A 554 to DATA after every RCPT was refused: nothing more of the message is sent."""
    script = Script({"RCPT": "450 4.2.1 Busy", "DATA": "554 5.5.1 No valid recipients"})
    results = relay(script, ["a@y.example"])
    assert script.bodies == []
    assert results["a@y.example"].status == "4.2.1"
    assert script.lines[-2:] == ["DATA", "QUIT"]


def test_mail_refused_gives_every_recipient_its_reply() -> None:
    """A 451 to MAIL is every recipient's Reply; the 503s to RCPT and DATA are read, not
    used, and no body is sent."""
    script = Script({"MAIL": "451 4.3.0 Try later", "RCPT": "503 5.5.1 No MAIL", "DATA": "503 No"})
    results = relay(script, ["a@y.example", "b@y.example"])
    assert {(r.code, r.status) for r in results.values()} == {(451, "4.3.0")}
    assert script.bodies == []
    assert script.lines[-1] == "QUIT"


def test_drop_in_the_middle_of_the_replies_is_a_relay_error() -> None:
    """The server closing after MAIL's reply, in the middle of RCPT's, fails the attempt as
    a whole (temporary for every recipient)."""
    with pytest.raises(RelayError) as caught:
        relay(Script(drop_after=1), ["a@y.example", "b@y.example"])
    assert caught.value.reason is RelayReason.PROTOCOL


def test_no_reply_within_the_timeout_is_a_relay_error() -> None:
    """A server that never answers the group: the attempt times out (temporary)."""
    with pytest.raises(RelayError) as caught:
        relay(Script(hold=True), ["a@y.example"], timeout=0.3)
    assert caught.value.reason is RelayReason.TIMEOUT


def test_unsafe_recipient_is_never_written() -> None:
    """An address that could inject a command gets 553 5.1.3 and is not in the group."""
    script = Script()
    results = relay(script, ["ok@y.example", "x@y.example>\r\nRSET"])
    assert results["x@y.example>\r\nRSET"].status == "5.1.3"
    assert results["ok@y.example"].ok
    assert not any("RSET" in line for line in script.lines)


def test_no_pipelining_when_not_offered() -> None:
    """Without PIPELINING in EHLO each command waits for its reply: one command per read."""
    script = Script({"RCPT TO:<gone@y.example>": "550 5.1.1 No"}, pipelining=False)
    results = relay(script, ["ok@y.example", "gone@y.example"])
    commands = [chunk for chunk in script.chunks if not chunk.startswith(b"Subject")]
    assert all(chunk.count(b"\r\n") == 1 for chunk in commands), commands
    assert results["ok@y.example"].ok and results["gone@y.example"].permanent
    assert script.bodies == [STUFFED]


def test_pooled_tls_sessions_pipeline_on_uvloop(tls_pki: TlsPki) -> None:
    """On uvloop's TLS transport (the node's loop) a pinned, reused session pipelines two
    messages and gives the session back to aiosmtplib between them."""
    handler = Recorder(rcpt_replies={"gone@y.example": "550 5.1.1 No"}, pipelining=True)

    async def run() -> list[dict[str, Reply]]:
        pool = RelayPool()
        async with serving(handler, tls=tls_pki.context(tls_pki.server)) as port:
            dest = Destination("127.0.0.1", port, "gw.example", tls_pki.peer(), timeout=WAIT)
            try:
                first = await send(dest, "a@x.example", ["b@y.example", "gone@y.example"], BODY)
                second = await send(dest, "a@x.example", ["c@y.example"], BODY, pool=pool)
                third = await send(dest, "a@x.example", ["d@y.example"], BODY, pool=pool)
            finally:
                await pool.close_all()
        return [first, second, third]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        first, second, third = runner.run(run())
    assert first["b@y.example"].ok and first["gone@y.example"].permanent
    assert second["c@y.example"].ok and third["d@y.example"].ok
    assert handler.connections == 2  # one for the message without a pool, one pooled
    assert [r.content for r in handler.received] == [BODY] * 3
    assert all(r.tls for r in handler.received)
