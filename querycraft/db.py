"""The one execution layer: every service runs generated SQL through :class:`Databases`.

``Databases(target).get(db_id)`` gives a :class:`Database` (read-only, time-limited,
row-capped) on whichever engine the ``db`` config names. What differs between engines is
data in :mod:`querycraft.engines` (one module per engine: sqlite, postgres, ...);
this module holds only what is the same for all of them:

* :class:`SqliteDatabase`, a file opened in-process (the sandbox is
  :mod:`querycraft.engines.sqlite`);
* :class:`ServerDatabase`, any server through SQLAlchemy: the shared allow-list plus the
  engine's own refusals, then its session and per-query guards, a server-side cursor that
  fetches at most ``max_rows + 1`` rows, and a rollback after every query;
* :func:`writable_engine`, the one way to write (loading a CSV), never used for generated SQL.

The query result and error types live in :mod:`querycraft.engines.base`, result comparison
in :mod:`querycraft.compare` and database targets in :mod:`querycraft.targets`: import them
from there.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import exc as sa_exc

from querycraft.engines import classify_error, engines, get_engine
from querycraft.engines.base import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_SQL_BYTES,
    DEFAULT_MAX_VALUE_BYTES,
    QueryError,
    QueryResult,
    TableScope,
    allowed_statement,
    check_limits,
)
from querycraft.engines.sqlite import (
    check_sql_size,
    execute_readonly,
    explain_sqlite,
    open_sqlite_readonly,
    result_too_large,
    row_bytes,
    sqlite_path_for,
)
from querycraft.errors import QueryCraftError
from querycraft.schema import read_schema
from querycraft.targets import DB_ID, DatabaseTarget, hide_password

__all__ = [
    "ConnectionLost",
    "Database",
    "Databases",
    "ServerDatabase",
    "SqliteDatabase",
    "table_scope",
    "writable_engine",
]


class ConnectionLost(QueryError):
    """The connection died during a query (the query ended it, or an administrator did)
    after the database had been reached: the query's error, not the configuration's. The
    next query opens a fresh connection. ``kind`` is "other"."""

    def __init__(self, message: str) -> None:
        super().__init__("other", message)


# The server-side row limit while a whole result streams to a row sink (MySQL's
# sql_select_limit takes up to 2**64 - 1).
STREAM_ROW_LIMIT = 2**62


class Database:
    """One database that generated SQL may run on: read-only, time-limited, row-capped and
    byte-bounded (the SQL text before parsing, each value, the whole result).

    Every service runs SQL through :meth:`execute` and checks SQL with :meth:`check`, whatever
    the engine; the subclasses hold what differs.
    """

    kind: str = "sqlite"
    name: str = ""

    @property
    def dialect(self) -> str:
        return get_engine(self.kind).dialect

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000,
                max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES,
                max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                row_sink: Callable[[tuple], None] | None = None) -> QueryResult:
        """Run one read-only query; a :class:`QueryError` (:class:`TooLarge` over a byte
        bound, :class:`ConnectionLost` when a server connection died) when it cannot.
        ``row_sink``: every row of the whole result, past the cap too, is passed to it as it
        streams past (within the time limit); only the first ``max_rows`` are kept."""
        raise NotImplementedError

    def check(self, sql: str, *, timeout_s: float = 10.0,
              max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES) -> str | None:
        """Compile without running: None when the database accepts ``sql``, else why not
        (SQL text over ``max_sql_bytes`` is not parsed)."""
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


class SqliteDatabase(Database):
    """A SQLite file, opened read-only (see :func:`open_sqlite_readonly`)."""

    kind = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.connection = open_sqlite_readonly(self.path)

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000,
                max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES,
                max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                row_sink: Callable[[tuple], None] | None = None) -> QueryResult:
        return execute_readonly(self.connection, sql, timeout_s=timeout_s, max_rows=max_rows,
                                max_sql_bytes=max_sql_bytes, max_value_bytes=max_value_bytes,
                                max_result_bytes=max_result_bytes, row_sink=row_sink)

    def check(self, sql: str, *, timeout_s: float = 10.0,
              max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES) -> str | None:
        try:
            check_sql_size(sql, max_sql_bytes)
        except QueryError as err:
            return err.message
        return explain_sqlite(self.connection, sql)

    def schema_text(self, *, tables: list[str] | None = None, sample_values: int = 0,
                    question: str | None = None) -> str:
        return read_schema(self.path, tables=tables, sample_values=sample_values,
                           question=question)

    def close(self) -> None:
        self.connection.close()


def _driver_message(err: BaseException) -> str:
    """The database's own words: the DBAPI error's first line, password-free."""
    original = getattr(err, "orig", None) or err
    text = str(original).strip().splitlines()
    return hide_password(text[0] if text else type(original).__name__)


class ServerDatabase(Database):
    """A database on a server, reached through SQLAlchemy; the engine says how to guard it.

    Read-only in layers: the engine's own refusals and the shared statement allow-list; the
    engine's session setup (read-only transactions by default) on every new connection; its
    query setup (a read-only transaction, the statement time limit) before each query; a
    server-side cursor that fetches at most ``max_rows + 1`` rows, in batches, measuring
    every value and the running total against the byte bounds; and a rollback after every
    query. The per-engine details are in ``querycraft/engines/<kind>.py``.

    A connection that dies during a query after the database was reached (the query ended
    it, or an administrator) is that query's :class:`ConnectionLost`, and the pool is
    dropped so the next query connects afresh; a database never reached is the
    configuration's error (:class:`QueryCraftError`).
    """

    # Rows per round trip of the server-side cursor: a batch is measured before the next.
    FETCH_BATCH = 500

    def __init__(self, target: DatabaseTarget, db_id: str = "") -> None:
        self.kind = target.kind
        self.spec = target.engine
        self.target = target
        self.db_id = db_id
        self.name = target.describe(db_id)
        self.schema = target.schema_for(db_id)
        self.engine = _server_engine(target, db_id, read_only=True)
        self.reached = False  # a connection was made at least once
        self.scope = table_scope(target, db_id)

    def _run(self, statement: str, timeout_s: float, max_rows: int, *, explain: bool,
             max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
             max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
             row_sink: Callable[[tuple], None] | None = None) -> QueryResult:
        start = time.monotonic()
        with self.engine.connect() as conn:
            self.reached = True
            try:
                if self.spec.query_setup is not None:
                    # Streaming the whole result: no server-side row limit.
                    self.spec.query_setup(conn, timeout_s,
                                          max_rows if row_sink is None else STREAM_ROW_LIMIT)
                if explain:
                    if self.spec.check_statement is not None:
                        self.spec.check_statement(conn, statement)
                    else:
                        conn.exec_driver_sql(
                            _escape_percent(f"EXPLAIN {statement}", self.engine)).fetchall()
                    return QueryResult([], [], False, time.monotonic() - start)
                # The engine's bound on values while they stream (PostgreSQL: the statement
                # wrapped so that no value over the cap leaves the server).
                guarded = (self.spec.value_guard(conn, statement, max_value_bytes)
                           if self.spec.value_guard is not None else None)
                check_row = guarded[1] if guarded is not None else None
                if guarded is not None:
                    statement = guarded[0]
                # yield_per: a server-side cursor fetching batches of rows, each measured
                # before the next is asked for, so a huge result never reaches this process.
                batch = min(max_rows + 1, self.FETCH_BATCH)
                result = conn.execution_options(yield_per=batch).exec_driver_sql(
                    _escape_percent(statement, self.engine))
                columns = list(result.keys())
                if check_row is not None:
                    columns = columns[:-1]
                rows: list[tuple] = []
                total = 0
                while len(rows) <= max_rows or row_sink is not None:
                    fetched = result.fetchmany(batch if row_sink is not None
                                               else min(batch, max_rows + 1 - len(rows)))
                    if not fetched:
                        break
                    for row in fetched:
                        if check_row is not None:
                            row = check_row(tuple(row))
                        if row_sink is not None:
                            row_sink(tuple(row))
                            if len(rows) > max_rows:
                                continue  # streamed, not kept
                        total += row_bytes(row, max_value_bytes)
                        if total > max_result_bytes:
                            raise result_too_large(max_result_bytes)
                        rows.append(tuple(row))
                result.close()
            finally:
                conn.rollback()
                if self.spec.query_teardown is not None:
                    self.spec.query_teardown(conn)
        return QueryResult(columns=columns, rows=[tuple(r) for r in rows[:max_rows]],
                           truncated=len(rows) > max_rows, elapsed_s=time.monotonic() - start)

    def execute(self, sql: str, *, timeout_s: float = 10.0, max_rows: int = 10_000,
                max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES,
                max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
                row_sink: Callable[[tuple], None] | None = None) -> QueryResult:
        check_limits(timeout_s, max_rows)
        check_sql_size(sql, max_sql_bytes)
        statement = allowed_statement(sql, self.spec, max_value_bytes=max_value_bytes,
                                      scope=self.scope)
        reached_before = self.reached
        try:
            return self._run(statement, timeout_s, max_rows, explain=False,
                             max_value_bytes=max_value_bytes,
                             max_result_bytes=max_result_bytes, row_sink=row_sink)
        except sa_exc.DBAPIError as err:
            message = _driver_message(err)
            if self._is_connection_error(err):
                self.engine.dispose()  # the next query connects afresh
                if not (reached_before or self.reached):
                    raise QueryCraftError(_unreachable(self.name, message)) from err
                raise ConnectionLost(
                    f"the connection to {self.name} was lost during this query ({message}); "
                    "the next query opens a new one") from err
            raise QueryError(classify_error(message), message) from err
        except sa_exc.SQLAlchemyError as err:  # a dead connection can surface outside DBAPI
            self.engine.dispose()
            if not (reached_before or self.reached):
                raise QueryCraftError(_unreachable(self.name, str(err))) from err
            raise ConnectionLost(f"the connection to {self.name} failed during this query "
                                 f"({hide_password(str(err).splitlines()[0])}); the next "
                                 "query opens a new one") from err

    def check(self, sql: str, *, timeout_s: float = 10.0,
              max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES) -> str | None:
        try:
            check_sql_size(sql, max_sql_bytes)
            statement = allowed_statement(sql, self.spec, scope=self.scope)
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

    def _is_connection_error(self, err: sa_exc.DBAPIError) -> bool:
        if err.connection_invalidated:
            return True
        if self.spec.is_connection_error is not None:
            return self.spec.is_connection_error(getattr(err, "orig", None) or err)
        return _is_connection_error(err)

    def close(self) -> None:
        self.engine.dispose()


def table_scope(target: DatabaseTarget, db_id: str = "") -> TableScope:
    """The schemas (MySQL: databases) generated SQL may name before a table on ``target``:
    the configured schema (or the engine's default one: PostgreSQL's public, Db2's user's),
    the database itself where it qualifies tables (MySQL), and ``db.allow_schemas``."""
    spec = target.engine
    url = target.url_for(db_id)
    names = set(target.allow_schemas)
    schema = target.schema_for(db_id)
    if schema:
        names.add(schema)
    elif spec.default_schema is not None:
        default = spec.default_schema(url)
        if default:
            names.add(default)
    if spec.database_qualifies and url.database:
        names.add(url.database)
    catalogs = {url.database} if url.database and not spec.database_qualifies else set()
    return TableScope(frozenset(names), frozenset(catalogs), spec.name_case)


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


def _server_engine(target: DatabaseTarget, db_id: str, *, read_only: bool
                   ) -> sqlalchemy.Engine:
    """A SQLAlchemy engine for ``target``; ``read_only`` sets the session guards."""
    spec = target.engine
    url = target.url_for(db_id)
    schema = target.schema_for(db_id)
    connect_args: dict[str, Any] = (spec.connect_args(target.connect_timeout_s)
                                    if spec.connect_args is not None else {})
    try:
        engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=2,
                                          pool_pre_ping=True, connect_args=connect_args)
    except ImportError as err:
        raise QueryCraftError(
            f"The driver for {target.describe(db_id)} is not installed ({err}). Install it "
            f"with {spec.install}.") from err
    except sa_exc.ArgumentError as err:
        raise QueryCraftError(f"{target.describe(db_id)} is not a usable database URL: "
                              f"{hide_password(str(err))}") from err

    if spec.session_setup is not None:
        session_setup = spec.session_setup

        @sqlalchemy.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            session_setup(dbapi_connection, schema, read_only)

    # Least privilege (issue 14): a login too privileged for generated SQL is refused on each
    # new connection, with the engine's message, unless db.allow_privileged.
    if read_only and spec.privilege_problem is not None and not target.allow_privileged:
        privilege_problem = spec.privilege_problem

        @sqlalchemy.event.listens_for(engine, "connect")
        def _refuse_privileged(dbapi_connection: Any, _record: Any) -> None:
            problem = privilege_problem(dbapi_connection, schema)
            if problem:
                # The pool closes the connection it could not set up; closing it here too made
                # SQLAlchemy log a traceback ("Already closed") before the refusal.
                raise QueryCraftError(f"{target.describe(db_id)}: {problem}")

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
            servers = " / ".join(f"db={k}" for k, e in engines().items() if e.is_server)
            raise QueryCraftError("No database to run the SQL on: set db.path to a SQLite file "
                                  f"or folder, or choose a server with {servers}.")
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

    def discard(self, db_id: str = "") -> None:
        """Close the database of ``db_id``: the next :meth:`get` opens it afresh (after a
        query lost its connection or was stopped midway)."""
        database = self._open.pop(db_id if self.per_db_id else "", None)
        if database is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail
                database.close()

    def close(self) -> None:
        for database in self._open.values():
            database.close()
        self._open.clear()

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
