"""IBM Db2 through SQLAlchemy + ibm-db-sa (``pip install -e '.[db2]'``).

Read-only after the shared allow-list (parsed with QueryCraft's Db2 sqlglot dialect): a
connection in read-only access mode with the CLI query timeout, each query in a transaction
that is always rolled back. ``check`` is a prepare: Db2's EXPLAIN writes the explain tables.
Least privilege: :func:`privilege_problem` reads the login's authorities (``SYSCAT.DBAUTH``)
and its table privileges in the current schema (``SYSCAT.TABAUTH``), for the user, its roles
and PUBLIC, and refuses anything beyond CONNECT and SELECT unless ``db.allow_privileged``;
generated SQL may call only the functions of :data:`ALLOWED_FUNCTIONS` and read no ``SYS*``
catalogue.
No Db2 server runs on the development or CI machines: these hooks follow the ibm_db API but
have not run against a server; the decision from the catalogue rows
(:func:`privilege_reasons`) is tested (docs/DATABASES.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy

from querycraft.engines.base import (
    COMMON_FUNCTIONS,
    GENERIC_SYNTAX,
    Engine,
    privileged_login_message,
)
from querycraft.engines.bounds import Pads, Repeats

__all__ = ["ALLOWED_FUNCTIONS", "ENGINE", "PRIVILEGE_QUERIES", "privilege_problem",
           "privilege_reasons"]

# What SQL questions need, in Db2's spelling; anything else is refused by name.
ALLOWED_FUNCTIONS: frozenset[str] = COMMON_FUNCTIONS | frozenset({
    "listagg", "value", "nvl", "decode", "posstr", "locate", "locate_in_string", "instr",
    "varchar", "integer", "int", "bigint", "smallint", "decimal", "dec", "double", "real",
    "float", "days", "days_between", "months_between", "add_months", "add_days",
    "add_years", "midnight_seconds", "julian_day", "week_iso", "dayofweek_iso", "dayname",
    "monthname", "varchar_format", "timestamp_format", "digits", "strip", "lcase", "ucase",
    "median", "date_part", "timestampdiff", "this_month", "first_day", "next_day",
})

# The login's database authorities and its table privileges in the current schema, for the
# user itself, the roles granted to it and PUBLIC (parameters: the grantees, as '?' markers).
PRIVILEGE_QUERIES = {
    "roles": "SELECT ROLENAME FROM SYSCAT.ROLEAUTH WHERE GRANTEETYPE = 'U' AND GRANTEE = "
             "SESSION_USER",
    "dbauth": "SELECT GRANTEE, DBADMAUTH, SECURITYADMAUTH, DATAACCESSAUTH, ACCESSCTRLAUTH, "
              "SQLADMAUTH, WLMADMAUTH, CREATETABAUTH, BINDADDAUTH, NOFENCEAUTH, "
              "IMPLSCHEMAAUTH, LOADAUTH, EXTERNALROUTINEAUTH, QUIESCECONNECTAUTH, "
              "CREATESECUREAUTH FROM SYSCAT.DBAUTH WHERE GRANTEE IN ({grantees})",
    "tabauth": "SELECT GRANTEE, TABSCHEMA, TABNAME, CONTROLAUTH, ALTERAUTH, DELETEAUTH, "
               "INDEXAUTH, INSERTAUTH, REFAUTH, UPDATEAUTH, SELECTAUTH FROM SYSCAT.TABAUTH "
               "WHERE TABSCHEMA = CURRENT SCHEMA AND GRANTEE IN ({grantees})",
}
_DB_AUTHORITIES = {
    "DBADMAUTH": "DBADM", "SECURITYADMAUTH": "SECADM", "DATAACCESSAUTH": "DATAACCESS",
    "ACCESSCTRLAUTH": "ACCESSCTRL", "SQLADMAUTH": "SQLADM", "WLMADMAUTH": "WLMADM",
    "CREATETABAUTH": "CREATETAB", "BINDADDAUTH": "BINDADD", "NOFENCEAUTH": "CREATE_NOT_FENCED",
    "IMPLSCHEMAAUTH": "IMPLICIT_SCHEMA", "LOADAUTH": "LOAD",
    "EXTERNALROUTINEAUTH": "CREATE_EXTERNAL_ROUTINE", "QUIESCECONNECTAUTH": "QUIESCE_CONNECT",
    "CREATESECUREAUTH": "CREATE_SECURE_OBJECT",
}
_TABLE_PRIVILEGES = {
    "CONTROLAUTH": "CONTROL", "ALTERAUTH": "ALTER", "DELETEAUTH": "DELETE",
    "INDEXAUTH": "INDEX", "INSERTAUTH": "INSERT", "REFAUTH": "REFERENCES",
    "UPDATEAUTH": "UPDATE",
}
READ_ONLY_USER_SQL = ("GRANT CONNECT ON DATABASE TO USER QC_READER; GRANT SELECT ON "
                      "<schema>.<table> TO USER QC_READER (per table; no DBADM, DATAACCESS, "
                      "CREATETAB, IMPLICIT_SCHEMA or LOAD, for the user, its roles or PUBLIC)")


def _held(value: Any) -> bool:
    return str(value or "").strip().upper() in ("Y", "G")  # G: held WITH GRANT OPTION


def privilege_reasons(dbauth: Sequence[Mapping[str, Any]],
                      tabauth: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the login may do beyond reading, from its ``SYSCAT.DBAUTH`` and
    ``SYSCAT.TABAUTH`` rows (column name -> value; 'Y', 'G' or 'N'); empty: read-only."""
    reasons: list[str] = []
    for row in dbauth:
        held = [name for column, name in _DB_AUTHORITIES.items() if _held(row.get(column))]
        if held:
            reasons.append(f"has {', '.join(held)} (through {str(row.get('GRANTEE')).strip()})")
    tables: dict[str, set[str]] = {}
    for row in tabauth:
        table = f"{str(row.get('TABSCHEMA')).strip()}.{str(row.get('TABNAME')).strip()}"
        held = {name for column, name in _TABLE_PRIVILEGES.items() if _held(row.get(column))}
        if str(row.get("SELECTAUTH") or "").strip().upper() == "G":
            held.add("SELECT WITH GRANT OPTION")
        if held:
            tables.setdefault(table, set()).update(held)
    for table, held in sorted(tables.items())[:3]:
        reasons.append(f"holds {', '.join(sorted(held))} on {table}")
    if len(tables) > 3:
        reasons.append(f"and more on {len(tables) - 3} other tables")
    return reasons


def _rows(cursor: Any, sql: str, params: Sequence[str]) -> list[dict[str, Any]]:
    cursor.execute(sql, tuple(params))
    columns = [d[0].upper() for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def privilege_problem(dbapi_connection: Any, _schema: str | None) -> str | None:
    """Why this login must not run generated SQL (one paragraph with the fix), or None.

    Reads the catalogue through the ibm_db DB-API connection; the schema is already the
    current schema (session setup)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("VALUES SESSION_USER")
        user = str(cursor.fetchone()[0]).strip()
        cursor.execute(PRIVILEGE_QUERIES["roles"])
        grantees = [user, "PUBLIC", *(str(r[0]).strip() for r in cursor.fetchall())]
        markers = ", ".join("?" for _ in grantees)
        dbauth = _rows(cursor, PRIVILEGE_QUERIES["dbauth"].format(grantees=markers), grantees)
        tabauth = _rows(cursor, PRIVILEGE_QUERIES["tabauth"].format(grantees=markers), grantees)
    finally:
        cursor.close()
    reasons = privilege_reasons(dbauth, tabauth)
    if not reasons:
        return None
    return privileged_login_message("Db2", user, reasons,
                                    f"Create a user that may only read: {READ_ONLY_USER_SQL}.")

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
    privilege_problem=privilege_problem,
    allowed_functions=ALLOWED_FUNCTIONS,
    system_relations=r"^sys(ibm|cat|stat|ibmadm|proc|fun|tools|ibminternal)\.",
    fetch_first=True,  # ibm_db_sa's LIMIT needs Db2 LUW 11.1+; FETCH FIRST works everywhere
    # Db2 SQL reference, "SQL comments" and "Constants": '' doubles a quote, no backslash
    # escapes, "..." names. Db2 for z/OS and IBM i nest bracketed comments, the LUW
    # reference does not say: a /* inside a comment is refused. No Db2 server here to compare
    # its whitespace with: ASCII space, tab and line ends only, no non-ASCII outside quotes.
    # That is the generic reading, under Db2's name.
    syntax=dataclasses.replace(GENERIC_SYNTAX, server="Db2"),
    size_rules={"repeat": Repeats(count=1, text=0), "space": Repeats(count=0),
                "pad": Pads(length=1, fill=2), "lpad": Pads(length=1, fill=2),
                "rpad": Pads(length=1, fill=2)},
    name_case="upper",
    default_schema=lambda url: (url.username or "").upper() or None,
)
