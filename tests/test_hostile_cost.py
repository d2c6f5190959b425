"""Issue 14, item 2: generated SQL is hostile input, so what it may cost is bounded.

The SQL text is measured before anything parses it (db.max_sql_bytes), each item has a
wall-clock budget (evaluate.item_budget_s), every value and the whole result have byte bounds
(db.max_value_bytes, db.max_result_bytes; SQLite's own SQLITE_LIMIT_LENGTH inside the
engine), and long values and SQL text are cut, with a marker, in items.jsonl and report.html.
The heavy cases run the evaluate service end to end in a subprocess that reports its own
peak memory (ru_maxrss before and after the run).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.cli import run
from querycraft.engines.base import TooLarge
from querycraft.runs import read_jsonl
from tests.conftest import make_config, predictions_run

ROOT = Path(__file__).resolve().parents[1]
GOLD = "SELECT name FROM customer"

# Runs the evaluate service in a fresh interpreter; prints its time and peak memory growth.
EVALUATE = r"""
import json, resource, sys, time
from pathlib import Path
from querycraft.cli import run
from tests.conftest import make_config
out, predictions, overrides = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
cfg = make_config(out, ["service=evaluate", f"evaluate.predictions_dir={predictions}",
                        "evaluate.workers=1", *overrides], out / "evaluate")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
began = time.monotonic()
run(cfg)
print(json.dumps({"seconds": time.monotonic() - began,
                  "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        conn.executemany("INSERT INTO customer VALUES (?, ?, ?)",
                         [(1, "Ann", "Oslo"), (2, "Bob", "Rome"), (3, "Cid", "Oslo")])
    return path


def evaluate_in_subprocess(out: Path, predictions: Path, *overrides: str
                           ) -> tuple[dict, list[dict]]:
    done = subprocess.run([sys.executable, "-c", EVALUATE, str(out), str(predictions),
                           json.dumps(list(overrides))], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return measured, read_jsonl(out / "evaluate" / "items.jsonl")


def long_sum(size: int) -> str:
    """``SELECT 1 + 1 + ...``: parseable SQL of about ``size`` bytes."""
    return "SELECT 1" + " + 1" * ((size - 8) // 4)


@pytest.mark.slow
@pytest.mark.parametrize("megabytes", [1, 10])
def test_megabytes_of_sql_are_refused_within_the_budget_and_memory(tmp_path, shop, megabytes):
    huge = long_sum(megabytes * 1_000_000)
    out = tmp_path / "out"
    predictions = predictions_run(out, str(shop), [(GOLD, huge), (GOLD, GOLD)])
    measured, items = evaluate_in_subprocess(out, predictions, "db.timeout_s=2",
                                             "evaluate.item_budget_s=2")
    assert measured["peak_mb"] < 500, measured
    assert items[0]["error_kind"] == "too_large"
    assert "db.max_sql_bytes" in items[0]["error"]
    assert items[0]["seconds"] < 2  # refused before parsing, inside the 2 s budget
    assert items[0]["prediction"].endswith(f"[cut: {len(huge)} characters in all]")
    assert items[1]["execution_match"]  # the run went on
    run_dir = out / "evaluate"
    # The huge text is not copied into the outputs.
    assert (run_dir / "items.jsonl").stat().st_size < 100_000
    assert (run_dir / "report.html").stat().st_size < 200_000


@pytest.mark.slow
def test_sqlite_gigabyte_values_are_refused_or_capped_in_the_engine(tmp_path, shop):
    out = tmp_path / "out"
    pairs = [(GOLD, "SELECT zeroblob(1000000000)"),
             (GOLD, "SELECT printf('%.*c', 1000000000, 'x')"),
             (GOLD, "SELECT length(zeroblob(1000000000))"),
             (GOLD, GOLD)]
    measured, items = evaluate_in_subprocess(out, predictions_run(out, str(shop), pairs),
                                             "db.timeout_s=10")
    assert measured["peak_mb"] < 500, measured
    assert items[0]["error_kind"] == "too_large" and "db.max_value_bytes" in items[0]["error"]
    # SQLite's printf stops at SQLITE_LIMIT_LENGTH and gives NULL: capped, never built.
    printf = items[1]
    assert printf["error_kind"] == "too_large" or printf["pred_preview"] == [[None]], printf
    assert items[2]["error_kind"] == "too_large"  # refused even when only measured
    assert items[3]["execution_match"]


def test_byte_bounds_in_the_sqlite_execution_layer(shop):
    with dbmod.SqliteDatabase(shop) as database:
        with pytest.raises(TooLarge) as refused:
            database.execute("SELECT 1" + " " * 200, max_sql_bytes=100)
        assert refused.value.limit == "sql" and refused.value.kind == "refused"
        with pytest.raises(TooLarge) as refused:
            database.execute("SELECT zeroblob(5000)", max_value_bytes=2000)
        assert refused.value.limit == "value"
        with pytest.raises(TooLarge):  # a string built inside the engine
            database.execute("SELECT replace(printf('%.*c', 1500, 'x'), 'x', 'xx')",
                             max_value_bytes=2000)
        many = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r LIMIT 5000) "
                "SELECT n, printf('%.*c', 900, 'x') FROM r")
        with pytest.raises(TooLarge) as refused:
            database.execute(many, max_result_bytes=1_000_000)
        assert refused.value.limit == "result"
        assert len(database.execute(many, max_result_bytes=10_000_000).rows) == 5000
        # The engine's limit is restored: a later query with a larger bound gets it.
        assert database.execute("SELECT length(zeroblob(5000))").rows == [(5000,)]
        assert database.check("SELECT 1" + " " * 200, max_sql_bytes=100) is not None


def test_long_values_are_cut_with_a_marker_in_items_and_report(tmp_path, shop):
    out = tmp_path / "out"
    long_value = "SELECT printf('%.*c', 50000, 'y')"
    predictions = predictions_run(out, str(shop), [(GOLD, long_value), (GOLD, GOLD)])
    run(make_config(out, ["service=evaluate", f"evaluate.predictions_dir={predictions}",
                          "evaluate.workers=1"], out / "evaluate"))
    items = read_jsonl(out / "evaluate" / "items.jsonl")
    cell = items[0]["pred_preview"][0][0]
    assert cell.startswith("y" * 200) and cell.endswith("[cut: 50000 characters in all]")
    assert items[0]["prediction_valid"] and not items[0]["error_kind"]  # cut only in output
    html = (out / "evaluate" / "report.html").read_text()
    assert "[cut: 50000 characters in all]" in html and "y" * 201 not in html
    assert (out / "evaluate" / "items.jsonl").stat().st_size < 20_000


@pytest.mark.slow
def test_postgres_huge_value_and_result_are_refused(tmp_path, postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO customer VALUES (1, 'Ann'), (2, 'Bob')")
    engine.dispose()
    out = tmp_path / "out"
    pairs = [(GOLD, "SELECT name, repeat('x', 1000) FROM customer, "
                    "(SELECT 1 FROM customer a, customer b, customer c, customer d, customer e,"
                    " customer f, customer g, customer h, customer i, customer j, customer k,"
                    " customer l, customer m, customer n, customer o) AS many"),
             (GOLD, "SELECT repeat('x', 1000000000)"),
             (GOLD, GOLD)]
    server = ["db=postgres", f"db.url='{postgres_url}'", "db.allow_privileged=true",
              "db.timeout_s=60", "db.max_result_bytes=1000000"]
    measured, items = evaluate_in_subprocess(out, predictions_run(out, "", pairs), *server)
    # 65536 rows of about 1 KB: fetching stopped at the result bound.
    assert items[0]["error_kind"] == "too_large" and "db.max_result_bytes" in items[0]["error"]
    # One 1 GB value: refused (the server sends it whole before the client can measure it).
    assert items[1]["error_kind"] == "too_large" and "db.max_value_bytes" in items[1]["error"]
    assert items[2]["execution_match"]
    print("PostgreSQL 1 GB value:", measured)  # its memory is the driver's (see docs)
