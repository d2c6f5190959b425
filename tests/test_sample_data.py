"""Tests for the synthetic sample data generator in input/sample/make_sample_data.py."""

from __future__ import annotations

import csv
import importlib.util
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "input" / "sample"
SCRIPT = SAMPLE_DIR / "make_sample_data.py"
SEED = 7


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def dump(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def first_run(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run1")
    gen.generate(out, SEED)
    return out


@pytest.fixture(scope="module")
def second_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second generation through the command line, in a fresh interpreter."""
    out = tmp_path_factory.mktemp("run2")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--seed", str(SEED), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def rows(first_run: Path) -> list[dict[str, str]]:
    return read_rows(first_run / "shop.csv")


def test_same_seed_gives_identical_csv(first_run: Path, second_run: Path) -> None:
    assert (first_run / "shop.csv").read_bytes() == (
        second_run / "shop.csv"
    ).read_bytes()


def test_same_seed_gives_identical_database(first_run: Path, second_run: Path) -> None:
    assert dump(first_run / "shop.sqlite") == dump(second_run / "shop.sqlite")


def test_other_seed_gives_other_data(
    gen: ModuleType, first_run: Path, tmp_path: Path
) -> None:
    gen.generate(tmp_path, SEED + 1)
    assert (tmp_path / "shop.csv").read_bytes() != (first_run / "shop.csv").read_bytes()


def test_shipped_files_match_fresh_generation(first_run: Path) -> None:
    shipped_csv = SAMPLE_DIR / "shop.csv"
    assert shipped_csv.read_bytes() == (first_run / "shop.csv").read_bytes(), (
        "input/sample/shop.csv is stale: run python input/sample/make_sample_data.py"
    )
    assert dump(SAMPLE_DIR / "shop.sqlite") == dump(first_run / "shop.sqlite")


def test_csv_header_and_columns(first_run: Path, rows: list[dict[str, str]]) -> None:
    text = (first_run / "shop.csv").read_bytes().decode("utf-8")
    assert text.splitlines()[0] == "question,query,context,db_id"
    assert 400 <= len(rows) <= 500
    for row in rows:
        assert row["db_id"] == "shop"
        assert (
            row["question"].strip() and row["query"].strip() and row["context"].strip()
        )


def test_database_tables_and_sizes(first_run: Path) -> None:
    expected = {
        "customer": 60,
        "address": 100,
        "contact": 150,
        "product": 25,
        "orders": 300,
        "order_item": 700,
    }
    conn = sqlite3.connect(first_run / "shop.sqlite")
    try:
        for table, count in expected.items():
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == count
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        ddl = dict(
            conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        )
    finally:
        conn.close()
    assert "PRIMARY KEY" in ddl["customer"]
    assert "FOREIGN KEY (order_id) REFERENCES orders" in ddl["order_item"]


def test_every_query_executes_and_few_are_empty(
    first_run: Path, rows: list[dict[str, str]]
) -> None:
    conn = sqlite3.connect(first_run / "shop.sqlite")
    try:
        empty = sum(1 for row in rows if not conn.execute(row["query"]).fetchall())
    finally:
        conn.close()
    assert empty <= 0.1 * len(rows)


def test_questions_and_queries_are_unique(rows: list[dict[str, str]]) -> None:
    questions = [row["question"] for row in rows]
    assert len(set(questions)) == len(questions)
    queries = [row["query"] for row in rows]
    assert len(set(queries)) == len(queries)


def test_context_is_what_ask_renders(
    first_run: Path, rows: list[dict[str, str]], tmp_path: Path
) -> None:
    """Every row's context is the prompt context ``service=ask``/``serve`` build for any
    question about the database (issue 31): the whole schema, never the gold query's tables,
    so the model trains on the prompt it is later asked in."""
    from conftest import make_config

    from querycraft.contexts import question_contexts

    cfg = make_config(tmp_path, ["service=ask"])
    contexts = question_contexts(cfg.db, str(first_run / "shop.sqlite"), None)
    try:
        for row in rows[:20]:
            assert row["context"] == contexts.schema("shop", row["question"])
    finally:
        contexts.close()
    assert len({row["context"] for row in rows}) == 1
    declared = set(re.findall(r"CREATE TABLE (\w+) \(", rows[0]["context"]))
    assert declared == {"customer", "address", "contact", "product", "orders", "order_item"}


def test_questions_are_worded_variously(gen: ModuleType, first_run: Path) -> None:
    """Several phrasings per query shape, and questions that name no column: a model must
    learn the schema, not one wording per template (issue 31)."""
    conn = sqlite3.connect(first_run / "shop.sqlite")
    try:
        examples = gen.build_examples(conn, SEED, "context")
    finally:
        conn.close()
    for template in gen.TEMPLATES:
        assert len(template.phrasings) >= 3, template.name
    assert sum(len(t.phrasings) >= 5 for t in gen.TEMPLATES) >= 0.8 * len(gen.TEMPLATES)
    # Different phrasings of one template appear in the data, not one wording per shape.
    by_template: dict[str, set[str]] = {}
    for example in examples:
        first_words = " ".join(example["question"].split()[:2])
        by_template.setdefault(example["template"], set()).add(first_words)
    varied = sum(len(openings) >= 3 for openings in by_template.values())
    assert varied >= 0.7 * len(by_template)
    # Questions that name no column of the schema (not even with its underscore removed).
    columns = {name for spec in gen.SCHEMA.values() for name, _ in spec[0]}
    words = {part for name in columns for part in [name, name.replace("_", " ")]}
    no_column = [
        e["question"]
        for e in examples
        if not any(re.search(rf"\b{re.escape(w)}\b", e["question"], re.I) for w in words)
    ]
    assert len(no_column) >= 0.2 * len(examples)
    # Values appear unquoted, as people type them.
    assert not any(re.search(r"(^|\s)['\"]\w", e["question"]) for e in examples)


def test_sql_style(rows: list[dict[str, str]]) -> None:
    for row in rows:
        query = row["query"]
        assert not query.endswith(";")
        assert "  " not in query
        assert '"' not in query
        assert re.search(r"\b(?:select|from|where|join)\b", query) is None


def test_question_lengths(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert 4 <= len(row["question"].split()) <= 25, row["question"]


def test_template_balance(gen: ModuleType, first_run: Path) -> None:
    conn = sqlite3.connect(first_run / "shop.sqlite")
    try:
        examples = gen.build_examples(conn, SEED, "context")
    finally:
        conn.close()
    counts = Counter(example["template"] for example in examples)
    assert 60 <= len(counts) <= 90
    assert max(counts.values()) <= 0.06 * len(examples)
