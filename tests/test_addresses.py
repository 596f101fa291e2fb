"""The strict author parser: one From: mailbox or a typed refusal (THREATS.md E)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemail.addresses import AddressError, AddressReason, Mailbox, author, parse_mailbox

FUZZ = settings(max_examples=300, deadline=None)


def _message(*fields: bytes) -> bytes:
    return b"".join(f + b"\r\n" for f in fields) + b"\r\nbody\r\n"


def _refused(value: bytes, *, smtputf8: bool = False) -> AddressReason:
    with pytest.raises(AddressError) as caught:
        parse_mailbox(value, smtputf8=smtputf8)
    return caught.value.reason


def test_plain_author_is_read() -> None:
    """A normal From: gives the mailbox, with the domain in lower case."""
    mailbox = author(_message(b"From: Alice Example <alice@Agency.GOVT.nz>", b"To: b@x.nz"))
    assert mailbox == Mailbox("alice", "agency.govt.nz", "Alice Example")
    assert mailbox.address == "alice@agency.govt.nz"


def test_two_from_fields_are_refused() -> None:
    """Two From: fields are refused, not resolved to the first as Python's email does."""
    message = _message(b"From: alice@agency.govt.nz", b"FROM: boss@ministry.govt.nz")
    with pytest.raises(AddressError) as caught:
        author(message)
    assert caught.value.reason is AddressReason.MANY_FROM


def test_missing_from_is_refused() -> None:
    """A message without From: has no author."""
    with pytest.raises(AddressError) as caught:
        author(_message(b"To: b@x.nz"))
    assert caught.value.reason is AddressReason.NO_FROM


def test_sender_field_is_refused() -> None:
    """A Sender: field means author and submitter differ, which the profile does not allow."""
    with pytest.raises(AddressError) as caught:
        author(_message(b"From: alice@agency.govt.nz", b"Sender: bob@agency.govt.nz"))
    assert caught.value.reason is AddressReason.SENDER_FIELD


def test_display_name_never_becomes_the_address() -> None:
    """A display name that looks like an address is only a display name."""
    mailbox = parse_mailbox(b'"boss@agency.govt.nz" <evil@x.nz>')
    assert mailbox.address == "evil@x.nz"
    assert mailbox.display == "boss@agency.govt.nz"


def test_unquoted_address_in_display_name_is_refused() -> None:
    """An unquoted @ before the angle-addr is not a display name: refused, not guessed."""
    assert _refused(b"boss@agency.govt.nz <evil@x.nz>") is AddressReason.SYNTAX


@pytest.mark.parametrize(
    "value",
    [
        b"<=?utf-8?q?boss?=@agency.govt.nz>",
        b"Boss <boss@=?utf-8?b?YWdlbmN5LmdvdnQubno=?=>",
        b"=?utf-8?q?boss=40agency.govt.nz?=@x.nz",
        b"<boss(=?utf-8?q?x?=)@agency.govt.nz>",
    ],
)
def test_encoded_words_inside_the_address_are_refused(value: bytes) -> None:
    """An RFC 2047 encoded-word inside the address could decode to another address."""
    assert _refused(value) is AddressReason.ENCODED_WORD


def test_encoded_words_in_the_display_name_are_decoded() -> None:
    """Encoded-words in the display name are decoded for people; adjacent ones join."""
    mailbox = parse_mailbox(b"=?utf-8?q?J=C3=BCrgen?= =?utf-8?q?_M=C3=BCller?= <jm@x.nz>")
    assert mailbox.display == "Jürgen Müller"
    assert mailbox.address == "jm@x.nz"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"Agency: alice@agency.govt.nz;", AddressReason.GROUP),
        (b"undisclosed-recipients:;", AddressReason.GROUP),
        (b"alice@agency.govt.nz, boss@agency.govt.nz", AddressReason.MANY_MAILBOXES),
        (b"A <alice@agency.govt.nz>, B <boss@agency.govt.nz>", AddressReason.MANY_MAILBOXES),
        (b"<@relay.nz:alice@agency.govt.nz>", AddressReason.SYNTAX),
        (b'"alice smith"@agency.govt.nz', AddressReason.SYNTAX),
        (b"alice@[192.0.2.1]", AddressReason.SYNTAX),
        (b"alice . smith@agency.govt.nz", AddressReason.SYNTAX),
        (b"alice@agency..govt.nz", AddressReason.SYNTAX),
        (b"alice@localhost", AddressReason.SYNTAX),
        (b"alice@-agency.govt.nz", AddressReason.SYNTAX),
        (b"alice@agency_x.govt.nz", AddressReason.SYNTAX),
        (b"<alice@agency.govt.nz> trailing", AddressReason.SYNTAX),
        (b"<>", AddressReason.SYNTAX),
        (b"alice@agency.govt.nz (unterminated", AddressReason.SYNTAX),
        (b"", AddressReason.SYNTAX),
        (b"a" * 65 + b"@agency.govt.nz", AddressReason.SYNTAX),
    ],
)
def test_anything_but_one_simple_mailbox_is_refused(value: bytes, reason: AddressReason) -> None:
    """Groups, lists, routes, quoted local parts and other rare forms are refused."""
    assert _refused(value) is reason


def test_comments_and_folding_are_dropped() -> None:
    """RFC 5322 comments (nested too) and folded lines do not change the mailbox."""
    message = _message(b"From: Alice (the (real) one)\r\n <alice (x) @ (y) agency.govt.nz>")
    assert author(message) == Mailbox("alice", "agency.govt.nz", "Alice")


def test_header_only_message_and_lf_line_ends_are_read() -> None:
    """A message without a body, or with LF line ends, still has its author read."""
    assert author(b"From: a@agency.govt.nz\r\n").address == "a@agency.govt.nz"
    assert author(b"Subject: x\nFrom: a@agency.govt.nz\n\nbody\n").address == "a@agency.govt.nz"


def test_non_ascii_without_smtputf8_is_refused() -> None:
    """8-bit header text is refused unless the message came with SMTPUTF8."""
    assert _refused("jürgen@bücher.de".encode()) is AddressReason.NON_ASCII


def test_idn_domain_becomes_a_labels() -> None:
    """With SMTPUTF8 the domain is NFC-normalised and given as IDNA 2008 A-labels."""
    mailbox = parse_mailbox("Jürgen <jürgen@Bu\u0308cher.de>".encode(), smtputf8=True)
    assert mailbox == Mailbox("jürgen", "xn--bcher-kva.de", "Jürgen")
    assert parse_mailbox("a@faß.de".encode(), smtputf8=True).domain == "xn--fa-hia.de"


@pytest.mark.parametrize(
    "address",
    ["a@p\u0430ypal.com", "p\u0430ypal@x.nz", "a@\u03bfpen.nz", "a@xn--pypal-4ve.com"],
)
def test_mixed_scripts_in_a_label_are_refused(address: str) -> None:
    """Latin mixed with Cyrillic or Greek in one label is a homoglyph attack: refused."""
    assert _refused(address.encode(), smtputf8=True) is AddressReason.MIXED_SCRIPT


def test_japanese_mixed_scripts_are_allowed() -> None:
    """Han with kana, the normal mix of Japanese writing, is one script family."""
    assert parse_mailbox("a@日本のカタカナ.jp".encode(), smtputf8=True).domain.startswith("xn--")


@pytest.mark.parametrize("invisible", ["\u200b", "\u200d", "\u2060", "\ufeff", "\u202e"])
def test_invisible_characters_are_refused(invisible: str) -> None:
    """Zero-width and direction-control characters never appear in an accepted address."""
    assert _refused(f"a@x{invisible}y.nz".encode(), smtputf8=True) is AddressReason.SYNTAX
    assert _refused(f"a{invisible}b@xy.nz".encode(), smtputf8=True) is AddressReason.SYNTAX


def test_punycode_labels_are_checked_like_unicode_ones() -> None:
    """A valid A-label passes unchanged; a non-canonical or undecodable one is refused."""
    assert parse_mailbox(b"a@xn--bcher-kva.de").domain == "xn--bcher-kva.de"
    assert parse_mailbox(b"a@XN--BCHER-KVA.de").domain == "xn--bcher-kva.de"
    assert _refused(b"a@xn--abc.de") is AddressReason.SYNTAX
    assert _refused(b"a@ab--cd.de") is AddressReason.SYNTAX


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_author_raises_only_address_errors_on_any_bytes(data: bytes, smtputf8: bool) -> None:
    """Arbitrary bytes give a mailbox or an AddressError, never another exception."""
    with contextlib.suppress(AddressError):
        author(data, smtputf8=smtputf8)


_PIECES = st.sampled_from(
    ["a", "b", "@", ".", "<", ">", ",", ":", ";", '"', "\\", "(", ")", " ", "\r\n ", "=?",
     "?=", "xn--", "-", "[", "]", "\u0430", "\u200b", "é", "日", "\x00", "ß", "\U0001f600"]
)  # fmt: skip


@FUZZ
@given(st.lists(_PIECES, max_size=40), st.booleans())
def test_mailbox_parser_raises_only_address_errors(pieces: list[str], smtputf8: bool) -> None:
    """Address-shaped noise gives a mailbox or an AddressError, never another exception."""
    try:
        mailbox = parse_mailbox(("".join(pieces)).encode(), smtputf8=smtputf8)
    except AddressError:
        return
    assert mailbox.domain.isascii() and mailbox.domain == mailbox.domain.lower()
    assert "=?" not in mailbox.address
