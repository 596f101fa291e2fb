"""Queue values: a new message is checked and its envelope normalised before it is stored."""

from __future__ import annotations

import pytest

from securemail.queue import Direction, Disposition, Entry, NewMessage, Recipient, State
from tests.queue.conftest import NOW, message


def test_recipients_deduplicated_case_insensitively() -> None:
    """The first spelling of each recipient is kept, in envelope order."""
    new = message("Bob@M.nz", "carol@m.nz", "bob@m.nz", "CAROL@M.NZ")
    assert new.recipients == ("Bob@M.nz", "carol@m.nz")


@pytest.mark.parametrize(
    ("recipients", "kind", "error"),
    [((), "mail", "at least one"), (("",), "mail", "empty"), (("a@m.nz",), "dsn", "kind")],
)
def test_bad_messages_are_refused(recipients: tuple[str, ...], kind: str, error: str) -> None:
    """A message without recipients, with an empty one, or of an unknown kind is refused."""
    with pytest.raises(ValueError, match=error):
        NewMessage(Direction.INBOUND, "org", "", recipients, b"", "local", kind=kind)


def test_pending_lists_only_pending_recipients() -> None:
    """An entry's pending() is what is left to deliver, in envelope order."""
    people = [
        Recipient(address, disposition, 1, None, None, NOW)
        for address, disposition in [
            ("a@m.nz", Disposition.PENDING),
            ("b@m.nz", Disposition.DELIVERED),
            ("c@m.nz", Disposition.BOUNCED),
            ("d@m.nz", Disposition.PENDING),
        ]
    ]
    entry = Entry(
        "id", Direction.OUTBOUND, State.DEFERRED, "mail", "org", "", None, "local", None, 1,
        NOW, NOW, 1, None, None, False, tuple(people),
    )  # fmt: skip
    assert entry.pending() == ("a@m.nz", "d@m.nz")
