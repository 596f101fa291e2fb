"""The SQL statements a block of test code runs on any engine, by SQLAlchemy's events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements() -> Iterator[list[str]]:
    """The statements run inside the block (BEGIN excepted), upper-cased, in order."""
    seen: list[str] = []

    def note(conn: Any, cursor: Any, text: str, *rest: Any) -> None:
        if not text.lstrip().upper().startswith("BEGIN"):
            seen.append(" ".join(text.split()).upper())

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)
