"""service=synthesize with a teacher (issue 16, items 2 and 3).

The teacher tests talk to real servers: a small OpenAI-compatible chat server
(tests/openai_chat_server.py) serving SmolLM2-135M-Instruct from its wheel's GGUF, and a
local SmolLM2 loaded with transformers. SmolLM2 is a weak teacher (its questions rarely
agree with their query, it does not write SQL pairs from a schema); the tests check what
the framework promises whatever the teacher writes: every query questioned once (also
across a kill and a resume), every kept query run read-only with rows, every rejection with
its reason, the work counted. The answer parsing and the choice among candidates are checked
on fixed texts.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from querycraft import gguf
from querycraft.cli import run as cli_run
from querycraft.config import check_config
from querycraft.db import SqliteDatabase
from querycraft.errors import QueryCraftError
from querycraft.runs import read_manifest
from querycraft.services.synthesize import (
    Checker,
    SeenPairs,
    check_teacher_pairs,
    choose_question,
)
from querycraft.sql import is_read_only_statement
from querycraft.synthesis.teacher import (
    Completion,
    feature_of,
    fill,
    first_line_question,
    parse_pairs,
)
from tests.conftest import FIXTURE_SPIDER, PROJECT_ROOT, make_config
from tests.test_gguf import SMOLLM2, smollm2_cache  # noqa: F401  (session fixture)

PETS = FIXTURE_SPIDER / "database" / "pets_1" / "pets_1.sqlite"


def _pairs(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in
            (run_dir / "teacher.jsonl").read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- reading answers


# The answers here, and the queries below, are made up on a library database (book, author,
# member): no question or query of an evaluation set (the sample's, Spider dev's).
@pytest.mark.parametrize(("text", "expected"), [
    ("Question: How many books are there?\nSQL: SELECT count(*) FROM book",
     [("How many books are there?", "SELECT count(*) FROM book")]),
    ("1. **Question:** Which books run over 300 pages?\n   **SQL:** ```sql\nSELECT book_id "
     "FROM book\nWHERE pages > 300;\n```\n2. Question: Newest book?\n   SQL: SELECT "
     "max(published) FROM book",
     [("Which books run over 300 pages?", "SELECT book_id FROM book\nWHERE pages > 300"),
      ("Newest book?", "SELECT max(published) FROM book")]),
    ("Here you go:\n\nquestion: List the members.\nquery: SELECT * FROM member\n\n"
     "Question: no SQL follows this one\n\nThat is all.",
     [("List the members.", "SELECT * FROM member")]),
    ("Question: What is the genre?\n\nQuestion: What is the page count?", []),
])
def test_parse_pairs(text: str, expected: list[tuple[str, str]]) -> None:
    assert parse_pairs(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Question: How many loans are overdue?", "How many loans are overdue?"),
    ("The answer to this question is:\n\n\"Which books cost most?\"",
     "Which books cost most?"),
    ("  **Show every member in Eastfield.**\nThis query lists...",
     "Show every member in Eastfield."),
    ("Here is the question:", ""),
    ("", ""),
])
def test_first_line_question(text: str, expected: str) -> None:
    assert first_line_question(text) == expected


def test_fill_replaces_known_slots_only() -> None:
    text = 'Schema: {schema}\nAnswer as {"question": ...} for {sql} {unknown}'
    assert fill(text, schema="CREATE TABLE t (a INT)", sql="SELECT a FROM t") == (
        'Schema: CREATE TABLE t (a INT)\nAnswer as {"question": ...} for SELECT a FROM t '
        "{unknown}")


@pytest.mark.parametrize(("sql", "feature"), [
    ("SELECT title FROM book", "projection"),
    ("SELECT title FROM book WHERE pages > 300", "filter"),
    ("SELECT count(*) FROM book", "aggregation"),
    ("SELECT genre, count(*) FROM book GROUP BY genre", "group_by"),
    ("SELECT title FROM book ORDER BY pages DESC LIMIT 3", "order_limit"),
    ("SELECT last_name FROM member WHERE email IS NULL", "null"),
    ("SELECT title FROM book WHERE published = '2014'", "date"),
    ("SELECT T1.title FROM book AS T1 JOIN author AS T2 ON T1.author_id = T2.author_id",
     "join"),
    ("SELECT title FROM book WHERE pages > (SELECT avg(pages) FROM book)", "nested"),
    ("SELECT last_name FROM member UNION SELECT last_name FROM author", "set_operation"),
])
def test_feature_of_a_teacher_query(sql: str, feature: str) -> None:
    from sqlglot import parse_one

    assert feature_of(parse_one(sql))[0] == feature


# ---------------------------------------------------------------- choosing a question


PAIR = {"question": "How many pets have pet type 'cat'?",
        "query": "SELECT COUNT(*) FROM Pets WHERE PetType = 'cat'", "db_id": "pets_1",
        "feature": "aggregation", "features": "aggregation;where", "complexity": "easy",
        "teacher": "none", "style": "template", "agreement": "", "rule": "aggregate_where",
        "rows": 1}


def _candidates(*specs: tuple[str, str, bool | None]) -> list[dict]:
    return [{"style": s, "question": q, "error": None, "agrees": a} for s, q, a in specs]


def test_an_agreeing_question_is_chosen_over_the_style_order() -> None:
    cands = _candidates(("formal", "How many cats?", False), ("terse", "cat count", True))
    row = choose_question(PAIR, 0, cands, "required", "openai:t", "k", {}, set())
    assert row["pair"]["question"] == "cat count"
    assert row["pair"]["style"] == "terse" and row["pair"]["agreement"] == "yes"
    assert row["pair"]["query"] == PAIR["query"] and row["pair"]["teacher"] == "openai:t"


def test_required_agreement_rejects_and_preferred_keeps_the_turn_of_styles() -> None:
    cands = _candidates(("formal", "How many cats?", False), ("terse", "cat count", False))
    row = choose_question(PAIR, 0, cands, "required", "t", "k", {}, set())
    assert row["pair"] is None and row["rejected"]["reason"] == "no question agreed"
    assert "How many cats?" in row["rejected"]["detail"]
    # Preferred: the first style in an order that turns with the query's position.
    firsts = [choose_question(PAIR, i, cands, "preferred", "t", "k", {}, set())["pair"]
              for i in range(2)]
    assert [p["style"] for p in firsts] == ["formal", "terse"]
    assert {p["agreement"] for p in firsts} == {"no"}
    off = choose_question(PAIR, 1, cands, "off", "t", "k", {}, set())["pair"]
    assert off["style"] == "terse" and off["agreement"] == ""


def test_a_question_kept_for_another_query_is_not_chosen_again() -> None:
    cands = _candidates(("formal", "How many cats?", True), ("terse", "cat count", False))
    row = choose_question(PAIR, 0, cands, "preferred", "t", "k", {}, {"how many cats?"})
    assert row["pair"]["question"] == "cat count"
    row = choose_question(PAIR, 0, cands, "preferred", "t", "k", {},
                          {"how many cats?", "cat count"})
    assert row["pair"] is None and row["rejected"]["reason"] == "duplicate question"
    empty = _candidates(("formal", "", None))
    empty[0]["error"] = "HTTP 500"
    row = choose_question(PAIR, 0, empty, "preferred", "t", "k", {}, set())
    assert row["rejected"]["reason"] == "teacher gave no question"
    assert "HTTP 500" in row["rejected"]["detail"]


# ---------------------------------------------------------------- checking teacher pairs


def test_teacher_pairs_are_run_and_checked_on_the_database(tmp_path: Path) -> None:
    database = tmp_path / "pets_1.sqlite"
    shutil.copy(PETS, database)
    before = database.read_bytes()
    answer = "\n".join([
        "Question: How many dogs are there?", "SQL: SELECT count(*) FROM Pets WHERE "
        "PetType = 'dog'",
        "Question: Remove the cats.", "SQL: DELETE FROM Pets WHERE PetType = 'cat'",
        "Question: Pets that are dragons?", "SQL: SELECT PetID FROM Pets WHERE PetType = "
        "'dragon'",
        "Question: Number of dogs?", "SQL: SELECT count(*) FROM Pets WHERE PetType = 'dog'",
        "Question: What is broken?", "SQL: SELECT FROM WHERE",
        "Question: Which columns does the table have?", "SQL: SELECT nope FROM Pets",
        "Question: How many students are there?", "SQL: SELECT count(*) FROM Student",
        "Question: Students' last names?", "SQL: SELECT LName FROM Student",
    ])
    cfg = make_config(tmp_path, [f"db.path={database}"])
    with SqliteDatabase(database) as db:
        checker = Checker(db, cfg.db, max_per_template=4)
        state = SeenPairs()
        state.copied = {"SELECT COUNT(*) FROM Student"}
        row = check_teacher_pairs(Completion(answer), "pets_1", checker, state, "openai:t",
                                  "sqlite")
        kept = {p["question"]: p for p in row["pairs"]}
        assert set(kept) == {"How many dogs are there?", "Students' last names?"}
        for pair in row["pairs"]:
            assert is_read_only_statement(pair["query"], "sqlite")[0]
            assert db.execute(pair["query"]).rows
            assert int(pair["rows"]) > 0 and pair["teacher"] == "openai:t"
        assert kept["How many dogs are there?"]["feature"] == "aggregation"
        reasons = {r["question"]: r["reason"] for r in row["rejected"]}
        assert reasons == {
            "Remove the cats.": "not a read-only query",
            "Pets that are dragons?": "empty result",
            "Number of dogs?": "duplicate query",
            "What is broken?": "query does not parse",
            "Which columns does the table have?": "query fails",
            "How many students are there?": "copies a prompt example",
        }
        failed = check_teacher_pairs(Completion("", error="HTTP 500: boom"), "pets_1",
                                     checker, state, "t", "sqlite")
        assert [r["reason"] for r in failed["rejected"]] == ["teacher request failed"]
        prose = check_teacher_pairs(Completion("Question: only a question?"), "pets_1",
                                    checker, state, "t", "sqlite")
        assert [r["reason"] for r in prose["rejected"]] == ["no pair in the teacher's answer"]
    assert database.read_bytes() == before


# ---------------------------------------------------------------- settings


def _problems(cfg) -> str:
    with pytest.raises(QueryCraftError) as err:
        check_config(cfg)
    return str(err.value)


def test_teacher_settings_are_checked_before_anything_runs(tmp_path: Path) -> None:
    no_slot = tmp_path / "question.txt"
    no_slot.write_text("Write a question about {schema}.", encoding="utf-8")
    cfg = make_config(tmp_path, [
        "service=synthesize", f"db.path={PETS}", "synthesize.mode=teacher_first",
        "synthesize.teacher.agreement=sometimes", "synthesize.teacher.concurrency=0"])
    problems = _problems(cfg)
    assert "teacher_first needs a teacher" in problems
    assert "synthesize.teacher.agreement 'sometimes'" in problems
    assert "synthesize.teacher.concurrency must be at least 1" in problems
    cfg = make_config(tmp_path, [
        "service=synthesize", f"db.path={PETS}", "synthesize.teacher.kind=openai",
        f"synthesize.teacher.question_prompt={no_slot}",
        "synthesize.teacher.sql_prompt=no/such/prompt.txt"])
    problems = _problems(cfg)
    assert "lacks the slot(s) {sql}" in problems
    assert "no prompt file 'no/such/prompt.txt'" in problems


def test_an_unreachable_teacher_stops_the_run_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    cfg = make_config(tmp_path, [
        "service=synthesize", f"db.path={PETS}", "synthesize.count=3",
        "synthesize.teacher.kind=openai", f"synthesize.teacher.base_url=http://127.0.0.1:{port}/v1",
        "synthesize.teacher.model=m", "synthesize.teacher.timeout_s=2"], tmp_path / "run")
    with pytest.raises(QueryCraftError, match=r"Could not reach .*synthesize\.teacher\.base_url"):
        cli_run(cfg)
    assert read_manifest(tmp_path / "run")["status"] == "failed"


# ---------------------------------------------------------------- a real chat teacher


@pytest.fixture(scope="module")
def chat_teacher(smollm2_cache, tmp_path_factory):  # noqa: F811
    """tests/openai_chat_server.py serving SmolLM2-135M-Instruct (zero-shot)."""
    model_dir = gguf.ensure_hf_model(SMOLLM2, smollm2_cache)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("teacher") / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_chat_server", "--model", str(model_dir),
             "--port", str(port)], cwd=PROJECT_ROOT, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the chat server did not start:\n{log.read_text()}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=20)


def _stats(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/stats", timeout=5).read())


TEACHER = ["synthesize.teacher.kind=openai", "synthesize.teacher.concurrency=1",
           "synthesize.teacher.max_new_tokens=40", "synthesize.teacher.sql_max_new_tokens=60",
           "synthesize.teacher.sample_values=1", "synthesize.teacher.agreement=preferred",
           "~synthesize.teacher.styles.colloquial"]


@pytest.mark.slow
def test_chat_teacher_questions_every_query_once_across_a_kill(chat_teacher, tmp_path):
    database = tmp_path / "pets_1.sqlite"
    shutil.copy(PETS, database)
    run_dir, out = tmp_path / "output" / "teacher", tmp_path / "output"
    overrides = ["service=synthesize", f"db.path={database}", "synthesize.count=6",
                 f"synthesize.teacher.base_url={chat_teacher}/v1", *TEACHER]
    asked_before = _stats(chat_teacher)["chat"]
    process = subprocess.Popen(
        [sys.executable, "-m", "querycraft", *overrides, f"paths.output_dir={out}",
         f"hydra.run.dir={run_dir}"], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    journal = run_dir / "teacher.jsonl"
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_text(encoding="utf-8").count("\n") >= 1):
        assert process.poll() is None, "the run ended before the test could stop it"
        assert time.monotonic() < deadline, "no query was questioned within 300 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = len(_journal(run_dir))
    assert 0 < done_before_kill < 6 and not (run_dir / "pairs.csv").exists()

    cli_run(make_config(out, overrides, run_dir))  # the same folder: resumed
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "completed" and manifest["resumed"] == 1
    rows = _journal(run_dir)
    assert len(rows) == 6 and len({r["key"] for r in rows}) == 6
    assert len({r["query"] for r in rows}) == 6
    pairs = _pairs(run_dir / "pairs.csv")
    rejected = [r for r in _pairs(run_dir / "rejected.csv") if r["reason"] in (
        "no question agreed", "teacher gave no question", "duplicate question")]
    # Every query once: kept with a teacher question, or rejected by the teacher stage.
    assert sorted([p["query"] for p in pairs] + [r["query"] for r in rejected]) == \
        sorted(r["query"] for r in rows)
    report = json.loads((run_dir / "report.json").read_text())
    usage = report["teacher_usage"]
    # Two styles, each question written back into SQL (agreement): up to 4 requests a query.
    assert 6 * 2 <= usage["requests"] <= 6 * 4 and usage["failed"] == 0
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    # The server saw the journal's requests plus at most the chunk in flight at the kill.
    asked = _stats(chat_teacher)["chat"] - asked_before
    assert usage["requests"] <= asked <= usage["requests"] + 2 * 4
    assert report["teacher"] == "openai:teacher" and report["mode"] == "sql_first"
    with SqliteDatabase(database) as db:
        for pair in pairs:
            assert pair["teacher"] == "openai:teacher"
            assert pair["style"] in ("formal", "terse") and pair["agreement"] in ("yes", "no")
            assert pair["question"] and not pair["question"].upper().startswith("SELECT")
            assert db.execute(pair["query"]).rows
    if pairs:  # ingest reads the CSV as is, nothing dropped
        cli_run(make_config(out, ["service=ingest", "data=csv_db",
                                  f"data.path={run_dir / 'pairs.csv'}",
                                  f"data.database={database}"], out / "ingest"))
        ingest = json.loads((out / "ingest" / "report.json").read_text())
        assert ingest["kept"] == len(pairs) and ingest["dropped"] == 0


@pytest.mark.slow
def test_teacher_first_keeps_only_checked_pairs_and_says_why(chat_teacher, tmp_path):
    """SmolLM2 asked for question/SQL pairs: whatever it writes, a kept pair runs read-only
    and returns rows, and each rejection has its reason (this small model mostly writes
    questions without SQL: the run then ends with that said)."""
    database = tmp_path / "pets_1.sqlite"
    shutil.copy(PETS, database)
    before = database.read_bytes()
    run_dir = tmp_path / "run"
    cfg = make_config(tmp_path, [
        "service=synthesize", f"db.path={database}", "synthesize.mode=teacher_first",
        "synthesize.count=3", f"synthesize.teacher.base_url={chat_teacher}/v1", *TEACHER,
        "synthesize.teacher.pairs_per_request=3", "synthesize.teacher.max_requests=2",
        "synthesize.teacher.pairs_max_new_tokens=160"], run_dir)
    try:
        cli_run(cfg)
    except QueryCraftError as err:
        assert "No question/SQL pair survived" in str(err)
    rejected = _pairs(run_dir / "rejected.csv")
    assert all(r["reason"] for r in rejected)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher_usage"]["requests"] == 2
    assert report["teacher_usage"]["completion_tokens"] > 0
    assert report["rejected"]["total"] == len(rejected)
    with SqliteDatabase(database) as db:
        for pair in _pairs(run_dir / "pairs.csv"):
            assert is_read_only_statement(pair["query"], "sqlite")[0]
            assert db.execute(pair["query"]).rows and pair["rule"] == "teacher"
    assert database.read_bytes() == before


@pytest.mark.slow
def test_a_local_teacher_writes_the_questions(smollm2_cache, tmp_path):  # noqa: F811
    """synthesize.teacher.kind=local: SmolLM2 loaded here (the model group's GGUF preset),
    its chat template applied, generation batched."""
    run_dir = tmp_path / "run"
    cfg = make_config(tmp_path, [
        "service=synthesize", f"db.path={PETS}", "synthesize.count=3", "model=smollm2-135m",
        f"paths.cache_dir={smollm2_cache}", "synthesize.teacher.kind=local",
        "synthesize.teacher.agreement=off", "synthesize.teacher.max_new_tokens=40",
        "synthesize.teacher.sample_values=1", "~synthesize.teacher.styles.colloquial",
        "~synthesize.teacher.styles.terse"], run_dir)
    try:
        cli_run(cfg)
    except QueryCraftError as err:  # every question refused: said, and counted below
        assert "No question/SQL pair survived" in str(err)
    rows = _journal(run_dir)
    assert len(rows) == 3
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher"].startswith("local:")
    assert report["teacher_usage"]["requests"] == 3
    assert report["teacher_usage"]["prompt_tokens"] > 100
    pairs = _pairs(run_dir / "pairs.csv")
    assert pairs, f"SmolLM2 wrote no usable question: {rows}"
    assert {p["style"] for p in pairs} == {"formal"} and {p["agreement"] for p in pairs} == {""}
