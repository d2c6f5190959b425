"""What every database engine shares: the :class:`Engine` description, query results and
errors, and the error classifier built from every registered engine's wordings.

An engine module (``querycraft/engines/<kind>.py``) builds one :class:`Engine` and registers
it (see :mod:`querycraft.engines`); the execution layer (:mod:`querycraft.db`), the schema
reader, the CSV loader and the config check read everything engine-specific from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import sqlalchemy

from querycraft.errors import QueryCraftError
from querycraft.sql import is_read_only_statement, split_statements

__all__ = [
    "ERROR_KINDS",
    "Engine",
    "ErrorKind",
    "QueryError",
    "QueryResult",
    "allowed_statement",
    "check_limits",
]

ErrorKind = Literal[
    "syntax", "no_such_table", "no_such_column", "ambiguous_column", "timeout", "refused", "other"
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)


@dataclass(frozen=True)
class QueryResult:
    """The outcome of a successful query.

    Attributes:
        columns: Column names, in the order the query returned them.
        rows: The rows, each a tuple of Python values.
        truncated: True when the query had more rows than were fetched.
        elapsed_s: Wall-clock seconds spent running the query and fetching its rows.
    """

    columns: list[str]
    rows: list[tuple]
    truncated: bool
    elapsed_s: float


class QueryError(Exception):
    """A query that could not run, with the kind of failure for error statistics.

    Attributes:
        kind: One of :data:`ERROR_KINDS`.
        message: What went wrong, as the database (or the read-only check) said it.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown query error kind {kind!r}; expected one of {ERROR_KINDS}")
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


# A server session hook: (DBAPI connection, schema or None, read_only) -> None.
SessionSetup = Callable[[Any, "str | None", bool], None]


@dataclass(frozen=True)
class Engine:
    """One database engine, as data: everything the rest of QueryCraft needs to know.

    Attributes:
        kind: ``db.kind``, the name of ``conf/db/<kind>.yaml`` and of the engine's module.
        dialect: The sqlglot dialect its SQL is checked, corrected and written in.
        prompt_name: How a prompt names the dialect ("PostgreSQL").
        sqlalchemy_names: The ``engine.dialect.name`` values of its SQLAlchemy dialects; the
            CSV loader and the schema reader, which see only a SQLAlchemy engine, find the
            Engine by them.
        is_server: False for a file opened in-process (SQLite); True for a server reached
            through SQLAlchemy with :attr:`driver` (the execution layer's ``ServerDatabase``).
        driver: The default SQLAlchemy drivername of the URL built from ``db.host`` etc.
        default_port: The port when ``db.port`` is not set.
        install: What to install when the driver is missing.
        error_patterns: Regular-expression alternatives, per error kind, for the engine's own
            wording of an error; :func:`querycraft.engines.classify_error` tries them all.
        connect_args: Driver connect arguments from ``db.connect_timeout_s``.
        session_setup: Run on every new DBAPI connection: the session's read-only guard (when
            ``read_only``) and the schema (search path / current schema / database).
        query_setup: Run before each query on its connection: a read-only transaction, the
            statement time limit (seconds) and, where the server has one, a row cap.
        query_teardown: Run after each query's rollback: undo session settings the query
            setup made that would otherwise apply to the next use of the pooled connection
            (the schema reader's catalogue queries among them).
        check_statement: Compile one statement without running it (raises the DBAPI error);
            None: ``EXPLAIN <statement>``.
        refuse: An engine-specific addition to the shared allow-list: the reason a statement
            must not run on this engine (MySQL's executable comments), or None.
        is_connection_error: Whether a DBAPI error is about reaching the database (not the
            query); None: SQLSTATE classes 08/28/3D, else the DBAPI error class.
        text_type_comparable: The loader's text columns: unbounded TEXT when the engine
            compares it with '=' like VARCHAR, else VARCHAR(n) sized from the data.
        keeps_name_case: New tables and columns keep the CSV's case (SQLite compares names
            without regard to case); servers get lower-case names, which unquoted SQL finds.
        loose_column_types: Any value fits any column (SQLite's type affinity): the loader's
            append check ignores declared lengths and integer widths.
        fetch_first: Row limits in the schema reader's sampling queries are written
            ``FETCH FIRST n ROWS ONLY`` (old Db2 servers refuse ``LIMIT``).
    """

    kind: str
    dialect: str
    prompt_name: str
    sqlalchemy_names: tuple[str, ...]
    is_server: bool = True
    driver: str | None = None
    default_port: int | None = None
    install: str = "pip"
    error_patterns: Mapping[ErrorKind, str] = field(default_factory=dict)
    connect_args: Callable[[float], dict[str, Any]] | None = None
    session_setup: SessionSetup | None = None
    query_setup: Callable[[sqlalchemy.Connection, float, int], None] | None = None
    query_teardown: Callable[[sqlalchemy.Connection], None] | None = None
    check_statement: Callable[[sqlalchemy.Connection, str], None] | None = None
    refuse: Callable[[str], str | None] | None = None
    is_connection_error: Callable[[BaseException], bool] | None = None
    text_type_comparable: bool = False
    keeps_name_case: bool = False
    loose_column_types: bool = False
    fetch_first: bool = False


# The allow-list's own refusals and wordings several engines share; each engine adds its own.
COMMON_ERROR_PATTERNS: dict[ErrorKind, str] = {
    "timeout": r"\binterrupted\b|timed? ?out",
    "refused": r"read-only|only read-only|only select|several statements|"
               r"one statement at a time",
    "no_such_table": r"table .* does not exist",
    "syntax": r"syntax error",
}
# The order kinds are tried in: a timeout or a refusal may mention a table or column too.
KIND_ORDER: tuple[ErrorKind, ...] = ("timeout", "refused", "ambiguous_column", "no_such_table",
                                     "no_such_column", "syntax")


def compile_error_patterns(engines: list[Engine]) -> list[tuple[ErrorKind, re.Pattern[str]]]:
    """One case-insensitive pattern per kind: the common wording plus every engine's."""
    compiled = []
    for kind in KIND_ORDER:
        parts = [p for p in (COMMON_ERROR_PATTERNS.get(kind),
                             *(e.error_patterns.get(kind) for e in engines)) if p]
        if parts:
            compiled.append((kind, re.compile("|".join(parts), re.IGNORECASE)))
    return compiled


def check_limits(timeout_s: float, max_rows: int) -> None:
    """Refuse a time limit or row cap that is not positive."""
    if not timeout_s > 0:
        raise QueryCraftError(f"The query time limit must be positive seconds, not {timeout_s}.")
    if max_rows < 1:
        raise QueryCraftError(f"The row cap must be at least 1, not {max_rows}.")


def allowed_statement(sql: str, engine: Engine) -> str:
    """The one statement to run, once it passed the allow-list; else a QueryError.

    The engine's own refusals first (they look at text the shared parser may misread, such
    as MySQL's executable comments), then the shared allow-list
    (:func:`querycraft.sql.is_read_only_statement`, in the engine's dialect). Returns exactly
    the statement that was checked, without its ';' or trailing comments.
    """
    why = engine.refuse(sql) if engine.refuse is not None else None
    if why:
        raise QueryError("refused", why)
    ok, reason = is_read_only_statement(sql, engine.dialect)
    if not ok:
        raise QueryError("syntax" if reason.startswith("syntax error") else "refused", reason)
    return split_statements(sql)[0]
