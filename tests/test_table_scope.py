"""The table allow-list (``db.allow_schemas``) and a traceback-free refusal of a privileged login.

On the real local servers (PostgreSQL, MariaDB), generated SQL may name before a table only
the configured schema (PostgreSQL: ``db.schema`` or ``public``; MySQL: the URL's database and
``db.schema``) and the schemas listed in ``db.allow_schemas``:

* a table of another schema or database is refused (kind "refused", naming
  ``db.allow_schemas``) before the server is asked, even though the login itself may read it,
  and even as a superuser let through with ``allow_privileged``; hiding it in a subquery, a
  join, a CTE, a UNION or a three-part name does not help;
* qualifiers are compared the way the server looks them up: PostgreSQL folds unquoted names
  to lower case (quoted ones are exact), Db2 to upper case, MySQL compares exactly;
* listing a schema in ``db.allow_schemas`` (on the target, or through the Hydra config)
  lets its tables run, but never the system schemas (``mysql``, ``information_schema``);
* the refusal of MariaDB's root login is one paragraph: the pool closes the connection it
  could not set up, without SQLAlchemy logging an "Already closed" traceback, in process and
  through ``python -m querycraft service=evaluate``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.engines.base import QueryError, allowed_statement
from querycraft.errors import QueryCraftError
from querycraft.targets import DatabaseTarget, target_from_config
from tests.conftest import (
    PROJECT_ROOT,
    create_singers,
    fresh_mysql_database,
    make_config,
    mysql_select_only_user,
    postgres_read_only_role,
    predictions_run,
)

SECRET = "top secret"


def _database_name(url: str) -> str:
    return sqlalchemy.engine.make_url(url).database or ""


def _refused(database: dbmod.Database, sql: str) -> str:
    """The allow-list's refusal of ``sql``: kind "refused", pointing at db.allow_schemas."""
    with pytest.raises(QueryError) as caught:
        database.execute(sql)
    assert caught.value.kind == "refused", (sql, caught.value)
    assert "db.allow_schemas" in caught.value.message, (sql, caught.value.message)
    return caught.value.message


def _rows(database: dbmod.Database, sql: str) -> list[tuple]:
    return database.execute(sql).rows


# --- PostgreSQL: a second schema the login can read -----------------------------------------

@pytest.fixture
def pg_admin_url(postgres_url: str) -> str:
    """``singer`` in public plus ``other.secret``; created before the read-only role, so that
    the role gets USAGE and SELECT on both schemas."""
    return create_singers(postgres_url, "CREATE SCHEMA other",
                          "CREATE TABLE other.secret (s TEXT)",
                          f"INSERT INTO other.secret VALUES ('{SECRET}')")


@pytest.fixture
def pg_reader_url(pg_admin_url: str) -> Iterator[str]:
    with postgres_read_only_role(pg_admin_url) as url:
        yield url


def test_postgres_reader_may_name_only_public_unless_allowed(pg_reader_url: str) -> None:
    # The login itself may read other.secret: only the allow-list stands in the way.
    engine = sqlalchemy.create_engine(pg_reader_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT s FROM other.secret").all() == [(SECRET,)]
    engine.dispose()

    here = _database_name(pg_reader_url)
    database = dbmod.ServerDatabase(DatabaseTarget("postgres", url=pg_reader_url))
    try:
        message = _refused(database, "SELECT * FROM other.secret")
        assert "other.secret" in message and "public" in message
        # Refused before the server was asked: no connection was ever made.
        assert not database.reached
        assert "db.allow_schemas" in (database.check("SELECT * FROM other.secret") or "")
        assert not database.reached

        for sql in ("SELECT count(*) FROM singer", "SELECT count(*) FROM public.singer",
                    "SELECT count(*) FROM PUBLIC.singer",  # unquoted: folded to public
                    f"SELECT count(*) FROM {here}.public.singer"):  # this very database
            assert _rows(database, sql) == [(3,)], sql
        for sql in ("SELECT * FROM OTHER.secret",  # unquoted: folded to other, still refused
                    'SELECT * FROM "other".secret',
                    'SELECT * FROM "PUBLIC".singer',  # quoted: exact, not public
                    "SELECT * FROM qc_elsewhere.public.singer",  # another database
                    f"SELECT * FROM {here}.other.secret"):  # this database, other schema
            _refused(database, sql)
    finally:
        database.close()

    allowed = dbmod.ServerDatabase(DatabaseTarget("postgres", url=pg_reader_url,
                                                        allow_schemas=("other",)))
    try:
        assert _rows(allowed, "SELECT s FROM other.secret") == [(SECRET,)]
        assert _rows(allowed, "SELECT s FROM OTHER.secret") == [(SECRET,)]
        assert _rows(allowed, "SELECT count(*) FROM singer") == [(3,)]  # public still allowed
        _refused(allowed, 'SELECT s FROM "OTHER".secret')  # a different (absent) schema
    finally:
        allowed.close()


HIDDEN_OTHER_SECRET = {
    "exists": "SELECT * FROM singer WHERE EXISTS (SELECT 1 FROM other.secret)",
    "in_subquery": "SELECT * FROM singer WHERE name IN (SELECT s FROM other.secret)",
    "scalar_subquery": "SELECT (SELECT s FROM other.secret) FROM singer",
    "join": "SELECT * FROM singer JOIN other.secret ON true",
    "comma_join": "SELECT * FROM public.singer, other.secret",
    "cte": "WITH s AS (SELECT * FROM other.secret) SELECT * FROM s",
    "union": "SELECT name FROM singer UNION SELECT s FROM other.secret",
    "lateral": "SELECT * FROM singer, LATERAL (SELECT s FROM other.secret) x",
    "derived": "SELECT * FROM (SELECT s FROM other.secret) AS singer",
    "alias_as_public": "SELECT * FROM other.secret AS singer",
    "only": "SELECT * FROM ONLY other.secret",
    "spaced": "SELECT * FROM other . secret",
}


def test_postgres_superuser_let_through_is_still_confined(pg_admin_url: str) -> None:
    # allow_privileged bypasses the login check, never the table allow-list.
    target = DatabaseTarget("postgres", url=pg_admin_url, allow_privileged=True)
    database = dbmod.ServerDatabase(target)
    try:
        for name, sql in HIDDEN_OTHER_SECRET.items():
            message = _refused(database, sql)
            assert "other.secret" in message, (name, message)
        assert not database.reached  # none of them reached the server
        assert _rows(database, "SELECT count(*) FROM singer") == [(3,)]
    finally:
        database.close()

    allowed = dbmod.ServerDatabase(DatabaseTarget(
        "postgres", url=pg_admin_url, allow_privileged=True, allow_schemas=("other",)))
    try:
        assert _rows(allowed, HIDDEN_OTHER_SECRET["cte"]) == [(SECRET,)]
        assert _rows(allowed, "SELECT count(*) FROM singer JOIN other.secret ON true") == [(3,)]
    finally:
        allowed.close()


def test_db2_qualifiers_fold_to_upper_case_and_default_to_the_user() -> None:
    # No Db2 server here: the scope and the allow-list decide without one.
    target = DatabaseTarget("db2", url="db2+ibm_db://qc_reader@db2host:50000/SAMPLE",
                                  allow_schemas=("SALES",))
    scope = dbmod.table_scope(target)
    assert scope.schemas == {"QC_READER", "SALES"} and scope.catalogs == {"SAMPLE"}
    for sql in ("SELECT * FROM t", "SELECT * FROM qc_reader.t", "SELECT * FROM QC_READER.t",
                "SELECT * FROM sales.orders", "SELECT * FROM sample.qc_reader.t"):
        assert allowed_statement(sql, target.engine, scope=scope) == sql
    for sql in ('SELECT * FROM "qc_reader".t', "SELECT * FROM other.t",
                "SELECT * FROM elsewhere.qc_reader.t"):
        with pytest.raises(QueryError, match=r"db\.allow_schemas") as caught:
            allowed_statement(sql, target.engine, scope=scope)
        assert caught.value.kind == "refused"
    # db.schema replaces the user's schema.
    pinned = DatabaseTarget("db2", url="db2+ibm_db://qc_reader@db2host:50000/SAMPLE",
                                  schema="SHOP")
    assert dbmod.table_scope(pinned).schemas == {"SHOP"}


# --- MariaDB: two databases -----------------------------------------------------------------

@pytest.fixture
def two_mysql_databases() -> Iterator[tuple[str, str]]:
    """Admin URLs of databases A and B, each with a table ``t`` holding its own letter."""
    with fresh_mysql_database() as a, fresh_mysql_database() as b:
        for url, letter in ((a, "a"), (b, "b")):
            engine = sqlalchemy.create_engine(url)
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE t (x VARCHAR(8))")
                conn.exec_driver_sql(f"INSERT INTO t VALUES ('{letter}')")
            engine.dispose()
        yield a, b


def test_mysql_may_name_only_the_urls_database_unless_allowed(
        two_mysql_databases: tuple[str, str]) -> None:
    a_url, b_url = two_mysql_databases
    a, b = _database_name(a_url), _database_name(b_url)
    # root may read B (allow_privileged skips the login check): only the allow-list refuses.
    database = dbmod.ServerDatabase(DatabaseTarget("mysql", url=a_url,
                                                         allow_privileged=True))
    try:
        message = _refused(database, f"SELECT * FROM {b}.t")
        assert f"{b}.t" in message and a in message
        assert not database.reached
        for sql in (f"SELECT * FROM `{b}`.t", f"SELECT * FROM {b} . t",
                    f"SELECT * FROM t WHERE x IN (SELECT x FROM {b}.t)",
                    f"SELECT * FROM t JOIN {b}.t AS u ON 1 = 1",
                    f"SELECT x FROM t UNION SELECT x FROM {b}.t",
                    f"SELECT * FROM {a.upper()}.t"):  # MySQL compares database names exactly
            _refused(database, sql)
        assert _rows(database, "SELECT x FROM t") == [("a",)]
        assert _rows(database, f"SELECT x FROM {a}.t") == [("a",)]
        assert _rows(database, f"SELECT x FROM `{a}`.t") == [("a",)]
    finally:
        database.close()

    # Listed, B runs; the system schemas stay refused even when listed (system_relations).
    allowed = dbmod.ServerDatabase(DatabaseTarget(
        "mysql", url=a_url, allow_privileged=True,
        allow_schemas=(b, "mysql", "information_schema")))
    try:
        assert _rows(allowed, f"SELECT x FROM {b}.t") == [("b",)]
        assert _rows(allowed, f"SELECT t.x, u.x FROM t JOIN {b}.t AS u") == [("a", "b")]
        for sql in ("SELECT user FROM mysql.user",
                    "SELECT table_name FROM information_schema.tables"):
            with pytest.raises(QueryError, match="system table") as caught:
                allowed.execute(sql)
            assert caught.value.kind == "refused"
    finally:
        allowed.close()


def test_mysql_select_only_user_of_both_databases_is_confined_to_one(
        two_mysql_databases: tuple[str, str]) -> None:
    a_url, b_url = two_mysql_databases
    b = _database_name(b_url)
    with mysql_select_only_user(a_url, [_database_name(a_url), b]) as reader:
        engine = sqlalchemy.create_engine(reader)
        with engine.connect() as conn:  # the grant alone would let it read B
            assert conn.exec_driver_sql(f"SELECT x FROM {b}.t").all() == [("b",)]
        engine.dispose()
        database = dbmod.ServerDatabase(DatabaseTarget("mysql", url=reader))
        try:
            _refused(database, f"SELECT x FROM {b}.t")
            assert _rows(database, "SELECT x FROM t") == [("a",)]
        finally:
            database.close()


# --- the config route -------------------------------------------------------------------------

def test_allow_schemas_comes_from_the_config(tmp_path: Path, pg_reader_url: str) -> None:
    server = ["db=postgres", f"db.url='{pg_reader_url}'"]
    default = target_from_config(make_config(tmp_path, server).db)
    assert default.allow_schemas == ()
    assert dbmod.table_scope(default).schemas == {"public"}

    # conf/db/postgres.yaml declares allow_schemas: [], so a plain override sets it.
    cfg = make_config(tmp_path, [*server, "db.allow_schemas=[other]"])
    target = target_from_config(cfg.db)
    assert target.allow_schemas == ("other",)
    assert dbmod.table_scope(target).schemas == {"public", "other"}
    with dbmod.Databases(target) as databases:
        assert _rows(databases.get(), "SELECT s FROM other.secret") == [(SECRET,)]
    with dbmod.Databases(default) as databases:
        _refused(databases.get(), "SELECT s FROM other.secret")

    mysql = make_config(tmp_path, ["db=mysql", "db.url='mysql+pymysql://u@h/a'",
                                   "db.schema=b", "db.allow_schemas=[c,D]"])
    assert dbmod.table_scope(target_from_config(mysql.db)).schemas == {"a", "b", "c", "D"}


# --- a privileged MariaDB login: refused once, without tracebacks ---------------------------

def test_mysql_root_refusal_closes_the_connection_without_logging_errors(
        mysql_url: str, caplog: pytest.LogCaptureFixture) -> None:
    create_singers(mysql_url)
    database = dbmod.ServerDatabase(DatabaseTarget("mysql", url=mysql_url))
    opened: list[Any] = []
    # Runs before the refusal (insert=True) to see the DBAPI connection it refuses.
    sqlalchemy.event.listen(database.engine, "connect",
                            lambda dbapi_connection, _record: opened.append(dbapi_connection),
                            insert=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="sqlalchemy"), \
                pytest.raises(QueryCraftError, match="Refusing to run model-generated SQL"):
            database.execute("SELECT count(*) FROM singer")
    finally:
        database.close()
    # The old code closed it itself; SQLAlchemy's second close logged "Already closed".
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert "Already closed" not in caplog.text
    assert len(opened) == 1 and not opened[0].open  # the pool still closed it: no leak


@pytest.mark.slow
def test_evaluate_refuses_root_in_one_paragraph_without_a_traceback(
        tmp_path: Path, mysql_url: str) -> None:
    create_singers(mysql_url)
    out = tmp_path / "out"
    gold = "SELECT count(*) FROM singer"
    predictions = predictions_run(out, "", [(gold, gold)])
    # The URL through the environment, as a user sets it (no password on the command line).
    env = {k: v for k, v in os.environ.items() if k not in ("QC_DB_USER", "QC_DB_PASSWORD")}
    env["QC_DB_URL"] = mysql_url
    done = subprocess.run(
        [sys.executable, "-m", "querycraft", "service=evaluate", "db=mysql",
         f"evaluate.predictions_dir={predictions}", f"paths.output_dir={out}",
         "evaluate.workers=1"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    both = done.stdout + done.stderr
    assert done.returncode != 0, both[-3000:]
    refusals = [line for line in both.splitlines()
                if "Refusing to run model-generated SQL" in line]
    # Said once (the old traceback repeated it), as one line that names the way out.
    assert len(refusals) == 1, both[-3000:]
    assert "db.allow_privileged=true" in refusals[0] and "QC_DB_USER" in refusals[0]
    assert "Traceback" not in both, both[-3000:]
    assert "Already closed" not in both, both[-3000:]
