"""SQLite, embedded: the read-only sandbox generated SQL runs in.

Read-only is enforced in layers, so that a gap in one is covered by the next:
    1. the shared allow-list (:func:`querycraft.sql.is_read_only_statement`) admits one
       SELECT-like statement only;
    2. the file is opened with ``mode=ro`` and ``PRAGMA query_only=ON``;
    3. an authorizer on the connection denies every action except reading.
The time limit is a progress handler inside SQLite, so a runaway query stops within
milliseconds even while SQLite is busy.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

from querycraft.engines import classify_error
from querycraft.engines.base import (
    Engine,
    QueryError,
    QueryResult,
    allowed_statement,
    check_limits,
)
from querycraft.errors import QueryCraftError
from querycraft.schema import readonly_uri

__all__ = [
    "ENGINE",
    "execute_readonly",
    "explain_sqlite",
    "open_sqlite_readonly",
    "sqlite_path_for",
]

ENGINE = Engine(
    kind="sqlite",
    dialect="sqlite",
    prompt_name="SQLite",
    sqlalchemy_names=("sqlite",),
    is_server=False,
    error_patterns={
        "refused": r"not authorized|readonly database|query_only",
        "ambiguous_column": r"ambiguous column",
        "no_such_table": r"no such table",
        "no_such_column": r"no such column",
        "syntax": r"incomplete input|unrecognized token|unterminated",
    },
    text_type_comparable=True,
    keeps_name_case=True,
    loose_column_types=True,
)

# Pragmas that only report, whatever their argument (a table or index name)...
_REPORTING_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "database_list",
        "collation_list",
        "function_list",
        "compile_options",
        "page_count",
    }
)
# ...and settings that may be read but not assigned.
_READABLE_SETTINGS = frozenset(
    {"user_version", "schema_version", "encoding", "page_size", "query_only"}
)
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)  # WITH RECURSIVE
_DENIED_SQLITE_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "writefile", "edit"})


def _read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action in _ALLOWED_ACTIONS:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_SQLITE_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action == _SQLITE_RECURSIVE:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _REPORTING_PRAGMAS or (name in _READABLE_SETTINGS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _decode_text(raw: bytes) -> str:
    # Some databases hold bytes that are not UTF-8; show them rather than fail the query.
    return raw.decode("utf-8", errors="replace")


def open_sqlite_readonly(path: str | Path) -> sqlite3.Connection:
    """Open an existing SQLite file so that nothing can change it.

    The file is opened with ``mode=ro`` (SQLite never creates a missing file in this mode),
    ``PRAGMA query_only=ON`` is set, and an authorizer denies every action except reading.
    ``check_same_thread=False`` lets a worker thread use it, but only one query may run on it
    at a time.

    Args:
        path: The ``.sqlite`` file.

    Returns:
        The connection.

    Raises:
        QueryCraftError: When the file does not exist or is not an SQLite database.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise QueryCraftError(
            f"SQLite database {file} {what}. Check the database path (for Spider, "
            "<database_dir>/<db_id>/<db_id>.sqlite)."
        )
    conn = sqlite3.connect(
        readonly_uri(file), uri=True, check_same_thread=False, isolation_level=None
    )
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        raise QueryCraftError(
            f"{file} could not be opened as an SQLite database ({err}). Check that the path "
            "names a .sqlite file and that the file is not damaged."
        ) from err
    conn.text_factory = _decode_text
    conn.set_authorizer(_read_only_authorizer)
    return conn


# SQLite calls the progress handler every this many virtual-machine instructions: a timeout
# reacts within about a millisecond, and the checks cost no measurable time.
_PROGRESS_STEPS = 10_000


def execute_readonly(
    conn: sqlite3.Connection,
    sql: str,
    *,
    timeout_s: float = 10.0,
    max_rows: int = 10_000,
    dialect: str = "sqlite",
) -> QueryResult:
    """Run one read-only query with a time limit and a row cap.

    The statement must first pass :func:`querycraft.sql.is_read_only_statement`. The time
    limit is enforced inside SQLite through a progress handler, so a runaway query stops even
    while SQLite is busy; it covers fetching the rows too.

    Args:
        conn: A connection from :func:`open_sqlite_readonly`.
        sql: The query.
        timeout_s: Seconds the query may run.
        max_rows: The most rows to fetch; further rows set ``truncated``.
        dialect: sqlglot dialect used by the read-only check.

    Returns:
        The result.

    Raises:
        QueryError: When the query is refused, fails or runs out of time; ``kind`` says which.
        QueryCraftError: When ``timeout_s`` or ``max_rows`` is not positive.
    """
    check_limits(timeout_s, max_rows)
    statement = allowed_statement(sql, ENGINE if dialect == ENGINE.dialect
                                  else dataclasses.replace(ENGINE, dialect=dialect))

    start = time.monotonic()
    deadline = start + timeout_s
    timed_out = False

    def _past_deadline() -> int:
        nonlocal timed_out
        timed_out = time.monotonic() > deadline
        return 1 if timed_out else 0  # non-zero makes SQLite abort with "interrupted"

    conn.set_progress_handler(_past_deadline, _PROGRESS_STEPS)
    cursor = None
    try:
        cursor = conn.execute(statement)
        columns = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchmany(max_rows + 1)
    except (sqlite3.Error, sqlite3.Warning) as err:
        if timed_out:
            raise QueryError("timeout", f"the query ran longer than {timeout_s:g} s") from err
        raise QueryError(classify_error(str(err)), str(err)) from err
    finally:
        conn.set_progress_handler(None, 0)
        if cursor is not None:
            cursor.close()
    truncated = len(rows) > max_rows
    return QueryResult(
        columns=columns,
        rows=[tuple(r) for r in rows[:max_rows]],
        truncated=truncated,
        elapsed_s=time.monotonic() - start,
    )


def explain_sqlite(connection: sqlite3.Connection, sql: str) -> str | None:
    """Check a query against SQLite without running it: the allow-list, then ``EXPLAIN``
    (which names missing tables and columns, ambiguous columns and syntax errors but reads no
    rows). None when SQLite accepts it, else the error message."""
    try:
        statement = allowed_statement(sql, ENGINE)
    except QueryError as err:
        return err.message
    try:
        connection.execute(f"EXPLAIN {statement}").fetchall()
    except (sqlite3.Error, sqlite3.Warning) as err:
        return str(err)
    return None


def sqlite_path_for(database_dir: str | Path, db_id: str) -> Path:
    """Find a database file in the Spider layout.

    Looks for ``<database_dir>/<db_id>/<db_id>.sqlite``, then ``<database_dir>/<db_id>.sqlite``.

    Args:
        database_dir: The folder that holds the databases.
        db_id: The database's name.

    Returns:
        The path of the file.

    Raises:
        QueryCraftError: When ``db_id`` is not a plain name or neither file exists.
    """
    if not db_id or Path(db_id).name != db_id or db_id in (".", ".."):
        raise QueryCraftError(f"Database id {db_id!r} must be a plain name, not a path.")
    base = Path(database_dir).expanduser()
    candidates = [base / db_id / f"{db_id}.sqlite", base / f"{db_id}.sqlite"]
    for path in candidates:
        if path.is_file():
            return path
    looked = " and ".join(str(p) for p in candidates)
    hint = "" if base.is_dir() else f" (the folder {base} does not exist)"
    raise QueryCraftError(
        f"No SQLite file for database {db_id!r}: looked for {looked}{hint}. Check the database "
        "folder setting and the db_id."
    )
