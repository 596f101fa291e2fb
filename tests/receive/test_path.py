"""The plain-path fast path gives exactly what aiosmtpd's parser and as_written give."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from securemail.receive.path import as_written, plain_path

ATEXT = "abcXYZ059!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=8)
dot_strings = st.lists(atoms, min_size=1, max_size=4).map(".".join)
# Anything a client might put in a path or after it: dots, quotes, routes, comments, spaces.
NOISE = ATEXT + '.@<>()[]":;, \t\\'
noisy = st.text(alphabet=NOISE, max_size=12)
parameters = st.sampled_from(["", " ", " SIZE=4096", "SIZE=1", "  BODY=8BITMIME X", "\tA"])


def _parser(arg: str) -> tuple[str | None, str | None]:
    """aiosmtpd's own parse (its local part limit is 0, as the listener's), then as_written."""
    return as_written(arg, *SMTP._getaddr(SMTP.__new__(SMTP), arg))


@given(dot_strings, dot_strings, parameters)
def test_plain_paths_take_the_fast_path_with_the_parsers_answer(
    local: str, domain: str, rest: str
) -> None:
    """Every <dot-string@dot-string> is read by the regex, with the parser's result."""
    arg = f"<{local}@{domain}>{rest}"
    assert plain_path(arg) is not None
    assert plain_path(arg) == _parser(arg)


@given(noisy, noisy, noisy)
def test_any_path_the_regex_reads_the_parser_reads_alike(
    local: str, domain: str, rest: str
) -> None:
    """Wherever the fast path answers at all, on any input, it answers as the parser does."""
    for arg in (f"<{local}@{domain}>{rest}", f"<{local}>{rest}", f"{local}@{domain}{rest}"):
        fast = plain_path(arg)
        if fast is not None:
            assert fast == _parser(arg)


@pytest.mark.parametrize(
    "arg",
    [
        '<"bob@ministry.govt.nz"@agency.govt.nz>',  # quoted local part
        "<@relay.example:bob@ministry.govt.nz>",  # source route
        "<bob@[192.0.2.1]>",  # address literal
        "<bob@agency.govt.nz>(comment)",
        "<bob..x@agency.govt.nz>",
        "<.bob@agency.govt.nz>",
        "<>",
        "bob@agency.govt.nz",
    ],
)
def test_other_forms_take_the_parser(arg: str) -> None:
    """Quoted local parts, source routes, literals, comments, odd dots and <> are the parser's."""
    assert plain_path(arg) is None


def test_percent_hack_is_kept_as_written() -> None:
    """A %-hack path is read as written, so the envelope check still sees and refuses it."""
    arg = "<bob%ministry.govt.nz@agency.govt.nz> SIZE=10"
    assert plain_path(arg) == ("bob%ministry.govt.nz@agency.govt.nz", "SIZE=10") == _parser(arg)
