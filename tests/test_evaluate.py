"""Evaluate service: Spider test-suite semantics, diagnostics, safety, workers, side by side."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from querycraft import db as dbmod
from querycraft.cli import run
from querycraft.compare import result_relation
from querycraft.engines.base import QueryResult
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl
from querycraft.services.evaluate import Scoring, score_all, score_execution, summarize
from querycraft.targets import DatabaseTarget
from tests.conftest import SHARED_SPIDER, make_config, shared_spider

QueryResult = QueryResult


def result(columns: list[str], rows: list[tuple]) -> QueryResult:
    return QueryResult(columns=columns, rows=rows, truncated=False, elapsed_s=0.0)


# --------------------------------------------------------------- result relations


@pytest.mark.parametrize(("gold", "pred", "ordered", "relation"), [
    (result(["a"], [(1,), (2,)]), result(["x"], [(2,), (1,)]), False, "same"),
    (result(["a"], [(1,), (2,)]), result(["a"], [(2,), (1,)]), True, "order_differs"),
    (result(["a"], [(1,)]), result(["a"], []), False, "prediction_empty"),
    (result(["a"], []), result(["a"], [(1,)]), False, "gold_empty"),
    (result(["a"], []), result(["a", "b"], []), False, "same"),  # two empty results are equal
    (result(["a"], [(1,)]), result(["a", "b"], [(1, 2)]), False, "different_columns"),
    (result(["a"], [(1,)]), result(["a"], [(1,), (1,)]), False, "more_rows"),
    (result(["a"], [(1,), (2,)]), result(["a"], [(1,)]), False, "fewer_rows"),
    (result(["a", "b"], [(1, "x"), (2, "y")]), result(["b", "a"], [("x", 1), ("z", 3)]),
     False, "partial_overlap"),
    (result(["a"], [(1,), (2,)]), result(["a"], [(3,), (4,)]), False, "different_values"),
    (result(["a"], [(1,)]), result(["a"], [(1.0,)]), False, "same"),  # 1 == 1.0
])
def test_result_relation(gold, pred, ordered, relation):
    assert result_relation(gold, pred, order_matters=ordered) == relation


# ------------------------------------------------------------ a hand-made database


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT);
        CREATE TABLE big (n INTEGER);
    """)
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?)",
                     [(1, "Ann", "Oslo"), (2, "Bob", "Rome"), (3, "Cid", "Oslo")])
    conn.executemany("INSERT INTO big VALUES (?)", [(i,) for i in range(3000)])
    conn.commit()
    conn.close()
    return path


def scoring(database: Path, **overrides) -> Scoring:
    settings = {"target": DatabaseTarget("sqlite", location=str(database)),
                "timeout_s": 1.0, "max_rows": 1000, "distinct": "keep", "exact_set": True,
                "preview_rows": 5}
    return Scoring(**{**settings, **overrides})


def execute(shop: Path, gold: str, pred: str, **overrides) -> dict:
    with dbmod.SqliteDatabase(shop) as database:
        return score_execution(gold, pred, database, scoring(shop, **overrides))


def test_row_order_counts_only_when_gold_orders(shop):
    unordered = "SELECT name FROM customer"
    reversed_ = "SELECT name FROM customer ORDER BY name DESC"
    assert execute(shop, unordered, reversed_)["execution_match"]
    ordered = execute(shop, "SELECT name FROM customer ORDER BY name", reversed_)
    assert not ordered["execution_match"] and ordered["relation"] == "order_differs"


def test_column_order_is_ignored(shop):
    assert execute(shop, "SELECT name, city FROM customer",
                   "SELECT city, name FROM customer")["execution_match"]


def test_distinct_kept_by_default_or_stripped_like_the_official_evaluator(shop):
    gold, pred = "SELECT DISTINCT city FROM customer", "SELECT city FROM customer"
    kept = execute(shop, gold, pred)
    assert not kept["execution_match"] and kept["relation"] == "more_rows"
    assert execute(shop, gold, pred, distinct="strip")["execution_match"]


@pytest.mark.parametrize(("pred", "kind"), [
    ("SELECT nme FROM customer", "no_such_column"),
    ("SELECT name FROM customers", "no_such_table"),
    ("SELECT name FROM customer WHERE", "syntax"),
    ("SELEC name FROM customer", "not_sql"),  # begins with no SQL statement keyword
    ("Sure! The customers are Ann and Bob.", "not_sql"),  # a base model's prose
    ("5", "not_sql"),
    ("PRAGMA writable_schema = 1", "refused"),  # SQL, but not a read-only query
    ("SELECT id FROM customer, customer AS c2", "ambiguous_column"),
    ("DROP TABLE customer", "refused"),
    ("SELECT abs(-9223372036854775808) FROM customer", "other"),  # integer overflow
    ("", "empty"),
])
def test_error_kinds_are_diagnosed(shop, pred, kind):
    scored = execute(shop, "SELECT name FROM customer", pred)
    assert scored["error_kind"] == kind
    assert scored["error"]  # with the message
    assert not scored["execution_match"] and not scored["prediction_valid"]


def test_a_gold_query_that_fails_is_reported_not_scored(shop):
    items = score_all([{"id": "1", "question": "q", "query": "SELECT nothing FROM nowhere",
                        "sql": "SELECT 1"}], ["sql"], scoring(shop), workers=1)
    assert items[0]["error_kind"] == "gold_failed"
    assert summarize(items)["items"] == 0 and summarize(items)["gold_failed"] == 1


# -------------------------------------------------------------- the service, end to end


def _predictions_run(out: Path, database: Path, pairs: list[tuple[str, str]],
                     corrected: list[str] | None = None) -> Path:
    """A finished infer run folder holding these (gold, predicted) pairs."""
    folder = out / "infer" / "given"
    folder.mkdir(parents=True)
    rows = []
    for i, (gold, pred) in enumerate(pairs):
        row = {"id": str(i), "db_id": "shop", "question": f"question {i}", "query": gold,
               "raw_output": pred, "sql": pred}
        if corrected is not None:
            row["corrected"] = corrected[i]
        rows.append(row)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": str(database),
        "base_model": "tiny", "adapter": None}))
    return folder


def _evaluate(out: Path, predictions: Path, *overrides: str) -> Path:
    return run(make_config(out, ["service=evaluate", f"evaluate.predictions_dir={predictions}",
                                 "db.timeout_s=1", *overrides], out / "evaluate"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_runaway_and_writing_predictions_are_stopped_refused_and_the_file_unchanged(
        tmp_path, shop):
    before = _sha256(shop)
    writes = ["DROP TABLE customer", "DELETE FROM customer", "INSERT INTO customer VALUES "
              "(9, 'x', 'y')", "UPDATE customer SET name = 'x'", "ATTACH DATABASE 'x' AS x",
              "PRAGMA journal_mode = WAL", "SELECT 1; DELETE FROM customer"]
    pairs = [("SELECT count(*) FROM customer", "SELECT count(*) FROM big a, big b, big c"),
             *[("SELECT name FROM customer", w) for w in writes],
             ("SELECT name FROM customer", "SELECT name FROM customer")]
    evaluate_dir = _evaluate(tmp_path / "out", _predictions_run(tmp_path / "out", shop, pairs),
                             "evaluate.workers=1")
    items = read_jsonl(evaluate_dir / "items.jsonl")
    assert items[0]["error_kind"] == "timeout"
    assert items[0]["seconds"] < 10  # stopped at the 1 s limit, not run to completion
    assert [i["error_kind"] for i in items[1:-1]] == ["refused"] * len(writes)
    assert items[-1]["execution_match"]  # the evaluation went on after all of them
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    assert summary["errors"] == {"timeout": 1, "refused": len(writes)}
    assert _sha256(shop) == before


def test_raw_and_corrected_are_scored_side_by_side(tmp_path, shop):
    pairs = [("SELECT name FROM customer", "SELECT name FROM customer;;"),
             ("SELECT city FROM customer", "SELECT cty FROM customer")]
    corrected = ["SELECT name FROM customer", "SELECT city FROM customer"]
    evaluate_dir = _evaluate(tmp_path / "out",
                             _predictions_run(tmp_path / "out", shop, pairs, corrected))
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    assert summary["column"] == "corrected"
    assert summary["columns"]["corrected"]["execution_accuracy"] == 1.0
    assert summary["columns"]["sql"]["execution_accuracy"] < 1.0
    items = read_jsonl(evaluate_dir / "items.jsonl")
    assert [i["column"] for i in items] == ["sql", "corrected", "sql", "corrected"]
    html = (evaluate_dir / "report.html").read_text()
    assert "corrected" in html and "every item matches" in html  # failing list: headline
    assert (evaluate_dir / "items.csv").read_text().count("\n") == 5


def test_breakdowns_by_difficulty_and_feature(tmp_path, shop):
    pairs = [("SELECT name FROM customer", "SELECT name FROM customer"),
             ("SELECT city, count(*) FROM customer GROUP BY city",
              "SELECT city FROM customer"),
             ("SELECT name FROM customer WHERE id IN (SELECT id FROM customer WHERE city = "
              "'Oslo') ORDER BY name", "SELECT name FROM customer")]
    evaluate_dir = _evaluate(tmp_path / "out", _predictions_run(tmp_path / "out", shop, pairs))
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    assert summary["by_feature"]["group_by"] == {"count": 1, "execution_accuracy": 0.0,
                                                 "exact_match": 0.0}
    assert summary["by_feature"]["nested"]["count"] == 1
    assert sum(b["count"] for b in summary["by_difficulty"].values()) == 3
    assert summary["by_difficulty"]["easy"]["execution_accuracy"] == 1.0
    items = read_jsonl(evaluate_dir / "items.jsonl")
    assert items[0]["difficulty"] == "easy" and items[2]["difficulty"] in ("hard", "extra")
    assert items[1]["relation"] == "different_columns"


@pytest.mark.slow
def test_spider_dev_gold_against_itself_scores_one_with_parallel_workers(tmp_path):
    shared_spider()
    dev = json.loads((SHARED_SPIDER / "dev.json").read_text())
    rows = [{"id": str(i), "db_id": d["db_id"], "question": d["question"], "query": d["query"],
             "sql": d["query"]} for i, d in enumerate(dev)]
    database = SHARED_SPIDER / "database"
    parallel = score_all(rows, ["sql"], scoring(database, timeout_s=30), workers=2)
    summary = summarize(parallel)
    assert summary["items"] == len(dev)
    assert summary["execution_accuracy"] == 1.0 and summary["exact_match"] == 1.0
    assert summary["exact_set_match"] == 1.0
    assert [i["id"] for i in parallel] == [r["id"] for r in rows]  # input order kept
    serial = score_all(rows[:60], ["sql"], scoring(database, timeout_s=30), workers=1)
    assert [i["relation"] for i in serial] == [i["relation"] for i in parallel[:60]]


# ------------------------------------------------- which predictions run evaluate scores


def _finished_predictions_run(folder: Path, database: Path, rows: list[dict], finished: str,
                              dataset: Path | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": str(database),
        "finished": finished, "base_model": "tiny", "adapter": None,
        "dataset_dir": str(dataset) if dataset else None}))
    return folder


def test_default_predictions_run_is_the_newest_over_a_dataset_not_a_one_question_run(
        tmp_path, shop):
    out = tmp_path / "out"
    dataset = tmp_path / "dataset"  # only its path is recorded
    over_dataset = _finished_predictions_run(
        out / "infer" / "a", shop,
        [{"id": "0", "db_id": "shop", "question": "q", "query": "SELECT name FROM customer",
          "raw_output": "SELECT name FROM customer", "sql": "SELECT name FROM customer"}],
        "2026-01-01T10:00:00", dataset)
    _finished_predictions_run(  # newer, but service=infer question=...
        out / "infer" / "b", shop,
        [{"id": "question", "question": "how many?", "query": "", "raw_output": "SELECT 1",
          "sql": "SELECT 1"}], "2026-01-02T10:00:00", None)
    evaluate_dir = run(make_config(out, ["service=evaluate", "evaluate.workers=1"],
                                   out / "evaluate"))
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    assert summary["predictions"] == str(over_dataset)
    assert summary["items"] == 1 and summary["dataset"] == str(dataset)


def test_a_one_question_run_given_to_evaluate_is_a_one_paragraph_error(tmp_path, shop):
    out = tmp_path / "out"
    one = _finished_predictions_run(
        out / "infer" / "b", shop,
        [{"id": "question", "question": "how many?", "query": "", "raw_output": "SELECT 1",
          "sql": "SELECT 1"}], "2026-01-02T10:00:00", None)
    with pytest.raises(QueryCraftError, match="one-question run") as err:
        _evaluate(out, one)
    assert "\n" not in str(err.value)
    with pytest.raises(QueryCraftError, match="No finished infer or correct run over a "
                                              "dataset"):
        run(make_config(out, ["service=evaluate"], out / "evaluate-default"))


def test_evaluating_zero_items_is_an_error(tmp_path, shop):
    out = tmp_path / "out"
    empty = _finished_predictions_run(out / "infer" / "e", shop, [], "2026-01-02T10:00:00",
                                      tmp_path / "dataset")
    with pytest.raises(QueryCraftError, match="nothing to evaluate"):
        _evaluate(out, empty)


def test_relations_count_only_valid_but_wrong_items(shop):
    items = [{**execute(shop, "SELECT name FROM customer", pred), "error_kind": "",
              "difficulty": "easy", "features": [], "exact_match": False,
              "exact_set_match": None, "token_match": 0.0}
             for pred in ("SELECT name FROM customer", "SELECT name FROM customer LIMIT 1")]
    assert summarize(items)["relations"] == {"fewer_rows": 1}
