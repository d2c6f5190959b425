"""The query-correct engine (querycraft/correction/) as a whole, and service=correct.

The rules' own (input, expected) cases are fixtures, tests/fixtures/rules/<rule>.yaml, run by
tests/test_correction_rules.py; here: what holds for every rule, real outputs, Spider gold
queries, validation, schema parsing and the service end to end.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml

from querycraft.cli import run
from querycraft.compare import results_match
from querycraft.correction import RULES, Correction, closest, correct_sql, edit_distance, validate
from querycraft.ddl import schema_from_ddl
from querycraft.engines.base import QueryError, QueryResult
from querycraft.engines.sqlite import execute_readonly, open_sqlite_readonly
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from querycraft.schema import read_schema
from querycraft.sql import extract_sql, has_order_by
from tests.conftest import FIXTURE_SPIDER, PROJECT_ROOT

FIXTURES = Path(__file__).parent / "fixtures"
# The schema the rule cases use by default.
SCHEMA = yaml.safe_load((FIXTURES / "rules" / "schemas" / "concert_singer.yaml").read_text())


def only(rule: str) -> dict[str, bool]:
    return {name: name == rule for name in RULES}


def fix(raw: str, rule: str | None = None, **kwargs) -> Correction:
    kwargs.setdefault("schema", SCHEMA)
    if rule:
        kwargs["rules"] = only(rule)
    return correct_sql(raw, **kwargs)


def test_threshold_and_short_names():
    assert edit_distance("nmae", "name") == 1  # a swap is one edit
    assert edit_distance("singr", "singer") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert closest("nme", ["Name", "Age"], 2)[0] == "Name"
    assert closest("nm", ["Name"], 2)[0] is None  # shorter than 3: never replaced
    assert closest("cpcty", ["Capacity"], 2)[0] is None  # 3 edits
    assert closest("capcity", ["Capacity"], 2)[0] == "Capacity"
    assert closest("stadum_idd", ["Stadium_ID"], 2)[0] == "Stadium_ID"  # 2 edits, 10 chars
    assert closest("stadum_idd", ["Stadium_ID"], 1)[0] is None  # the config limit


@pytest.mark.parametrize("raw", [
    "", "   ", "(((", "'", "SELECT", "SELECT * FROM", "DROP TABLE singer", "\x00\x01 garbage",
    "SELECT a FROM t WHERE x = 'unterminated AND y = 1", "SELECT " + "(" * 300 + "1",
    "```sql\n```", "SELECT 1; DELETE FROM singer", "WITH x AS (SELECT 1) SELECT * FROM x x x",
    "SELECT a FROM t1 AS a JOIN t2 AS a ON 1", "SELECT ? FROM singer", "/* open comment",
])
def test_never_raises(raw):
    result = fix(raw)
    assert isinstance(result.sql, str)
    for rule in RULES:
        assert isinstance(fix(raw, rule).sql, str)


def test_unparsable_query_keeps_the_text_rules_and_reports():
    result = fix("SELECT name FROM singer WHERE age > = 20 AND (")
    assert result.sql == "SELECT name FROM singer WHERE age >= 20 AND ("
    assert "join_split_operators" in result.fired
    assert any(u.startswith("does not parse as sqlite") for u in result.unresolved)
    assert fix("").unresolved == ["no SQL statement found"]


def test_unknown_rule_and_dialect():
    with pytest.raises(ValueError, match="unknown correction rule"):
        correct_sql("SELECT 1", rules={"fix_everything": True})
    result = correct_sql("select 1", read_dialect="klingon")
    assert result.sql == "select 1"
    assert "unknown SQL dialect 'klingon'" in result.unresolved


def test_service_module_reexports_the_engine():
    from querycraft.services import correct

    assert correct.correct_sql is correct_sql
    assert correct.RULES == RULES


# --------------------------------------------------------------------------------------------
# Correct queries keep their result; validation; schema parsing
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_correct_queries_keep_their_result_on_spider_fixtures():
    items = json.loads((FIXTURE_SPIDER / "dev.json").read_text())
    changed = 0
    for item in items:
        path = FIXTURE_SPIDER / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
        schema = schema_from_ddl(read_schema(path))
        fixed = correct_sql(item["query"], schema=schema)
        assert fixed.unresolved == [], (item["query"], fixed)
        conn = open_sqlite_readonly(path)
        try:
            gold = execute_readonly(conn, item["query"])
            got = execute_readonly(conn, fixed.sql)
        finally:
            conn.close()
        assert results_match(gold, got, order_matters=has_order_by(item["query"])), fixed
        changed += fixed.sql != item["query"]
    assert changed > 0  # reformat and case fixes did run


def test_validate_compiles_without_running(tmp_path):
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE singer (Singer_ID INTEGER, Name TEXT)")
    conn = open_sqlite_readonly(path)
    try:
        assert validate("SELECT Name FROM singer", conn) is None
        assert validate("SELECT nme FROM singer", conn) == "no such column: nme"
        assert validate("SELECT a FROM nosuch", conn) == "no such table: nosuch"
        assert "only SELECT" in validate("DELETE FROM singer", conn)
        # Never ends if run: EXPLAIN only compiles it.
        endless = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                   "SELECT count(*) FROM c")
        assert validate(endless, conn) is None
    finally:
        conn.close()


def test_schema_from_ddl():
    text = read_schema(FIXTURE_SPIDER / "database" / "concert_singer" / "concert_singer.sqlite")
    schema = schema_from_ddl(text)
    assert schema["singer"] == ["Singer_ID", "Name", "Country", "Song_Name", "Song_release_year",
                                "Age", "Is_male"]
    assert set(schema) == {"concert", "singer", "singer_in_concert", "stadium"}
    odd = schema_from_ddl('CREATE TABLE "my table" ("first col" TEXT, b INT, PRIMARY KEY (b));\n'
                          "CREATE TABLE weird (a INT COMPLETELY ?? BROKEN, b TEXT, "
                          "FOREIGN KEY (a) REFERENCES x(y));\nSELECT 1;")
    assert odd == {"my table": ["first col", "b"], "weird": ["a", "b"]}
    # sqlglot cannot parse these; the fallback splits on commas outside literals, comments
    # and parentheses (and, when the text does not tokenize, outside parentheses only).
    fallback = schema_from_ddl("CREATE TABLE w (a TEXT DEFAULT 'x,(y' WITH WITH, -- c, d\n"
                               "b INT CHECK (b IN (1, 2)), [c,d] INT)")
    assert fallback == {"w": ["a", "b", "c,d"]}
    assert schema_from_ddl("CREATE TABLE u (a INT ?? BROKEN, b TEXT DEFAULT 'open)") \
        == {"u": ["a", "b"]}


# --------------------------------------------------------------------------------------------
# Real model outputs (tests/fixtures/real_outputs): correction never makes them worse
# --------------------------------------------------------------------------------------------

REAL_OUTPUTS = FIXTURES / "real_outputs" / "smollm2_sample_zero_shot.jsonl"
SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"


def real_outputs() -> list[dict]:
    return [json.loads(line) for line in REAL_OUTPUTS.read_text().splitlines() if line.strip()]


def real_output(row_id: str) -> dict:
    return next(row for row in real_outputs() if row["id"] == row_id)


def correct_as_service(raw: str, row: dict) -> Correction:
    """As service=correct: the raw output, the schema from the prompt's context."""
    return correct_sql(raw, schema=schema_from_ddl(row["context"]))


@pytest.fixture(scope="module")
def sample_db():
    conn = open_sqlite_readonly(SAMPLE_DB)
    yield conn
    conn.close()


def run_or_none(conn: sqlite3.Connection, sql: str) -> QueryResult | None:
    try:
        return execute_readonly(conn, sql)
    except QueryError:
        return None


@pytest.mark.parametrize("row", real_outputs(), ids=lambda row: row["id"])
def test_correction_never_breaks_real_outputs(row, sample_db):
    before = extract_sql(row["raw_output"])  # the prediction evaluate scores without correct
    fixed = correct_as_service(row["raw_output"], row)
    if validate(before, sample_db) is None:
        assert validate(fixed.sql, sample_db) is None, fixed
    ran = run_or_none(sample_db, before)
    if ran is not None:
        after = run_or_none(sample_db, fixed.sql)
        assert after is not None, fixed
        assert results_match(ran, after, order_matters=has_order_by(before)), fixed


def test_correction_fixes_an_echoed_table_name_in_real_output(sample_db):
    # The model echoed "CREATE TABLE contacts (...)" and queried it; the table is contact.
    row = real_output("eval-00039")
    fixed = correct_as_service(row["raw_output"], row)
    assert fixed.sql == "SELECT * FROM contact WHERE customer_id = 1000"
    assert run_or_none(sample_db, fixed.sql) is not None


@pytest.mark.parametrize(
    "row", [r for r in real_outputs() if r["expected_sql"].startswith("CREATE")],
    ids=lambda row: row["id"])
def test_real_schema_echo_is_reported_not_rewritten(row):
    fixed = correct_as_service(row["raw_output"], row)
    assert fixed.sql == row["expected_sql"]  # not reformatted: no rule can make it a query
    assert set(fixed.fired) <= {"extract_statement"}
    assert "not a query but a CREATE statement; only one read-only SELECT can run" \
        in fixed.unresolved


@pytest.mark.parametrize("row_id", ["eval-00039", "eval-00043"])
def test_real_literal_cut_off_at_the_token_limit_is_reported(row_id):
    # The last statement of these outputs stops inside a literal: generation hit its limit.
    row = real_output(row_id)
    tail = row["raw_output"].rsplit(";", 1)[1].strip()
    fixed = correct_as_service(tail, row)
    assert "balance_quotes_and_parentheses" in fixed.fired
    assert any("cut off inside the literal" in note for note in fixed.unresolved)
    # The same fault in a fence the model closed was not cut off: fixed without a note.
    finished = correct_as_service("```sql\n" + tail + "\n```\nThis query lists them.", row)
    assert finished.sql == fixed.sql
    assert not any("cut off" in note for note in finished.unresolved)


@pytest.mark.parametrize(("raw", "word"), [
    # Shaped like the real outputs cut at max_new_tokens (eval-00023, eval-00030).
    ("SELECT * FROM customer WHERE customer_", "customer_"),
    ("```sql\nSELECT * FROM product WHERE unit_pri", "unit_pri"),
    ("To answer this, use `SELECT * FROM produc", "produc"),
])
def test_name_cut_off_at_the_end_of_the_output_is_not_completed(raw, word):
    schema = schema_from_ddl(read_schema(SAMPLE_DB))
    fixed = correct_sql(raw, schema=schema)
    assert fixed.sql.endswith(" " + word)  # completing it would guess a different query
    assert "fix_identifiers" not in fixed.fired
    assert any(f"'{word}' ends the output unfinished" in note for note in fixed.unresolved)
    # The same name with the statement finished after it is a misspelling, and fixed.
    finished = correct_sql(raw + ";\n", schema=schema)
    assert "fix_identifiers" in finished.fired


# --------------------------------------------------------------------------------------------
# Wrongly qualified columns (tests/fixtures/wrong_qualifiers): fix_qualifiers
# --------------------------------------------------------------------------------------------

WRONG_QUALIFIERS = FIXTURES / "wrong_qualifiers" / "shop.jsonl"


def wrong_qualifier_rows() -> list[dict]:
    return [json.loads(line) for line in WRONG_QUALIFIERS.read_text().splitlines()
            if line.strip()]


def run_read_only(path: Path, sql: str) -> list[tuple] | None:
    """The rows of ``sql`` on the database opened read-only, or None when it fails."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("row", wrong_qualifier_rows(), ids=lambda row: row["id"])
def test_wrong_qualifiers_fixture(row):
    db = PROJECT_ROOT / row["db"]
    fixed = correct_sql(row["raw_output"], schema=schema_from_ddl(read_schema(db)))
    assert fixed.sql == row["expected_sql"]
    assert fixed.fired == row["fired"]
    assert fixed.unresolved == row["unresolved"]
    before, after = run_read_only(db, row["raw_output"]), run_read_only(db, fixed.sql)
    if "fix_qualifiers" in fixed.fired:  # it only touches queries that cannot run
        assert before is None and after is not None
    if row["query"] is not None:  # the gold query's semantics exactly
        gold = run_read_only(db, row["query"])
        assert gold is not None and after is not None
        if has_order_by(row["query"]):
            assert after == gold
        else:
            assert Counter(after) == Counter(gold)


def test_wrong_qualifiers_fixture_keeps_the_model_outputs():
    assert [r["id"] for r in wrong_qualifier_rows() if r["source"] == "model"] \
        == ["model-1", "model-2", "model-3"]


# --------------------------------------------------------------------------------------------
# service=correct end to end
# --------------------------------------------------------------------------------------------

ROWS = [  # id, raw model output, whether the dataset row carries the schema as context
    ("q1", "```sql\nSELECT nme FROM singr WHERE age > = 30;\n```", True),
    ("q2", "SELECT count(*) FROM singer", True),
    ("q3", "SELECT TOP 1 name FROM singer ORDER BY age DESC", False),
    ("q4", "SELECT xyzzy FROM singer", False),
    ("q5", "I cannot answer that.", False),
]


def _fake_infer_run(tmp_path: Path) -> tuple[Path, Path]:
    database = tmp_path / "shop.sqlite"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT, Age INT)")
        conn.executemany("INSERT INTO singer VALUES (?, ?, ?)",
                         [(1, "Ann", 31), (2, "Bob", 25), (3, "Cy", 40)])
    context = read_schema(database)
    dataset_dir = tmp_path / "ingest"
    (dataset_dir / "dataset").mkdir(parents=True)
    (dataset_dir / "run.json").write_text(json.dumps({"service": "ingest",
                                                      "status": "completed"}))
    with (dataset_dir / "dataset" / "eval.jsonl").open("w") as out:
        for id_, _, has_context in ROWS:
            out.write(json.dumps({"id": id_, "question": "?", "query": "SELECT 1",
                                  "db_id": "shop", "context": context if has_context else ""})
                      + "\n")
    infer_dir = tmp_path / "infer"
    infer_dir.mkdir()
    (infer_dir / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": str(database),
        "dataset_dir": str(dataset_dir), "base_model": "tiny", "adapter": None}))
    with (infer_dir / "predictions.jsonl").open("w") as out:
        for id_, raw, _ in ROWS:
            out.write(json.dumps({"id": id_, "db_id": "shop", "question": "?",
                                  "query": "SELECT 1", "raw_output": raw, "sql": raw}) + "\n")
    return infer_dir, database


def test_service_end_to_end(tmp_path, config_factory):
    infer_dir, database = _fake_infer_run(tmp_path)
    before = (infer_dir / "predictions.jsonl").read_bytes()
    out_dir = run(config_factory(["service=correct", f"correct.predictions_dir={infer_dir}"],
                                 name="correct"))
    assert (infer_dir / "predictions.jsonl").read_bytes() == before
    rows = {r["id"]: r for r in read_jsonl(out_dir / "predictions.jsonl")}
    assert list(rows) == [r[0] for r in ROWS]
    q1, q2, q3, q4, q5 = rows.values()
    assert q1["raw_output"].startswith("```sql")  # the raw columns are kept
    assert q1["corrected"] == "SELECT Name FROM singer WHERE Age >= 30"
    assert q1["rules_fired"] == "extract_statement,join_split_operators,fix_identifiers"
    assert q1["valid"] is True and q1["validation_error"] == "" and q1["unresolved"] == []
    assert q2["corrected"] == "SELECT COUNT(*) FROM singer" and q2["valid"] is True
    # No context: the schema is read from the database.
    assert q3["corrected"] == "SELECT Name FROM singer ORDER BY Age DESC LIMIT 1"
    assert q3["rules_fired"] == "fix_identifiers,fit_dialect"
    assert q4["valid"] is False and q4["validation_error"] == "no such column: xyzzy"
    assert q4["unresolved"][0].startswith("column 'xyzzy' not found in scope")
    assert q5["valid"] is False and q5["validation_error"].startswith("only SELECT")
    info = read_manifest(out_dir)
    assert info["status"] == "completed" and info["source"] == str(infer_dir)
    assert info["count"] == 5 and info["valid"] == 3 and info["validated"] == 5
    assert info["database"] == str(database) and info["fired"]["fix_identifiers"] == 2
    # The file still works as evaluate's input: every row has the raw and corrected SQL.
    assert all({"sql", "corrected", "query"} <= set(r) for r in rows.values())


def test_service_settings(tmp_path, config_factory):
    infer_dir, _ = _fake_infer_run(tmp_path)
    out_dir = run(config_factory(
        ["service=correct", f"correct.predictions_dir={infer_dir}", "correct.validate=false",
         "correct.rules.fix_identifiers=false", "correct.target_dialect=postgres"],
        name="correct"))
    rows = read_jsonl(out_dir / "predictions.jsonl")
    assert rows[0]["corrected"] == "SELECT nme FROM singr WHERE age >= 30"
    assert rows[2]["corrected"] == "SELECT name FROM singer ORDER BY age DESC NULLS LAST LIMIT 1" \
        or rows[2]["corrected"].startswith("SELECT name FROM singer ORDER BY age DESC")
    assert all(r["valid"] is None for r in rows)


@pytest.mark.parametrize(("override", "message"), [
    ("+correct.rules.fix_everything=true", "unknown rule(s) fix_everything"),
    ("correct.target_dialect=klingon", "correct.target_dialect 'klingon' is not a sqlglot"),
    ("correct.max_edit_distance=-1", "max_edit_distance must be 0 or more"),
])
def test_config_checks(tmp_path, config_factory, override, message):
    infer_dir, _ = _fake_infer_run(tmp_path)
    with pytest.raises(QueryCraftError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(config_factory(["service=correct", f"correct.predictions_dir={infer_dir}",
                            override]))
