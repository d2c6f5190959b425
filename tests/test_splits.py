"""Splits that cannot leak (issue 31): no query (or, for "new shapes", no skeleton) on both
sides, whole databases held out, a file of test questions ingested as evaluation only, and an
ingest report that states the overlap between the splits on any data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl
from querycraft.services import finetune, infer, ingest
from querycraft.splits import overlap, query_key, query_skeleton, split_examples
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config, shared_spider
from tests.test_infer import QUICK_TRAIN

SAMPLE_CSV = PROJECT_ROOT / "input" / "sample" / "shop.csv"


class Item:
    def __init__(self, question: str, query: str, db_id: str) -> None:
        self.question, self.query, self.db_id = question, query, db_id


def _spider_items() -> list[Item]:
    dev = json.loads((shared_spider() / "dev.json").read_text())
    return [Item(d["question"], d["query"], d["db_id"]) for d in dev]


def _sample_items() -> list[Item]:
    with SAMPLE_CSV.open(encoding="utf-8") as handle:
        return [Item(r["question"], r["query"], r["db_id"]) for r in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["spider", "sample"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_query_and_skeleton_splits_never_share_one(source: str, seed: int) -> None:
    items = _spider_items() if source == "spider" else _sample_items()
    for by, key in (("query", query_key), ("skeleton", query_skeleton)):
        train, evaluation = split_examples(items, 0.2, seed, by=by)
        assert len(train) + len(evaluation) == len(items)
        assert 0.1 * len(items) < len(evaluation) < 0.3 * len(items), (by, len(evaluation))
        assert not {key(e.query) for e in train} & {key(e.query) for e in evaluation}, by
        shared = overlap(train, evaluation)
        assert shared.same_query == 0
        if by == "skeleton":
            assert shared.same_skeleton == 0


def test_the_random_split_of_spider_leaks_and_the_overlap_says_how_much() -> None:
    """The issue's finding: Spider writes several questions per query, so a split by
    question puts most evaluation queries, reworded, in training."""
    items = _spider_items()
    train, evaluation = split_examples(items, 0.3, 42, by="db_id")
    shared = overlap(train, evaluation)
    assert shared.query_share > 0.4 and shared.skeleton_share >= shared.query_share
    assert "ingest.split_by=query" in (shared.warning() or "")


def test_database_split_holds_out_whole_databases() -> None:
    items = _spider_items()
    train, evaluation = split_examples(items, 0.25, 7, by="database")
    trained = {e.db_id for e in train}
    held_out = {e.db_id for e in evaluation}
    assert held_out and not trained & held_out
    assert 0.1 * len(items) < len(evaluation) < 0.4 * len(items)


@pytest.mark.slow
def test_splits_are_deterministic_and_seeded() -> None:
    items = _sample_items()
    first = split_examples(items, 0.2, 5, by="skeleton")[1]
    assert [e.query for e in first] == [e.query for e in split_examples(items, 0.2, 5,
                                                                        by="skeleton")[1]]
    assert [e.query for e in first] != [e.query for e in split_examples(items, 0.2, 6,
                                                                        by="skeleton")[1]]


def test_skeletons_mask_literals_and_aliases_but_keep_names() -> None:
    a = "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.sid WHERE T2.y = 1"
    b = "select s.name from singer s join concert c on s.id = c.sid where c.y = 'x'"
    assert query_skeleton(a) == query_skeleton(b)
    assert query_key(a) != query_key(b)
    assert query_skeleton(a) != query_skeleton(a.replace("T1.name", "T1.age"))
    # Spider's double-quoted values are strings: "Bob" and 'Bob' are one query.
    assert query_key('SELECT a FROM t WHERE n = "Bob"') == query_key("SELECT a FROM t "
                                                                      "WHERE n = 'Bob'")
    assert query_key("SELECT a FROM t") == query_key("select  A\nfrom T ;")


def test_one_group_cannot_be_split() -> None:
    items = [Item(f"q{i}", "SELECT 1", "db") for i in range(5)]
    with pytest.raises(QueryCraftError,
                       match=r"split_by=query holds out whole groups.*needs at least two"):
        split_examples(items, 0.2, 1, by="query")


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "query", "context", "db_id"])
        for question, query in rows:
            writer.writerow([question, query, "CREATE TABLE t (a INTEGER, b TEXT);", "shop"])
    return path


def test_the_ingest_report_states_the_overlap_of_a_leaky_split(tmp_path: Path) -> None:
    # Ten queries, each asked three ways: split by question, most evaluation items re-ask a
    # trained query; split by query, none does.
    rows = [(f"{how} {n}?", f"SELECT a FROM t WHERE a = {n}")
            for n in range(10) for how in ("Which a is", "Show the a equal to", "Find a =")]
    path = _write(tmp_path / "leaky.csv", rows)
    reports = {}
    for by in ("random", "query"):
        cfg = make_config(tmp_path / by, [f"data.path={path}", "data.database=null",
                                          f"ingest.split_by={by}", "ingest.eval_fraction=0.3",
                                          "ingest.validate_execution=false"])
        run_dir = ingest.run(cfg)
        reports[by] = (json.loads((run_dir / "report.json").read_text()),
                       (run_dir / "report.md").read_text())
        evaluation = read_jsonl(run_dir / "dataset" / "eval.jsonl")
        train = read_jsonl(run_dir / "dataset" / "train.jsonl")
        trained = {r["query"] for r in train}
        expected = sum(r["query"] in trained for r in evaluation)
        assert reports[by][0]["overlap"]["same_query"] == expected
    leaky, leaky_md = reports["random"]
    assert leaky["overlap"]["same_query"] >= leaky["overlap"]["eval_items"] // 2
    assert leaky["overlap"]["same_skeleton"] == leaky["overlap"]["eval_items"]
    assert "**Warning:**" in leaky_md and "ingest.split_by=query" in leaky_md
    clean, clean_md = reports["query"]
    assert clean["overlap"]["same_query"] == 0 and "**Warning:**" not in clean_md
    assert "split_by=query" in clean_md


@pytest.mark.slow
def test_a_test_file_is_ingested_as_evaluation_only_and_scores_any_finetune_run(
        tmp_path: Path) -> None:
    output = tmp_path / "output"
    trained = ingest.run(make_config(output, ["service=ingest", "ingest.max_rows=60",
                                              *FAST_MODEL], output / "ingest-train"))
    tests = _write(tmp_path / "new_questions.csv",
                   [("How many customers are there?", "SELECT count(*) FROM customer"),
                    ("List every product name.", "SELECT name FROM product"),
                    ("How many orders are there?", "SELECT count(*) FROM orders")])
    test_run = ingest.run(make_config(output, [
        "service=ingest", f"data.path={tests}", "data.database=input/sample/shop.sqlite",
        "ingest.eval_fraction=1.0", *FAST_MODEL], output / "ingest-test"))
    assert read_jsonl(test_run / "dataset" / "train.jsonl") == []
    assert len(read_jsonl(test_run / "dataset" / "eval.jsonl")) == 3

    with pytest.raises(QueryCraftError, match="evaluation examples only"):
        finetune.run(make_config(output, ["service=finetune", f"train.dataset_dir={test_run}",
                                          *QUICK_TRAIN], output / "finetune-test"))
    model = finetune.run(make_config(output, ["service=finetune",
                                              f"train.dataset_dir={trained}", *QUICK_TRAIN],
                                     output / "finetune"))
    predicted = infer.run(make_config(output, [
        "service=infer", f"infer.finetune_dir={model}", f"infer.dataset_dir={test_run}",
        *FAST_MODEL], output / "infer"))
    rows = read_jsonl(predicted / "predictions.jsonl")
    assert [r["question"] for r in rows] == ["How many customers are there?",
                                             "List every product name.",
                                             "How many orders are there?"]
