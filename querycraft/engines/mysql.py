"""MySQL and MariaDB through SQLAlchemy + PyMySQL (``pip install -e '.[mysql]'``).

Read-only in layers, like PostgreSQL:
    1. the statement read as the server reads it (:data:`SYNTAX`: executable comments
       ``/*! ... */``, ``/*M! ... */`` and hints ``/*+ ... */`` refused, ``--`` a comment only
       before ASCII whitespace, strings read with and without backslash escapes), then this
       engine's own refusals (:func:`refuse`: ``INTO OUTFILE`` / ``INTO DUMPFILE``, variables
       and functions that reach outside the query: ``load_file``, locks, ``sleep``,
       ``sys_exec``), then the shared allow-list in sqlglot's MySQL dialect;
    2. the session's transactions are READ ONLY (``SET SESSION TRANSACTION READ ONLY``);
    3. each query runs in its own ``START TRANSACTION READ ONLY``, always rolled back, with a
       statement time limit (MariaDB ``max_statement_time``, seconds; MySQL
       ``MAX_EXECUTION_TIME``, milliseconds: the server is asked which it is) and a row cap on
       the server (``sql_select_limit`` = ``max_rows + 1``);
    4. a database user with the SELECT privilege only is the real boundary
       (docs/DATABASES.md): it also stops ``INTO OUTFILE`` (FILE privilege) outright.
       :func:`privilege_problem` reads ``SHOW GRANTS`` (and the grants of the user's roles)
       on every new connection and refuses anything beyond SELECT / SHOW VIEW / USAGE
       (ALL PRIVILEGES, SUPER, FILE, PROCESS, INSERT, ... or WITH GRANT OPTION) unless
       ``db.allow_privileged``;
    5. only the functions of :data:`ALLOWED_FUNCTIONS`, no system schema (``mysql``,
       ``information_schema``, ``performance_schema``, ``sys``);
    6. after each query the connection is reset (``COM_RESET_CONNECTION``: user locks,
       user variables, session settings, temporary tables) and set up again.

A MySQL "schema" is a database: ``db.schema`` selects one with ``USE`` on each connection.
"""

from __future__ import annotations

import math
import re
import weakref
from typing import Any

import sqlalchemy

from querycraft.engines.base import COMMON_FUNCTIONS, Engine, privileged_login_message
from querycraft.engines.bounds import Pads, Repeats
from querycraft.engines.syntax import Quote, Reading, Syntax

__all__ = ["ALLOWED_FUNCTIONS", "ENGINE", "SYNTAX", "grant_reasons", "granted_roles",
           "privilege_problem", "refuse"]

# What SQL questions need, in MySQL's and MariaDB's spelling; anything else is refused by name.
ALLOWED_FUNCTIONS: frozenset[str] = COMMON_FUNCTIONS | frozenset({
    "ifnull", "isnull", "nvl", "lcase", "ucase", "instr", "locate", "mid", "substring_index",
    "field", "elt", "find_in_set", "strcmp", "space", "hex", "format", "soundex",
    "json_extract", "json_unquote", "bit_and", "bit_or", "bit_xor", "std", "curdate",
    "curtime", "now", "sysdate", "adddate", "subdate", "addtime", "subtime", "timestampadd",
    "date_format", "time_format", "makedate", "maketime", "from_days", "to_days",
    "unix_timestamp", "from_unixtime", "weekday", "weekofyear", "yearweek", "microsecond",
    "period_add", "period_diff", "sec_to_time", "time_to_sec", "timediff", "convert",
    "json_arrayagg", "json_objectagg", "median",
})

# Privileges a login for generated SQL may hold; anything else in SHOW GRANTS is refused.
_READ_PRIVILEGES = frozenset({"USAGE", "SELECT", "SHOW VIEW"})
_GRANT = re.compile(r"^GRANT\s+(?P<what>.+?)\s+ON\s+(?P<on>.+?)\s+TO\s", re.IGNORECASE | re.DOTALL)
_ROLE_GRANT = re.compile(r"^GRANT\s+(?P<roles>.+?)\s+TO\s", re.IGNORECASE | re.DOTALL)
READ_ONLY_USER_SQL = ("CREATE USER 'qc_reader'@'%' IDENTIFIED BY '...'; GRANT SELECT ON "
                      "`<database>`.* TO 'qc_reader'@'%'")


def _split_top(text: str) -> list[str]:
    """``text`` split at commas outside parentheses (column lists) and backquotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, c in enumerate(text):
        if c == "`":
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and depth == 0 and c == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def grant_reasons(lines: list[str]) -> list[str]:
    """What the ``SHOW GRANTS`` lines allow beyond reading (empty: a read-only user)."""
    reasons: list[str] = []
    for line in lines:
        found = _GRANT.match(line.strip())
        if not found:
            continue  # a role grant (GRANT `role` TO ...): its own grants are read separately
        privileges = [re.sub(r"\s*\(.*\)\s*$", "", p, flags=re.DOTALL).upper()
                      for p in _split_top(found.group("what"))]
        extra = [p for p in privileges if p not in _READ_PRIVILEGES]
        if extra:
            reasons.append(f"holds {', '.join(extra)} ON {found.group('on')}")
        if re.search(r"\bWITH\b.*\bGRANT\s+OPTION\b", line, re.IGNORECASE):
            reasons.append(f"may grant privileges ON {found.group('on')} (WITH GRANT OPTION)")
    return reasons


def granted_roles(lines: list[str]) -> list[str]:
    """The roles the ``SHOW GRANTS`` lines grant (``GRANT `role` TO ...``), as written."""
    roles: list[str] = []
    for line in lines:
        text = line.strip()
        if _GRANT.match(text):
            continue
        found = _ROLE_GRANT.match(text)
        if found:
            roles.extend(_split_top(found.group("roles")))
    return roles


def privilege_problem(dbapi_connection: Any, _schema: str | None) -> str | None:
    """Why this login must not run generated SQL (one paragraph with the fix), or None: its
    ``SHOW GRANTS``, and those of the roles granted to it, allow more than reading."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT CURRENT_USER()")
        user = str(cursor.fetchone()[0])
        cursor.execute("SHOW GRANTS")
        lines = [str(r[0]) for r in cursor.fetchall()]
        seen: set[str] = set()
        pending = granted_roles(lines)
        while pending and len(seen) < 50:
            role = pending.pop()
            if role in seen:
                continue
            seen.add(role)
            cursor.execute(f"SHOW GRANTS FOR {role}")
            role_lines = [str(r[0]) for r in cursor.fetchall()]
            lines += role_lines
            pending += granted_roles(role_lines)
    finally:
        cursor.close()
    reasons = grant_reasons(lines)
    if not reasons:
        return None
    return privileged_login_message(
        "MySQL/MariaDB", user, reasons,
        f"Create a user that may only read: {READ_ONLY_USER_SQL} (one GRANT per database).")

# Functions that touch files, locks or the server outside the query, or only wait.
_DENIED_FUNCTIONS = frozenset({
    "load_file", "sys_exec", "sys_eval", "get_lock", "release_lock", "release_all_locks",
    "is_free_lock", "is_used_lock", "master_pos_wait", "master_gtid_wait",
    "source_pos_wait", "sleep",
})
_DENIED_CALL = re.compile(r"\b(" + "|".join(sorted(_DENIED_FUNCTIONS)) + r")\s*\(",
                          re.IGNORECASE)
_INTO_FILE = re.compile(r"\binto\s+(outfile|dumpfile)\b", re.IGNORECASE)


# MariaDB's and MySQL's lexer (sql_lex.cc): '' and \' in strings, depending on sql_mode
# NO_BACKSLASH_ESCAPES; "..." a string or, with ANSI_QUOTES, a name; `...` a name; '#' and
# '-- ' comments to the newline ('--' before anything but whitespace or a control character
# is two minus signs); /*! ... */ and /*M! ... */ are code, /*+ ... */ optimizer hints.
SYNTAX = Syntax(
    server="MariaDB/MySQL",
    quotes=(Quote("'", "'", backslash=(True, False)), Quote('"', '"', backslash=(True, False)),
            Quote("`", "`", name=True)),
    line_comments=("--", "#"),
    dash_comment_needs_space=True,
    refused_comments={
        "/*!": "MySQL and MariaDB run what is inside an executable comment",
        "/*M!": "MariaDB runs what is inside an executable comment",
        "/*+": "MySQL reads an optimizer hint, which can lift the statement's time limit",
    },
)


def refuse(reading: Reading) -> str | None:
    """Why the statement must not run on MySQL/MariaDB, or None.

    Looks only at code (``reading.code``: outside string literals and quoted names, as the
    server reads them; comments are already gone), so a string that merely mentions OUTFILE
    is fine. Variables (``@x``, ``@@setting``) are refused: they outlive the query or read the
    server's settings.
    """
    code = reading.code
    if _INTO_FILE.search(code):
        return "SELECT ... INTO OUTFILE/DUMPFILE writes a file; only read-only queries may run"
    call = _DENIED_CALL.search(code)
    if call:
        return f"the function {call.group(1).lower()}() is not allowed in read-only queries"
    if "@" in code:  # outside literals and names, '@' is a variable: @x := ..., @@datadir
        return ("variables (@name, @@setting) are not allowed: they keep state between "
                "queries and read server settings")
    return None


def _connect_args(connect_timeout_s: float) -> dict[str, Any]:
    return {"connect_timeout": max(1, math.ceil(connect_timeout_s))}


# What each connection's session setup was, so that the reset after a query can apply it again.
_SESSIONS: weakref.WeakKeyDictionary[Any, tuple[str | None, bool]] = weakref.WeakKeyDictionary()

_COM_RESET_CONNECTION = 0x1F  # MySQL 5.7.3+, MariaDB 10.2.4+


def _session_setup(dbapi_connection: Any, schema: str | None, read_only: bool) -> None:
    _SESSIONS[dbapi_connection] = (schema, read_only)
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
    """Reset the session (``COM_RESET_CONNECTION``: user locks, user variables, session
    settings such as the time limit and row cap, temporary tables, prepared statements), then
    its character set, autocommit mode and the session setup again. A connection that cannot
    be reset is discarded, never reused."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        return
    try:
        raw.rollback()
        autocommit = raw.get_autocommit()
        raw._execute_command(_COM_RESET_CONNECTION, b"")  # PyMySQL has no public call for it
        raw._read_ok_packet()
        raw.set_character_set(raw.charset, raw.collation)
        raw.autocommit(autocommit)
        schema, read_only = _SESSIONS.get(raw, (None, True))
        _session_setup(raw, schema, read_only)
    except Exception:  # the query's own error, if any, is what the caller sees
        conn.invalidate()


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
    privilege_problem=privilege_problem,
    allowed_functions=ALLOWED_FUNCTIONS,
    system_relations=r"^(mysql|information_schema|performance_schema|sys)\.",
    is_connection_error=_is_connection_error,
    text_type_comparable=True,  # MySQL compares TEXT with '=' like VARCHAR
    syntax=SYNTAX,
    size_rules={"repeat": Repeats(count=1, text=0), "space": Repeats(count=0),
                "pad": Pads(length=1, fill=2), "lpad": Pads(length=1, fill=2),
                "rpad": Pads(length=1, fill=2)},
    database_qualifies=True,
)
