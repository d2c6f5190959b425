"""The query-correct engine (querycraft/correction.py) rule by rule, and service=correct.

Each rule has hand-made (raw, expected) pairs checked with the rule alone, with every rule
on, and with the rule switched off through the ``rules`` mapping.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from querycraft.cli import run
from querycraft.correction import (
    RULES,
    Correction,
    closest,
    correct_sql,
    edit_distance,
    schema_from_ddl,
    validate,
)
from querycraft.db import (
    QueryError,
    QueryResult,
    execute_readonly,
    open_sqlite_readonly,
    read_schema,
    results_match,
)
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from querycraft.sql import extract_sql, has_order_by
from tests.conftest import FIXTURE_SPIDER, PROJECT_ROOT

SCHEMA = {
    "singer": ["Singer_ID", "Name", "Country", "Age"],
    "concert": ["concert_ID", "concert_Name", "Stadium_ID", "Year"],
    "singer_in_concert": ["concert_ID", "Singer_ID"],
    "stadium": ["Stadium_ID", "Name", "Capacity"],
}


def only(rule: str) -> dict[str, bool]:
    return {name: name == rule for name in RULES}


def fix(raw: str, rule: str | None = None, **kwargs) -> Correction:
    kwargs.setdefault("schema", SCHEMA)
    if rule:
        kwargs["rules"] = only(rule)
    return correct_sql(raw, **kwargs)


# --------------------------------------------------------------------------------------------
# Each rule alone: (rule, raw, expected)
# --------------------------------------------------------------------------------------------

ALONE = [
    # extract_statement
    ("extract_statement", "```sql\nSELECT name FROM singer;\n```", "SELECT name FROM singer"),
    ("extract_statement", "Here is the query:\nSELECT name FROM singer\n\nIt lists names.",
     "SELECT name FROM singer"),
    ("extract_statement", "### SQL\nSELECT name FROM singer\n### End", "SELECT name FROM singer"),
    ("extract_statement", "SELECT name FROM singer; SELECT 1", "SELECT name FROM singer"),
    ("extract_statement", "SELECT name FROM singer WHERE age > 20. This gives the names.",
     "SELECT name FROM singer WHERE age > 20"),
    ("extract_statement", "<think>singers</think>SELECT 1 </s>", "SELECT 1"),
    # join_split_operators
    ("join_split_operators", "SELECT a FROM t WHERE a > = 1 AND b < = 2",
     "SELECT a FROM t WHERE a >= 1 AND b <= 2"),
    ("join_split_operators", "SELECT a FROM t WHERE a ! = 1 OR b < > 2",
     "SELECT a FROM t WHERE a != 1 OR b <> 2"),
    ("join_split_operators", "SELECT a FROM t WHERE s = 'a > = b' AND a > = 1",
     "SELECT a FROM t WHERE s = 'a > = b' AND a >= 1"),
    ("join_split_operators", 'SELECT "x < > y" FROM t -- a ! = b',
     'SELECT "x < > y" FROM t -- a ! = b'),
    # balance_quotes_and_parentheses
    ("balance_quotes_and_parentheses", "SELECT a FROM t WHERE name = 'Bob",
     "SELECT a FROM t WHERE name = 'Bob'"),
    ("balance_quotes_and_parentheses", "SELECT a FROM t WHERE id IN (SELECT id FROM u",
     "SELECT a FROM t WHERE id IN (SELECT id FROM u)"),
    ("balance_quotes_and_parentheses", "SELECT a FROM t WHERE id IN (1, 2",
     "SELECT a FROM t WHERE id IN (1, 2)"),
    ("balance_quotes_and_parentheses", "SELECT a FROM t WHERE id IN (SELECT id FROM u WHERE n = 'x",
     "SELECT a FROM t WHERE id IN (SELECT id FROM u WHERE n = 'x')"),
    ("balance_quotes_and_parentheses", "SELECT a FROM t WHERE id IN (1, 2 -- the ids",
     "SELECT a FROM t WHERE id IN (1, 2) -- the ids"),
    ("balance_quotes_and_parentheses", "SELECT count(* FROM t", "SELECT count(* FROM t"),
    ("balance_quotes_and_parentheses", "SELECT count(*)) FROM t", "SELECT count(*)) FROM t"),
    ("balance_quotes_and_parentheses", "SELECT count(*) FROM t)", "SELECT count(*) FROM t"),
    ("balance_quotes_and_parentheses", "SELECT '(' FROM t WHERE a = 'it''s'",
     "SELECT '(' FROM t WHERE a = 'it''s'"),
    # fix_identifiers: case, misspellings, qualification; only the names change
    ("fix_identifiers", "select NAME, age from SINGER", "select Name, Age from singer"),
    ("fix_identifiers", "SELECT nme FROM singer WHERE contry = 'France'",
     "SELECT Name FROM singer WHERE Country = 'France'"),
    ("fix_identifiers", "SELECT name FROM singr", "SELECT Name FROM singer"),
    ("fix_identifiers", "SELECT singr.name FROM singr", "SELECT singer.Name FROM singer"),
    ("fix_identifiers", "SELECT T1.nmae FROM singer AS T1", "SELECT T1.Name FROM singer AS T1"),
    ("fix_identifiers", "SELECT t1.name FROM singer AS T1", "SELECT T1.Name FROM singer AS T1"),
    # Only stadium has Name among the joined tables: written bare, not qualified.
    ("fix_identifiers",
     "SELECT name, capacity FROM stadium AS s JOIN concert AS c ON s.stadium_id = c.stadium_id",
     "SELECT Name, Capacity FROM stadium AS s JOIN concert AS c ON s.Stadium_ID = c.Stadium_ID"),
    # Both have Stadium_ID, equated by the join: qualified with the first, no note.
    ("fix_identifiers",
     "SELECT Stadium_ID FROM stadium AS s JOIN concert AS c ON s.Stadium_ID = c.Stadium_ID",
     "SELECT s.Stadium_ID FROM stadium AS s JOIN concert AS c ON s.Stadium_ID = c.Stadium_ID"),
    ("fix_identifiers", "SELECT count(*) AS n, country FROM singer GROUP BY country ORDER BY n",
     "SELECT count(*) AS n, Country FROM singer GROUP BY Country ORDER BY n"),
    ("fix_identifiers", 'SELECT name FROM singer WHERE country = "France"',
     'SELECT Name FROM singer WHERE Country = "France"'),
    ("fix_identifiers",
     "SELECT name FROM singer WHERE singer_id IN (SELECT singr_id FROM singer_in_concert)",
     "SELECT Name FROM singer WHERE Singer_ID IN (SELECT Singer_ID FROM singer_in_concert)"),
    ("fix_identifiers", "SELECT x.nm FROM (SELECT name AS nm FROM singer) AS x",
     "SELECT x.nm FROM (SELECT Name AS nm FROM singer) AS x"),
    ("fix_identifiers", "SELECT `nme` FROM `Singer`", "SELECT `Name` FROM `singer`"),
    # fix_qualifiers: concert has no Capacity, stadium (s) is the only joined table with it
    ("fix_qualifiers",
     "SELECT c.Capacity FROM concert AS c JOIN stadium AS s ON c.Stadium_ID = s.Stadium_ID",
     "SELECT s.Capacity FROM concert AS c JOIN stadium AS s ON c.Stadium_ID = s.Stadium_ID"),
    ("fix_qualifiers", "SELECT concert.name FROM concert JOIN stadium USING (Stadium_ID)",
     "SELECT stadium.Name FROM concert JOIN stadium USING (Stadium_ID)"),
    # Already right; and Name in both singer and stadium: never guessed.
    ("fix_qualifiers",
     "SELECT s.Name FROM singer AS s JOIN singer_in_concert AS x ON s.Singer_ID = x.Singer_ID",
     "SELECT s.Name FROM singer AS s JOIN singer_in_concert AS x ON s.Singer_ID = x.Singer_ID"),
    ("fix_qualifiers",
     "SELECT x.Name FROM singer AS s JOIN singer_in_concert AS x ON s.Singer_ID = x.Singer_ID "
     "JOIN concert AS c ON x.concert_ID = c.concert_ID JOIN stadium AS t ON c.Stadium_ID = "
     "t.Stadium_ID",
     "SELECT x.Name FROM singer AS s JOIN singer_in_concert AS x ON s.Singer_ID = x.Singer_ID "
     "JOIN concert AS c ON x.concert_ID = c.concert_ID JOIN stadium AS t ON c.Stadium_ID = "
     "t.Stadium_ID"),
    # fit_dialect: other dialects' constructs in SQLite
    ("fit_dialect", "SELECT TOP 3 name FROM singer ORDER BY age DESC",
     "SELECT name FROM singer ORDER BY age DESC LIMIT 3"),
    ("fit_dialect", "SELECT name FROM singer ORDER BY age FETCH FIRST 2 ROWS ONLY",
     "SELECT name FROM singer ORDER BY age LIMIT 2"),
    ("fit_dialect", "SELECT name FROM singer WHERE name ILIKE 'jo%'",
     "SELECT name FROM singer WHERE name LIKE 'jo%'"),
    ("fit_dialect", "SELECT NOW()", "SELECT CURRENT_TIMESTAMP"),
    ("fit_dialect", "select  name from singer", "select  name from singer"),  # already SQLite
    # reformat
    ("reformat", "select  name ,age from singer where age>20",
     "SELECT name, age FROM singer WHERE age > 20"),
    ("reformat", "SELECT `name` FROM singer", 'SELECT "name" FROM singer'),
    ("reformat", "SELECT name FROM singer WHERE", "SELECT name FROM singer WHERE"),
]


@pytest.mark.parametrize(("rule", "raw", "expected"), ALONE)
def test_rule_alone(rule, raw, expected):
    result = fix(raw, rule)
    assert result.sql == expected
    assert result.fired == ([rule] if expected != raw.strip() else [])


# (rule, raw, result with every rule on): the rule fires, and switched off the fault stays.
ALL_ON = [
    ("extract_statement", "SQL: select name from singer;\nExplanation: the names",
     "SELECT Name FROM singer"),
    ("join_split_operators", "SELECT name FROM singer WHERE age > = 20",
     "SELECT Name FROM singer WHERE Age >= 20"),
    ("balance_quotes_and_parentheses", "SELECT name FROM singer WHERE country = 'France",
     "SELECT Name FROM singer WHERE Country = 'France'"),
    ("fix_identifiers", "SELECT nme FROM singr", "SELECT Name FROM singer"),
    ("fix_qualifiers",
     "select c.capacity from concert as c join stadium as s on c.stadium_id = s.stadium_id",
     "SELECT s.Capacity FROM concert AS c JOIN stadium AS s ON c.Stadium_ID = s.Stadium_ID"),
    ("fit_dialect", "SELECT TOP 1 name FROM singer ORDER BY age",
     "SELECT Name FROM singer ORDER BY Age LIMIT 1"),
    ("reformat", "select name from singer", "SELECT Name FROM singer"),
]


@pytest.mark.parametrize(("rule", "raw", "expected"), ALL_ON)
def test_rule_with_all_rules_on_and_switched_off(rule, raw, expected):
    on = fix(raw)
    assert on.sql == expected
    assert rule in on.fired
    assert on.fired == [r for r in RULES if r in on.fired]  # the fixed order
    off = fix(raw, rules={rule: False})
    assert rule not in off.fired
    assert off.sql != expected


def test_unresolved_names_are_reported_not_guessed():
    # An unknown table: its columns cannot be checked, so none of them is guessed.
    result = fix("SELECT nmae, xyzzy FROM singer JOIN nosuch ON 1 = 1")
    assert result.sql == "SELECT nmae, xyzzy FROM singer JOIN nosuch ON 1 = 1"
    assert result.unresolved == ["table 'nosuch' not found "
                                 "(candidates: concert, singer, stadium, singer_in_concert)"]
    # Equally close candidates: left alone and reported.
    tied = fix("SELECT Nage FROM singer")  # Name and Age are both one edit away
    assert tied.sql == "SELECT Nage FROM singer"
    assert tied.unresolved == ["column 'Nage' not found in scope "
                               "(candidates: Age, Name, Country, Singer_ID)"]


def test_unclear_balance_is_reported_not_guessed():
    paren = fix("SELECT count(* FROM singer", "balance_quotes_and_parentheses")
    assert paren.unresolved == ["one ')' is missing and where it belongs is unclear"]
    quote = fix("SELECT a FROM t WHERE n = 'Bob AND age > 3", "balance_quotes_and_parentheses")
    assert quote.sql == "SELECT a FROM t WHERE n = 'Bob AND age > 3"
    assert quote.unresolved == ["unclosed quote ' at offset 26: where it should end is unclear"]


def test_qualification_guess_is_reported():
    # Both tables have Name and nothing joins them on it: qualified with the FROM table.
    result = fix("SELECT name FROM singer AS a JOIN stadium AS b ON a.age = b.capacity",
                 "fix_identifiers")
    assert result.sql == "SELECT a.Name FROM singer AS a JOIN stadium AS b ON a.Age = b.Capacity"
    assert result.unresolved == ["column 'Name' is in several tables in scope (a, b); "
                                 "qualified with 'a', the first in FROM"]


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
    assert fix("SELECT capcity FROM stadium", max_edit_distance=0).sql \
        == "SELECT capcity FROM stadium"


def test_correlated_and_cte_columns_are_not_touched():
    sql = ("WITH big AS (SELECT Stadium_ID AS sid FROM stadium WHERE Capacity > 100) "
           "SELECT Name FROM singer AS s WHERE EXISTS (SELECT 1 FROM big WHERE big.sid = "
           "s.Singer_ID AND Age > 1)")
    assert fix(sql, "fix_identifiers").sql == sql
    assert fix(sql, "fix_identifiers").unresolved == []


def test_exact_name_in_another_table_wins_over_a_close_one_in_the_qualified_table():
    # a has fname (one edit from name), b has name itself: the qualifier is what is wrong.
    schema = {"a": ["id", "fname"], "b": ["id", "name"]}
    raw = "SELECT a.name FROM a JOIN b ON a.id = b.id"
    fixed = fix(raw, schema=schema)
    assert fixed.sql == "SELECT b.name FROM a JOIN b ON a.id = b.id"
    assert fixed.fired == ["fix_qualifiers"] and fixed.unresolved == []
    # Without fix_qualifiers, fix_identifiers works as it always did.
    assert fix(raw, schema=schema, rules={"fix_qualifiers": False}).sql \
        == "SELECT a.fname FROM a JOIN b ON a.id = b.id"


def test_qualifiers_next_to_a_source_of_unknown_columns_are_left():
    # x selects *: it may have Capacity too, so stadium is not the only candidate.
    raw = ("SELECT c.Capacity FROM concert AS c JOIN stadium AS s ON c.Stadium_ID = "
           "s.Stadium_ID JOIN (SELECT * FROM singer) AS x ON x.Age = c.Year")
    fixed = fix(raw, "fix_qualifiers")
    assert fixed.sql == raw
    assert fixed.unresolved == ["column 'c.Capacity': 'c' has no column 'Capacity'; 's' has "
                                "it, but so may a source in scope whose columns are unknown; "
                                "left as written"]


def test_without_schema_identifiers_are_left_alone():
    assert fix("SELECT nme FROM singr", "fix_identifiers", schema=None).sql \
        == "SELECT nme FROM singr"


def test_target_dialect_transpiles_and_keeps_sqlite_strings():
    result = fix('SELECT name FROM singer WHERE country = "France" LIMIT 2',
                 write_dialect="tsql")
    assert result.sql == "SELECT TOP 2 Name FROM singer WHERE Country = 'France'"
    assert "fit_dialect" in result.fired
    pg = fix("SELECT `Name` FROM singer", write_dialect="postgres")
    assert pg.sql == 'SELECT "Name" FROM singer'


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


# --------------------------------------------------------------------------------------------
# Real model outputs (tests/fixtures/real_outputs): correction never makes them worse
# --------------------------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"
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
