"""Prepared statements: a constant statement compiled once per dialect, run on the driver.

Theory of operation. ``Connection.execute`` builds, for every execution, an execution
context, the parameters (``construct_params``, expanding ``IN`` lists), a cursor result
and its row proxies; on the queue's message path that was more Python than the database's
own work (docs/performance.md). A :class:`Prepared` statement is compiled by SQLAlchemy
once per dialect (and, for INSERT and UPDATE, per set of parameter names: they decide the
columns), into its SQL text and the order of its parameters with their bind processors.
Each execution then only puts the values in that order, through the same processors
(``UtcDateTime``, SQLite's DATETIME text, booleans), runs the text on the DBAPI cursor of
the caller's connection, inside the caller's transaction, and reads the rows as tuples
through the same result processors (named tuples: ``row.id`` as before). On PostgreSQL
the statements of a checkout share one cursor of the connection's (a new psycopg cursor
looks its adapters up again), closed with its last rows when the connection goes back to
the pool (``forget_cursor``, the engine's check-in event); SQLite's cursors are one a
statement.

What stays SQLAlchemy's: the SQL text and every type's conversion (compiled by it), the
connection, its transaction, BEGIN and COMMIT and their events. Listeners of
``before_cursor_execute`` (echo, statement counting) still see every statement; a driver
error still comes as SQLAlchemy's DBAPIError (parameters hidden), which
:func:`securemail.storage.engine.transaction` turns into StorageError UNAVAILABLE.

Not supported, refused when compiled: columns with Python-side defaults (the statement
must be given every value) and post-compiled parameters other than expanding ones.

Security: values only ever travel as bound parameters; an expanding list becomes one
placeholder per value, never text.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Update
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
_MAX_TEXTS = 256  # SQL texts kept per form, by the lengths of its expanding lists
_CURSOR = "securemail_cursor"  # in a pooled connection's info: the cursor it keeps


@dataclass(frozen=True)
class _Slot:
    """One placeholder: which value goes there and how it is converted."""

    name: str  # the placeholder's name in the compiled SQL
    key: str | None  # the caller's parameter, or None: a literal of the statement
    value: Any  # the literal's value, or the parameter's when the caller gives none
    required: bool  # the caller must give the parameter
    process: Processor
    expanding: bool


@dataclass
class _Form:
    """A statement compiled for one dialect (and one set of parameter names)."""

    text: str
    positional: bool
    slots: tuple[_Slot, ...]
    row: Any  # the named tuple class of a result row, or None
    readers: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, result processor)
    texts: dict[tuple[int, ...], str]  # by the lengths of the expanding lists

    def sql(self, lengths: tuple[int, ...]) -> str:
        """The SQL text with each expanding list given one placeholder per value."""
        if not lengths:
            return self.text
        found = self.texts.get(lengths)
        if found is None:
            found = self.text
            expanding = (s for s in self.slots if s.expanding and s.key is not None)
            for slot, n in zip(expanding, lengths, strict=True):
                if self.positional:
                    marks = ", ".join(["?"] * n)
                else:
                    marks = ", ".join(f"%({slot.name}_{i})s" for i in range(1, n + 1))
                found = found.replace(f"__[POSTCOMPILE_{slot.name}]", marks)
            if len(self.texts) < _MAX_TEXTS:
                self.texts[lengths] = found
        return found

    def values(self, params: Mapping[str, Any]) -> tuple[Any, tuple[int, ...]]:
        """The DBAPI parameters for ``params`` (a list or a dict, as the dialect binds),
        and the lengths of the expanding lists."""
        lengths: list[int] = []
        positional: list[Any] = []
        named: dict[str, Any] = {}
        for slot in self.slots:
            if slot.key is None:
                value = slot.value
            elif slot.required:
                value = params[slot.key]
            else:
                value = params.get(slot.key, slot.value)
            if slot.expanding and slot.key is not None:
                items = [v if slot.process is None else slot.process(v) for v in value]
                if not items:
                    raise ValueError(f"the list {slot.key!r} is empty")
                lengths.append(len(items))
                if self.positional:
                    positional += items
                else:
                    named |= {f"{slot.name}_{i}": v for i, v in enumerate(items, 1)}
                continue
            if slot.process is not None and not slot.expanding:
                value = slot.process(value)
            if self.positional:
                positional.append(value)
            else:
                named[slot.name] = value
        return (positional if self.positional else named), tuple(lengths)


class Prepared:
    """A constant statement, compiled once per dialect, executed on the DBAPI cursor.

    ``rows`` returns its result rows (named tuples), ``first`` the first or None, ``one``
    the first or NoResultFound, ``run``
    executes it (with a list of parameter dicts: once per dict, executemany) and returns
    the row count. Always inside a transaction of the caller's (see the module).
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_keys = isinstance(statement, Insert | Update)
        self._forms: dict[tuple[str, frozenset[str] | None], _Form] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[Any]:
        form, cursor = self._execute(conn, params or {})
        try:
            found = cursor.fetchall()
        finally:
            _release(conn, cursor)
        return _read(form, found)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any | None:
        form, cursor = self._execute(conn, params or {})
        try:
            found = cursor.fetchone()
        finally:
            _release(conn, cursor)
        return None if found is None else _read(form, [found])[0]

    def one(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first row; NoResultFound (as Result.one) when there is none."""
        found = self.first(conn, params)
        if found is None:
            raise NoResultFound("no row where one was required")
        return found

    def run(self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int:
        if isinstance(params, Mapping):
            _, cursor = self._execute(conn, params)
        else:
            if not params:
                return 0
            cursor = self._execute_many(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            _release(conn, cursor)

    def _form(self, dialect: Dialect, params: Mapping[str, Any]) -> _Form:
        key = (dialect.name, frozenset(params) if self._by_keys else None)
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = _compile(self.statement, dialect, key[1])
        return form

    def _execute(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Form, Any]:
        form = self._form(conn.dialect, params)
        values, lengths = form.values(params)
        text = form.sql(lengths)
        cursor = _cursor(conn)
        _announce(conn, cursor, text, values, many=False)
        try:
            cursor.execute(text, values)
        except conn.dialect.loaded_dbapi.Error as error:
            _discard(conn, cursor)
            raise _wrapped(conn, text, error) from error
        return form, cursor

    def _execute_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> Any:
        form = self._form(conn.dialect, params[0])
        if any(s.expanding and s.key is not None for s in form.slots):
            raise ValueError("an expanding list cannot be given to executemany")
        values = [form.values(p)[0] for p in params]
        cursor = _cursor(conn)
        _announce(conn, cursor, form.text, values, many=True)
        try:
            cursor.executemany(form.text, values)
        except conn.dialect.loaded_dbapi.Error as error:
            _discard(conn, cursor)
            raise _wrapped(conn, form.text, error) from error
        return cursor


def _cursor(conn: Connection) -> Any:
    """A cursor of the connection's: on PostgreSQL the one it keeps while checked out (a
    new psycopg cursor looks up its parameters' and columns' adapters again, some
    microseconds a statement); on SQLite a new one each time (cheap, and an unfinished
    one would hold its statement open)."""
    if conn.dialect.name != "postgresql":
        return conn.connection.cursor()
    info = conn.connection.info
    raw = conn.connection.dbapi_connection
    kept = info.get(_CURSOR)
    if kept is None or kept.closed or kept.connection is not raw:
        kept = info[_CURSOR] = conn.connection.cursor()
    return kept


def _release(conn: Connection, cursor: Any) -> None:
    """Done with ``cursor``'s rows: close it unless the connection keeps it."""
    if cursor is not conn.connection.info.get(_CURSOR):
        cursor.close()


def _discard(conn: Connection, cursor: Any) -> None:
    """Close ``cursor`` after an error, and no longer keep it."""
    if conn.connection.info.get(_CURSOR) is cursor:
        del conn.connection.info[_CURSOR]
    cursor.close()


def forget_cursor(dbapi_connection: Any, record: Any) -> None:
    """Pool check-in: close the cursor the connection kept, and with it the last rows it
    read (a claim's message bodies must not stay in an idle connection)."""
    kept = record.info.pop(_CURSOR, None)
    if kept is not None:
        kept.close()


def _announce(conn: Connection, cursor: Any, text: str, values: Any, *, many: bool) -> None:
    """Tell ``before_cursor_execute`` listeners, as Connection.execute would."""
    listeners = conn.dispatch.before_cursor_execute
    if listeners:
        for listener in listeners:
            listener(conn, cursor, text, values, None, many)


def _wrapped(conn: Connection, text: str, error: Exception) -> BaseException:
    """The driver's error as SQLAlchemy's (its parameters hidden: they may be a body)."""
    return DBAPIError.instance(
        text,
        None,
        error,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=True,
        dialect=conn.dialect,
    )


def _read(form: _Form, found: Sequence[Any]) -> list[Any]:
    if form.row is None:
        return list(found)
    if not form.readers:
        return [form.row._make(r) for r in found]
    rows = []
    for r in found:
        values = list(r)
        for index, process in form.readers:
            values[index] = process(values[index])
        rows.append(form.row._make(values))
    return rows


def _compile(statement: ClauseElement, dialect: Dialect, keys: frozenset[str] | None) -> _Form:
    many = isinstance(statement, Insert) and not statement._returning  # no implicit RETURNING
    compiled = statement.compile(
        dialect=dialect,
        column_keys=sorted(keys) if keys is not None else None,
        for_executemany=many,
    )
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a SQL statement: {type(statement).__name__}")
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise ValueError("a prepared statement cannot have Python-side column defaults")
    post = compiled.post_compile_params
    if any(not b.expanding for b in post) or compiled.literal_execute_params:
        raise ValueError("a prepared statement cannot have post-compiled parameters")
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    order = compiled.positiontup if dialect.positional else list(dict.fromkeys(binds))
    text = compiled.string
    slots = []
    for name in order or []:
        bind = binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.callable is not None:
            raise ValueError("a prepared statement cannot have a callable parameter")
        key = None if bind.key.startswith("%(") else bind.key  # None: anonymous, a literal
        if key is None and bind.expanding:  # a constant list: written out once, here
            values = [v if process is None else process(v) for v in bind.value or ()]
            marks = (
                ["?"] * len(values)
                if dialect.positional
                else [f"%({name}_{i})s" for i in range(1, len(values) + 1)]
            )
            text = text.replace(f"__[POSTCOMPILE_{name}]", ", ".join(marks))
            slots += [
                _Slot(f"{name}_{i}", None, v, False, None, False) for i, v in enumerate(values, 1)
            ]
            continue
        slots.append(_Slot(name, key, bind.value, bind.required, process, bind.expanding))
    columns = list(statement.exported_columns) if hasattr(statement, "exported_columns") else []
    row = namedtuple("Row", [c.key for c in columns], rename=True) if columns else None
    readers = []
    for index, column in enumerate(columns):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            readers.append((index, process))
    return _Form(text, dialect.positional, tuple(slots), row, tuple(readers), {})
