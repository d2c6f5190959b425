"""Least privilege (issue 14, item 1): generated SQL is hostile input.

On the real local servers (PostgreSQL, MariaDB):

* a login that is a superuser or can write is refused before any generated SQL runs, with
  the fix in the message, unless ``db.allow_privileged=true`` says otherwise;
* file reads, other-session termination, admin functions, SQL-as-text functions, advisory
  locks, settings and the catalogue, and the earlier write/escape list
  (tests/test_readonly_servers.py) are all refused, both as the read-only role and as a
  superuser let through with ``allow_privileged`` (the function allow-list alone), and the
  tables, row counts and the server's statistics counters are unchanged;
* session state (an advisory or user lock, a setting, a variable) taken by a query never
  survives into the next query on the same pooled connection, even with the allow-list
  bypassed.

Db2 has no server here: the decision from its catalogue rows is tested instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.dialects import parse_statements
from querycraft.engines import db2 as db2_engine
from querycraft.engines import get_engine
from querycraft.engines import mysql as mysql_engine
from querycraft.engines.base import QueryError, function_problem, relation_problem
from querycraft.errors import QueryCraftError
from querycraft.targets import DatabaseTarget, target_from_config
from tests.conftest import (
    FIXTURE_SPIDER,
    POSTGRES_SERVER,
    PROJECT_ROOT,
    create_singers,
    make_config,
    mysql_admin,
    mysql_select_only_user,
    postgres_read_only_role,
)
from tests.test_readonly_servers import ATTEMPTS, MARKER, MYSQL_ATTEMPTS

PASSWD = "/etc/passwd"

# What the finding did on PostgreSQL with plain SELECTs; "{pid}" is another session's.
POSTGRES_HOSTILE = {
    "read_file": f"SELECT pg_read_file('{PASSWD}')",
    "read_binary_file": f"SELECT pg_read_binary_file('{PASSWD}')",
    "list_dir": "SELECT pg_ls_dir('.')",
    "stat_file": f"SELECT pg_stat_file('{PASSWD}')",
    "query_to_xml_read_file": "SELECT query_to_xml('select pg_read_file(''/etc/passwd'') "
                              "as f', true, true, '')",
    "query_to_xml": "SELECT query_to_xml('select 1', true, true, '')",
    "cursor_to_xml": "SELECT cursor_to_xml('c', 1, true, true, '')",
    "query_to_xmlschema": "SELECT query_to_xmlschema('select 1', true, true, '')",
    "table_to_xml": "SELECT table_to_xml('singer', true, true, '')",
    "xpath_in_select": "SELECT xpath('/a', '<a/>'::xml)",
    "lo_import": f"SELECT lo_import('{PASSWD}')",
    "terminate_backend": "SELECT pg_terminate_backend({pid})",
    "cancel_backend": "SELECT pg_cancel_backend({pid})",
    "terminate_in_subquery": "SELECT name FROM singer WHERE singer_id IN "
                             "(SELECT pg_terminate_backend({pid})::int)",
    "stat_reset": "SELECT pg_stat_reset()",
    "stat_reset_shared": "SELECT pg_stat_reset_shared('bgwriter')",
    "stat_reset_table": "SELECT pg_stat_reset_single_table_counters('singer'::regclass)",
    "replication_slot": "SELECT pg_create_physical_replication_slot('qc_evil_slot')",
    "switch_wal": "SELECT pg_switch_wal()",
    "reload_conf": "SELECT pg_reload_conf()",
    "rotate_logfile": "SELECT pg_rotate_logfile()",
    "advisory_lock": "SELECT pg_advisory_lock(4242)",
    "try_advisory_lock": "SELECT pg_try_advisory_lock(4242)",
    "advisory_lock_in_where": "SELECT name FROM singer WHERE pg_try_advisory_lock(4242)",
    "sleep": "SELECT pg_sleep(0.01)",
    "current_setting": "SELECT current_setting('data_directory')",
    "set_config": "SELECT set_config('search_path', 'pg_catalog', false)",
    "nextval": "SELECT nextval('s')",
    "settings_view": "SELECT name, setting FROM pg_settings",
    "hba_rules": "SELECT * FROM pg_hba_file_rules",
    "authid": "SELECT rolname, rolpassword FROM pg_catalog.pg_authid",
    "activity": "SELECT query FROM pg_stat_activity",
    "information_schema": "SELECT table_name FROM information_schema.tables",
    "version": "SELECT version()",
    "user_function_call": "SELECT evil(1)",
}
MYSQL_HOSTILE = {
    "load_file": f"SELECT LOAD_FILE('{PASSWD}')",
    "load_file_spaced": f"SELECT load_file ('{PASSWD}')",
    "load_file_in_where": f"SELECT name FROM singer WHERE LOAD_FILE('{PASSWD}') IS NOT NULL",
    "get_lock": "SELECT GET_LOCK('qc_lp', 0)",
    "is_used_lock": "SELECT IS_USED_LOCK('qc_lp')",
    "sleep": "SELECT SLEEP(0.01)",
    "benchmark": "SELECT BENCHMARK(1000000, MD5('x'))",
    "kill": "KILL 1",
    "user_variable": "SELECT @stolen := name FROM singer",
    "system_variable": "SELECT @@datadir",
    "system_variable_spaced": "SELECT @@ secure_file_priv",
    "users": "SELECT user, password FROM mysql.user",
    "processlist": "SELECT * FROM information_schema.processlist",
    "performance_schema": "SELECT * FROM performance_schema.threads",
    "sys_schema": "SELECT * FROM sys.processlist",
    "version": "SELECT version()",
    "master_pos_wait": "SELECT MASTER_POS_WAIT('x', 1)",
    "json_table_file": "SELECT sys_exec('touch /tmp/x')",
}


def _postgres_admin():  # type: ignore[no-untyped-def]
    """A superuser session on the local server (autocommit)."""
    import psycopg

    url = sqlalchemy.engine.make_url(POSTGRES_SERVER)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname="postgres", autocommit=True)


# --- fixtures: a database with the singer table, its admin URL and a read-only login --------

@pytest.fixture
def pg_admin_url(postgres_url: str) -> str:
    return create_singers(postgres_url, "CREATE SEQUENCE s")


@pytest.fixture
def pg_reader_url(pg_admin_url: str) -> Iterator[str]:
    with postgres_read_only_role(pg_admin_url) as url:
        yield url


@pytest.fixture
def my_admin_url(mysql_url: str) -> str:
    return create_singers(mysql_url)


@pytest.fixture
def my_reader_url(my_admin_url: str) -> Iterator[str]:
    with mysql_select_only_user(my_admin_url) as url:
        yield url


def _pg_state(admin_url: str) -> dict[str, object]:
    """Row counts and digests plus what the admin functions would have changed: statistics
    reset times and counters, replication slots, the WAL file, the table list."""
    engine = sqlalchemy.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            one = conn.exec_driver_sql
            return {
                "rows": one("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)), count(*) "
                            "FROM singer t").one(),
                "tables": sorted(one("SELECT table_schema || '.' || table_name FROM "
                                     "information_schema.tables WHERE table_schema NOT IN "
                                     "('pg_catalog', 'information_schema')").scalars()),
                "db_stats_reset": one("SELECT stats_reset FROM pg_stat_database WHERE "
                                      "datname = current_database()").scalar_one(),
                "bgwriter_stats_reset": one("SELECT stats_reset FROM pg_stat_bgwriter"
                                            ).scalar_one(),
                "singer_inserts": one("SELECT n_tup_ins FROM pg_stat_user_tables WHERE "
                                      "relname = 'singer'").scalar_one(),
                "slots": sorted(one("SELECT slot_name FROM pg_replication_slots").scalars()),
                "sequence": one("SELECT last_value, is_called FROM s").one(),
            }
    finally:
        engine.dispose()


def _my_state(admin_url: str) -> dict[str, object]:
    engine = sqlalchemy.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            one = conn.exec_driver_sql
            return {
                "checksum": one("CHECKSUM TABLE singer EXTENDED").one()[1],
                "count": one("SELECT count(*) FROM singer").scalar_one(),
                "tables": sorted(one("SHOW TABLES").scalars()),
                "databases": sorted(one("SHOW DATABASES").scalars()),
                "locks": one("SELECT IS_USED_LOCK('qc_lp')").scalar_one(),
            }
    finally:
        engine.dispose()


# --- the guard: a privileged login is refused, with the fix --------------------------------

def _refusal(kind: str, url: str) -> str:
    database = dbmod.ServerDatabase(DatabaseTarget(kind, url=url))
    try:
        with pytest.raises(QueryCraftError) as caught:
            database.execute("SELECT count(*) FROM singer")
        # check() and the schema reader open the same connections: refused as well.
        with pytest.raises(QueryCraftError):
            database.check("SELECT count(*) FROM singer")
        with pytest.raises(QueryCraftError):
            database.schema_text()
    finally:
        database.close()
    message = str(caught.value)
    assert "\n" not in message  # one paragraph
    for part in ("Refusing to run model-generated SQL", "QC_DB_USER", "QC_DB_PASSWORD",
                 "db.allow_privileged=true", "docs/DATABASES.md"):
        assert part in message, (part, message)
    return message


def test_a_postgres_superuser_is_refused_with_the_fix(pg_admin_url: str) -> None:
    message = _refusal("postgres", pg_admin_url)
    assert "as 'postgres'" in message and "is a superuser" in message
    assert "CREATE ROLE qc_reader LOGIN" in message and "GRANT SELECT ON ALL TABLES" in message
    # Said explicitly, the superuser may run it (a throwaway server).
    target = DatabaseTarget("postgres", url=pg_admin_url, allow_privileged=True)
    with dbmod.Databases(target) as databases:
        assert databases.get().execute("SELECT count(*) FROM singer").rows == [(3,)]


def test_a_mysql_root_login_is_refused_with_the_fix(my_admin_url: str) -> None:
    message = _refusal("mysql", my_admin_url)
    assert "ALL PRIVILEGES ON *.*" in message and "WITH GRANT OPTION" in message
    assert "CREATE USER 'qc_reader'" in message and "GRANT SELECT ON" in message
    target = DatabaseTarget("mysql", url=my_admin_url, allow_privileged=True)
    with dbmod.Databases(target) as databases:
        assert databases.get().execute("SELECT count(*) FROM singer").rows == [(3,)]


@pytest.mark.slow
def test_the_config_carries_allow_privileged_and_the_presets_default_to_a_reader(
        tmp_path: Path, pg_admin_url: str) -> None:
    for kind in ("postgres", "mysql", "db2"):
        cfg = make_config(tmp_path, [f"db={kind}", "db.host=h", "db.database=d"])
        assert cfg.db.user == "qc_reader" and cfg.db.allow_privileged is False
        assert target_from_config(cfg.db).allow_privileged is False
    cfg = make_config(tmp_path, ["db=postgres", f"db.url='{pg_admin_url}'"])
    with pytest.raises(QueryCraftError, match="is a superuser"), \
            dbmod.Databases(target_from_config(cfg.db)) as databases:
        databases.get().execute("SELECT 1")
    cfg = make_config(tmp_path, ["db=postgres", f"db.url='{pg_admin_url}'",
                                 "db.allow_privileged=true"])
    with dbmod.Databases(target_from_config(cfg.db)) as databases:
        assert databases.get().execute("SELECT 1").rows == [(1,)]


def _pg_role(admin_url: str, name: str, *grants: str) -> str:
    admin = _postgres_admin()
    admin.execute(f"DROP ROLE IF EXISTS {name}")
    admin.execute(f"CREATE ROLE {name} LOGIN")
    engine = sqlalchemy.create_engine(admin_url)
    with engine.begin() as conn:
        for grant in grants:
            conn.exec_driver_sql(grant.format(role=name))
    engine.dispose()
    admin.close()
    return sqlalchemy.engine.make_url(admin_url).set(username=name).render_as_string(
        hide_password=False)


def _pg_drop_role(admin_url: str, name: str) -> None:
    engine = sqlalchemy.create_engine(admin_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP OWNED BY {name}")
    engine.dispose()
    admin = _postgres_admin()
    admin.execute(f"DROP ROLE IF EXISTS {name}")
    admin.close()


@pytest.mark.parametrize(("grants", "reason"), [
    (("GRANT SELECT, INSERT ON singer TO {role}",), "can write the tables public.singer"),
    (("GRANT SELECT, TRUNCATE ON singer TO {role}",), "can write the tables public.singer"),
    (("GRANT SELECT ON singer TO {role}", "GRANT pg_signal_backend TO {role}"),
     "is a member of pg_signal_backend"),
    (("GRANT SELECT ON singer TO {role}", "GRANT pg_read_server_files TO {role}"),
     "is a member of pg_read_server_files"),
    (("GRANT pg_write_all_data TO {role}",), "pg_write_all_data"),
    (("GRANT SELECT ON singer TO {role}", "GRANT CREATE ON SCHEMA public TO {role}"),
     "can create tables in the schema public"),
    (("GRANT SELECT ON singer TO {role}", "ALTER ROLE {role} CREATEDB"),
     "can create databases"),
    (("GRANT SELECT ON singer TO {role}", "ALTER ROLE {role} CREATEROLE"),
     "can create roles"),
])
def test_a_postgres_role_that_can_write_or_signal_is_refused(
        pg_admin_url: str, grants: tuple[str, ...], reason: str) -> None:
    name = "qc_lp_writer"
    url = _pg_role(pg_admin_url, name, *grants)
    try:
        message = _refusal("postgres", url)
        assert f"as '{name}'" in message and reason in message, message
    finally:
        _pg_drop_role(pg_admin_url, name)


def test_the_read_only_role_runs_questions(pg_reader_url: str, my_reader_url: str) -> None:
    for kind, url in (("postgres", pg_reader_url), ("mysql", my_reader_url)):
        with dbmod.Databases(DatabaseTarget(kind, url=url)) as databases:
            database = databases.get()
            rows = database.execute(
                "SELECT upper(name), count(*), avg(age), max(length(name)), "
                "coalesce(min(age), 0), CASE WHEN max(age) > 40 THEN 'old' ELSE 'young' END, "
                "round(sum(age) * 1.0 / 3, 2), cast(min(singer_id) AS CHAR(5)) "
                "FROM singer WHERE lower(name) LIKE '%a%' GROUP BY name ORDER BY name").rows
            assert [r[0] for r in rows] == ["JOE SHARP", "TIMBALAND"], rows
            assert database.check("SELECT count(*) FROM singer") is None
            assert "singer" in database.schema_text()


@pytest.mark.parametrize("user_grants, reason", [
    (["GRANT SELECT, INSERT ON `{db}`.* TO {user}"], "holds INSERT ON"),
    (["GRANT SELECT ON `{db}`.* TO {user}", "GRANT FILE ON *.* TO {user}"], "holds FILE"),
    (["GRANT SELECT ON `{db}`.* TO {user}", "GRANT PROCESS ON *.* TO {user}"], "PROCESS"),
    (["GRANT SELECT ON `{db}`.* TO {user} WITH GRANT OPTION"], "WITH GRANT OPTION"),
    (["GRANT SELECT, DROP ON `{db}`.* TO {user}"], "DROP"),
    (["GRANT SELECT (name) ON `{db}`.singer TO {user}", "GRANT UPDATE (age) ON `{db}`.singer "
      "TO {user}"], "holds UPDATE ON"),
    (["CREATE ROLE {role}", "GRANT DELETE ON `{db}`.* TO {role}", "GRANT {role} TO {user}",
      "SET DEFAULT ROLE {role} FOR {user}", "GRANT SELECT ON `{db}`.* TO {user}"],
     "holds DELETE ON"),
])
def test_a_mysql_user_that_can_write_or_read_files_is_refused(
        my_admin_url: str, user_grants: list[str], reason: str) -> None:
    db = sqlalchemy.engine.make_url(my_admin_url).database
    user, role = "'qc_lp_writer'@'%'", "qc_lp_role"
    admin = mysql_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS {user}")
            cursor.execute(f"DROP ROLE IF EXISTS {role}")
            cursor.execute(f"CREATE USER {user} IDENTIFIED BY 'pw'")
            for grant in user_grants:
                cursor.execute(grant.format(db=db, user=user, role=role))
        url = sqlalchemy.engine.make_url(my_admin_url).set(
            username="qc_lp_writer", password="pw").render_as_string(hide_password=False)
        message = _refusal("mysql", url)
        assert "qc_lp_writer" in message and reason in message, message
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS {user}")
            cursor.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


# --- the hostile list: refused as the reader and as a superuser let through ------------------

def _outcomes(database: dbmod.ServerDatabase, attempts: dict[str, str]) -> dict[str, str]:
    """Each attempt's error kind, or "ran"."""
    outcomes = {}
    for name, sql in attempts.items():
        try:
            database.execute(sql, timeout_s=5)
            outcomes[name] = "ran"
        except QueryError as err:
            outcomes[name] = err.kind
    return outcomes


@pytest.mark.parametrize("login", ["reader", "superuser_allowed"])
def test_postgres_hostile_sql_is_refused_and_nothing_changes(
        login: str, pg_admin_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = (request.getfixturevalue("pg_reader_url") if login == "reader" else pg_admin_url)
    victim = _postgres_admin()  # another session, as the superuser
    victim_pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    before = _pg_state(pg_admin_url)
    database = dbmod.ServerDatabase(DatabaseTarget(
        "postgres", url=url, allow_privileged=login != "reader"))
    attempts = {**{k: v.format(pid=victim_pid) for k, v in POSTGRES_HOSTILE.items()},
                **{k: v.format(tmp=tmp_path, marker=MARKER) for k, v in ATTEMPTS.items()}}
    try:
        outcomes = _outcomes(database, attempts)
        assert database.execute("SELECT count(*) FROM singer").rows == [(3,)]
    finally:
        database.close()
    assert outcomes == dict.fromkeys(attempts, "refused"), outcomes
    # The other session is alive, nothing was written, no counter was reset, no slot made.
    assert victim.execute("SELECT 1").fetchone() == (1,)
    victim.close()
    after = _pg_state(pg_admin_url)
    assert after["singer_inserts"] >= before["singer_inserts"]
    after["singer_inserts"] = before["singer_inserts"]
    assert after == before
    assert not MARKER.exists()


@pytest.mark.parametrize("login", ["reader", "root_allowed"])
def test_mysql_hostile_sql_is_refused_and_nothing_changes(
        login: str, my_admin_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue("my_reader_url") if login == "reader" else my_admin_url
    before = _my_state(my_admin_url)
    database = dbmod.ServerDatabase(DatabaseTarget(
        "mysql", url=url, allow_privileged=login != "reader"))
    attempts = {**MYSQL_HOSTILE,
                **{k: v.format(tmp=tmp_path, marker=MARKER)
                   for k, v in {**ATTEMPTS, **MYSQL_ATTEMPTS}.items()}}
    try:
        outcomes = _outcomes(database, attempts)
        assert database.execute("SELECT count(*) FROM singer").rows == [(3,)]
    finally:
        database.close()
    assert outcomes == dict.fromkeys(attempts, "refused"), outcomes
    assert _my_state(my_admin_url) == before
    assert not MARKER.exists()


# --- session state never survives a query (the allow-list bypassed) -------------------------

def _without_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "allowed_statement", lambda sql, spec, **_: sql)


def test_postgres_locks_and_settings_do_not_survive_into_the_next_query(
        pg_admin_url: str, pg_reader_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_the_allow_list(monkeypatch)
    target = DatabaseTarget("postgres", url=pg_reader_url, schema="public")
    database = dbmod.ServerDatabase(target)
    admin = _postgres_admin()
    try:
        run = database.execute
        pid = run("SELECT pg_backend_pid()").rows[0][0]
        run("SELECT pg_advisory_lock(4242)")
        assert run("SELECT pg_try_advisory_lock(4243)").rows == [(True,)]
        run("SELECT set_config('search_path', 'pg_catalog', false), "
            "set_config('statement_timeout', '1', false), "
            "set_config('default_transaction_read_only', 'off', false)")
        # The same pooled connection (one backend), with none of it left.
        assert run("SELECT pg_backend_pid()").rows[0][0] == pid
        held = admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                             "AND pid = %s", (pid,)).fetchone()[0]
        assert held == 0
        assert run("SELECT current_setting('search_path'), "
                   "current_setting('default_transaction_read_only'), "
                   "current_setting('statement_timeout')").rows == [("public", "on", "10s")]
        # (10s: this query's own SET LOCAL statement_timeout, not the '1' set above.)
        # Another session can take the lock at once.
        assert admin.execute("SELECT pg_try_advisory_lock(4242)").fetchone()[0] is True
        assert run("SELECT count(*) FROM singer").rows == [(3,)]
    finally:
        database.close()
        admin.close()


def test_mysql_locks_and_variables_do_not_survive_into_the_next_query(
        my_reader_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_the_allow_list(monkeypatch)
    database = dbmod.ServerDatabase(DatabaseTarget("mysql", url=my_reader_url))
    admin = mysql_admin()
    try:
        run = database.execute
        connection = run("SELECT CONNECTION_ID()").rows[0][0]
        assert run("SELECT GET_LOCK('qc_lp', 0), @kept := 5").rows == [(1, 5)]
        assert run("SELECT CONNECTION_ID()").rows[0][0] == connection  # the same connection
        assert run("SELECT IS_USED_LOCK('qc_lp'), @kept").rows == [(None, None)]
        with admin.cursor() as cursor:
            cursor.execute("SELECT IS_FREE_LOCK('qc_lp')")
            assert cursor.fetchone() == (1,)
        # The session guards are back: read-only, and the row cap of each query.
        assert run("SELECT @@session.tx_read_only").rows == [(1,)]
        assert run("SELECT count(*) FROM singer").rows == [(3,)]
    finally:
        database.close()
        admin.close()


# --- the function allow-list and the Db2 decision, without a server --------------------------

def test_every_spider_gold_query_passes_the_function_allow_lists() -> None:
    import sqlglot

    dev = json.loads((FIXTURE_SPIDER / "dev.json").read_text())
    for kind in ("postgres", "mysql", "db2"):
        engine = get_engine(kind)
        for item in dev:
            written = sqlglot.transpile(item["query"], read="sqlite",
                                        write="postgres" if kind == "db2" else kind)[0]
            tree = parse_statements(written, engine.dialect)[0]
            assert function_problem(tree, engine) is None, (kind, written)
            assert relation_problem(tree, engine) is None, (kind, written)


@pytest.mark.parametrize(("kind", "sql", "named"), [
    ("postgres", "SELECT query_to_xml('select 1', true, true, '')", "query_to_xml()"),
    ("postgres", "SELECT lower(name) FROM t WHERE pg_read_file('x') IS NULL", "pg_read_file()"),
    ("postgres", "SELECT * FROM t, LATERAL dblink('x', 'y') AS d(a int)", "dblink()"),
    ("mysql", "SELECT load_file('/etc/passwd')", "load_file()"),
    ("mysql", "SELECT benchmark(10, md5('x'))", "benchmark()"),
    ("db2", "SELECT SYSPROC.ADMIN_CMD('x') FROM SYSIBM.SYSDUMMY1", "admin_cmd()"),
    ("db2", "SELECT XMLQUERY('x') FROM t", "xmlquery()"),
])
def test_functions_off_the_allow_list_are_refused_by_name(kind: str, sql: str,
                                                          named: str) -> None:
    engine = get_engine(kind)
    why = function_problem(parse_statements(sql, engine.dialect)[0], engine)
    assert why is not None and named in why, why


def test_db2_system_catalogue_is_refused() -> None:
    engine = get_engine("db2")
    tree = parse_statements("SELECT * FROM SYSCAT.TABLES", "db2")[0]
    assert "syscat.tables" in (relation_problem(tree, engine) or "")


def test_db2_privileges_from_the_catalogue_rows() -> None:
    assert "SYSCAT.DBAUTH" in db2_engine.PRIVILEGE_QUERIES["dbauth"]
    assert "SYSCAT.TABAUTH" in db2_engine.PRIVILEGE_QUERIES["tabauth"]
    assert "SYSCAT.ROLEAUTH" in db2_engine.PRIVILEGE_QUERIES["roles"]
    no = dict.fromkeys(["DBADMAUTH", "SECURITYADMAUTH", "DATAACCESSAUTH", "ACCESSCTRLAUTH",
                        "SQLADMAUTH", "WLMADMAUTH", "CREATETABAUTH", "BINDADDAUTH",
                        "NOFENCEAUTH", "IMPLSCHEMAAUTH", "LOADAUTH", "EXTERNALROUTINEAUTH",
                        "QUIESCECONNECTAUTH", "CREATESECUREAUTH"], "N")
    reader_db = {"GRANTEE": "QC_READER ", **no, "CONNECTAUTH": "Y"}
    read_table = {"GRANTEE": "QC_READER", "TABSCHEMA": "SALES ", "TABNAME": "ORDERS",
                  "CONTROLAUTH": "N", "ALTERAUTH": "N", "DELETEAUTH": "N", "INDEXAUTH": "N",
                  "INSERTAUTH": "N", "REFAUTH": "N", "UPDATEAUTH": "N", "SELECTAUTH": "Y"}
    assert db2_engine.privilege_reasons([reader_db], [read_table]) == []
    # PUBLIC's default IMPLICIT_SCHEMA / CREATETAB / BINDADD count: the user gets them too.
    public = {"GRANTEE": "PUBLIC", **no, "CREATETABAUTH": "Y", "IMPLSCHEMAAUTH": "Y"}
    assert db2_engine.privilege_reasons([reader_db, public], [read_table]) == [
        "has CREATETAB, IMPLICIT_SCHEMA (through PUBLIC)"]
    admin = {"GRANTEE": "DB2INST1", **no, "DBADMAUTH": "Y", "DATAACCESSAUTH": "Y"}
    assert db2_engine.privilege_reasons([admin], []) == [
        "has DBADM, DATAACCESS (through DB2INST1)"]
    writes = {**read_table, "INSERTAUTH": "Y", "UPDATEAUTH": "G"}
    grant_option = {**read_table, "TABNAME": "ITEMS", "SELECTAUTH": "G"}
    assert db2_engine.privilege_reasons([reader_db], [writes, grant_option]) == [
        "holds SELECT WITH GRANT OPTION on SALES.ITEMS",
        "holds INSERT, UPDATE on SALES.ORDERS"]


def test_mysql_grant_lines_decide_the_login() -> None:
    reader = ["GRANT USAGE ON *.* TO `qc_reader`@`%` IDENTIFIED BY PASSWORD '*AB'",
              "GRANT SELECT, SHOW VIEW ON `spider\\_%`.* TO `qc_reader`@`%`",
              "GRANT SELECT (`name`, `age`) ON `db`.`singer` TO `qc_reader`@`%`"]
    assert mysql_engine.grant_reasons(reader) == []
    assert mysql_engine.grant_reasons(
        ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]) == [
        "holds ALL PRIVILEGES ON *.*", "may grant privileges ON *.* (WITH GRANT OPTION)"]
    assert mysql_engine.grant_reasons(
        ["GRANT SELECT, INSERT, FILE ON *.* TO `u`@`%`"]) == ["holds INSERT, FILE ON *.*"]
    assert mysql_engine.grant_reasons(["GRANT PROXY ON ''@'%' TO 'root'@'localhost'"]) == [
        "holds PROXY ON ''@'%'"]
    lines = ["GRANT `analyst`,`loader` TO `u`@`%`", "GRANT USAGE ON *.* TO `u`@`%`"]
    assert mysql_engine.granted_roles(lines) == ["`analyst`", "`loader`"]
    assert mysql_engine.grant_reasons(lines) == []


def test_the_docs_hold_the_read_only_role_sql_for_every_server() -> None:
    doc = (PROJECT_ROOT / "docs" / "DATABASES.md").read_text()
    for needle in ("## Least privilege", "CREATE ROLE qc_reader LOGIN",
                   "GRANT SELECT ON ALL TABLES IN SCHEMA", "CREATE USER 'qc_reader'@'%'",
                   "GRANT CONNECT ON DATABASE TO USER QC_READER", "db.allow_privileged",
                   "DISCARD ALL"):
        assert needle in doc, needle


# --- SQLite: the authorizer's function allow-list ----------------------------------------------

def _spider_gold() -> list[tuple[Path, str]]:
    """(database file, gold query) for the Spider dev set when it is here, else the fixtures."""
    from tests.conftest import SHARED_SPIDER

    root = SHARED_SPIDER if (SHARED_SPIDER / "dev.json").is_file() else FIXTURE_SPIDER
    dev = json.loads((root / "dev.json").read_text())
    return [(root / "database" / i["db_id"] / f"{i['db_id']}.sqlite", i["query"]) for i in dev]


def test_every_spider_gold_query_runs_under_the_sqlite_function_allow_list() -> None:
    from querycraft.engines.sqlite import execute_readonly, open_sqlite_readonly

    connections: dict[Path, object] = {}
    refused = []
    for path, query in _spider_gold():
        if path not in connections:
            connections[path] = open_sqlite_readonly(path)
        try:
            execute_readonly(connections[path], query, timeout_s=30, max_rows=100_000)
        except QueryError as err:
            if err.kind == "refused":
                refused.append((query, err.message))
    for conn in connections.values():
        conn.close()
    assert not refused, refused[:5]


@pytest.mark.parametrize(("sql", "named"), [
    ("SELECT randomblob(16)", "randomblob()"),
    ("SELECT sqlite_version()", "sqlite_version()"),
    ("SELECT name FROM singer WHERE load_extension('/tmp/x.so') IS NULL", "load_extension()"),
    ("SELECT fts3_tokenizer('simple')", "fts3_tokenizer()"),
    ("SELECT sqlite_compileoption_get(0)", "sqlite_compileoption_get()"),
    ("SELECT app_secret(name) FROM singer", "app_secret()"),  # defined by the application
])
def test_sqlite_functions_off_the_allow_list_are_refused_by_name(sql: str, named: str) -> None:
    from querycraft.engines.sqlite import execute_readonly, open_sqlite_readonly

    conn = open_sqlite_readonly(FIXTURE_SPIDER / "database" / "concert_singer"
                                / "concert_singer.sqlite")
    # A function the embedding process registered is as reachable as a built-in one.
    conn.create_function("app_secret", 1, lambda _value: "secret")
    try:
        with pytest.raises(QueryError) as err:
            execute_readonly(conn, sql)
        assert err.value.kind == "refused" and named in err.value.message, err.value.message
        # The connection stays usable and allowed functions still run.
        assert execute_readonly(conn, "SELECT count(*), max(age) FROM singer").rows
    finally:
        conn.close()
