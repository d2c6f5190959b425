"""Tests for querycraft.db against real SQLite files (Spider fixtures and temporary copies)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from querycraft.compare import results_match
from querycraft.engines import classify_error
from querycraft.engines.base import ERROR_KINDS, QueryError, QueryResult
from querycraft.engines.sqlite import execute_readonly, open_sqlite_readonly, sqlite_path_for
from querycraft.errors import QueryCraftError
from querycraft.schema import read_schema
from querycraft.sql import has_order_by
from tests.conftest import shared_spider

FIXTURES = Path(__file__).parent / "fixtures" / "spider"
FIXTURE_DBS = FIXTURES / "database"
CONCERT = FIXTURE_DBS / "concert_singer" / "concert_singer.sqlite"
PETS = FIXTURE_DBS / "pets_1" / "pets_1.sqlite"
# The full Spider dev set sits beside the repository (../shared), when it is there at all.
SPIDER_DEV = Path(__file__).resolve().parents[2] / "shared" / "spider-dev"

RUNAWAY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
    "SELECT count(*) FROM c AS a, c AS b, c AS d, c AS e"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result(rows: list[tuple], columns: list[str] | None = None) -> QueryResult:
    width = len(rows[0]) if rows else 1
    cols = columns if columns is not None else [f"c{i}" for i in range(width)]
    return QueryResult(columns=cols, rows=rows, truncated=False, elapsed_s=0.0)


@pytest.fixture
def writable_copy(tmp_path: Path) -> Path:
    """A copy of concert_singer that the file system would let anyone write."""
    copy = tmp_path / "concert_singer.sqlite"
    shutil.copyfile(CONCERT, copy)
    copy.chmod(0o644)
    return copy


@pytest.fixture
def concert() -> Iterator[sqlite3.Connection]:
    conn = open_sqlite_readonly(CONCERT)
    yield conn
    conn.close()


# --------------------------------------------------------------------------------------------
# Read-only really holds
# --------------------------------------------------------------------------------------------

WRITE_ATTEMPTS = [
    "DROP TABLE singer",
    "DELETE FROM singer",
    "UPDATE singer SET Age = 0",
    "INSERT INTO singer (Singer_ID, Name) VALUES (99, 'x')",
    "REPLACE INTO singer (Singer_ID, Name) VALUES (1, 'x')",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t AS SELECT * FROM singer",
    "CREATE INDEX i ON singer (Name)",
    "ALTER TABLE singer ADD COLUMN x",
    "ATTACH DATABASE '{dir}/other.sqlite' AS other",
    "PRAGMA writable_schema=ON",
    "PRAGMA query_only=OFF",
    "PRAGMA user_version=7",
    "VACUUM",
    "VACUUM INTO '{dir}/dump.sqlite'",
    "SELECT 1; DROP TABLE singer",
    "SELECT * FROM singer; DELETE FROM singer",
    "WITH gone AS (DELETE FROM singer RETURNING *) SELECT * FROM gone",
    "WITH x AS (SELECT 1) INSERT INTO singer (Singer_ID) SELECT * FROM x",
    "SELECT 1 /* harmless */; DROP TABLE singer",
    "SELECT 1 -- harmless\n; DELETE FROM singer",
    "SELECT * INTO backup FROM singer",
    "SELECT load_extension('/tmp/evil.so')",
]


@pytest.mark.parametrize("attempt", WRITE_ATTEMPTS)
def test_write_attempts_are_refused(writable_copy: Path, attempt: str) -> None:
    before = sha256(writable_copy)
    files_before = sorted(p.name for p in writable_copy.parent.iterdir())
    sql = attempt.format(dir=writable_copy.parent)
    conn = open_sqlite_readonly(writable_copy)
    try:
        with pytest.raises(QueryError) as info:
            execute_readonly(conn, sql)
        assert info.value.kind == "refused", info.value
        # The connection still works afterwards and the data is intact.
        assert execute_readonly(conn, "SELECT count(*) FROM singer").rows == [(6,)]
    finally:
        conn.close()
    assert sha256(writable_copy) == before
    assert sorted(p.name for p in writable_copy.parent.iterdir()) == files_before


@pytest.mark.parametrize(
    "attempt",
    [
        "DROP TABLE singer",
        "DELETE FROM singer",
        "UPDATE singer SET Age = 0",
        "INSERT INTO singer (Singer_ID) VALUES (99)",
        "CREATE TABLE t (x)",
        "ATTACH DATABASE '{dir}/other.sqlite' AS other",
        "PRAGMA writable_schema=ON",
        "PRAGMA query_only=OFF",
        "SELECT load_extension('/tmp/evil.so')",
    ],
)
def test_connection_refuses_writes_without_the_statement_check(
    writable_copy: Path, attempt: str
) -> None:
    # The second line of defence: even SQL that skips is_read_only_statement cannot write.
    before = sha256(writable_copy)
    conn = open_sqlite_readonly(writable_copy)
    try:
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(attempt.format(dir=writable_copy.parent))
    finally:
        conn.close()
    assert sha256(writable_copy) == before
    assert not (writable_copy.parent / "other.sqlite").exists()


def test_open_missing_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(QueryCraftError, match="does not exist"):
        open_sqlite_readonly(missing)
    assert not missing.exists()


def test_open_rejects_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database\n" * 100)
    with pytest.raises(QueryCraftError, match="could not be opened as an SQLite database"):
        open_sqlite_readonly(junk)


def test_open_handles_awkward_file_names(tmp_path: Path) -> None:
    # '?' and '#' would end the file name in an unescaped SQLite URI.
    odd = tmp_path / "a b#c?d%20.sqlite"
    shutil.copyfile(CONCERT, odd)
    conn = open_sqlite_readonly(odd)
    try:
        assert execute_readonly(conn, "SELECT count(*) FROM stadium").rows == [(9,)]
    finally:
        conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd.name]


# --------------------------------------------------------------------------------------------
# Time limit, row cap, results
# --------------------------------------------------------------------------------------------


def test_runaway_query_times_out(concert: sqlite3.Connection) -> None:
    start = time.monotonic()
    with pytest.raises(QueryError) as info:
        execute_readonly(concert, RUNAWAY, timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert info.value.kind == "timeout"
    assert 0.4 < elapsed < 3.0
    # The progress handler is gone: a query longer than 10,000 VM steps now runs to the end.
    big = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
        "SELECT count(*) FROM c"
    )
    assert concert.execute(big).fetchone() == (200000,)


def test_execute_returns_columns_and_rows(concert: sqlite3.Connection) -> None:
    res = execute_readonly(concert, "SELECT Name, Capacity FROM stadium ORDER BY Capacity DESC")
    assert res.columns == ["Name", "Capacity"]
    assert len(res.rows) == 9 and all(isinstance(r, tuple) for r in res.rows)
    assert res.rows[0] == ("Hampden Park", 52500)
    assert res.truncated is False
    assert res.elapsed_s >= 0


def test_row_cap(concert: sqlite3.Connection) -> None:
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50) "
        "SELECT x FROM c"
    )
    capped = execute_readonly(concert, sql, max_rows=10)
    assert capped.rows == [(i,) for i in range(1, 11)]
    assert capped.truncated is True
    exact = execute_readonly(concert, sql, max_rows=50)
    assert len(exact.rows) == 50 and exact.truncated is False


@pytest.mark.parametrize(("timeout_s", "max_rows"), [(0, 10), (-1, 10), (1.0, 0)])
def test_bad_limits_are_rejected(
    concert: sqlite3.Connection, timeout_s: float, max_rows: int
) -> None:
    with pytest.raises(QueryCraftError):
        execute_readonly(concert, "SELECT 1", timeout_s=timeout_s, max_rows=max_rows)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT Name FROM singer WHERE", "syntax"),  # caught by the parser before SQLite
        ("SELECT Name FROM singer WHERE Name ILIKE 'a%'", "syntax"),  # caught by SQLite
        ("SELECT Name FROM singers", "no_such_table"),
        ("SELECT Nme FROM singer", "no_such_column"),
        (
            "SELECT Stadium_ID FROM stadium JOIN concert "
            "ON stadium.Stadium_ID = concert.Stadium_ID",
            "ambiguous_column",
        ),
        ("SELECT no_such_function(Name) FROM singer", "other"),
        ("SELECT count(*) FROM singer GROUP BY count(*)", "other"),
        ("DELETE FROM singer", "refused"),
        (RUNAWAY, "timeout"),
    ],
)
def test_error_kinds(concert: sqlite3.Connection, sql: str, kind: str) -> None:
    with pytest.raises(QueryError) as info:
        execute_readonly(concert, sql, timeout_s=0.3)
    assert info.value.kind == kind
    assert info.value.message
    assert kind in str(info.value)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELEC Name FROM singer", "syntax"),
        ("SELECT 'unterminated FROM singer", "syntax"),
        ("SELECT (Name FROM singer", "syntax"),
        ("SELECT Name FROM singer WHERE", "syntax"),
        ("SELECT * FROM no_table", "no_such_table"),
        ("SELECT no_column FROM singer", "no_such_column"),
        ("SELECT Name FROM singer, stadium", "ambiguous_column"),
        ("SELECT abs(1, 2)", "other"),
        ("DELETE FROM singer", "refused"),  # "attempt to write a readonly database"
    ],
)
def test_classify_real_sqlite_messages(sql: str, kind: str) -> None:
    # A plain read-only connection, so the message is SQLite's own.
    conn = sqlite3.connect(f"file:{CONCERT}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.Error) as info:
            conn.execute(sql).fetchall()
    finally:
        conn.close()
    assert classify_error(str(info.value)) == kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("interrupted", "timeout"),
        ("not authorized", "refused"),
        ('relation "singers" does not exist', "no_such_table"),
        ('column "nme" does not exist', "no_such_column"),
        ('column reference "id" is ambiguous', "ambiguous_column"),
        ('syntax error at or near "FRM"', "syntax"),
        ("canceling statement due to statement timeout", "timeout"),
        ("something else entirely", "other"),
    ],
)
def test_classify_other_engines(message: str, kind: str) -> None:
    assert classify_error(message) == kind
    assert kind in ERROR_KINDS


def test_query_error_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown query error kind"):
        QueryError("bogus", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gold", "pred", "order_matters", "expected"),
    [
        ([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], False, True),  # rows as a multiset
        ([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], True, False),  # ... unless order matters
        ([(1, "a"), (2, "b")], [(1, "a"), (2, "b")], True, True),
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], False, True),  # column order ignored
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
        ([(1, "a"), (2, "b")], [("b", 1), ("a", 2)], False, False),  # columns match, rows do not
        ([(1, 2), (3, 4)], [(2, 1), (4, 3)], False, True),
        ([(1, 2), (3, 4)], [(2, 3), (4, 1)], False, False),
        ([], [], False, True),  # two empty results are equal
        ([], [(1,)], False, False),
        ([(1,)], [], False, False),
        ([(1,)], [(1.0,)], False, True),  # 1 == 1.0
        ([(True,)], [(1,)], False, True),
        ([(0.1 + 0.2,)], [(0.3,)], False, False),  # exact, as the official evaluator
        ([(2.0 / 3.0,)], [(0.666667,)], False, False),
        ([(37.0,)], [(37.0000001,)], False, False),
        ([(0.1234567,)], [(0.1234568,)], False, False),  # the 7th digit counts
        ([(2.5,)], [(2.6,)], False, False),
        ([(1234567.0,)], [(1234568,)], False, False),  # integers compare exactly
        ([(1,)], [("1",)], False, False),  # a string is not a number
        ([(None,)], [(None,)], False, True),
        ([(None,)], [(0,)], False, False),
        ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),  # multiplicity counts
        ([(1,), (1,), (2,)], [(1,), (2,)], False, False),
        ([(1,), (1,)], [(1,), (1,)], False, True),
        ([(1, 2)], [(1, 2, 3)], False, False),  # column counts differ
        ([(1, 1), (2, 2)], [(1, 1), (2, 2)], False, True),
    ],
)
def test_results_match(
    gold: list[tuple], pred: list[tuple], order_matters: bool, expected: bool
) -> None:
    assert results_match(result(gold), result(pred), order_matters=order_matters) is expected


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        ([(0.1 + 0.2,)], [(0.3,)], True),
        ([(2.0 / 3.0,)], [(0.666667,)], True),
        ([(0.1234567,)], [(0.1234568,)], True),  # equal to 6 significant digits
        ([(37.0,)], [(37.0000001,)], False),  # an integral value compares exactly
        ([(2.5,)], [(2.6,)], False),
        ([(Decimal("2.5"),)], [(2.5,)], True),
    ],
)
def test_results_match_with_float_digits(gold: list[tuple], pred: list[tuple],
                                         expected: bool) -> None:
    """evaluate.float_digits=6: the tolerance evaluate used before it matched the official
    evaluator's exact comparison."""
    assert results_match(result(gold), result(pred), order_matters=False,
                         float_digits=6) is expected


def test_results_match_empty_results_ignore_columns() -> None:
    gold = QueryResult(columns=["a", "b"], rows=[], truncated=False, elapsed_s=0.0)
    pred = QueryResult(columns=["x"], rows=[], truncated=False, elapsed_s=0.0)
    assert results_match(gold, pred, order_matters=True)


def test_results_match_wide_results_stay_cheap() -> None:
    # Twelve columns with the same multiset of values: 12! orders without pruning.
    steps = [1, 3, 7, 9, 11, 13, 17, 19, 21, 23, 27, 29]
    gold = [tuple((r * k) % 50 for k in steps) for r in range(50)]
    pred = [tuple(reversed(row)) for row in gold]
    start = time.monotonic()
    assert results_match(result(gold), result(pred), order_matters=False)
    # Swap two values inside one column: every column keeps its multiset, the rows change.
    broken = [list(row) for row in pred]
    broken[0][0], broken[1][0] = broken[1][0], broken[0][0]
    assert not results_match(result(gold), result([tuple(r) for r in broken]), order_matters=False)
    assert time.monotonic() - start < 2.0


def test_results_match_on_real_queries(concert: sqlite3.Connection) -> None:
    gold = execute_readonly(concert, "SELECT Name, Country FROM singer WHERE Age > 30")
    pred = execute_readonly(
        concert, "SELECT Country, Name FROM singer WHERE NOT Age <= 30 ORDER BY Name"
    )
    assert results_match(gold, pred, order_matters=False)
    wrong = execute_readonly(concert, "SELECT Country, Name FROM singer WHERE Age >= 29")
    assert not results_match(gold, wrong, order_matters=False)


# --------------------------------------------------------------------------------------------
# Schema and layout
# --------------------------------------------------------------------------------------------


def test_read_schema_concert_singer() -> None:
    before = sha256(CONCERT)
    schema = read_schema(str(CONCERT))
    lines = schema.split("\n")
    assert [line.split()[2] for line in lines] == [
        "concert",
        "singer",
        "singer_in_concert",
        "stadium",
    ]
    assert all(line.startswith("CREATE TABLE ") and line.endswith(");") for line in lines)
    assert lines[0] == (
        "CREATE TABLE concert (concert_ID INTEGER, concert_Name TEXT, Theme TEXT, "
        "Stadium_ID TEXT, Year TEXT, PRIMARY KEY (concert_ID), "
        "FOREIGN KEY (Stadium_ID) REFERENCES stadium(Stadium_ID));"
    )
    assert "PRIMARY KEY (concert_ID, Singer_ID)" in lines[2]
    assert "FOREIGN KEY (concert_ID) REFERENCES concert(concert_ID)" in lines[2]
    assert "FOREIGN KEY (Singer_ID) REFERENCES singer(Singer_ID)" in lines[2]
    assert "Is_male BOOLEAN" in lines[1]
    assert sha256(CONCERT) == before


def test_read_schema_selected_tables_and_urls() -> None:
    only = read_schema(CONCERT, tables=["STADIUM", "singer"])
    assert [line.split()[2] for line in only.split("\n")] == ["stadium", "singer"]
    assert read_schema(f"sqlite:///{CONCERT}") == read_schema(str(CONCERT))
    pets = read_schema(str(PETS))
    assert "CREATE TABLE Has_Pet (StuID INTEGER, PetID INTEGER, " in pets
    assert "FOREIGN KEY (PetID) REFERENCES Pets(PetID)" in pets


def test_read_schema_errors(tmp_path: Path) -> None:
    with pytest.raises(QueryCraftError, match="no table named nope"):
        read_schema(CONCERT, tables=["singer", "nope"])
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(QueryCraftError, match="not an existing file"):
        read_schema(str(missing))
    with pytest.raises(QueryCraftError, match="not an existing file"):
        read_schema(f"sqlite:///{missing}")
    assert not missing.exists()
    with pytest.raises(QueryCraftError, match="driver"):
        read_schema("nosuchdb://user:secret@host/db")


def test_read_schema_quotes_only_awkward_names(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        'CREATE TABLE "My Table" ("2nd col" varchar(20), plain, "Order" INT, '
        'PRIMARY KEY ("2nd col"));'
        'CREATE TABLE child (id INTEGER PRIMARY KEY, parent TEXT REFERENCES "My Table"("2nd col"));'
    )
    conn.close()
    before = sha256(path)
    # Sorted by name case-insensitively; keywords and mixed case stay unquoted.
    assert read_schema(path) == (
        "CREATE TABLE child (id INTEGER, parent TEXT, PRIMARY KEY (id), "
        'FOREIGN KEY (parent) REFERENCES "My Table"("2nd col"));\n'
        'CREATE TABLE "My Table" ("2nd col" VARCHAR(20), plain, Order INTEGER, '
        'PRIMARY KEY ("2nd col"));'
    )
    assert sha256(path) == before


def test_sqlite_path_for(tmp_path: Path) -> None:
    assert sqlite_path_for(FIXTURE_DBS, "pets_1") == PETS
    flat = tmp_path / "flat.sqlite"
    shutil.copyfile(PETS, flat)
    assert sqlite_path_for(tmp_path, "flat") == flat
    with pytest.raises(QueryCraftError) as info:
        sqlite_path_for(tmp_path, "absent")
    message = str(info.value)
    assert str(tmp_path / "absent" / "absent.sqlite") in message
    assert str(tmp_path / "absent.sqlite") in message
    with pytest.raises(QueryCraftError, match="plain name"):
        sqlite_path_for(tmp_path, "../absent")


# --------------------------------------------------------------------------------------------
# Gold queries run and match themselves
# --------------------------------------------------------------------------------------------

FIXTURE_DEV = json.loads((FIXTURES / "dev.json").read_text(encoding="utf-8"))


def test_fixture_files_are_consistent() -> None:
    tables = json.loads((FIXTURES / "tables.json").read_text(encoding="utf-8"))
    assert sorted(t["db_id"] for t in tables) == ["concert_singer", "pets_1"]
    assert {item["db_id"] for item in FIXTURE_DEV} == {"concert_singer", "pets_1"}
    assert len(FIXTURE_DEV) == 87


@pytest.fixture(scope="module")
def fixture_connections() -> Iterator[dict[str, sqlite3.Connection]]:
    conns = {
        db: open_sqlite_readonly(sqlite_path_for(FIXTURE_DBS, db))
        for db in ("concert_singer", "pets_1")
    }
    yield conns
    for conn in conns.values():
        conn.close()


@pytest.mark.parametrize(
    "item", FIXTURE_DEV, ids=[f"{x['db_id']}-{i}" for i, x in enumerate(FIXTURE_DEV)]
)
def test_fixture_gold_query_matches_itself(
    fixture_connections: dict[str, sqlite3.Connection], item: dict
) -> None:
    conn = fixture_connections[item["db_id"]]
    first = execute_readonly(conn, item["query"])
    second = execute_readonly(conn, item["query"])
    assert results_match(first, second, order_matters=has_order_by(item["query"]))


@pytest.mark.slow
def test_all_spider_dev_gold_queries_match_themselves() -> None:
    shared_spider()
    items = json.loads((SPIDER_DEV / "dev.json").read_text(encoding="utf-8"))
    by_db: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_db[item["db_id"]].append(item["query"])
    failures = []
    for db_id, queries in sorted(by_db.items()):
        conn = open_sqlite_readonly(sqlite_path_for(SPIDER_DEV / "database", db_id))
        try:
            for sql in queries:
                try:
                    gold = execute_readonly(conn, sql)
                    pred = execute_readonly(conn, sql)
                except QueryError as err:
                    failures.append(f"{db_id}: {sql} -> {err}")
                    continue
                if not results_match(gold, pred, order_matters=has_order_by(sql)):
                    failures.append(f"{db_id}: {sql} -> results differ")
        finally:
            conn.close()
    assert sum(len(q) for q in by_db.values()) == 972
    assert not failures, "\n".join(failures)
