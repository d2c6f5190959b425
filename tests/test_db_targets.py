"""The db config group: targets built from conf/db/*.yaml, URLs per db_id, passwords hidden,
and Db2 as far as it goes without a server (URL, real ibm_db_sa dialect, allow-list)."""

from __future__ import annotations

import pytest

from querycraft import db as dbmod
from querycraft.config import check_config
from querycraft.errors import QueryCraftError
from querycraft.runs import redact
from querycraft.sql import is_read_only_statement
from querycraft.targets import DatabaseTarget, target_from_config
from tests.conftest import make_config
from tests.test_readonly_servers import ATTEMPTS


def test_sqlite_is_the_default(tmp_path) -> None:
    cfg = make_config(tmp_path)
    assert cfg.db.kind == "sqlite"
    target = target_from_config(cfg.db, "/data/shop.sqlite")
    assert (target.kind, target.location, target.dialect) == ("sqlite", "/data/shop.sqlite",
                                                             "sqlite")
    assert not target.is_server


def test_postgres_parts_and_password_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QC_DB_PASSWORD", "s3cr:et@/x")
    cfg = make_config(tmp_path, ["db=postgres", "db.host=db.example.com",
                                 "db.database='{db_id}'", "db.user=analyst"])
    assert cfg.db.password == "s3cr:et@/x"
    target = target_from_config(cfg.db)
    url = target.url_for("concert_singer")
    assert (url.drivername, url.host, url.port, url.database, url.username, url.password) == (
        "postgresql+psycopg", "db.example.com", 5432, "concert_singer", "analyst", "s3cr:et@/x")
    shown = target.describe("concert_singer")
    assert shown == "postgresql+psycopg://analyst:***@db.example.com:5432/concert_singer"
    assert "s3cr" not in target.describe() and "s3cr" not in repr(target)
    with pytest.raises(QueryCraftError, match="cannot name a server database"):
        target.url_for("../../etc")


def test_a_url_and_a_separate_password_are_combined(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QC_DB_URL", "postgresql+psycopg://me@localhost/{db_id}")
    monkeypatch.setenv("QC_DB_PASSWORD", "pw")
    target = target_from_config(make_config(tmp_path, ["db=postgres"]).db)
    assert target.url_for("pets_1").render_as_string(hide_password=False) == \
        "postgresql+psycopg://me:pw@localhost/pets_1"


def test_db2_url_and_the_real_dialect_without_a_server(tmp_path, monkeypatch) -> None:
    pytest.importorskip("ibm_db_sa")
    monkeypatch.setenv("QC_DB_PASSWORD", "db2pw")
    cfg = make_config(tmp_path, ["db=db2", "db.host=db2.example.com", "db.database=SAMPLE",
                                 "db.schema=SALES"])
    target = target_from_config(cfg.db)
    assert target.url_for().render_as_string(hide_password=False) == \
        "db2+ibm_db://qc_reader:db2pw@db2.example.com:50000/SAMPLE"
    assert target.dialect == "db2" and target.schema_for() == "SALES"
    database = dbmod.ServerDatabase(target)  # creating its engine does not connect
    try:
        assert database.engine.dialect.name == "ibm_db_sa" and database.dialect == "db2"
        # The schema reader's queries for this dialect: tests/test_schema.py.
    finally:
        database.close()


def test_db2_allow_list_refuses_every_attempt_and_admits_db2_queries() -> None:
    for name, template in ATTEMPTS.items():
        ok, reason = is_read_only_statement(template.format(tmp="/tmp", marker="/tmp/x"), "db2")
        assert not ok, (name, reason)
    for sql in ("SELECT name FROM singer FETCH FIRST 5 ROWS ONLY",
                "WITH t AS (SELECT age FROM singer) SELECT avg(age) FROM t",
                "SELECT name || ' (' || country || ')' FROM singer"):
        assert is_read_only_statement(sql, "db2") == (True, ""), sql


def test_config_problems_are_reported_before_anything_connects(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("QC_DB_URL", raising=False)
    monkeypatch.delenv("QC_DB_NAME", raising=False)
    cfg = make_config(tmp_path, ["service=evaluate", "db=postgres", "db.max_rows=0",
                                 "ingest.load.if_exists=merge"])
    with pytest.raises(QueryCraftError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "db=postgres needs db.host and db.database (or db.url)" in message
    assert "db.max_rows must be at least 1" in message
    assert "ingest.load.if_exists must be fail, append or replace" in message


def test_a_missing_driver_names_the_extra_to_install() -> None:
    target = DatabaseTarget("postgres", url="postgresql+nosuchdriver://u:pw@h/db")
    with pytest.raises(QueryCraftError) as caught:
        dbmod.Databases(target).get()
    assert "pw" not in str(caught.value).replace("pip", "")
    assert "u:***@h/db" in str(caught.value)


def test_saved_configs_mask_passwords_and_url_passwords() -> None:
    container = {"db": {"password": "hunter2", "url": "postgresql://u:hunter2@h/db",
                        "user": "u"}, "note": ["mysql://a:b@c/d"], "other": {"password": None}}
    assert redact(container) == {
        "db": {"password": "***", "url": "postgresql://u:***@h/db", "user": "u"},
        "note": ["mysql://a:***@c/d"], "other": {"password": None}}


@pytest.mark.slow
def test_ingest_reads_sample_values_and_only_the_tables_a_question_needs(tmp_path) -> None:
    from querycraft.cli import run
    from querycraft.runs import read_jsonl
    from tests.conftest import FIXTURE_SPIDER

    cfg = make_config(tmp_path, ["service=ingest", "data=spider",
                                 f"data.path={FIXTURE_SPIDER / 'dev.json'}",
                                 f"data.database={FIXTURE_SPIDER / 'database'}",
                                 "ingest.context_tables=question", "db.sample_values=2"])
    folder = run(cfg)
    rows = [r for split in ("train", "eval")
            for r in read_jsonl(folder / "dataset" / f"{split}.jsonl")]
    how_many = next(r for r in rows if r["question"] == "How many singers do we have?")
    assert how_many["context"].startswith("CREATE TABLE singer (Singer_ID INTEGER /* 1, 2 */")
    assert "stadium" not in how_many["context"] and len(how_many["context"].splitlines()) == 1
    assert len({r["context"] for r in rows if r["db_id"] == "concert_singer"}) > 1


def test_ingest_loads_a_csv_into_a_new_sqlite_file_and_refuses_to_load_it_twice(tmp_path) -> None:
    import sqlite3

    from querycraft.cli import run
    from querycraft.runs import read_manifest

    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("id,customer,total,shipped\n1,Ann,12.5,2024-01-02\n2,Bob,,\n")
    database = tmp_path / "new" / "shop.sqlite"
    overrides = ["service=ingest", f"ingest.load.csv={csv_file}", f"db.path={database}"]
    folder = run(make_config(tmp_path / "out", overrides, tmp_path / "out" / "first"))
    loaded = read_manifest(folder)["loaded"]
    assert loaded["table"] == "orders" and loaded["rows"] == 2 and loaded["created"]
    assert loaded["columns"] == {"id": "integer", "customer": "text", "total": "float",
                                 "shipped": "date"}
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT id, total, shipped FROM orders ORDER BY id").fetchall() == [
        (1, 12.5, "2024-01-02"), (2, None, None)]
    conn.close()
    before = database.read_bytes()
    with pytest.raises(QueryCraftError, match="already exists"):
        run(make_config(tmp_path / "out", overrides, tmp_path / "out" / "second"))
    assert database.read_bytes() == before


def test_a_new_engine_is_one_module_in_querycraft_engines(tmp_path, monkeypatch) -> None:
    """The registry discovers engine modules: a module dropped beside the others is a db.kind
    with its URL defaults and error wordings, with no other edit."""
    import sys

    from omegaconf import OmegaConf

    import querycraft.engines as engines_pkg
    from querycraft.engines import classify_error, engine_kinds

    (tmp_path / "toydb.py").write_text(
        "from querycraft.engines.base import Engine\n"
        "ENGINE = Engine(kind='toydb', dialect='postgres', prompt_name='ToyDB',\n"
        "                sqlalchemy_names=('toydb',), driver='postgresql+psycopg',\n"
        "                default_port=4242, error_patterns={'timeout': r'toy clock ran out'})\n")
    monkeypatch.setattr(engines_pkg, "__path__", [*engines_pkg.__path__, str(tmp_path)])
    engines_pkg.forget_engines()
    try:
        assert "toydb" in engine_kinds() and "sqlite" in engine_kinds()
        target = target_from_config(OmegaConf.create(
            {"kind": "toydb", "host": "h", "database": "d", "user": "u"}))
        assert target.describe() == "postgresql+psycopg://u@h:4242/d"
        assert target.dialect == "postgres" and target.is_server
        assert classify_error("ERROR: the toy clock ran out") == "timeout"
    finally:
        engines_pkg.forget_engines()
        sys.modules.pop("querycraft.engines.toydb", None)
    monkeypatch.undo()
    assert "toydb" not in engine_kinds()
