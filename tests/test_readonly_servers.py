"""Generated SQL can never write, on SQLite, PostgreSQL and MySQL/MariaDB, and runaway
queries stop.

Every write or escape attempt goes through the one execution layer every service uses
(``querycraft.db.Database.execute``); each must be refused and the database must be unchanged
afterwards (SQLite: the file's bytes; the servers: every table's contents and the list of
tables). The server tests use a fresh database on the local server (tests/conftest.py) and
log in as a role that may only read (least privilege, docs/DATABASES.md); the tests of the
layers below the allow-list log in as the superuser, with ``allow_privileged`` said
explicitly. tests/test_least_privilege.py holds what only the role and the guard stop.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.engines.base import QueryError
from querycraft.engines.sqlite import open_sqlite_readonly
from querycraft.errors import QueryCraftError
from querycraft.targets import DatabaseTarget
from tests.conftest import (
    FIXTURE_SPIDER,
    create_singers,
    mysql_select_only_user,
    postgres_read_only_role,
)

CONCERT = FIXTURE_SPIDER / "database" / "concert_singer" / "concert_singer.sqlite"
MARKER = Path("/tmp") / f"qc_escape_{uuid.uuid4().hex[:8]}"

# Each attempt must be refused by the layer; "{tmp}" and "{marker}" are filled in per test.
ATTEMPTS = {
    "drop": "DROP TABLE singer",
    "delete": "DELETE FROM singer",
    "update": "UPDATE singer SET name = 'x'",
    "insert": "INSERT INTO singer (singer_id, name) VALUES (99, 'x')",
    "create": "CREATE TABLE evil (a INTEGER)",
    "attach": "ATTACH DATABASE '{tmp}/evil.db' AS evil",
    "pragma_writable_schema": "PRAGMA writable_schema = ON",
    "copy_to_program": "COPY singer TO PROGRAM 'touch {marker}'",
    "copy_query_to_program": "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "two_statements": "SELECT 1; DROP TABLE singer",
    "write_inside_cte": "WITH gone AS (DELETE FROM singer RETURNING *) SELECT * FROM gone",
    "comment_hidden_statement": "SELECT 1 -- harmless\n; DELETE FROM singer",
    "block_comment_hidden_statement": "SELECT 1 /* ; */ ; DROP TABLE singer /* */",
    "select_into": "SELECT * INTO evil FROM singer",
    "row_lock": "SELECT * FROM singer FOR UPDATE",
    "turn_read_only_off": "SELECT set_config('default_transaction_read_only', 'off', false)",
    "commit": "COMMIT",
    "vacuum_into": "VACUUM INTO '{tmp}/copy.db'",
    "load_extension": "SELECT load_extension('{tmp}/evil')",
}
# What only MySQL/MariaDB reads as code or as a way out of the query.
MYSQL_ATTEMPTS = {
    "into_outfile": "SELECT * FROM singer INTO OUTFILE '{marker}'",
    "into_dumpfile": "SELECT name FROM singer LIMIT 1 INTO DUMPFILE '{marker}'",
    "executable_comment": "SELECT 1 /*! , (SELECT 1 INTO OUTFILE '{marker}') */",
    "mariadb_executable_comment": "SELECT 1 /*M! INTO OUTFILE '{marker}' */",
    "dash_dash_operator": "SELECT 1 --1 INTO OUTFILE '{marker}'\n",
    "load_file": "SELECT load_file('/etc/passwd')",
    "lock": "SELECT get_lock('qc', 10)",
    "into_variable": "SELECT name INTO @stolen FROM singer LIMIT 1",
    "read_write_transaction": "START TRANSACTION READ WRITE",
    "set_session": "SET SESSION TRANSACTION READ WRITE",
}
RUNAWAY = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
              "SELECT count(*) FROM c",
    "postgres": "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
    # MariaDB's Sequence engine (seq_1_to_n); its recursive CTEs stop at 1,000 iterations.
    "mysql": "SELECT count(*) FROM seq_1_to_100000 a, seq_1_to_100000 b",
}


def _sqlite_fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _postgres_fingerprint(url: str) -> dict[str, str]:
    """Every table (any schema but the system ones) and a digest of its rows."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").all()
            return {f"{schema}.{name}": conn.exec_driver_sql(
                f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                f'FROM "{schema}"."{name}" t').scalar_one() for schema, name in tables}
    finally:
        engine.dispose()


def _mysql_fingerprint(url: str) -> dict[str, object]:
    """Every table of the database and its checksum, plus the list of databases."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = database()").scalars().all()
            sums: dict[str, object] = {
                name: conn.exec_driver_sql(f"CHECKSUM TABLE `{name}` EXTENDED").one()[1]
                for name in tables}
            sums["databases"] = sorted(conn.exec_driver_sql("SHOW DATABASES").scalars())
            return sums
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_copy(tmp_path: Path) -> Path:
    """A writable copy: only QueryCraft's layer stands between the SQL and the file."""
    path = tmp_path / "concert_singer.sqlite"
    shutil.copy(CONCERT, path)
    return path


@pytest.fixture
def postgres_singers(postgres_url: str) -> str:
    return create_singers(postgres_url, "CREATE SEQUENCE s")


@pytest.fixture
def mysql_singers(mysql_url: str) -> str:
    return create_singers(mysql_url)


@pytest.fixture
def postgres_singers_reader(postgres_singers: str) -> Iterator[str]:
    """``postgres_singers`` logged in as a role that may only read its tables."""
    with postgres_read_only_role(postgres_singers) as url:
        yield url


@pytest.fixture
def mysql_singers_reader(mysql_singers: str) -> Iterator[str]:
    """``mysql_singers`` logged in as a user with the SELECT privilege only."""
    with mysql_select_only_user(mysql_singers) as url:
        yield url


def _database(kind: str, request: pytest.FixtureRequest) -> tuple[dbmod.Database, object]:
    if kind == "sqlite":
        path = request.getfixturevalue("sqlite_copy")
        return dbmod.SqliteDatabase(path), lambda: _sqlite_fingerprint(path)
    url = request.getfixturevalue(f"{kind}_singers")  # the admin's, for the fingerprint
    target = DatabaseTarget(kind, url=request.getfixturevalue(f"{kind}_singers_reader"))
    fingerprint = _postgres_fingerprint if kind == "postgres" else _mysql_fingerprint
    return dbmod.ServerDatabase(target), lambda: fingerprint(url)


SERVERS = ["sqlite", "postgres", "mysql"]


@pytest.mark.parametrize("kind", SERVERS)
def test_every_write_and_escape_attempt_is_refused_and_the_database_unchanged(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    database, fingerprint = _database(kind, request)
    before = fingerprint()
    attempts = {**ATTEMPTS, **(MYSQL_ATTEMPTS if kind == "mysql" else {})}
    try:
        outcomes = {}
        for name, template in attempts.items():
            sql = template.format(tmp=tmp_path, marker=MARKER)
            with pytest.raises(QueryError) as caught:
                database.execute(sql, timeout_s=5)
            outcomes[name] = caught.value.kind
        # The layer still answers a real query afterwards.
        assert database.execute("SELECT count(*) FROM singer").rows[0][0] in (3, 6)
    finally:
        database.close()
    assert outcomes == dict.fromkeys(attempts, "refused"), outcomes
    assert fingerprint() == before
    assert not MARKER.exists()
    assert not (tmp_path / "evil.db").exists() and not (tmp_path / "copy.db").exists()


def test_sqlite_connection_refuses_writes_even_without_the_allow_list(sqlite_copy: Path) -> None:
    """Second layer: the read-only connection itself, if the statement check were bypassed."""
    before = _sqlite_fingerprint(sqlite_copy)
    conn = open_sqlite_readonly(sqlite_copy)
    try:
        for sql in ("DELETE FROM singer", "CREATE TABLE evil (a)", "PRAGMA writable_schema = ON",
                    "DROP TABLE singer", f"ATTACH DATABASE '{sqlite_copy.parent}/x.db' AS x"):
            with pytest.raises(sqlite3.DatabaseError):
                conn.execute(sql)
    finally:
        conn.close()
    assert _sqlite_fingerprint(sqlite_copy) == before


def _without_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """``execute`` with its statement check bypassed, so that what reaches the server is
    refused (or not) by the layers below it alone."""
    monkeypatch.setattr(dbmod, "allowed_statement", lambda sql, spec, **_: sql)


def test_postgres_refuses_writes_even_without_the_allow_list(
        postgres_singers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Further layers, if the statement check were bypassed: the query runs in a server-side
    cursor (which takes only queries), inside a READ ONLY transaction, on a session whose
    transactions default to READ ONLY."""
    before = _postgres_fingerprint(postgres_singers)
    _without_the_allow_list(monkeypatch)
    database = dbmod.ServerDatabase(DatabaseTarget("postgres", url=postgres_singers,
                                                         allow_privileged=True))
    try:
        for sql in ("DELETE FROM singer", "CREATE TABLE evil (a int)", "DROP TABLE singer",
                    "WITH gone AS (DELETE FROM singer RETURNING *) SELECT * FROM gone"):
            with pytest.raises(QueryError):
                database.execute(sql, timeout_s=5.0, max_rows=10)
        for sql in ("SELECT nextval('s')", "SELECT setval('s', 5)"):
            with pytest.raises(QueryError, match="read-only transaction"):
                database.execute(sql, timeout_s=5.0, max_rows=10)
        # The session itself: even a statement sent outside the layer's transaction setup.
        with database.engine.connect() as conn:
            for sql in ("CREATE TABLE evil (a int)", "DELETE FROM singer"):
                with pytest.raises(sqlalchemy.exc.DBAPIError, match="read-only transaction"):
                    conn.exec_driver_sql(sql)
                conn.rollback()
    finally:
        database.close()
    assert _postgres_fingerprint(postgres_singers) == before


def test_mysql_refuses_writes_even_without_the_allow_list(
        mysql_singers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Further layers on MariaDB, if the statement check were bypassed: each query's
    START TRANSACTION READ ONLY, and the session whose transactions default to READ ONLY."""
    before = _mysql_fingerprint(mysql_singers)
    _without_the_allow_list(monkeypatch)
    database = dbmod.ServerDatabase(DatabaseTarget("mysql", url=mysql_singers,
                                                         allow_privileged=True))
    try:
        for sql in ("DELETE FROM singer", "UPDATE singer SET age = 0",
                    "INSERT INTO singer VALUES (9, 'x', 1)", "CREATE TABLE evil (a int)",
                    "DROP TABLE singer"):
            with pytest.raises(QueryError, match="READ ONLY transaction"):
                database.execute(sql, timeout_s=5.0, max_rows=10)
        # The session itself: a statement sent outside the layer's transaction setup.
        with database.engine.connect() as conn:
            for sql in ("CREATE TABLE evil (a int)", "DELETE FROM singer"):
                with pytest.raises(sqlalchemy.exc.DBAPIError, match="READ ONLY transaction"):
                    conn.exec_driver_sql(sql)
                conn.rollback()
    finally:
        database.close()
    assert _mysql_fingerprint(mysql_singers) == before


def test_a_mysql_user_with_select_only_cannot_write_or_touch_files(mysql_singers: str) -> None:
    """Least privilege, the real boundary: even through the writable loading engine (no
    read-only session), a SELECT-only user can neither write nor use INTO OUTFILE."""
    from tests.conftest import mysql_select_only_user

    before = _mysql_fingerprint(mysql_singers)
    with mysql_select_only_user(mysql_singers) as url:
        engine = dbmod.writable_engine(DatabaseTarget("mysql", url=url))
        try:
            with engine.connect() as conn:
                for sql in ("DELETE FROM singer", "CREATE TABLE evil (a int)",
                            "DROP TABLE singer", f"SELECT * FROM singer INTO OUTFILE '{MARKER}'"):
                    with pytest.raises(sqlalchemy.exc.DBAPIError, match="denied"):
                        conn.exec_driver_sql(sql)
                    conn.rollback()
        finally:
            engine.dispose()
        with dbmod.Databases(DatabaseTarget("mysql", url=url)) as databases:
            assert databases.get().execute("SELECT count(*) FROM singer").rows == [(3,)]
            with pytest.raises(QueryError) as caught:
                databases.get().execute("SELECT * FROM mysql.user")
            assert caught.value.kind == "refused", caught.value  # "command denied"
    assert _mysql_fingerprint(mysql_singers) == before
    assert not MARKER.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", SERVERS)
def test_a_query_that_would_run_for_minutes_stops_at_the_timeout(
        kind: str, request: pytest.FixtureRequest) -> None:
    database, _ = _database(kind, request)
    try:
        began = time.monotonic()
        with pytest.raises(QueryError) as caught:
            database.execute(RUNAWAY[kind], timeout_s=1.0)
        elapsed = time.monotonic() - began
        assert caught.value.kind == "timeout", caught.value
        assert elapsed < 5.0, elapsed
        # The connection is usable again at once.
        assert database.execute("SELECT 1").rows == [(1,)]
    finally:
        database.close()


def test_postgres_results_are_capped_and_percent_signs_are_literal(
        postgres_singers_reader: str) -> None:
    target = DatabaseTarget("postgres", url=postgres_singers_reader)
    with dbmod.Databases(target) as databases:
        database = databases.get("any")
        capped = database.execute("SELECT g FROM generate_series(1, 1000000) g", max_rows=5)
        assert capped.rows == [(1,), (2,), (3,), (4,), (5,)] and capped.truncated
        like = database.execute("SELECT name FROM singer WHERE name LIKE '%Sharp%'")
        assert like.rows == [("Joe Sharp",)] and like.columns == ["name"]
        with pytest.raises(QueryError) as missing:
            database.execute("SELECT nosuch FROM singer")
        assert missing.value.kind == "no_such_column"
        assert database.check("SELECT name FROM singer") is None
        assert "does not exist" in database.check("SELECT name FROM nosuch")


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    target = DatabaseTarget(
        "postgres", url="postgresql+psycopg://qc:Sup3rSecret@127.0.0.1:1/nowhere",
        connect_timeout_s=2)
    with pytest.raises(QueryCraftError) as caught:
        dbmod.Databases(target).get().execute("SELECT 1")
    message = str(caught.value)
    assert "Cannot use the database postgresql+psycopg://qc:***@127.0.0.1:1/nowhere" in message
    assert "Sup3rSecret" not in message and "QC_DB_PASSWORD" in message
    assert "Sup3rSecret" not in repr(target)
