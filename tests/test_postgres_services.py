"""The services against a real PostgreSQL server: Spider databases loaded with
``service=ingest`` (table target), then ``correct`` and ``evaluate`` run there.

Acceptance: gold against gold gives the same execution accuracy on the SQLite originals and on
their PostgreSQL copies; the configured password appears nowhere under output/.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from querycraft.cli import run, secret_on_command_line
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from tests.conftest import (
    FIXTURE_SPIDER,
    PROJECT_ROOT,
    fresh_postgres_database,
    make_config,
    postgres_read_only_role,
)

DATABASES = ("concert_singer", "pets_1")
SPIDER_DBS = FIXTURE_SPIDER / "database"


def export_tables(sqlite_file: Path, folder: Path) -> list[Path]:
    """Each table of a SQLite database as a CSV file (NULL as an empty cell)."""
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    files = []
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            path = folder / f"{table}.csv"
            with path.open("w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow([c[0] for c in cursor.description])
                writer.writerows(["" if v is None else v for v in row] for row in cursor)
            files.append(path)
    finally:
        conn.close()
    return files


def load_into_postgres(url: str, out: Path, db_id: str, **env: str) -> list[Path]:
    """Every table of one fixture database into schema ``db_id``, through the ingest service."""
    runs = []
    for csv_file in export_tables(SPIDER_DBS / db_id / f"{db_id}.sqlite", out / "csv" / db_id):
        cfg = make_config(out, ["service=ingest", f"ingest.load.csv={csv_file}",
                                f"ingest.load.db_id={db_id}", "db=postgres", f"db.url='{url}'",
                                "db.schema='{db_id}'"],
                          out / f"load-{db_id}-{csv_file.stem}")
        runs.append(run(cfg))
    return runs


@pytest.fixture(scope="module")
def spider_in_postgres(tmp_path_factory: pytest.TempPathFactory):
    with fresh_postgres_database() as url:
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            for db_id in DATABASES:
                conn.exec_driver_sql(f"CREATE SCHEMA {db_id}")
        engine.dispose()
        out = tmp_path_factory.mktemp("load")
        for db_id in DATABASES:
            load_into_postgres(url, out, db_id)
        yield url


@pytest.fixture(scope="module")
def spider_reader(spider_in_postgres: str) -> Iterator[str]:
    """``spider_in_postgres`` for a role that may only read its tables: generated SQL is
    refused on the superuser that loaded them (least privilege, docs/DATABASES.md)."""
    with postgres_read_only_role(spider_in_postgres) as url:
        yield url


def gold_predictions_run(out: Path) -> Path:
    """A finished infer run whose predictions are the fixture's gold queries."""
    folder = out / "infer" / "gold"
    folder.mkdir(parents=True)
    dev = json.loads((FIXTURE_SPIDER / "dev.json").read_text())
    rows = [{"id": str(i), "db_id": d["db_id"], "question": d["question"], "query": d["query"],
             "raw_output": d["query"], "sql": d["query"]} for i, d in enumerate(dev)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": str(SPIDER_DBS),
        "base_model": "gold", "adapter": None}))
    return folder


@pytest.mark.slow
def test_loaded_tables_keep_rows_types_and_nulls(spider_in_postgres: str) -> None:
    engine = sqlalchemy.create_engine(spider_in_postgres)
    try:
        inspector = sqlalchemy.inspect(engine)
        assert sorted(inspector.get_table_names(schema="concert_singer")) == [
            "concert", "singer", "singer_in_concert", "stadium"]
        columns = {c["name"]: c["type"] for c in inspector.get_columns("singer", "concert_singer")}
        assert isinstance(columns["age"], sqlalchemy.Integer)
        assert isinstance(columns["name"], sqlalchemy.Text)
        with engine.connect() as conn:
            for db_id in DATABASES:
                source = sqlite3.connect(SPIDER_DBS / db_id / f"{db_id}.sqlite")
                for (table,) in source.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'"):
                    expected = source.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                    got = conn.exec_driver_sql(
                        f"SELECT count(*) FROM {db_id}.{table.lower()}").scalar_one()
                    assert got == expected, (db_id, table)
                source.close()
            # No 'nan' / 'None' strings where SQLite had NULL or nothing.
            assert conn.exec_driver_sql("SELECT count(*) FROM concert_singer.singer WHERE "
                                        "name IN ('nan', 'None', '')").scalar_one() == 0
    finally:
        engine.dispose()


def gold_against_gold(out: Path, kind: str, server: list[str]
                      ) -> tuple[dict, dict, list[tuple[str, str]]]:
    """The fixture's gold queries scored against themselves on the SQLite originals and, fitted
    by ``service=correct correct.target_dialect=<kind>``, on the server (``server``: the db
    overrides). Checks what holds for every server; returns both summaries and the gold
    queries the server refused (query, error) for the caller's engine-specific pins."""
    predictions = gold_predictions_run(out)
    on_sqlite = run(make_config(out, ["service=evaluate",
                                      f"evaluate.predictions_dir={predictions}"],
                                out / "evaluate-sqlite"))
    corrected = run(make_config(out, ["service=correct", f"correct.predictions_dir={predictions}",
                                      f"correct.target_dialect={kind}", *server],
                                out / f"correct-{kind}"))
    on_server = run(make_config(out, ["service=evaluate",
                                      f"evaluate.predictions_dir={corrected}", *server],
                                out / f"evaluate-{kind}"))

    sqlite_summary = json.loads((on_sqlite / "summary.json").read_text())
    summary = json.loads((on_server / "summary.json").read_text())
    items = read_jsonl(on_server / "items.jsonl")
    failed = [(i["query"], i["error"]) for i in items if i["error_kind"] == "gold_failed"]
    print(f"{kind}: {summary['items']} scored, {summary['gold_failed']} gold failed: {failed}")
    assert sqlite_summary["execution_accuracy"] == 1.0
    assert summary["column"] == "corrected"
    assert summary["execution_accuracy"] == sqlite_summary["execution_accuracy"]
    assert summary["valid_sql_rate"] == 1.0
    # A gold query the server refuses is reported, not scored; every other one ran on both.
    assert summary["items"] + summary["gold_failed"] == sqlite_summary["items"]
    # The corrected queries were checked by the server itself (EXPLAIN), not SQLite.
    correct_info = read_manifest(corrected)
    assert correct_info["database_kind"] == kind
    assert correct_info["validated"] == correct_info["count"]
    return sqlite_summary, summary, failed


@pytest.mark.slow
def test_gold_against_gold_scores_the_same_on_sqlite_and_on_postgres(
        spider_reader: str, tmp_path: Path) -> None:
    server = ["db=postgres", f"db.url='{spider_reader}'", "db.schema='{db_id}'"]
    sqlite_summary, pg_summary, failed = gold_against_gold(tmp_path / "out", "postgres", server)
    # Gold queries PostgreSQL refuses: SQLite's bare columns outside GROUP BY
    # (docs/DATABASES.md); 11 of the 87 here.
    for _, error in failed:
        assert "must appear in the GROUP BY clause" in error
    assert pg_summary["items"] >= 0.85 * sqlite_summary["items"]
    assert pg_summary["database"].startswith("postgresql+psycopg://qc_ro_")  # read-only


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file()
            and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_the_database_password_appears_nowhere_under_output(
        spider_in_postgres: str, spider_reader: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Qc-Passw0rd-7f3a9c"
    # The server trusts local connections, so any password is accepted; it is still sent
    # through every layer (config, URL, engine) exactly as a real one would be.
    monkeypatch.setenv("QC_DB_PASSWORD", secret)
    monkeypatch.setenv("QC_DB_URL", spider_in_postgres)
    out = tmp_path / "output"
    server = ["db=postgres", "db.schema='{db_id}'"]
    a_table = export_tables(SPIDER_DBS / "pets_1" / "pets_1.sqlite", tmp_path / "csv")[0]
    cfg = make_config(out, ["service=ingest", "db=postgres", "db.schema=public",
                            f"ingest.load.csv={a_table}"], out / "ingest" / "load")
    assert cfg.db.password == secret
    run(cfg)
    # Generated SQL runs as the read-only role (a superuser is refused for it).
    monkeypatch.setenv("QC_DB_URL", spider_reader)
    predictions = gold_predictions_run(out)
    corrected = run(make_config(out, ["service=correct", f"correct.predictions_dir={predictions}",
                                      "correct.target_dialect=postgres", *server],
                                out / "correct" / "pg"))
    # evaluate through the command line, as a user runs it: Hydra's own files and log too.
    env = {**os.environ, "QC_DB_PASSWORD": secret, "QC_DB_URL": spider_reader}
    done = subprocess.run(
        [sys.executable, "-m", "querycraft", "service=evaluate", *server,
         f"evaluate.predictions_dir={corrected}", f"paths.output_dir={out}",
         "evaluate.workers=1"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret not in done.stdout + done.stderr
    # A run that fails to connect records its error: without the password.
    monkeypatch.setenv("QC_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(QueryCraftError, match=r"127\.0\.0\.1:1/nowhere.*Connection refused"):
        run(make_config(out, ["service=evaluate", f"evaluate.predictions_dir={corrected}",
                              "db=postgres", "db.connect_timeout_s=2"], out / "evaluate" / "x"))
    assert read_manifest(out / "evaluate" / "x")["status"] == "failed"

    evaluations = [p for p in (out / "evaluate").iterdir() if (p / "summary.json").exists()]
    assert len(evaluations) == 1 and (evaluations[0] / "report.html").exists()
    assert any(p.suffix == ".log" for p in evaluations[0].iterdir())  # Hydra's log was written
    assert _files_holding(out, secret) == []
    saved = (evaluations[0] / "config.yaml").read_text()
    assert "password: '***'" in saved


def test_a_password_on_the_command_line_is_refused() -> None:
    assert "QC_DB_PASSWORD" in secret_on_command_line(["service=evaluate", "db.password=hunter2"])
    assert "QC_DB_URL" in secret_on_command_line(
        ["db.url=postgresql://u:hunter2@host/db"])
    assert secret_on_command_line(["db=postgres", "db.url=postgresql://u@host/db",
                                   "db.password=null"]) is None
    done = subprocess.run([sys.executable, "-m", "querycraft", "service=evaluate",
                           "db.password=hunter2"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Do not put a password on the command line" in done.stderr
