"""MySQL / MariaDB (``db=mysql``) against the real local server: the engine registered from its
module alone, the execution layer's results and errors, the services on Spider databases
loaded with ``service=ingest``, and where MariaDB's semantics differ from SQLite's (pinned).

Each test creates and drops its own databases (tests/conftest.py); without a server the tests
skip, in CI (``QC_REQUIRE_MYSQL=1``) they must run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.cli import run
from querycraft.engines import engine_kinds, engines
from querycraft.engines.base import QueryError
from querycraft.errors import QueryCraftError
from querycraft.targets import DatabaseTarget, target_from_config
from tests.conftest import (
    MYSQL_SERVER,
    PROJECT_ROOT,
    create_singers,
    make_config,
    mysql_admin,
    mysql_select_only_user,
)
from tests.test_postgres_services import DATABASES, SPIDER_DBS, export_tables, gold_against_gold


def test_the_registry_lists_mysql_from_its_module_alone() -> None:
    import querycraft.engines.mysql as module

    assert "mysql" in engine_kinds() and engines()["mysql"] is module.ENGINE
    # Nothing that wires engines together names MySQL: the module and conf/db/mysql.yaml are
    # the whole engine.
    wiring = ["querycraft/engines/__init__.py", "querycraft/engines/base.py",
              "querycraft/targets.py", "querycraft/db.py", "querycraft/config.py",
              "querycraft/schema.py", "querycraft/loading.py"]
    for path in wiring:
        code = "\n".join(line for line in (PROJECT_ROOT / path).read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        assert '"mysql"' not in code and "pymysql" not in code.lower(), path
    assert (PROJECT_ROOT / "conf" / "db" / "mysql.yaml").is_file()


def test_config_builds_a_mysql_url_with_the_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_DB_PASSWORD", "my:pw@")
    monkeypatch.delenv("QC_DB_URL", raising=False)
    cfg = make_config(tmp_path, ["db=mysql", "db.host=db.example.com", "db.database='{db_id}'",
                                 "db.user=analyst"])
    target = target_from_config(cfg.db)
    url = target.url_for("pets_1")
    assert (url.drivername, url.host, url.port, url.database, url.password) == (
        "mysql+pymysql", "db.example.com", 3306, "pets_1", "my:pw@")
    assert target.describe("pets_1") == "mysql+pymysql://analyst:***@db.example.com:3306/pets_1"
    assert target.dialect == "mysql" and target.is_server


@pytest.fixture
def singers(mysql_url: str) -> Iterator[str]:
    """The singer table, read through a user with the SELECT privilege only (least
    privilege: a root login is refused for generated SQL)."""
    with mysql_select_only_user(create_singers(mysql_url)) as url:
        yield url


def test_results_are_capped_on_the_server_errors_classified_and_percent_literal(
        singers: str) -> None:
    with dbmod.Databases(DatabaseTarget("mysql", url=singers)) as databases:
        database = databases.get("any")
        capped = database.execute("SELECT seq FROM seq_1_to_100000000", max_rows=5)
        assert capped.rows == [(1,), (2,), (3,), (4,), (5,)] and capped.truncated
        assert capped.elapsed_s < 2.0  # sql_select_limit: the server stopped at 6 rows
        like = database.execute("SELECT name FROM singer WHERE name LIKE '%Sharp%'")
        assert like.rows == [("Joe Sharp",)] and like.columns == ["name"]
        kinds = {}
        for sql in ("SELECT nosuch FROM singer", "SELECT * FROM nosuch",
                    "SELECT name FROM singer a, singer b", "SELECT name FROM singer WHERE"):
            with pytest.raises(QueryError) as caught:
                database.execute(sql)
            kinds[sql] = caught.value.kind
        assert list(kinds.values()) == ["no_such_column", "no_such_table", "ambiguous_column",
                                        "syntax"], kinds
        assert database.check("SELECT name FROM singer") is None
        assert "doesn't exist" in database.check("SELECT name FROM nosuch")
        # The query's session settings do not leak into the schema reader's catalogue queries.
        database.execute("SELECT name FROM singer", max_rows=1)
        assert database.schema_text().startswith("CREATE TABLE singer (singer_id INTEGER")


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    target = DatabaseTarget("mysql", url="mysql+pymysql://qc:Sup3rSecret@127.0.0.1:1/x",
                                  connect_timeout_s=2)
    with pytest.raises(QueryCraftError) as caught:
        dbmod.Databases(target).get().execute("SELECT 1")
    message = str(caught.value)
    assert "Cannot use the database mysql+pymysql://qc:***@127.0.0.1:1/x" in message
    assert "Sup3rSecret" not in message


def test_mariadb_semantics_that_differ_from_sqlite(singers: str) -> None:
    """Pinned: the same query, a different answer. Gold and prediction run on the same engine,
    so execution accuracy is unaffected; comparing across engines is."""
    with dbmod.Databases(DatabaseTarget("mysql", url=singers)) as databases:
        database = databases.get()
        # Strings compare without regard to case (utf8mb4_general_ci); SQLite's '=' is exact.
        assert database.execute("SELECT count(*) FROM singer WHERE name = 'joe sharp'"
                                ).rows == [(1,)]
        # '/' on integers is exact division (a DECIMAL), SQLite's truncates.
        assert database.execute("SELECT 7 / 2").rows[0][0] == 3.5
        # avg() comes back as a Decimal; results_match compares it by value.
        assert str(database.execute("SELECT avg(age) FROM singer").rows[0][0]) == "37.6667"


@contextlib.contextmanager
def spider_databases() -> Iterator[str]:
    """One new database per fixture db_id; yields the URL with ``{db_id}`` in its name."""
    admin = mysql_admin()
    prefix = f"qc_test_{uuid.uuid4().hex[:8]}"
    try:
        with admin.cursor() as cursor:
            for db_id in DATABASES:
                cursor.execute(f"CREATE DATABASE {prefix}_{db_id} CHARACTER SET utf8mb4")
        yield f"{MYSQL_SERVER}/{prefix}_{{db_id}}"
    finally:
        with admin.cursor() as cursor:
            for db_id in DATABASES:
                cursor.execute(f"DROP DATABASE IF EXISTS {prefix}_{db_id}")
        admin.close()


@pytest.fixture(scope="module")
def spider_in_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with spider_databases() as url:
        out = tmp_path_factory.mktemp("load")
        for db_id in DATABASES:
            for csv_file in export_tables(SPIDER_DBS / db_id / f"{db_id}.sqlite",
                                          out / "csv" / db_id):
                run(make_config(out, ["service=ingest", f"ingest.load.csv={csv_file}",
                                      f"ingest.load.db_id={db_id}", "db=mysql",
                                      f"db.url='{url}'"],
                                out / f"load-{db_id}-{csv_file.stem}"))
        yield url


@pytest.fixture(scope="module")
def spider_reader(spider_in_mysql: str) -> Iterator[str]:
    """``spider_in_mysql`` for a user that may only SELECT in its databases."""
    databases = [spider_in_mysql.rsplit("/", 1)[1].replace("{db_id}", d) for d in DATABASES]
    with mysql_select_only_user(spider_in_mysql, databases) as url:
        yield url


@pytest.mark.slow
def test_loaded_tables_keep_rows_and_nulls(spider_in_mysql: str) -> None:
    import sqlite3

    for db_id in DATABASES:
        engine = sqlalchemy.create_engine(spider_in_mysql.replace("{db_id}", db_id))
        source = sqlite3.connect(SPIDER_DBS / db_id / f"{db_id}.sqlite")
        try:
            with engine.connect() as conn:
                for (table,) in source.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'"):
                    expected = source.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                    got = conn.exec_driver_sql(f"SELECT count(*) FROM `{table.lower()}`"
                                               ).scalar_one()
                    assert got == expected, (db_id, table)
        finally:
            source.close()
            engine.dispose()


@pytest.mark.slow
def test_gold_against_gold_scores_the_same_on_sqlite_and_on_mariadb(
        spider_reader: str, tmp_path: Path) -> None:
    server = ["db=mysql", f"db.url='{spider_reader}'"]
    _, summary, failed = gold_against_gold(tmp_path / "out", "mysql", server)
    # Pinned: every gold query runs, the 11 that PostgreSQL refuses too (a column neither
    # grouped nor aggregated): MariaDB's default sql_mode lacks ONLY_FULL_GROUP_BY and picks
    # a value from the group, as SQLite does. (MySQL 8's default has it and would refuse
    # them, as PostgreSQL does; they would be reported as gold_failed.)
    assert failed == [] and summary["gold_failed"] == 0
    assert summary["database"].startswith("mysql+pymysql://qc_ro_")  # the read-only user
