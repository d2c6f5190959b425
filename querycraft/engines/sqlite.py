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
import threading
import time
from collections.abc import Callable
from pathlib import Path

from querycraft.engines import classify_error
from querycraft.engines.base import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_SQL_BYTES,
    DEFAULT_MAX_VALUE_BYTES,
    Engine,
    QueryError,
    QueryResult,
    TooLarge,
    allowed_statement,
    check_limits,
    function_refusal,
)
from querycraft.engines.bounds import Formats, Repeats
from querycraft.engines.syntax import Quote, Syntax
from querycraft.errors import QueryCraftError
from querycraft.schema import readonly_uri

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ENGINE",
    "check_sql_size",
    "execute_readonly",
    "explain_sqlite",
    "open_sqlite_readonly",
    "result_too_large",
    "row_bytes",
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
    # sqlite.org/lang_expr.html and tokenize.c: '' doubles a quote, no backslash escapes;
    # "..." and `...` and [...] name; '--' to the newline; block comments do not nest.
    syntax=Syntax(
        server="SQLite",
        quotes=(Quote("'", "'"), Quote('"', '"', name=True), Quote("`", "`", name=True),
                Quote("[", "]", doubled=False, name=True)),
    ),
    # printf('%.*c', 999999999, 'x') runs for seconds inside one call (the progress handler
    # is not called there): widths and precisions are bounded before the query runs.
    size_rules={"printf": Formats(), "format": Formats(), "zeroblob": Repeats(count=0)},
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


def check_sql_size(sql: str, max_sql_bytes: int) -> None:
    """Refuse SQL text longer than ``max_sql_bytes`` (UTF-8) before anything parses it:
    parsing costs time and memory in proportion to the text (seconds and gigabytes for
    megabytes of SQL)."""
    if len(sql) <= max_sql_bytes // 4:
        return  # no text this short can be over the bound, whatever its characters
    size = len(sql) if len(sql) > max_sql_bytes else len(sql.encode("utf-8", "replace"))
    if size > max_sql_bytes:
        raise TooLarge("sql", f"the SQL is {size} bytes, over the limit of {max_sql_bytes} "
                              "(db.max_sql_bytes); it was not parsed or run")


def _value_bytes(value: object) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    return 8 if isinstance(value, (int, float, bool)) or value is None else len(str(value))


def row_bytes(row: tuple | list, max_value_bytes: int) -> int:
    """The size of one fetched row in bytes; TooLarge when a value is over
    ``max_value_bytes``."""
    total = 0
    for value in row:
        size = _value_bytes(value)
        if size > max_value_bytes:
            raise TooLarge("value", f"a value of the result is {size} bytes, over the limit of "
                                    f"{max_value_bytes} (db.max_value_bytes)")
        total += size
    return total


def result_too_large(max_result_bytes: int) -> TooLarge:
    return TooLarge("result", f"the result is over the limit of {max_result_bytes} bytes "
                              "(db.max_result_bytes); fetching stopped")


_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ}
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)  # WITH RECURSIVE

# The functions SQLite lets generated SQL call, by the name SQLite itself reports to the
# authorizer at prepare time (operators included: LIKE is "like", -> is "->"): what SQL
# questions need. An allow-list, so a function this list does not know (load_extension,
# fts3_tokenizer, randomblob, the sqlite_* introspection, an application-defined one) is
# refused, whatever sqlglot made of the text.
ALLOWED_FUNCTIONS: frozenset[str] = frozenset({
    # aggregates and window functions
    "avg", "count", "group_concat", "string_agg", "max", "min", "sum", "total",
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
    # operators SQLite runs as functions
    "like", "glob", "->", "->>",
    # scalars: strings, conditionals, types
    "abs", "char", "coalesce", "concat", "concat_ws", "format", "printf", "hex", "ifnull",
    "iif", "instr", "length", "octet_length", "lower", "upper", "ltrim", "rtrim", "trim",
    "nullif", "quote", "random", "replace", "round", "sign", "soundex", "substr", "substring",
    "typeof", "unicode", "unhex", "likely", "unlikely", "likelihood", "zeroblob",
    # dates and times
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
    "current_date", "current_time", "current_timestamp",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos",
    "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow",
    "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
    # JSON values stored in a column
    "json", "json_extract", "json_array_length", "json_type", "json_valid", "json_quote",
})

# The function the authorizer last refused, per thread (a query is prepared in the thread
# that runs it), so the error can name it: SQLite itself only says "not authorized".
_refused = threading.local()


def _read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        if name in ALLOWED_FUNCTIONS:
            return sqlite3.SQLITE_OK
        _refused.function = name
        return sqlite3.SQLITE_DENY
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
    max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    row_sink: Callable[[tuple], None] | None = None,
) -> QueryResult:
    """Run one read-only query with a time limit, a row cap and byte bounds.

    The statement must first pass the allow-list (:func:`querycraft.engines.base.
    allowed_statement`: read as SQLite reads it, one SELECT, the function allow-list and the
    size bounds of ``printf``/``format``/``zeroblob``, whose widths, precisions and counts
    must be numbers written in the query, at most ``max_value_bytes``). The time limit is
    enforced inside SQLite through a progress handler, so a runaway query stops even while
    SQLite is busy; it covers fetching the rows too, but not the inside of one function call,
    which is why those sizes are bounded before the query runs. The SQL text is measured
    before it is parsed; SQLite itself refuses to build any string or BLOB longer than
    ``max_value_bytes`` (``SQLITE_LIMIT_LENGTH``: ``zeroblob(1e9)``, ``replace`` and
    ``group_concat`` growth stop at once, without the memory), and rows are fetched one at
    a time until they pass ``max_result_bytes``.

    Args:
        conn: A connection from :func:`open_sqlite_readonly`.
        sql: The query.
        timeout_s: Seconds the query may run.
        max_rows: The most rows to fetch; further rows set ``truncated``.
        dialect: sqlglot dialect used by the read-only check.
        max_sql_bytes: The longest SQL text, in bytes, that is parsed at all.
        max_value_bytes: The largest single value (string or BLOB) SQLite may build.
        max_result_bytes: The most bytes of values fetched in all (kept rows).
        row_sink: When given, every row of the whole result is passed to it as it streams
            past (within the time limit), also the rows past the cap, which are not kept.

    Returns:
        The result.

    Raises:
        QueryError: When the query is refused, fails or runs out of time; ``kind`` says which
            (a :class:`TooLarge` when over a byte bound).
        QueryCraftError: When ``timeout_s`` or ``max_rows`` is not positive.
    """
    check_limits(timeout_s, max_rows)
    check_sql_size(sql, max_sql_bytes)
    statement = allowed_statement(sql, ENGINE if dialect == ENGINE.dialect
                                  else dataclasses.replace(ENGINE, dialect=dialect),
                                  max_value_bytes=max_value_bytes)

    start = time.monotonic()
    deadline = start + timeout_s
    timed_out = False

    def _past_deadline() -> int:
        nonlocal timed_out
        timed_out = time.monotonic() > deadline
        return 1 if timed_out else 0  # non-zero makes SQLite abort with "interrupted"

    conn.set_progress_handler(_past_deadline, _PROGRESS_STEPS)
    # The engine's own bound on any one value (at least 1 KB: SQLite needs room for its
    # own strings).
    previous_length = conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1024, max_value_bytes))
    cursor = None
    rows: list[tuple] = []
    _refused.function = None
    try:
        cursor = conn.execute(statement)
        columns = [d[0] for d in cursor.description or ()]
        total = 0
        for row in cursor:
            if row_sink is not None:
                row_sink(row)
                if len(rows) > max_rows:
                    continue  # streamed, not kept
            total += row_bytes(row, max_value_bytes)
            if total > max_result_bytes:
                raise result_too_large(max_result_bytes)
            rows.append(row)
            if len(rows) > max_rows and row_sink is None:
                break
    except (sqlite3.Error, sqlite3.Warning) as err:
        if timed_out:
            raise QueryError("timeout", f"the query ran longer than {timeout_s:g} s") from err
        if isinstance(err, sqlite3.DataError) or "too big" in str(err):
            raise TooLarge("value", f"{err}: a value would be over the limit of "
                                    f"{max_value_bytes} bytes (db.max_value_bytes)") from err
        if _refused.function and "not authorized" in str(err):
            raise QueryError("refused", function_refusal(_refused.function, "SQLite")) from err
        raise QueryError(classify_error(str(err)), str(err)) from err
    finally:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, previous_length)
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


def sqlite_db_ids(database_dir: str | Path) -> list[str]:
    """The databases of a folder in the Spider layout (what :func:`sqlite_path_for` finds):
    ``<db_id>/<db_id>.sqlite`` and ``<db_id>.sqlite``, sorted."""
    folder = Path(database_dir)
    nested = {p.name for p in folder.iterdir() if (p / f"{p.name}.sqlite").is_file()}
    flat = {p.stem for p in folder.glob("*.sqlite") if p.is_file()}
    return sorted(nested | flat)


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
