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
TABLE_RE = re.compile(r"\b(?:FROM|JOIN)\s+([a-z_]+)")


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


def test_context_covers_exactly_the_tables_used(rows: list[dict[str, str]]) -> None:
    for row in rows:
        used = set(TABLE_RE.findall(row["query"]))
        assert used, row["query"]
        statements = row["context"].split("\n")
        declared = {re.match(r"CREATE TABLE (\w+) \(", s).group(1) for s in statements}
        assert declared == used, row
        assert all(s.endswith(");") for s in statements), row
        for statement in statements:
            referenced = set(re.findall(r"REFERENCES (\w+)", statement))
            assert referenced <= used, row


def test_sql_style(rows: list[dict[str, str]]) -> None:
    for row in rows:
        query = row["query"]
        assert not query.endswith(";")
        assert "  " not in query
        assert '"' not in query
        assert re.search(r"\b(?:select|from|where|join)\b", query) is None


def test_question_lengths(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert 6 <= len(row["question"].split()) <= 25, row["question"]


def test_template_balance(gen: ModuleType, first_run: Path) -> None:
    conn = sqlite3.connect(first_run / "shop.sqlite")
    try:
        examples = gen.build_examples(conn, SEED)
    finally:
        conn.close()
    counts = Counter(example["template"] for example in examples)
    assert 40 <= len(counts) <= 60
    assert max(counts.values()) <= 0.06 * len(examples)
