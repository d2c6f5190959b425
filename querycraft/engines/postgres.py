"""PostgreSQL through SQLAlchemy + psycopg (``pip install -e '.[postgres]'``).

Least privilege first: the login must be a role that can only read (:func:`privilege_problem`
refuses a superuser, a role that can create roles or databases, a member of
``pg_write_all_data`` / ``pg_read_server_files`` / ``pg_signal_backend`` / ... and a role
that can write a table of the target schema, unless ``db.allow_privileged``). Then, after the
shared allow-list: only the functions of :data:`ALLOWED_FUNCTIONS`, no system catalogue
(``pg_*``, ``information_schema``); a session whose transactions default to READ ONLY; each
query in its own ``SET TRANSACTION READ ONLY`` transaction with ``SET LOCAL
statement_timeout``, always rolled back, read through a server-side cursor (which takes only
queries) that fetches at most ``max_rows + 1`` rows; and ``DISCARD ALL`` after it (advisory
locks, settings, prepared statements, temporary tables), so nothing survives into the next
query on the pooled connection.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy

from querycraft.engines.base import COMMON_FUNCTIONS, Engine, TooLarge, privileged_login_message
from querycraft.engines.bounds import Formats, Pads, Repeats
from querycraft.engines.syntax import Quote, Syntax

__all__ = ["ALLOWED_FUNCTIONS", "ENGINE", "READ_ONLY_ROLE_SQL", "SYNTAX", "privilege_problem",
           "value_guard"]

# What SQL questions need, in PostgreSQL's spelling; anything else is refused by name.
ALLOWED_FUNCTIONS: frozenset[str] = COMMON_FUNCTIONS | frozenset({
    "string_agg", "array_agg", "bool_and", "bool_or", "every", "percentile_cont",
    "percentile_disc", "mode", "corr", "covar_pop", "covar_samp", "regr_slope",
    "regr_intercept", "strpos", "btrim", "format", "md5", "regexp_matches", "regexp_split_to_array",
    "date_part", "age", "now", "make_timestamp", "make_interval", "justify_days",
    "justify_hours", "justify_interval", "to_timestamp", "isfinite", "array_length",
    "unnest", "cardinality", "array_to_string", "string_to_array", "generate_series", "scale",
    "factorial", "gcd", "lcm", "nullif", "num_nonnulls", "num_nulls", "date_bin",
})

# Predefined roles a login for generated SQL must not be a member of: write any table, read
# or write server files, run server programs, signal other sessions, read every setting or
# statistic, checkpoint.
_REFUSED_ROLES = ("pg_write_all_data", "pg_read_server_files", "pg_write_server_files",
                  "pg_execute_server_program", "pg_signal_backend", "pg_read_all_settings",
                  "pg_read_all_stats", "pg_stat_scan_tables", "pg_monitor", "pg_checkpoint",
                  "pg_create_subscription", "pg_use_reserved_connections")

# docs/DATABASES.md shows the same, with a per-schema alternative to pg_read_all_data.
READ_ONLY_ROLE_SQL = ("CREATE ROLE qc_reader LOGIN PASSWORD '...' NOSUPERUSER NOCREATEDB "
                      "NOCREATEROLE; GRANT pg_read_all_data TO qc_reader; (or, per schema: "
                      "GRANT CONNECT ON DATABASE <db> TO qc_reader; GRANT USAGE ON SCHEMA "
                      "<schema> TO qc_reader; GRANT SELECT ON ALL TABLES IN SCHEMA <schema> "
                      "TO qc_reader)")

# Where unqualified names resolve when db.schema is not set (the reader session's search_path,
# and the table scope's schema).
DEFAULT_SCHEMA = "public"

_PRIVILEGES_QUERY = """
SELECT current_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       r.rolbypassrls,
       ARRAY(SELECT p.rolname::text FROM pg_roles p
             WHERE p.rolname = ANY(%(refused)s) AND pg_has_role(current_user, p.oid, 'MEMBER')
             ORDER BY 1),
       ARRAY(SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY(current_schemas(false)) AND c.relkind IN ('r', 'p', 'v', 'f')
               AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
             ORDER BY 1 LIMIT 3),
       ARRAY(SELECT n.nspname::text FROM pg_namespace n
             WHERE n.nspname = ANY(current_schemas(false))
               AND has_schema_privilege(n.oid, 'CREATE') ORDER BY 1)
FROM pg_roles r WHERE r.rolname = current_user
"""


def privilege_reasons(row: tuple) -> list[str]:
    """The reasons, from one row of the privileges query, that the login is too privileged
    (empty: a read-only role)."""
    (_user, superuser, createrole, createdb, replication, bypassrls, roles, writable,
     creatable) = row
    if superuser:  # everything else follows from it
        return ["is a superuser"]
    reasons = []
    for held, what in ((createrole, "can create roles"), (createdb, "can create databases"),
                       (replication, "is a replication role"),
                       (bypassrls, "bypasses row-level security")):
        if held:
            reasons.append(what)
    if roles:
        reasons.append("is a member of " + ", ".join(roles))
    if writable:
        reasons.append("can write the tables " + ", ".join(writable))
    if creatable:
        reasons.append("can create tables in the schema " + ", ".join(creatable))
    return reasons


def privilege_problem(dbapi_connection: Any, _schema: str | None) -> str | None:
    """Why this login must not run generated SQL (one paragraph with the fix), or None.

    Runs after the session setup, so the target schema is already the search path."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(_PRIVILEGES_QUERY, {"refused": list(_REFUSED_ROLES)})
        row = cursor.fetchone()
    finally:
        cursor.close()
        dbapi_connection.rollback()
    if row is None:
        return None
    reasons = privilege_reasons(row)
    if not reasons:
        return None
    return privileged_login_message("PostgreSQL", row[0], reasons,
                                    f"Create a read-only role: {READ_ONLY_ROLE_SQL}.")


def _connect_args(connect_timeout_s: float) -> dict[str, Any]:
    return {"connect_timeout": max(1, math.ceil(connect_timeout_s))}


# What each connection's session setup was, so that the reset after a query can apply it again.
_SESSIONS: weakref.WeakKeyDictionary[Any, tuple[str | None, bool]] = weakref.WeakKeyDictionary()


def _session_setup(dbapi_connection: Any, schema: str | None, read_only: bool) -> None:
    _SESSIONS[dbapi_connection] = (schema, read_only)
    cursor = dbapi_connection.cursor()
    if read_only:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        # Unqualified names resolve in the configured schema only (public when db.schema is
        # unset), never through a search_path the server or the role set: the table
        # allow-list (db.allow_schemas) assumes it.
        schema = schema or DEFAULT_SCHEMA
    if schema:
        quoted = '"' + schema.replace('"', '""') + '"'
        cursor.execute(f"SET search_path TO {quoted}")
    cursor.close()
    dbapi_connection.commit()


def _query_setup(conn: sqlalchemy.Connection, timeout_s: float, _max_rows: int) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")


def _query_teardown(conn: sqlalchemy.Connection) -> None:
    """``DISCARD ALL`` (outside a transaction: the query's was rolled back) drops advisory
    locks, settings, prepared statements, cursors, LISTENs and temporary tables; then the
    session setup again (DISCARD ALL also reset the read-only default and the search path).
    A connection that cannot be reset is discarded, never reused."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        return
    try:
        autocommit = raw.autocommit
        raw.rollback()
        raw.autocommit = True
        try:
            raw.execute("DISCARD ALL")
        finally:
            raw.autocommit = autocommit
        schema, read_only = _SESSIONS.get(raw, (None, True))
        _session_setup(raw, schema, read_only)
    except Exception:  # the query's own error, if any, is what the caller sees
        conn.invalidate()


# PostgreSQL's lexer (scan.l): '' in strings, and \' too where standard_conforming_strings
# is off (a setting a session may change); E'...' always takes backslash escapes; $tag$ ...
# $tag$ strings; "..." names; '--' to a newline or carriage return; block comments nest.
SYNTAX = Syntax(
    server="PostgreSQL",
    quotes=(Quote("'", "'", backslash=(True,), prefix="e"),
            Quote("'", "'", backslash=(False, True)), Quote('"', '"', name=True)),
    nested_comments=True,
    dollar_quotes=True,
)

# The size column the value guard adds after the query's own columns.
_SIZE_COLUMN = "qc_value_bytes"
_BYTEA = 17  # pg_type oid
_MAX_COLUMNS = 1664  # a target list's most entries


def _quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def value_guard(conn: sqlalchemy.Connection, statement: str, max_value_bytes: int
                ) -> tuple[str, Callable[[tuple], tuple]] | None:
    """The statement wrapped so that no value over ``max_value_bytes`` leaves the server.

    PostgreSQL sends each row whole, so ``repeat('x', 1e9)`` reached the client (2.9 GB)
    before any bound could look at it. The statement's columns are read with a protocol-level
    describe (Parse + Describe: nothing runs); then each value goes out only when its text is
    at most the cap, beside one more column with the row's largest value size, which the row
    check turns into :class:`~querycraft.engines.base.TooLarge`. ``OFFSET 0`` keeps the
    query a subquery of its own, so each value is computed once and its row order kept.
    None for a statement without columns. A statement that does not compile raises the
    server's error, as running it would.
    """
    import psycopg  # the driver of every postgres engine

    raw = conn.connection.dbapi_connection
    pgconn = raw.pgconn
    encoding = raw.info.encoding
    prepared = pgconn.prepare(b"", statement.encode(encoding))
    if prepared.status != psycopg.pq.ExecStatus.COMMAND_OK:
        error = psycopg.errors.error_from_result(prepared, encoding=encoding)
        raise sqlalchemy.exc.DBAPIError.instance(statement, None, error, psycopg.Error)
    described = pgconn.describe_prepared(b"")
    names = [described.fname(i).decode(encoding, "replace") for i in range(described.nfields)]
    if not names:
        return None
    if len(names) >= _MAX_COLUMNS:
        raise TooLarge("value", f"the query returns {len(names)} columns, PostgreSQL's most, "
                                "which leaves no room for the column that bounds its values; "
                                "select fewer columns")
    inner = [f"c{i}" for i in range(len(names))]
    # A value's size as the client receives it: its text, except bytea, which arrives as
    # bytes (its text form, '\x...', is twice as long).
    sizes = [f"octet_length(q.{c})" if described.ftype(i) == _BYTEA
             else f"octet_length(q.{c}::text)" for i, c in enumerate(inner)]
    columns = ", ".join(f"CASE WHEN {size} <= {max_value_bytes} THEN q.{c} END AS "
                        f"{_quote_name(name)}" for c, size, name in zip(inner, sizes, names,
                                                                          strict=True))
    wrapped = (f"SELECT {columns}, GREATEST({', '.join(sizes)}) AS {_SIZE_COLUMN} FROM "
               f"(SELECT * FROM ({statement}) AS qc_query OFFSET 0) AS q({', '.join(inner)})")

    def check_row(row: tuple) -> tuple:
        size = row[-1]
        if size is not None and size > max_value_bytes:
            raise TooLarge("value", f"a value of the result is {size} bytes, over the limit of "
                                    f"{max_value_bytes} (db.max_value_bytes); the server "
                                    "did not send it")
        return tuple(row[:-1])

    return wrapped, check_row


ENGINE = Engine(
    kind="postgres",
    dialect="postgres",
    prompt_name="PostgreSQL",
    sqlalchemy_names=("postgresql",),
    driver="postgresql+psycopg",
    default_port=5432,
    install="pip install -e '.[postgres]' (psycopg)",
    error_patterns={
        "timeout": r"statement timeout|canceling statement",
        "ambiguous_column": r"column reference .* is ambiguous",
        "no_such_table": r"relation .* does not exist|undefined table",
        "no_such_column": r"column .* does not exist|undefined column",
    },
    connect_args=_connect_args,
    session_setup=_session_setup,
    query_setup=_query_setup,
    query_teardown=_query_teardown,
    privilege_problem=privilege_problem,
    allowed_functions=ALLOWED_FUNCTIONS,
    system_relations=r"^(pg_catalog|information_schema|pg_toast)\.|(^|\.)pg_",
    text_type_comparable=True,
    syntax=SYNTAX,
    size_rules={"repeat": Repeats(count=1, text=0), "pad": Pads(length=1, fill=2),
                "lpad": Pads(length=1, fill=2), "rpad": Pads(length=1, fill=2),
                "format": Formats()},
    value_guard=value_guard,
    name_case="lower",
    default_schema=lambda _url: DEFAULT_SCHEMA,
)
