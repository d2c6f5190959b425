"""Issue 14, item 3: one item's failure is that item's error, never the run's.

A prediction too deeply nested to analyse, a connection that dies under a query and a worker
process that is killed each become one item's error_kind; the rest of the evaluation
completes and items.jsonl holds every item. Correct isolates its rows the same way. The
services run end to end, on real databases; the connection and the worker are ended from
outside, the way an administrator or the kernel's OOM killer would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from querycraft.cli import run
from querycraft.runs import read_jsonl
from tests.conftest import make_config, predictions_run, require_module

GOLD = "SELECT name FROM customer"
DEEP = "SELECT " + " + ".join(["1"] * 400)  # parses; too deep for the recursive analyses
# Runs for minutes unless stopped: 3000^3 rows.
SLOW = "SELECT count(*) FROM big a, big b, big c"


def evaluate(out: Path, predictions: Path, *overrides: str) -> list[dict]:
    run(make_config(out, ["service=evaluate", f"evaluate.predictions_dir={predictions}",
                          *overrides], out / "evaluate"))
    return read_jsonl(out / "evaluate" / "items.jsonl")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        conn.executemany("INSERT INTO customer VALUES (?, ?, ?)",
                         [(1, "Ann", "Oslo"), (2, "Bob", "Rome"), (3, "Cid", "Oslo")])
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_a_too_deep_expression_is_one_items_error(tmp_path, shop, workers):
    pairs = [(GOLD, GOLD), (GOLD, DEEP), *[(GOLD, GOLD)] * 16]
    items = evaluate(tmp_path / "out", predictions_run(tmp_path / "out", str(shop), pairs),
                     f"evaluate.workers={workers}")
    assert len(items) == len(pairs)
    assert items[1]["error_kind"] == "too_complex" and not items[1]["execution_match"]
    assert all(i["execution_match"] for i in items[:1] + items[2:])
    summary = json.loads((tmp_path / "out" / "evaluate" / "summary.json").read_text())
    assert summary["errors"] == {"too_complex": 1}


def test_the_item_budget_stops_parsing(tmp_path, shop):
    # Just under db.max_sql_bytes: parsed, but the 0.5 s budget ends it.
    wide = "SELECT " + ", ".join(f"c{i} + {i}" for i in range(6000)) + " FROM customer"
    assert 60_000 < len(wide) < 100_000
    pairs = [(GOLD, wide), (GOLD, GOLD)]
    items = evaluate(tmp_path / "out", predictions_run(tmp_path / "out", str(shop), pairs),
                     "evaluate.workers=1", "evaluate.item_budget_s=0.5")
    assert items[0]["error_kind"] == "budget" and items[0]["seconds"] < 5
    assert items[1]["execution_match"]


# ------------------------------------------------------------------------- PostgreSQL


def _server_shop(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)")
        conn.exec_driver_sql("INSERT INTO customer VALUES (1, 'Ann'), (2, 'Bob')")
        conn.exec_driver_sql("CREATE TABLE big AS SELECT g AS n FROM generate_series(1, 3000) g")
    engine.dispose()


def _admin(url: str):
    psycopg = require_module("psycopg", "POSTGRES")
    parts = make_url(url)
    return psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username,
                           dbname=parts.database, autocommit=True)


def _running_slow_queries(admin) -> list[tuple[int, int]]:
    """(backend pid, client port) of the sessions running SLOW: the only query that runs
    for more than a second (the server-side cursor shows it as FETCH)."""
    return admin.execute("SELECT pid, client_port FROM pg_stat_activity WHERE datname = "
                         "current_database() AND pid <> pg_backend_pid() AND state = 'active' "
                         "AND now() - query_start > interval '1 second'").fetchall()


class Watcher(threading.Thread):
    """Polls the server until stopped and acts on every session running SLOW."""

    def __init__(self, admin, act) -> None:
        super().__init__(daemon=True)
        self.admin, self.act, self.done, self.acted = admin, act, threading.Event(), 0

    def run(self) -> None:
        while not self.done.is_set():
            for pid, port in _running_slow_queries(self.admin):
                self.act(pid, port)
                self.acted += 1
            time.sleep(0.1)


@pytest.mark.slow
def test_a_dropped_connection_is_one_items_error(tmp_path, postgres_url):
    _server_shop(postgres_url)
    admin = _admin(postgres_url)
    # The allow-list refuses pg_terminate_backend in a prediction, so an administrator
    # ends the session while the prediction runs.
    watcher = Watcher(admin, lambda pid, _port: admin.execute(
        "SELECT pg_terminate_backend(%s)", (pid,)))
    watcher.start()
    pairs = [(GOLD, GOLD), (GOLD, SLOW), (GOLD, GOLD), (GOLD, "SELECT id FROM customer")]
    try:
        items = evaluate(tmp_path / "out", predictions_run(tmp_path / "out", "", pairs),
                         "db=postgres", f"db.url='{postgres_url}'", "db.allow_privileged=true",
                         "db.timeout_s=30", "evaluate.workers=1")
    finally:
        watcher.done.set()
        watcher.join()
        admin.close()
    assert watcher.acted >= 1
    assert len(items) == len(pairs)
    assert items[1]["error_kind"] == "connection_lost", items[1]
    assert "lost" in items[1]["error"] and "db.host" not in items[1]["error"]
    # The next items ran on a fresh connection.
    assert items[0]["execution_match"] and items[2]["execution_match"]
    assert items[3]["relation"] == "different_values"


@pytest.mark.slow
def test_a_killed_worker_is_one_items_error(tmp_path, postgres_url):
    psutil = pytest.importorskip("psutil")
    _server_shop(postgres_url)
    admin = _admin(postgres_url)
    me = psutil.Process()

    def kill_worker(pid: int, port: int) -> None:
        # The worker process whose connection runs the query: its local port is the
        # backend's client port. Killed like the OOM killer would, then the orphaned
        # backend is ended too.
        for child in me.children(recursive=True):
            try:
                if any(c.laddr and c.laddr.port == port
                       for c in child.net_connections(kind="tcp")):
                    os.kill(child.pid, signal.SIGKILL)
            except psutil.Error:
                continue
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    watcher = Watcher(admin, kill_worker)
    watcher.start()
    pairs = [(GOLD, GOLD)] * 8 + [(GOLD, SLOW)] + [(GOLD, GOLD)] * 11
    try:
        items = evaluate(tmp_path / "out", predictions_run(tmp_path / "out", "", pairs),
                         "db=postgres", f"db.url='{postgres_url}'", "db.allow_privileged=true",
                         "db.timeout_s=30", "evaluate.workers=2")
    finally:
        watcher.done.set()
        watcher.join()
        admin.close()
    assert watcher.acted >= 2  # in the pool, and again when the item ran alone
    assert len(items) == len(pairs)
    assert items[8]["error_kind"] == "crashed" and "worker process" in items[8]["error"]
    assert all(i["execution_match"] for i in items[:8] + items[9:])
    summary = json.loads((tmp_path / "out" / "evaluate" / "summary.json").read_text())
    assert summary["items"] == len(pairs) and summary["errors"] == {"crashed": 1}


# ---------------------------------------------------------------------------- correct


def test_correct_isolates_each_row(tmp_path, shop):
    huge = "SELECT 1" + " + 1" * 300_000
    pairs = [(GOLD, "SELECT nme FROM customer"), (GOLD, DEEP), (GOLD, huge), (GOLD, GOLD)]
    infer = predictions_run(tmp_path / "out", str(shop), pairs)
    out = run(make_config(tmp_path / "out", ["service=correct",
                                             f"correct.predictions_dir={infer}"],
                          tmp_path / "out" / "correct"))
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == len(pairs)
    assert rows[0]["corrected"] == "SELECT name FROM customer" and rows[0]["valid"]
    assert rows[2]["correction_error"].startswith("too_large")
    assert rows[2]["corrected"] == huge  # left as extracted; evaluate refuses it as too_large
    assert rows[3]["valid"] and rows[3]["correction_error"] == ""
    # The deep expression is corrected, or left alone with the reason; never the run's end.
    assert rows[1]["correction_error"] in ("", "too_complex: the SQL is nested too deeply to "
                                               "analyse")
