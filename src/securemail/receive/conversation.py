"""The checks of one SMTP conversation, as aiosmtpd handler hooks: envelope, limits, DATA.

Each hook runs the checks common to every listener, then the listener's :class:`Gate`,
and answers with the first refusal or accepts the step. At the end of DATA the message is
normalised (CRLF line ends), checked (hop count, the gate's content rule), given our
``Received:`` field and handed to :class:`securemail.receive.model.Admit`, whose reply is
the answer to DATA.

Security: addresses, the HELO name and the message are untrusted. Refusals sent to the
client are generic; the reason and detail go to the log, which never holds message
content. The answer to DATA is never 2xx unless ``Admit`` returned it (a raised error is
451 4.3.0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from securemail.accounts.assurance import Submitted
from securemail.accounts.model import Account
from securemail.receive.envelope import check_envelope_address
from securemail.receive.message import (
    check_hops,
    header_section,
    normalise_line_ends,
    trace_field,
    with_protocol,
)
from securemail.receive.model import (
    Admit,
    ListenerName,
    ListenerSettings,
    Received,
    ReceiveReason,
)
from securemail.replies import Reply

log = logging.getLogger("securemail.receive")

Authenticate = Callable[[str, bytes], bool]


@dataclass(frozen=True)
class Proved:
    """Who a client proved to be with AUTH: the user name and, on submission, its account."""

    user: str
    account: Account | None = None
    assurance: Submitted | None = None  # on submission: how the holder logged in


class LogIn(Protocol):
    """Checks the credentials of one AUTH PLAIN or LOGIN command.

    Contract: returns :class:`Proved` to grant, or the refusal to send (5xx, or 4xx for a
    temporary failure) with reason and detail for the log. ``user`` is the decoded
    authentication identity; ``password`` is as the client sent it. May take time (a
    password hash): it must not block the event loop, and it must not raise.
    """

    async def __call__(self, ip: str, user: str, password: bytes) -> Proved | Reply: ...


@dataclass(frozen=True)
class Client:
    """Who is talking: the client's IP address and, after AUTH, the user it proved.

    ``account`` is the mailbox account behind ``auth_user`` on the submission listener.
    """

    ip: str
    auth_user: str | None
    account: Account | None = None
    assurance: Submitted | None = None


class Gate(Protocol):
    """What makes a listener a peer, relay or ordinary listener: its policy at each step.

    Contract: the ``refuse_*`` methods are pure and fast; each returns ``None`` to go on,
    or the reply to send (with reason and detail for the log). Addresses given to them
    have passed :func:`check_envelope_address`; ``mail_from`` is "" for ``<>``.
    """

    @property
    def listener(self) -> ListenerName: ...

    @property
    def requires_tls(self) -> bool:
        """Only STARTTLS, EHLO, NOOP and QUIT before TLS (RFC 3207 §4); others get 530."""

    @property
    def log_in(self) -> LogIn | None:
        """The check behind AUTH PLAIN/LOGIN (offered only over TLS), or None: no AUTH."""

    @property
    def member_of(self) -> Callable[[bytes], str | None] | None:
        """For a listener only members may use (the peer listener): the member whose
        directory entry pins the key of a TLS client certificate (DER), or None. Asked at
        the first MAIL; None here: the listener does not identify members."""

    def refuse_client(self, ip: str) -> Reply | None:
        """At connect, before the greeting."""

    def refuse_sender(self, client: Client, mail_from: str) -> Reply | None:
        """At MAIL FROM."""

    def refuse_recipient(self, mail_from: str, recipient: str) -> Reply | None:
        """At each RCPT TO, after the recipient limit."""

    def refuse_content(self, client: Client, header: bytes) -> Reply | None:
        """At the end of DATA, given the top-level header section (CRLF line ends)."""


class HoldsReplies(Protocol):
    """The session as the MAIL hook sees it: it may hold replies for a pipelined group."""

    def write_held(self) -> None:
        """Write now the replies held for the rest of the group (RFC 2920 §3.2)."""


def client_ip(session: Session | None) -> str:
    """The client's IP address (aiosmtpd's ``peer`` is the socket address tuple)."""
    peer = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def client_certificate(session: Any) -> bytes | None:
    """The DER certificate the TLS client presented (verified by the handshake), if any."""
    ssl_object = session.ssl.get("ssl_object") if session is not None and session.ssl else None
    der = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
    return der or None


def log_refusal(listener: str, ip: str, reply: Reply) -> None:
    """One log line per refusal: code, reason and detail; never message content."""
    log.info("%s %s refused %d %s: %s", listener, ip, reply.code, reply.reason, reply.detail)


def _client(session: Session) -> Client:
    proved = session.auth_data if session.authenticated else None
    if isinstance(proved, Proved):
        return Client(client_ip(session), proved.user, proved.account, proved.assurance)
    return Client(client_ip(session), None)


def _tls_version(session: Session) -> str | None:
    ssl_object = session.ssl.get("ssl_object") if session.ssl else None
    return None if ssl_object is None else str(ssl_object.version())


def _sender(envelope: Envelope) -> str:
    return "" if envelope.mail_from in (None, "<>") else str(envelope.mail_from)


class Conversation:
    """aiosmtpd handler: the common checks, then the gate's, at EHLO, MAIL, RCPT and DATA."""

    def __init__(self, settings: ListenerSettings, gate: Gate, admit: Admit) -> None:
        self.gate = gate
        self._settings = settings
        self._admit = admit

    def _refuse(self, session: Session, reply: Reply) -> str:
        log_refusal(self.gate.listener, client_ip(session), reply)
        return reply.line()

    async def handle_EHLO(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's EHLO lines, with PIPELINING (RFC 2920) and AUTH only where a login is
        offered, as one reply string: the lines go out in one write (one system call and,
        after STARTTLS, one TLS record) instead of one each."""
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has the hook
        lines = [responses[0], "250-PIPELINING", *responses[1:]]
        if self.gate.log_in is None:
            lines = [line for line in lines if not line[4:].startswith("AUTH")]
        return ["\r\n".join(lines)]

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: HoldsReplies,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        sender = "" if address == "<>" else address
        refusal = check_envelope_address(sender) if sender else None
        refusal = refusal or self.gate.refuse_sender(_client(session), sender)
        if refusal:
            return self._refuse(session, refusal)
        if self._settings.inflow is not None:
            # At most in_flow_delay (receive.flow); replies held for the group go out first.
            await self._settings.inflow.pause(server.write_held)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._refuse_recipient(envelope, address)
        if refusal:
            return self._refuse(session, refusal)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    def _refuse_recipient(self, envelope: Envelope, address: str) -> Reply | None:
        limit = self._settings.max_recipients
        if len(envelope.rcpt_tos) >= limit:
            # RFC 5321 §4.5.3.1.10: 452, the client sends the rest in another transaction.
            detail = f"more than {limit} recipients"
            return Reply(
                452, "4.5.3", "Too many recipients", ReceiveReason.TOO_MANY_RECIPIENTS, detail
            )
        refusal = check_envelope_address(address)
        return refusal or self.gate.refuse_recipient(_sender(envelope), address)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        body = normalise_line_ends(envelope.original_content or b"")
        header = header_section(body)
        refusal = check_hops(header) or self.gate.refuse_content(_client(session), header)
        if refusal:
            return self._refuse(session, refusal)
        received = self._received(session, envelope, body)
        reply = await self._admit_safely(received)
        if not reply.ok:
            return self._refuse(session, reply)
        log.info(
            "%s %s accepted %d recipients, %d octets%s",
            self.gate.listener,
            received.client_address,
            len(received.recipients),
            len(received.body),
            "" if received.auth_user is None else f", from user {received.auth_user!r}",
        )
        return reply.line()

    def _received(self, session: Session, envelope: Envelope, body: bytes) -> Received:
        client = _client(session)
        tls_version = _tls_version(session)
        helo = session.host_name or ""
        protocol = with_protocol(
            extended=session.extended_smtp,
            tls=tls_version is not None,
            authenticated=client.auth_user is not None,
        )
        trace = trace_field(helo, client.ip, self._settings.hostname, protocol, datetime.now(UTC))
        return Received(
            listener=self.gate.listener,
            client_address=client.ip,
            helo=helo,
            mail_from=_sender(envelope),
            recipients=tuple(envelope.rcpt_tos),
            body=trace + body,
            tls=tls_version is not None,
            tls_version=tls_version,
            auth_user=client.auth_user,
            assurance=client.assurance,
            member=self._member(session),
        )

    def _member(self, session: Session) -> str | None:
        """The member the client's certificate names (peer listener), else None."""
        member_of = self.gate.member_of
        certificate = client_certificate(session)
        return None if member_of is None or certificate is None else member_of(certificate)

    async def _admit_safely(self, received: Received) -> Reply:
        try:
            return await self._admit(received)
        except Exception as error:  # any failure to store is temporary: never 250
            # Only the type: a database error's text can quote the message it was storing.
            detail = f"admit raised {type(error).__qualname__}"
            return Reply(451, "4.3.0", "Try again later", ReceiveReason.ADMIT_FAILED, detail)

    async def handle_exception(self, error: Exception) -> str:
        """An unexpected error in a hook: 451, and only the error's type in the log."""
        log.warning("%s session error %s", self.gate.listener, type(error).__qualname__)
        return Reply(451, "4.3.0", "Try again later", ReceiveReason.INTERNAL).line()
