"""The findings of one case: its SMTP reply and what came back for it, against what a
conforming gateway does (:mod:`securemail.conformance.cases`).

Pure: replies, opened answers and the tester's trust in, findings out (through ``add``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from securemail.conformance.answers import Answer, Opener, notice_problems
from securemail.conformance.cases import Case
from securemail.errors import SecureMailError
from securemail.relay.client import RelayError
from securemail.replies import Reply
from securemail.smime import verify_receipt

Add = Callable[[str, str, bool, str], None]


@dataclass(frozen=True)
class Judge:
    """What every case is judged with: where findings go, the tester's side, the time."""

    add: Add
    opener: Opener
    now: datetime
    wait: float
    receipts_seen: bool  # the gateway receipted a valid case: its silence can be trusted

    def case(self, case: Case, reply: Reply | RelayError | None, answers: list[Answer]) -> None:
        """The findings of ``case`` from its SMTP reply and the answers that came back."""
        if not isinstance(reply, Reply):
            for requirement in case.requirements:
                self.add(requirement, case.name, False, f"not run: {reply}")
            return
        said = f"{'DATA' if reply.ok else 'SMTP'} answered {reply.code} {reply.status}".strip()
        if case.expect == "refused-at-data":
            self.add(case.requirements[0], case.name, not reply.ok, said)
        elif case.expect == "receipt":
            self._receipt(case, reply, said, answers)
        elif case.expect == "notice":
            self._notice(case, reply, said, answers)
        else:
            self._refusal(case, reply, said, answers)

    def _receipt(self, case: Case, reply: Reply, said: str, answers: list[Answer]) -> None:
        receipts = [a for a in answers if a.kind == "receipt"]
        taken = reply.ok and bool(receipts)
        detail = f"{said}; {len(receipts)} receipt(s) within {self.wait:.0f} s"
        for requirement in ("SM-RECV-1", "SM-RECV-5", "SM-RCPT-1"):
            self.add(requirement, case.name, taken, detail)
        if case.downgrade and "SM-DIR-5" in case.requirements:
            self._downgrade(case, receipts)
        for answer in receipts:
            self._bound(case, answer)

    def _downgrade(self, case: Case, receipts: list[Answer]) -> None:
        """SM-DIR-5: a CBC message is answered as the directory says, not in CBC."""
        wanted = self.opener.wanted_cipher()
        if not receipts:
            self.add("SM-DIR-5", case.name, False, "no receipt: cannot tell how it answers")
        for answer in receipts:
            encryption = answer.opened.encryption
            cipher = "" if encryption is None else encryption.content_encryption
            self.add(
                "SM-DIR-5",
                case.name,
                cipher == wanted,
                f"sent CBC, answered with {cipher} (directory says {wanted})",
            )

    def _bound(self, case: Case, answer: Answer) -> None:
        assert case.basis is not None  # noqa: S101 (a receipt case asks for a receipt)
        try:
            verified = verify_receipt(
                answer.receipt, case.basis, trust=self.opener.trust, now=self.now
            )
            domain = case.recipient.rpartition("@")[2]
            bound = self.opener.directory.may_sign_for(verified.signer, domain)
            evidence = "bound to our signature" + ("" if bound else ", signer not the member's")
            self.add("SM-RCPT-2", case.name, bound, evidence)
        except SecureMailError as error:
            self.add("SM-RCPT-2", case.name, False, f"receipt refused: {error.reason}")
        right = answer.recipient.lower() == case.recipient.lower()
        self.add("SM-RCPT-3", case.name, right, f"evidence names {answer.recipient}")

    def _notice(self, case: Case, reply: Reply, said: str, answers: list[Answer]) -> None:
        """A verified message to a mailbox the member does not have: refused in the session,
        delivered (a catch-all, receipted), or taken and answered with a notice of §13."""
        if not reply.ok:
            self.add("SM-FAIL-3", case.name, True, f"refused in the session: {said}")
            return
        found = [a for a in answers if a.kind == "notice"]
        if any(a.kind == "receipt" for a in answers):
            self.add("SM-FAIL-3", case.name, True, f"{said}; delivered and receipted")
        elif not found:
            self.add(
                "SM-FAIL-3",
                case.name,
                False,
                f"{said}; neither a receipt nor a notice within {self.wait:.0f} s",
            )
        for notice in found:
            problems = notice_problems(notice.opened.content, case.marker)
            quoted = [p for p in problems if p.startswith("quotes")]
            form = [p for p in problems if not p.startswith("quotes")]
            self.add(
                "SM-FAIL-3",
                case.name,
                not form,
                "; ".join(form) or f"signed, encrypted RFC 3464 notice, reason {notice.reason}",
            )
            self.add(
                "SM-FAIL-2",
                case.name,
                not quoted,
                "; ".join(quoted) or "quotes only signed routing fields",
            )

    def _refusal(self, case: Case, reply: Reply, said: str, answers: list[Answer]) -> None:
        """A message the gateway must not deliver: refused in the session, or taken and then
        kept (quarantined) without a receipt and, since its signer is not verified to own
        its senders, without a notice (profile §13, SM-FAIL-1). Silence counts as a refusal
        only if the same gateway receipted the valid cases: a gateway that answers nothing
        proves nothing."""
        check, *failures = case.requirements
        if not reply.ok:
            self.add(check, case.name, True, f"refused: {said}")
            for requirement in failures:
                self.add(requirement, case.name, True, f"refused in the session: {said}")
            return
        found = [a for a in answers if a.kind == "notice"]
        if any(a.kind == "receipt" for a in answers):
            self.add(check, case.name, False, f"{said}; receipted: the gateway delivered it")
        elif not self.receipts_seen:
            detail = f"{said}; cannot tell: the gateway receipted none of the valid cases either"
            self.add(check, case.name, False, detail)
        else:
            self.add(check, case.name, True, f"{said}; kept without a receipt")
        if found:
            detail = f"a notice ({found[0].reason or 'no reason'}) to a sender it could not verify"
            self.add("SM-FAIL-1", case.name, False, detail)
        else:
            self.add("SM-FAIL-1", case.name, True, "no notice to an unverified sender")
        for notice in found:
            quoted = case.marker.encode() in notice.opened.content
            evidence = "quotes the refused body" if quoted else "quotes no body"
            self.add("SM-FAIL-2", case.name, not quoted, evidence)
