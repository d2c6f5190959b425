"""service=ask: the training prompt exactly, an answer in words, and "I don't know" with a
reason instead of a wrong or unsafe answer."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from querycraft.asking import Asker
from querycraft.backends import BatchBackend
from querycraft.cli import run
from querycraft.data import prompt_for
from querycraft.generation import Generation
from querycraft.runs import read_jsonl
from querycraft.services.ask import run as ask_run
from querycraft.services.infer import question_row, resolve_request
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config

# Slow tier: every test here asks a fine-tuned tiny model (trained once per module).
pytestmark = pytest.mark.slow

SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"
QUICK_TRAIN = [*FAST_MODEL, "train.max_steps=2", "train.report_to=[]",
               "train.max_seq_length=1024"]
JSON_KEYS = {"question", "sql", "columns", "rows", "answer", "status", "reason", "timings"}


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ask") / "output"


@pytest.fixture(scope="module")
def finetune_dir(output) -> Path:
    # No context column: the schema context is read from the database, per question and with
    # sample values, settings ask must take from this ingest run, not from its own config.
    ingest_dir = run(make_config(output, [
        "service=ingest", "ingest.max_rows=60", "data.columns.context=no_such_column",
        "ingest.context_tables=question", "db.sample_values=2", *FAST_MODEL],
        output / "ingest"))
    return run(make_config(output, ["service=finetune", f"train.dataset_dir={ingest_dir}",
                                    *QUICK_TRAIN], output / "finetune"))


class Says(BatchBackend):
    """A backend that answers every prompt with ``text`` (and keeps the prompts)."""

    def __init__(self, text: str) -> None:
        self.text, self.prompts = text, []

    def generate_batches(self, prompts, settings):
        self.prompts += prompts
        yield list(range(len(prompts))), [Generation(self.text, 0.01) for _ in prompts]


def _config(output: Path, *overrides: str):
    return make_config(output, ["service=ask", *FAST_MODEL, *overrides], output / "ask")


@pytest.fixture(scope="module")
def asker(output, finetune_dir):
    asker = Asker(_config(output, f"ask.finetune_dir={finetune_dir}"))
    yield asker
    asker.close()


def test_the_ask_prompt_is_the_training_prompt(asker, finetune_dir):
    ingest_dir = finetune_dir.parent / "ingest"
    rows = read_jsonl(ingest_dir / "dataset" / "eval.jsonl")
    assert rows
    # The settings came from the ingest run: per-question tables, sample values.
    assert len({r["context"] for r in rows}) > 1 and all("/*" in r["context"] for r in rows)
    for row in rows:
        assert asker.row(row["question"])["context"] == row["context"]
        assert asker.prompt(row["question"]) == prompt_for(row, asker.template, asker.dialect)


def test_infer_one_question_builds_the_training_prompt_too(output, finetune_dir):
    """service=infer question=... used to read the whole schema with this config's settings,
    not the ingest run's per-question tables and sample values: prompts unlike training's."""
    ingest_dir = finetune_dir.parent / "ingest"
    for row in read_jsonl(ingest_dir / "dataset" / "eval.jsonl")[:5]:
        cfg = make_config(output, ["service=infer", f"infer.finetune_dir={finetune_dir}",
                                   *FAST_MODEL], output / "infer-question")
        cfg.question = row["question"]
        request = resolve_request(cfg)
        asked = question_row(cfg, request)
        assert asked["context"] == row["context"]
        assert (prompt_for(asked, request.template, request.dialect)
                == prompt_for(row, request.template, request.dialect))


def test_one_question_gives_sql_a_table_and_an_answer(output, finetune_dir):
    cfg = _config(output, f"ask.finetune_dir={finetune_dir}")
    backend = Says("SELECT name, unit_price FROM product ORDER BY unit_price DESC LIMIT 3")
    asker = Asker(cfg, backend=backend)
    try:
        answer = asker.ask("Which are the three most expensive products?")
        printed = asker.render(answer)
    finally:
        asker.close()
    assert backend.prompts == [asker.prompt("Which are the three most expensive products?")]
    assert answer.status == "answered" and len(answer.rows) == 3
    assert "SQL: SELECT name, unit_price FROM product" in printed
    assert "name" in printed and "unit_price" in printed and "-+-" in printed  # the table
    assert "Answer: 3 rows: " in printed
    assert answer.rows[0][0] in printed


def test_a_single_value_is_the_answer(asker):
    answer = asker.answer_text("How many customers are there?",
                               "SELECT count(*) FROM customer")
    assert answer.status == "answered"
    assert answer.answer == f"The answer is {answer.rows[0][0]}."


def test_many_rows_say_how_many_are_shown(asker):
    answer = asker.answer_text("List every product.", "SELECT name FROM product")
    assert answer.status == "answered" and len(answer.rows) > 10
    assert answer.answer == f"{len(answer.rows)} rows; the first 10 are shown."
    assert asker.render(answer).count("\n") < 10 + 6


def test_json_format_is_one_object_per_question_on_stdout(output, finetune_dir):
    cfg = _config(output, f"ask.finetune_dir={finetune_dir}", "ask.format=json")
    stdout = io.StringIO()
    answers = ask_run(cfg, stdin=io.StringIO("How many products?\nHow many orders?\n\nnot me\n"),
                      stdout=stdout)
    lines = stdout.getvalue().splitlines()
    assert len(answers) == 2 and len(lines) == 2  # stops at the empty line
    for line, question in zip(lines, ("How many products?", "How many orders?"), strict=True):
        obj = json.loads(line)
        assert set(obj) >= JSON_KEYS
        assert obj["question"] == question
        assert obj["status"] in ("answered", "no_sql", "refused", "invalid", "timeout", "error",
                                 "empty")
        if obj["status"] != "answered":
            assert obj["answer"].startswith("I don't know") and obj["reason"]


def test_the_command_line_prints_only_the_answer_on_stdout(output, finetune_dir):
    done = subprocess.run(
        [sys.executable, "-m", "querycraft", "service=ask", f"paths.output_dir={output}",
         f"ask.finetune_dir={finetune_dir}", "ask.format=json", "ask.max_new_tokens=16",
         *FAST_MODEL, "question=How many customers are there?"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.splitlines()
    obj = json.loads(line)
    assert set(obj) >= JSON_KEYS and obj["question"] == "How many customers are there?"


# ------------------------------------------------------------------ "I don't know"


def test_text_without_sql_is_i_dont_know(asker):
    for text in ("I am not sure how to answer that.", "", "```\n```"):
        answer = asker.answer_text("Who is the best customer?", text)
        assert answer.status == "no_sql", (text, answer)
        assert answer.answer.startswith("I don't know") and answer.reason
        assert not answer.rows


def test_a_write_statement_is_refused_and_the_database_is_unchanged(asker):
    before = hashlib.sha256(SAMPLE_DB.read_bytes()).hexdigest()
    for text in ("DELETE FROM customer", "DROP TABLE product",
                 "UPDATE product SET unit_price = 0"):
        answer = asker.answer_text("Remove every customer.", text)
        assert answer.status == "refused", (text, answer)
        assert answer.answer.startswith("I don't know") and "refused" in answer.reason
    assert hashlib.sha256(SAMPLE_DB.read_bytes()).hexdigest() == before
    assert asker.answer_text("How many customers?",
                             "SELECT count(*) FROM customer").rows[0][0] > 0


def test_a_query_that_runs_too_long_times_out(output, finetune_dir):
    asker = Asker(_config(output, f"ask.finetune_dir={finetune_dir}", "db.timeout_s=0.3"))
    try:
        answer = asker.answer_text(
            "Count forever.", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                              "SELECT count(*) FROM c")
    finally:
        asker.close()
    assert answer.status == "timeout" and answer.answer.startswith("I don't know")
    assert "timed out" in answer.reason


def test_no_value_where_one_was_expected_is_i_dont_know(asker):
    for text in ("SELECT name FROM product WHERE product_id = -1 LIMIT 1",
                 "SELECT max(unit_price) FROM product WHERE product_id = -1"):
        answer = asker.answer_text("What is the price of product -1?", text)
        assert answer.status == "empty", (text, answer)
        assert answer.answer.startswith("I don't know")
    # An empty list is an answer, not a failure.
    answer = asker.answer_text("Which products cost less than nothing?",
                               "SELECT name FROM product WHERE unit_price < 0")
    assert answer.status == "answered" and answer.answer == "0 rows: no row matches."


def test_a_query_the_database_rejects_is_i_dont_know(asker):
    answer = asker.answer_text("How many unicorns?", "SELECT count(*) FROM unicorn_stable_xyz")
    assert answer.status in ("invalid", "error") and answer.answer.startswith("I don't know")


def test_the_sample_trains_on_the_prompt_ask_builds(tmp_path, caplog):
    """The quickstart's model is the model a user asks (issue 31): the sample's context column
    is the schema as ask renders it, so ask gives the very training prompt and no warning."""
    output = tmp_path / "output"
    ingest_dir = run(make_config(output, ["service=ingest", *FAST_MODEL], output / "ingest"))
    finetune_dir = run(make_config(output, ["service=finetune", f"train.dataset_dir={ingest_dir}",
                                            *QUICK_TRAIN], output / "finetune"))
    trained = read_jsonl(ingest_dir / "dataset" / "train.jsonl")
    with caplog.at_level("WARNING", logger="querycraft"):
        asker = Asker(_config(output, f"ask.finetune_dir={finetune_dir}"))
    assert not [r for r in caplog.records if "context column" in r.getMessage()]
    for row in trained[:5]:
        assert asker.prompt(row["question"]) == prompt_for(row, asker.template, asker.dialect)
