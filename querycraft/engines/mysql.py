"""MySQL and MariaDB through SQLAlchemy + PyMySQL (``pip install -e '.[mysql]'``).

Read-only in layers, like PostgreSQL:
    1. this engine's own refusals (:func:`refuse`), then the shared allow-list in sqlglot's
       MySQL dialect. The refusals cover what only MySQL reads as code: executable comments
       (``/*! ... */``, ``/*M! ... */``), ``--`` without a following space (an operator, not a
       comment), ``INTO OUTFILE`` / ``INTO DUMPFILE`` and functions that reach outside the
       query (``load_file``, locks, ``sleep``, ``sys_exec``);
    2. the session's transactions are READ ONLY (``SET SESSION TRANSACTION READ ONLY``);
    3. each query runs in its own ``START TRANSACTION READ ONLY``, always rolled back, with a
       statement time limit (MariaDB ``max_statement_time``, seconds; MySQL
       ``MAX_EXECUTION_TIME``, milliseconds: the server is asked which it is) and a row cap on
       the server (``sql_select_limit`` = ``max_rows + 1``);
    4. a database user with the SELECT privilege only is the real boundary
       (docs/DATABASES.md): it also stops ``INTO OUTFILE`` (FILE privilege) outright.

A MySQL "schema" is a database: ``db.schema`` selects one with ``USE`` on each connection.
"""

from __future__ import annotations

import math
import re
from typing import Any

import sqlalchemy

from querycraft.engines.base import Engine

__all__ = ["ENGINE", "refuse"]

# Functions that touch files, locks or the server outside the query, or only wait.
_DENIED_FUNCTIONS = frozenset({
    "load_file", "sys_exec", "sys_eval", "get_lock", "release_lock", "release_all_locks",
    "is_free_lock", "is_used_lock", "master_pos_wait", "master_gtid_wait",
    "source_pos_wait", "sleep",
})
_DENIED_CALL = re.compile(r"\b(" + "|".join(sorted(_DENIED_FUNCTIONS)) + r")\s*\(",
                          re.IGNORECASE)
_INTO_FILE = re.compile(r"\binto\s+(outfile|dumpfile)\b", re.IGNORECASE)


def _code(sql: str, backslash_escapes: bool) -> tuple[str, str | None]:
    """The text MySQL reads as code, literals and comments blanked out; or why to refuse.

    ``backslash_escapes``: whether ``\\'`` continues a string (MySQL's default) or not
    (sql_mode NO_BACKSLASH_ESCAPES); :func:`refuse` reads the text both ways.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if backslash_escapes and c != "`" and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # a doubled quote stays inside
                        j += 2
                        continue
                    break
                j += 1
            out.append(" ")
            i = j + 1
            continue
        if sql.startswith("/*", i):
            if sql.startswith(("/*!", "/*M!", "/*m!"), i):
                return "", "executable comments (/*! ... */) are code in MySQL, not comments"
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
            continue
        if sql.startswith("--", i):
            if i + 2 < n and not sql[i + 2].isspace():
                return "", "'--' without a space after it is an operator in MySQL, not a comment"
            c = "#"  # a comment to the end of the line, like '#'
        if c == "#":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
            continue
        out.append(c)
        i += 1
    return "".join(out), None


def refuse(sql: str) -> str | None:
    """Why ``sql`` must not run on MySQL/MariaDB, or None.

    Looks only at code (outside string literals, quoted names and comments, as MySQL reads
    them, with and without backslash escapes), so a string that merely mentions OUTFILE is
    fine.
    """
    for backslash_escapes in (True, False):
        code, why = _code(sql, backslash_escapes)
        if why:
            return why
        if _INTO_FILE.search(code):
            return "SELECT ... INTO OUTFILE/DUMPFILE writes a file; only read-only queries may run"
        call = _DENIED_CALL.search(code)
        if call:
            return f"the function {call.group(1).lower()}() is not allowed in read-only queries"
    return None


def _connect_args(connect_timeout_s: float) -> dict[str, Any]:
    return {"connect_timeout": max(1, math.ceil(connect_timeout_s))}


def _session_setup(dbapi_connection: Any, schema: str | None, read_only: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        if read_only:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
        if schema:
            cursor.execute("USE `" + schema.replace("`", "``") + "`")
    finally:
        cursor.close()


def _query_setup(conn: sqlalchemy.Connection, timeout_s: float, max_rows: int) -> None:
    # SQLAlchemy asks the server its version on the first connection: is_mariadb is known.
    if getattr(conn.dialect, "is_mariadb", False):
        conn.exec_driver_sql(f"SET SESSION max_statement_time = {max(0.001, timeout_s):.3f}")
    else:  # MySQL: milliseconds, for read-only SELECTs (all that passes the allow-list)
        conn.exec_driver_sql(f"SET SESSION MAX_EXECUTION_TIME = {max(1, int(timeout_s * 1000))}")
    # The server stops after max_rows + 1 rows (a LIMIT in the query itself overrides it), so
    # closing the streaming cursor does not have to read a huge result to its end.
    conn.exec_driver_sql(f"SET SESSION sql_select_limit = {max_rows + 1}")
    conn.exec_driver_sql("START TRANSACTION READ ONLY")


def _query_teardown(conn: sqlalchemy.Connection) -> None:
    # Session settings outlive the query: the pooled connection also reads the catalogue.
    limit = "max_statement_time" if getattr(conn.dialect, "is_mariadb", False) \
        else "MAX_EXECUTION_TIME"
    conn.exec_driver_sql(f"SET SESSION {limit} = DEFAULT, sql_select_limit = DEFAULT")


# Client-side errors (2000-2999: cannot connect, server gone, lost connection) and the server
# refusing the login or the database.
_CONNECTION_CODES = frozenset({1044, 1045, 1049, 1130, 1203})


def _is_connection_error(original: BaseException) -> bool:
    args = getattr(original, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    if code is None:  # PyMySQL's InterfaceError(0, '') for a closed connection, and others
        return type(original).__name__ == "InterfaceError"
    return 2000 <= code < 3000 or code in _CONNECTION_CODES


ENGINE = Engine(
    kind="mysql",
    dialect="mysql",
    prompt_name="MySQL",
    sqlalchemy_names=("mysql", "mariadb"),
    driver="mysql+pymysql",
    default_port=3306,
    install="pip install -e '.[mysql]' (PyMySQL)",
    error_patterns={
        "timeout": r"max_statement_time|maximum statement execution time",
        "refused": r"in a READ ONLY transaction|command denied",
        "ambiguous_column": r"column '[^']*' in .* is ambiguous",
        "no_such_table": r"table '[^']*' doesn't exist",
        "no_such_column": r"unknown column",
        "syntax": r"an error in your SQL syntax",
    },
    connect_args=_connect_args,
    session_setup=_session_setup,
    query_setup=_query_setup,
    query_teardown=_query_teardown,
    refuse=refuse,
    is_connection_error=_is_connection_error,
    text_type_comparable=True,  # MySQL compares TEXT with '=' like VARCHAR
)
