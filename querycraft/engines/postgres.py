"""PostgreSQL through SQLAlchemy + psycopg (``pip install -e '.[postgres]'``).

Read-only in layers after the shared allow-list: a session whose transactions default to
READ ONLY; each query in its own ``SET TRANSACTION READ ONLY`` transaction with
``SET LOCAL statement_timeout``, always rolled back, read through a server-side cursor (which
takes only queries) that fetches at most ``max_rows + 1`` rows.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy

from querycraft.engines.base import Engine

__all__ = ["ENGINE"]


def _connect_args(connect_timeout_s: float) -> dict[str, Any]:
    return {"connect_timeout": max(1, math.ceil(connect_timeout_s))}


def _session_setup(dbapi_connection: Any, schema: str | None, read_only: bool) -> None:
    cursor = dbapi_connection.cursor()
    if read_only:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    if schema:
        quoted = '"' + schema.replace('"', '""') + '"'
        cursor.execute(f"SET search_path TO {quoted}")
    cursor.close()
    dbapi_connection.commit()


def _query_setup(conn: sqlalchemy.Connection, timeout_s: float, _max_rows: int) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")


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
    text_type_comparable=True,
)
