"""Running SQL safely and comparing results, plus reading a database's schema.

Only SQLite is supported for now. The public functions take a connection or a URL and return
plain Python values, so that another engine can be added behind the same shapes.

Read-only is enforced in layers, so that a gap in one is covered by the next:
    1. :func:`querycraft.sql.is_read_only_statement` admits one SELECT-like statement only;
    2. the file is opened with ``mode=ro`` and ``PRAGMA query_only=ON``;
    3. an authorizer on the connection denies every action except reading.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from querycraft.errors import QueryCraftError
from querycraft.schema import read_schema, readonly_uri
from querycraft.sql import is_read_only_statement, split_statements

__all__ = [
    "ERROR_KINDS",
    "ErrorKind",
    "QueryError",
    "QueryResult",
    "classify_error",
    "execute_readonly",
    "open_sqlite_readonly",
    "read_schema",
    "results_match",
    "sqlite_path_for",
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


# --------------------------------------------------------------------------------------------
# Error classification
# --------------------------------------------------------------------------------------------

# Patterns per kind, tried in order. SQLite first; PostgreSQL and Db2 wordings are included so
# results from other engines fall into the same buckets.
_ERROR_PATTERNS: list[tuple[ErrorKind, re.Pattern[str]]] = [
    (
        "timeout",
        re.compile(
            r"\binterrupted\b|statement timeout|canceling statement|timed? ?out|SQL0952N",
            re.IGNORECASE,
        ),
    ),
    (
        "refused",
        re.compile(
            r"not authorized|readonly database|read-only|query_only|only read-only|"
            r"only select|several statements|one statement at a time|SQL0817N",
            re.IGNORECASE,
        ),
    ),
    (
        "ambiguous_column",
        re.compile(r"ambiguous column|column reference .* is ambiguous|SQL0203N", re.IGNORECASE),
    ),
    (
        "no_such_table",
        re.compile(
            r"no such table|relation .* does not exist|table .* does not exist|"
            r"undefined table|SQL0204N",
            re.IGNORECASE,
        ),
    ),
    (
        "no_such_column",
        re.compile(
            r"no such column|column .* does not exist|undefined column|SQL0206N", re.IGNORECASE
        ),
    ),
    (
        "syntax",
        re.compile(
            r"syntax error|incomplete input|unrecognized token|unterminated|SQL0104N",
            re.IGNORECASE,
        ),
    ),
]


def classify_error(message: str) -> ErrorKind:
    """Sort a database error message into one of :data:`ERROR_KINDS`.

    Args:
        message: The error text (for SQLite, ``str()`` of the ``sqlite3.Error``).

    Returns:
        The kind; ``"other"`` when no pattern fits (for example ``no such function``).
    """
    for kind, pattern in _ERROR_PATTERNS:
        if pattern.search(message):
            return kind
    return "other"


# --------------------------------------------------------------------------------------------
# Connections and execution
# --------------------------------------------------------------------------------------------

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
    if not timeout_s > 0:
        raise QueryCraftError(f"The query time limit must be positive seconds, not {timeout_s}.")
    if max_rows < 1:
        raise QueryCraftError(f"The row cap must be at least 1, not {max_rows}.")
    ok, reason = is_read_only_statement(sql, dialect)
    if not ok:
        kind: ErrorKind = "syntax" if reason.startswith("syntax error") else "refused"
        raise QueryError(kind, reason)
    # Run exactly the one statement that was checked (without its ';' or trailing comments).
    statement = split_statements(sql)[0]

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


# --------------------------------------------------------------------------------------------
# Comparing results
# --------------------------------------------------------------------------------------------


class _Inexact(tuple):
    """A non-integral number after rounding; never equal to an int or a string."""

    __slots__ = ()


def _normalize_value(value: Any) -> Hashable:
    """A hashable stand-in for a cell: numbers equal when equal after rounding."""
    if value is None or isinstance(value, str | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        if math.isnan(number):
            return _Inexact(("nan",))
        if math.isinf(number):
            return _Inexact((number,))
        if number.is_integer():
            return int(number)  # 1.0 == 1
        return _Inexact((float(f"{number:.6g}"),))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _normalize_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Hashable, ...]]:
    return [tuple(_normalize_value(v) for v in row) for row in rows]


def _width(result: QueryResult) -> int:
    return len(result.rows[0]) if result.rows else len(result.columns)


def _column_assignments(
    gold: list[tuple[Hashable, ...]], pred: list[tuple[Hashable, ...]], width: int, ordered: bool
) -> Iterable[tuple[int, ...]]:
    """Column orders of ``pred`` worth trying: each maps gold column j to pred column p[j].

    Only pred columns whose values (as a multiset, or as a list when row order matters) equal
    gold column j's are candidates, and pred columns with identical values are interchangeable,
    so only one of their orders is tried. Partial assignments are cut as soon as the projected
    rows disagree.
    """
    gold_cols = list(zip(*gold, strict=True)) if gold else [() for _ in range(width)]
    pred_cols = list(zip(*pred, strict=True)) if pred else [() for _ in range(width)]

    def signature(col: tuple[Hashable, ...]) -> Hashable:
        return col if ordered else frozenset(Counter(col).items())

    pred_sigs = [signature(c) for c in pred_cols]

    # Identical pred columns are interchangeable: keyed by the first of them, use the first free.
    first_with: dict[tuple[Hashable, ...], int] = {}
    twins: dict[int, list[int]] = {}
    for i, col in enumerate(pred_cols):
        twins.setdefault(first_with.setdefault(col, i), []).append(i)
    candidates: list[list[int]] = []
    for gcol in gold_cols:
        sig = signature(gcol)
        options = [rep for rep in twins if pred_sigs[rep] == sig]
        if not options:
            return
        candidates.append(options)

    def projected(rows: list[tuple[Hashable, ...]], cols: Sequence[int]) -> Counter:
        return Counter(tuple(r[c] for c in cols) for r in rows)

    gold_prefixes: dict[int, Counter] = {}  # gold rows projected on their first n columns

    def prefix_agrees(cols: list[int]) -> bool:
        n = len(cols)
        if n not in gold_prefixes:
            gold_prefixes[n] = projected(gold, range(n))
        return projected(pred, cols) == gold_prefixes[n]

    def extend(assigned: list[int], used: set[int]) -> Iterable[tuple[int, ...]]:
        j = len(assigned)
        if j == width:
            yield tuple(assigned)
            return
        for rep in candidates[j]:
            free = [i for i in twins[rep] if i not in used]
            if not free:
                continue
            choice = free[0]
            new = [*assigned, choice]
            if not ordered and j > 0 and not prefix_agrees(new):
                continue
            used.add(choice)
            yield from extend(new, used)
            used.discard(choice)

    yield from extend([], set())


def results_match(gold: QueryResult, pred: QueryResult, *, order_matters: bool) -> bool:
    """Whether a predicted result answers the question the same way as the gold result.

    Follows Spider's execution check (Zhong et al., 2020), plus numeric tolerance:
        * two empty results are equal, whatever their columns;
        * rows are compared as multisets (duplicates count), or as ordered lists when
          ``order_matters`` (use :func:`querycraft.sql.has_order_by` on the gold query);
        * column order and names are ignored: the prediction's columns may be any permutation
          of the gold's, but the column counts must be equal;
        * numbers compare by value: ``1 == 1.0``, booleans are 0/1, and non-integral numbers
          are rounded to 6 significant digits first; strings never equal numbers; None equals
          None.

    Truncated results are compared as fetched.

    Args:
        gold: The result of the reference query.
        pred: The result of the predicted query.
        order_matters: Compare rows in order.

    Returns:
        True when the results match.
    """
    if not gold.rows and not pred.rows:
        return True
    if len(gold.rows) != len(pred.rows):
        return False
    width = _width(gold)
    if width != _width(pred):
        return False
    gold_rows = _normalize_rows(gold.rows)
    pred_rows = _normalize_rows(pred.rows)
    if any(len(r) != width for r in gold_rows) or any(len(r) != width for r in pred_rows):
        return False
    if order_matters and gold_rows == pred_rows:
        return True
    if not order_matters and Counter(gold_rows) == Counter(pred_rows):
        return True
    gold_count = Counter(gold_rows)
    for perm in _column_assignments(gold_rows, pred_rows, width, order_matters):
        permuted = [tuple(row[i] for i in perm) for row in pred_rows]
        if (permuted == gold_rows) if order_matters else (Counter(permuted) == gold_count):
            return True
    return False


RELATIONS = ("same", "prediction_empty", "gold_empty", "different_columns", "order_differs",
             "more_rows", "fewer_rows", "partial_overlap", "different_values")


def result_relation(gold: QueryResult, pred: QueryResult, *, order_matters: bool) -> str:
    """How a predicted result relates to the gold one, for diagnostics (see ``RELATIONS``).

    "same" exactly when :func:`results_match` holds. Otherwise, in this order: one side
    empty; a different number of columns; the same rows in another order (gold has ORDER
    BY); more or fewer rows; some rows in common (compared with each row's values sorted, so
    column order does not hide an overlap); nothing in common.
    """
    if results_match(gold, pred, order_matters=order_matters):
        return "same"
    if not pred.rows:
        return "prediction_empty"
    if not gold.rows:
        return "gold_empty"
    if _width(gold) != _width(pred):
        return "different_columns"
    if order_matters and results_match(gold, pred, order_matters=False):
        return "order_differs"
    if len(pred.rows) != len(gold.rows):
        return "more_rows" if len(pred.rows) > len(gold.rows) else "fewer_rows"

    def bag(rows: list[tuple]) -> Counter:
        return Counter(tuple(sorted(row, key=repr)) for row in _normalize_rows(rows))

    return "partial_overlap" if bag(gold.rows) & bag(pred.rows) else "different_values"


# --------------------------------------------------------------------------------------------
# File layout
# --------------------------------------------------------------------------------------------


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


class SqliteDatabases:
    """The SQLite database of each example: one file for all, or a folder of Spider's layout.

    Keeps one read-only connection per database, opened on first use, so a stage that runs
    thousands of queries opens each file once.
    """

    def __init__(self, location: str | Path) -> None:
        self.location = Path(location)
        self._connections: dict[str, sqlite3.Connection] = {}

    @property
    def single_file(self) -> bool:
        return self.location.is_file()

    def path_for(self, db_id: str) -> Path:
        return self.location if self.single_file else sqlite_path_for(self.location, db_id)

    def connection(self, db_id: str) -> sqlite3.Connection:
        if db_id not in self._connections:
            self._connections[db_id] = open_sqlite_readonly(self.path_for(db_id))
        return self._connections[db_id]

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


# --------------------------------------------------------------------------------------------
# Database targets: SQLite files, PostgreSQL and Db2 servers behind one interface
# --------------------------------------------------------------------------------------------

KINDS = ("sqlite", "postgres", "db2")
# The sqlglot dialect each kind's SQL is checked and written in.
DIALECT_OF_KIND = {"sqlite": "sqlite", "postgres": "postgres", "db2": "db2"}
_DEFAULT_DRIVER = {"postgres": "postgresql+psycopg", "db2": "db2+ibm_db"}
_DEFAULT_PORT = {"postgres": 5432, "db2": 50000}
_DRIVER_PACKAGE = {"postgres": "pip install -e '.[postgres]' (psycopg)",
                   "db2": "pip install -e '.[db2]' (ibm-db-sa and ibm-db)"}
DB_ID = "{db_id}"  # placeholder in db.database / db.schema / db.url / db.path


def hide_password(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` in it masked."""
    return re.sub(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


@dataclass(frozen=True)
class DatabaseTarget:
    """Where SQL runs: built once from the ``db`` config, picklable for worker processes.

    For SQLite, ``location`` is a file, or a folder of ``<db_id>/<db_id>.sqlite`` (Spider's
    layout). For a server, ``url`` is a SQLAlchemy URL whose database (or ``schema``) may hold
    ``{db_id}``, so that one target serves a dataset of several databases. The password is
    kept in ``url`` only; :meth:`describe` and ``repr`` never show it.
    """

    kind: str
    location: str | None = None
    url: str | None = field(default=None, repr=False)
    schema: str | None = None
    connect_timeout_s: float = 10.0

    @property
    def dialect(self) -> str:
        return DIALECT_OF_KIND[self.kind]

    @property
    def is_server(self) -> bool:
        return self.kind != "sqlite"

    def url_for(self, db_id: str = "") -> sqlalchemy.URL:
        if self.url is None:
            raise QueryCraftError(f"No {self.kind} database is configured: set db.url, or "
                                  "db.host and db.database.")
        return make_url(self.url.replace(DB_ID, _plain_db_id(db_id) if DB_ID in self.url
                                         else db_id))

    def schema_for(self, db_id: str = "") -> str | None:
        if self.schema is None:
            return None
        return self.schema.replace(DB_ID, _plain_db_id(db_id)) if DB_ID in self.schema \
            else self.schema

    def describe(self, db_id: str | None = None) -> str:
        """A name for messages, manifests and reports: never the password."""
        if not self.is_server:
            return str(self.location)
        if self.url is None:
            return f"{self.kind} (not configured)"
        shown = make_url(self.url.replace(DB_ID, db_id or DB_ID)).render_as_string(
            hide_password=True)
        schema = self.schema_for(db_id) if db_id else self.schema
        return shown + (f" (schema {schema})" if schema else "")


def _plain_db_id(db_id: str) -> str:
    # A db_id goes into a URL or a schema name: letters, digits, '_', '-' and '.' only.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", db_id or ""):
        raise QueryCraftError(f"Database id {db_id!r} cannot name a server database or schema: "
                              "use letters, digits, '_', '-' and '.' only.")
    return db_id


def target_from_config(db_cfg: Any, fallback_location: str | None = None) -> DatabaseTarget:
    """The target the ``db`` config group describes.

    Args:
        db_cfg: ``cfg.db``.
        fallback_location: For SQLite without ``db.path``: the database recorded by an
            earlier run (the ingest run's ``database``).

    Raises:
        QueryCraftError: For an unknown kind or a server without the settings to reach it.
    """
    kind = db_cfg.kind
    if kind not in KINDS:
        raise QueryCraftError(f"db.kind '{kind}' is not known; use one of {', '.join(KINDS)} "
                              "(the files in conf/db/).")
    timeout = float(db_cfg.get("connect_timeout_s") or 10.0)
    if kind == "sqlite":
        location = db_cfg.path or fallback_location
        return DatabaseTarget(kind, location=str(location) if location else None,
                              connect_timeout_s=timeout)
    url = db_cfg.get("url")
    if not url:
        missing = [k for k in ("host", "database") if not db_cfg.get(k)]
        if missing:
            raise QueryCraftError(
                f"db={kind} needs db.{' and db.'.join(missing)} (or a whole SQLAlchemy URL in "
                f"db.url). Set them in conf/db/{kind}.yaml or on the command line, e.g. "
                f"db.host=localhost db.database=sales; the password comes from the environment "
                f"variable named in conf/db/{kind}.yaml (QC_DB_PASSWORD by default).")
        url = sqlalchemy.URL.create(
            db_cfg.get("driver") or _DEFAULT_DRIVER[kind], username=db_cfg.get("user"),
            password=db_cfg.get("password"), host=db_cfg.host,
            port=db_cfg.get("port") or _DEFAULT_PORT[kind], database=db_cfg.database,
        ).render_as_string(hide_password=False)
        # URL.create escapes '{' and '}'; the placeholder must survive for url_for.
        url = url.replace("%7Bdb_id%7D", DB_ID)
    elif db_cfg.get("password") and make_url(url.replace(DB_ID, "x")).password is None:
        url = make_url(url.replace(DB_ID, "__QC_DB_ID__")).set(
            password=db_cfg.password).render_as_string(hide_password=False).replace(
            "__QC_DB_ID__", DB_ID)
    return DatabaseTarget(kind, url=url, schema=db_cfg.get("schema"), connect_timeout_s=timeout)


class Database:
    """One database that generated SQL may run on: read-only, time-limited, row-capped.

    Every service runs SQL through :meth:`execute` and checks SQL with :meth:`check`, whatever
    the engine; the subclasses hold what differs.
    """

    kind: str = "sqlite"
    name: str = ""

    @property
    def dialect(self) -> str:
        return DIALECT_OF_KIND[self.kind]

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000
                ) -> QueryResult:
        raise NotImplementedError

    def check(self, sql: str, *, timeout_s: float = 10.0) -> str | None:
        """Compile without running: None when the database accepts ``sql``, else why not."""
        raise NotImplementedError

    def schema_text(self, *, tables: list[str] | None = None, sample_values: int = 0,
                    question: str | None = None) -> str:
        raise NotImplementedError

    def columns_by_table(self) -> dict[str, list[str]]:
        """``{table: [columns]}``, as the correction engine reads the schema context."""
        from querycraft.ddl import schema_from_ddl

        return schema_from_ddl(self.schema_text(), self.dialect)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _check_limits(timeout_s: float, max_rows: int) -> None:
    if not timeout_s > 0:
        raise QueryCraftError(f"The query time limit must be positive seconds, not {timeout_s}.")
    if max_rows < 1:
        raise QueryCraftError(f"The row cap must be at least 1, not {max_rows}.")


def _allowed_statement(sql: str, dialect: str) -> str:
    """The one statement to run, once it passed the allow-list; else a QueryError."""
    ok, reason = is_read_only_statement(sql, dialect)
    if not ok:
        raise QueryError("syntax" if reason.startswith("syntax error") else "refused", reason)
    return split_statements(sql)[0]


class SqliteDatabase(Database):
    """A SQLite file, opened read-only (see :func:`open_sqlite_readonly`)."""

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.connection = open_sqlite_readonly(self.path)

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000
                ) -> QueryResult:
        return execute_readonly(self.connection, sql, timeout_s=timeout_s, max_rows=max_rows)

    def check(self, sql: str, *, timeout_s: float = 10.0) -> str | None:
        return explain_sqlite(self.connection, sql)

    def schema_text(self, *, tables: list[str] | None = None, sample_values: int = 0,
                    question: str | None = None) -> str:
        return read_schema(self.path, tables=tables, sample_values=sample_values,
                           question=question)

    def close(self) -> None:
        self.connection.close()


def explain_sqlite(connection: sqlite3.Connection, sql: str) -> str | None:
    """Check a query against SQLite without running it: the allow-list, then ``EXPLAIN``
    (which names missing tables and columns, ambiguous columns and syntax errors but reads no
    rows). None when SQLite accepts it, else the error message."""
    try:
        statement = _allowed_statement(sql, "sqlite")
    except QueryError as err:
        return err.message
    try:
        connection.execute(f"EXPLAIN {statement}").fetchall()
    except (sqlite3.Error, sqlite3.Warning) as err:
        return str(err)
    return None


def _driver_message(err: BaseException) -> str:
    """The database's own words: the DBAPI error's first line, password-free."""
    original = getattr(err, "orig", None) or err
    text = str(original).strip().splitlines()
    return hide_password(text[0] if text else type(original).__name__)


class ServerDatabase(Database):
    """A PostgreSQL or Db2 database reached through SQLAlchemy.

    Read-only in layers: the statement allow-list; then for PostgreSQL a session whose
    transactions default to READ ONLY, each query in its own ``SET TRANSACTION READ ONLY``
    transaction with ``SET LOCAL statement_timeout``, always rolled back; for Db2 a connection
    in read-only access mode with a query timeout, each query in a transaction that is rolled
    back. Rows are fetched through a server-side cursor, at most ``max_rows + 1`` of them.
    """

    def __init__(self, target: DatabaseTarget, db_id: str = "") -> None:
        self.kind = target.kind
        self.target = target
        self.db_id = db_id
        self.name = target.describe(db_id)
        self.schema = target.schema_for(db_id)
        self.engine = _server_engine(target, db_id, read_only=True)

    def _run(self, statement: str, timeout_s: float, max_rows: int, *, explain: bool
             ) -> QueryResult:
        start = time.monotonic()
        with self.engine.connect() as conn:
            try:
                if self.kind == "postgres":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.exec_driver_sql(
                        f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
                elif self.kind == "db2":
                    _set_db2_query_timeout(conn, timeout_s)
                text = f"EXPLAIN {statement}" if explain and self.kind == "postgres" \
                    else statement
                if explain and self.kind == "db2":
                    _db2_prepare_only(conn, statement)
                    return QueryResult([], [], False, time.monotonic() - start)
                # yield_per: a server-side cursor fetching max_rows + 1 rows in one go, so a
                # huge result never reaches this process (EXPLAIN cannot run in a cursor).
                options = {} if explain else {"yield_per": max_rows + 1}
                result = conn.execution_options(**options).exec_driver_sql(
                    _escape_percent(text, self.engine))
                columns = list(result.keys())
                rows = result.fetchmany(max_rows + 1)
                result.close()
            finally:
                conn.rollback()
        return QueryResult(columns=columns, rows=[tuple(r) for r in rows[:max_rows]],
                           truncated=len(rows) > max_rows, elapsed_s=time.monotonic() - start)

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000
                ) -> QueryResult:
        _check_limits(timeout_s, max_rows)
        statement = _allowed_statement(sql, self.dialect)
        try:
            return self._run(statement, timeout_s, max_rows, explain=False)
        except sa_exc.DBAPIError as err:
            message = _driver_message(err)
            if _is_connection_error(err):
                raise QueryCraftError(_unreachable(self.name, message)) from err
            raise QueryError(classify_error(message), message) from err

    def check(self, sql: str, *, timeout_s: float = 10.0) -> str | None:
        try:
            statement = _allowed_statement(sql, self.dialect)
            self._run(statement, timeout_s, 1, explain=True)
        except QueryError as err:
            return err.message
        except sa_exc.DBAPIError as err:
            return _driver_message(err)
        return None

    def schema_text(self, *, tables: list[str] | None = None, sample_values: int = 0,
                    question: str | None = None) -> str:
        from querycraft.schema import describe_schema  # its errors already name the database

        return describe_schema(self.engine, schema=self.schema, tables=tables,
                               sample_values=sample_values, question=question)

    def close(self) -> None:
        self.engine.dispose()


def _is_connection_error(err: sa_exc.DBAPIError) -> bool:
    """Whether the failure is reaching the database, not the query (SQLSTATE classes 08, 28
    and 3D: connection, authorization, unknown database)."""
    if err.connection_invalidated:
        return True
    original = getattr(err, "orig", None)
    state = getattr(original, "sqlstate", None)  # psycopg
    if state is None:  # Db2 puts it in the message: "... SQLSTATE=08001"
        found = re.search(r"SQLSTATE=(\w{5})", str(original))
        state = found.group(1) if found else None
    if state:
        return state[:2] in ("08", "28", "3D")
    # psycopg reports a refused or failed connection without a SQLSTATE.
    return isinstance(err, sa_exc.OperationalError | sa_exc.InterfaceError)


def _unreachable(name: str, message: str) -> str:
    return (f"Cannot use the database {name}: {message}. Check db.host, db.port, db.database "
            "and db.user, that the server is running, and that the password is in the "
            "environment variable the db config names (QC_DB_PASSWORD by default).")


def _escape_percent(statement: str, engine: sqlalchemy.Engine) -> str:
    # Drivers with the "format"/"pyformat" paramstyle read '%' as a placeholder even without
    # parameters when SQLAlchemy passes an empty parameter list; '%%' is a literal '%'.
    if engine.dialect.paramstyle in ("format", "pyformat"):
        return statement.replace("%", "%%")
    return statement


def _set_db2_query_timeout(conn: sqlalchemy.Connection, timeout_s: float) -> None:
    """Db2: the CLI query timeout (whole seconds) on this connection's statements."""
    import ibm_db  # the Db2 driver; present whenever a db2 engine could be created

    raw = conn.connection.dbapi_connection
    raw.set_option({ibm_db.SQL_ATTR_QUERY_TIMEOUT: max(1, math.ceil(timeout_s))})


def _db2_prepare_only(conn: sqlalchemy.Connection, statement: str) -> None:
    """Db2: compile the statement (names, types, syntax) without running it.

    Db2's EXPLAIN writes to the explain tables, so a prepare is the read-only check.
    """
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.prepare(statement)
    finally:
        cursor.close()


_DB2_READ_ONLY_MODE = 1  # SQL_MODE_READ_ONLY in the ODBC/CLI headers


def _server_engine(target: DatabaseTarget, db_id: str, *, read_only: bool
                   ) -> sqlalchemy.Engine:
    """A SQLAlchemy engine for ``target``; ``read_only`` sets the session guards."""
    url = target.url_for(db_id)
    schema = target.schema_for(db_id)
    connect_args: dict[str, Any] = {}
    if target.kind == "postgres":
        connect_args["connect_timeout"] = max(1, math.ceil(target.connect_timeout_s))
    try:
        engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=2,
                                          pool_pre_ping=True, connect_args=connect_args)
    except ImportError as err:
        raise QueryCraftError(
            f"The driver for {target.describe(db_id)} is not installed ({err}). Install it "
            f"with {_DRIVER_PACKAGE.get(target.kind, 'pip')}.") from err
    except sa_exc.ArgumentError as err:
        raise QueryCraftError(f"{target.describe(db_id)} is not a usable database URL: "
                              f"{hide_password(str(err))}") from err

    @sqlalchemy.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if target.kind == "postgres":
            cursor = dbapi_connection.cursor()
            if read_only:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            if schema:
                quoted = '"' + schema.replace('"', '""') + '"'
                cursor.execute(f"SET search_path TO {quoted}")
            cursor.close()
            dbapi_connection.commit()
        elif target.kind == "db2":
            import ibm_db

            if read_only:
                dbapi_connection.set_option({ibm_db.SQL_ATTR_ACCESS_MODE: _DB2_READ_ONLY_MODE})
            if schema:
                dbapi_connection.set_current_schema(schema)

    return engine


def writable_engine(target: DatabaseTarget, db_id: str = "", *, create_sqlite: bool = True
                    ) -> sqlalchemy.Engine:
    """An engine that may write: only for loading data (``service=ingest`` with a table).

    Generated SQL never runs through it. For SQLite, the file (``location``, or
    ``<location>/<db_id>/<db_id>.sqlite`` for a folder) is created when ``create_sqlite``.
    """
    if target.is_server:
        return _server_engine(target, db_id, read_only=False)
    if not target.location:
        raise QueryCraftError("No SQLite database to load into: set db.path to a .sqlite file "
                              "(it is created when missing).")
    location = Path(target.location.replace(DB_ID, db_id) if db_id else target.location)
    file = location / db_id / f"{db_id}.sqlite" if location.is_dir() and db_id else location
    if file.is_dir():
        raise QueryCraftError(f"db.path {file} is a folder; loading needs one .sqlite file "
                              "(or a folder plus ingest.load.db_id).")
    if not file.exists():
        if not create_sqlite:
            raise QueryCraftError(f"SQLite database {file} does not exist.")
        file.parent.mkdir(parents=True, exist_ok=True)
    return sqlalchemy.create_engine(f"sqlite:///{file}")


class Databases:
    """The database of each example, opened on first use and kept open.

    One SQLite file for all examples, a folder in Spider's layout (one file per ``db_id``),
    or a server database per ``db_id`` (``{db_id}`` in the URL or schema) or for all.
    """

    def __init__(self, target: DatabaseTarget) -> None:
        if not target.is_server and not target.location:
            raise QueryCraftError("No database to run the SQL on: set db.path to a SQLite file "
                                  "or folder, or choose a server with db=postgres / db=db2.")
        self.target = target
        self._sqlite_file: Path | None = None  # one SQLite file for every db_id
        if target.is_server:
            # Whether the database depends on the example's db_id (decided once: get() is
            # called for every query).
            self.per_db_id = DB_ID in (target.url or "") or DB_ID in (target.schema or "")
        else:
            location = Path(target.location)
            self.per_db_id = not location.is_file()
            self._sqlite_file = None if self.per_db_id else location
        self._open: dict[str, Database] = {}

    def default_db_id(self) -> str:
        return self._sqlite_file.stem if self._sqlite_file is not None else ""

    def get(self, db_id: str = "") -> Database:
        key = db_id if self.per_db_id else ""
        if key not in self._open:
            if not self.target.is_server:
                self._open[key] = SqliteDatabase(
                    self._sqlite_file or sqlite_path_for(self.target.location, db_id))
            else:
                self._open[key] = ServerDatabase(self.target, db_id)
        return self._open[key]

    def describe(self, db_id: str | None = None) -> str:
        return self.target.describe(db_id)

    def close(self) -> None:
        for database in self._open.values():
            database.close()
        self._open.clear()

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
