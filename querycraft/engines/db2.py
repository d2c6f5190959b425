"""IBM Db2 through SQLAlchemy + ibm-db-sa (``pip install -e '.[db2]'``).

Read-only after the shared allow-list (parsed with QueryCraft's Db2 sqlglot dialect): a
connection in read-only access mode with the CLI query timeout, each query in a transaction
that is always rolled back. ``check`` is a prepare: Db2's EXPLAIN writes the explain tables.
No Db2 server runs on the development or CI machines: these hooks follow the ibm_db API but
have not run against a server (docs/DATABASES.md).
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy

from querycraft.engines.base import Engine

__all__ = ["ENGINE"]

_DB2_READ_ONLY_MODE = 1  # SQL_MODE_READ_ONLY in the ODBC/CLI headers


def _session_setup(dbapi_connection: Any, schema: str | None, read_only: bool) -> None:
    import ibm_db  # the Db2 driver; present whenever a db2 engine could be created

    if read_only:
        dbapi_connection.set_option({ibm_db.SQL_ATTR_ACCESS_MODE: _DB2_READ_ONLY_MODE})
    if schema:
        dbapi_connection.set_current_schema(schema)


def _query_setup(conn: sqlalchemy.Connection, timeout_s: float, _max_rows: int) -> None:
    """The CLI query timeout (whole seconds) on this connection's statements."""
    import ibm_db

    raw = conn.connection.dbapi_connection
    raw.set_option({ibm_db.SQL_ATTR_QUERY_TIMEOUT: max(1, math.ceil(timeout_s))})


def _prepare_only(conn: sqlalchemy.Connection, statement: str) -> None:
    """Compile the statement (names, types, syntax) without running it."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.prepare(statement)
    finally:
        cursor.close()


ENGINE = Engine(
    kind="db2",
    dialect="db2",
    prompt_name="Db2",
    sqlalchemy_names=("ibm_db_sa",),
    driver="db2+ibm_db",
    default_port=50000,
    install="pip install -e '.[db2]' (ibm-db-sa and ibm-db)",
    error_patterns={
        "timeout": r"SQL0952N",
        "refused": r"SQL0817N",
        "ambiguous_column": r"SQL0203N",
        "no_such_table": r"SQL0204N",
        "no_such_column": r"SQL0206N",
        "syntax": r"SQL0104N",
    },
    session_setup=_session_setup,
    query_setup=_query_setup,
    check_statement=_prepare_only,
    fetch_first=True,  # ibm_db_sa's LIMIT needs Db2 LUW 11.1+; FETCH FIRST works everywhere
)
