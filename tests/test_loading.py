"""Loading a CSV into a table: type inference, NULLs, batches, if_exists, atomicity, bad files.

Real databases only: SQLite files under tmp_path and the PostgreSQL server of conftest's
``postgres_url`` (skipped when no server answers). Db2 has no server here; its column types are
checked by compiling CREATE TABLE with the real ibm_db_sa dialect.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from querycraft.errors import QueryCraftError
from querycraft.loading import (
    DEFAULT_NULL_VALUES,
    ColumnSpec,
    LoadReport,
    infer_columns,
    load_csv_table,
    table_for,
)

# SQLite accepts almost anything, so its engine is capped at this many bytes per value or row
# (a real SQLite limit, set on each connection): a longer value makes the insert fail.
SQLITE_MAX_BYTES = 10_000


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path}/t.sqlite")

        @sa.event.listens_for(eng, "connect")
        def _cap_length(dbapi_connection, _record) -> None:
            if hasattr(dbapi_connection, "setlimit"):  # Python 3.11+
                dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, SQLITE_MAX_BYTES)
    else:
        eng = sa.create_engine(request.getfixturevalue("postgres_url"))
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{tmp_path}/plain.sqlite")
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(postgres_url)
    yield eng
    eng.dispose()


def poison(engine: sa.Engine) -> str:
    """A text value the database refuses (realistic: NUL bytes, or a value over SQLite's cap)."""
    if engine.dialect.name == "postgresql":
        return "bad\x00value"  # PostgreSQL text cannot hold NUL bytes
    if not hasattr(sqlite3.Connection, "setlimit"):
        pytest.skip("sqlite3.Connection.setlimit needs Python 3.11+")
    return "x" * (SQLITE_MAX_BYTES * 2)


def count(engine: sa.Engine, table: str, where: str = "", schema: str | None = None) -> int:
    name = f"{schema}.{table}" if schema else table
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {name} {where}")).scalar_one()


def table_names(engine: sa.Engine, schema: str | None = None) -> list[str]:
    return sorted(sa.inspect(engine).get_table_names(schema=schema))


def rows_of(engine: sa.Engine, table: str, order_by: str) -> list[tuple]:
    """The table's rows through its reflected types (SQLite dates come back as dates)."""
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(reflected).order_by(reflected.c[order_by]))]


def load(engine: sa.Engine, path: Path, table: str, **options) -> LoadReport:
    return load_csv_table(engine, path, table, progress=False, **options)


# ----------------------------------------------------------------------------------------------
# Inference (no database)
# ----------------------------------------------------------------------------------------------


def test_infer_columns_kinds_lengths_and_nulls(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "kinds.csv", [
        "int", "zero_one", "big", "huge", "flt", "flag", "day", "stamp", "zip", "word",
        "padded", "all_null", "mixed_bool_int", "bad_date", "zoned",
    ], [
        ["1", "0", "2147483648", "9223372036854775808", "1.5", "true", "2024-01-31",
         "2024-01-31 10:20", "007", "inf", " 42 ", "", "true", "2021-02-30",
         "2024-01-01T10:00:00+02:00"],
        ["-2147483648", "1", "-9223372036854775808", "1", "2", "No", "1999-12-31",
         "2024-02-01T08:00:00.123", "12345", "nan", "7", "NULL", "1", "2021-01-01",
         "2024-01-01T10:00:00"],
        ["2147483647", "1", "5", "2", "-3e2", "T", "2000-02-29", "2024-03-01", "00", "NaN",
         "-1", "NaN", "false", "", "2024-01-01"],
    ])
    specs, rows = infer_columns(path, null_values=["", "NULL", "NaN"])
    assert rows == 3
    kinds = {spec.name: spec.kind for spec in specs}
    assert kinds == {
        "int": "integer",
        "zero_one": "integer",  # 0/1 are numbers, not booleans
        "big": "bigint",
        "huge": "text",  # beyond 64 bits: text keeps the digits
        "flt": "float",
        "flag": "boolean",
        "day": "date",
        "stamp": "timestamp",  # a date-only value widens to timestamp
        "zip": "text",  # leading zeros
        "word": "text",  # inf/nan are words unless listed as NULL
        "padded": "integer",  # surrounding spaces are ignored for the type
        "all_null": "text",
        "mixed_bool_int": "text",
        "bad_date": "text",  # 2021-02-30 is no date
        "zoned": "text",  # time zones are not dropped silently
    }
    by_name = {spec.name: spec for spec in specs}
    assert by_name["all_null"] == ColumnSpec("all_null", "text", 0, 3)
    assert by_name["word"].nulls == 1 and by_name["word"].max_length == 3
    assert by_name["stamp"].max_length == len("2024-02-01T08:00:00.123")
    assert by_name["padded"].max_length == 4  # characters as written, spaces included


def test_infer_columns_handles_bom_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffid;name\r\n1;Zoë\r\n\r\n2;Ann\r\n".encode())
    specs, rows = infer_columns(path, delimiter=";")
    assert rows == 2  # the blank line is skipped
    assert [(s.name, s.kind, s.max_length) for s in specs] == [
        ("id", "integer", 1), ("name", "text", 3)]
    assert DEFAULT_NULL_VALUES == ("", "NULL", "null", "NaN", "nan", "None")


# ----------------------------------------------------------------------------------------------
# Loading new tables
# ----------------------------------------------------------------------------------------------


def test_types_are_created_and_values_round_trip(
    engine: sa.Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_csv(tmp_path / "people.csv", [
        "id", "big", "price", "flag", "day", "stamp", "name", "zip", "empty", "Unit Price",
    ], [
        ["1", "3000000000", "1.5", "true", "2024-01-31", "2024-01-31 10:20:30.5", "  Alice  ",
         "007", "", "3"],
        ["2", "-9000000000000000000", "2", "F", "1999-12-31", "2024-02-01T08:00", "Bob",
         "01234", "NULL", "4.25"],
        ["3", "", "-3e2", "yes", "", "2024-03-01", "", "12345", "nan", ""],
    ])
    with caplog.at_level(logging.INFO, logger="querycraft"):
        report = load(engine, path, "people")
    assert report.table == "people" and report.rows == 3
    assert report.created and not report.replaced and report.seconds >= 0
    assert [spec.kind for spec in report.columns] == [
        "integer", "bigint", "float", "boolean", "date", "timestamp", "text", "text", "text",
        "float"]
    assert "Loaded 3 rows" in caplog.text and "people" in caplog.text

    types = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("people")}
    # Servers get lower-case names (found by unquoted SQL); SQLite keeps them as written.
    unit_price = "Unit Price" if engine.dialect.name == "sqlite" else "unit price"
    assert isinstance(types["id"], sa.Integer) and not isinstance(types["id"], sa.BigInteger)
    assert isinstance(types["big"], sa.BigInteger)
    assert isinstance(types["price"], sa.Float)
    assert isinstance(types[unit_price], sa.Float)
    assert isinstance(types["flag"], sa.Boolean)
    assert isinstance(types["day"], sa.Date) and not isinstance(types["day"], sa.DateTime)
    assert isinstance(types["stamp"], sa.DateTime)
    for text_column in ("name", "zip", "empty"):
        assert isinstance(types[text_column], sa.Text)

    assert rows_of(engine, "people", "id") == [
        (1, 3000000000, 1.5, True, dt.date(2024, 1, 31),
         dt.datetime(2024, 1, 31, 10, 20, 30, 500000), "  Alice  ", "007", None, 3.0),
        (2, -9000000000000000000, 2.0, False, dt.date(1999, 12, 31),
         dt.datetime(2024, 2, 1, 8, 0), "Bob", "01234", None, 4.25),
        (3, None, -300.0, True, None, dt.datetime(2024, 3, 1), None, "12345", None, None),
    ]


def test_null_markers_become_sql_null(engine: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "nulls.csv", ["score", "label"], [
        ["1.5", "a"], ["", ""], ["NaN", "nan"], ["nan", "None"], ["NULL", "NULL"],
        ["None", "null"], ["2", "b"],
    ])
    report = load(engine, path, "scores")
    assert [(s.kind, s.nulls) for s in report.columns] == [("float", 5), ("text", 5)]
    assert count(engine, "scores", "WHERE score IS NULL") == 5
    assert count(engine, "scores", "WHERE label IS NULL") == 5
    assert count(engine, "scores", "WHERE label IN ('nan', 'None', 'NaN', 'NULL', 'null', '')") == 0
    assert count(engine, "scores", "WHERE score IS NOT NULL") == 2


def test_several_batches_load_every_row(engine: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "many.csv", ["id", "name"],
                     [[i, f"name {i}"] for i in range(1, 2501)])
    report = load_csv_table(engine, path, "many", batch_rows=1000, progress=True)
    assert report.rows == 2500
    assert count(engine, "many") == 2500
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(id) FROM many")).scalar_one() == 2500 * 2501 // 2


def test_failed_load_leaves_no_new_table(engine: sa.Engine, tmp_path: Path) -> None:
    rows = [[i, "fine"] for i in range(1, 2501)]
    rows[1499][1] = poison(engine)  # data row 1500, on line 1501
    path = write_csv(tmp_path / "poisoned.csv", ["id", "note"], rows)
    with pytest.raises(QueryCraftError) as raised:
        load(engine, path, "fresh", batch_rows=1000)
    message = str(raised.value)
    assert "line 1501" in message and "fresh" in message and "Nothing was written" in message
    assert "Traceback" not in message
    assert table_names(engine) == []


# ----------------------------------------------------------------------------------------------
# if_exists
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def scores(engine: sa.Engine, tmp_path: Path) -> sa.Engine:
    """``engine`` with a table ``scores`` (id integer, name text, score float) of two rows."""
    path = write_csv(tmp_path / "first.csv", ["id", "name", "score"],
                     [["1", "a", "0.5"], ["2", "b", "1"]])
    load(engine, path, "scores")
    return engine


def test_fail_refuses_an_existing_table(scores: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "again.csv", ["id", "name", "score"], [["3", "c", "2"]])
    with pytest.raises(QueryCraftError) as raised:
        load(scores, path, "scores")
    message = str(raised.value)
    assert "scores already exists" in message
    assert "if_exists='append'" in message and "if_exists='replace'" in message
    assert rows_of(scores, "scores", "id") == [(1, "a", 0.5), (2, "b", 1.0)]


def test_append_maps_columns_by_name_in_any_order_and_case(
    scores: sa.Engine, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "more.csv", ["Score", "NAME", "id"],
                     [["2.5", "c", "3"], ["", "d", "4"], ["7", "", "5"]])
    report = load(scores, path, "scores", if_exists="append")
    assert report.rows == 3 and not report.created and not report.replaced
    assert rows_of(scores, "scores", "id") == [
        (1, "a", 0.5), (2, "b", 1.0), (3, "c", 2.5), (4, "d", None), (5, None, 7.0)]


def test_append_refuses_a_table_of_another_shape(scores: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "other.csv", ["id", "name", "extra"], [["3", "c", "x"]])
    with pytest.raises(QueryCraftError) as raised:
        load(scores, path, "scores", if_exists="append")
    message = str(raised.value)
    assert "different shape" in message
    assert "the table has no column(s) extra" in message
    assert "the CSV has no column(s) score" in message
    assert count(scores, "scores") == 2


@pytest.mark.parametrize(("bad", "kind"), [("abc", "text"), ("2.5", "float")])
def test_append_refuses_values_the_column_type_cannot_hold(
    scores: sa.Engine, tmp_path: Path, bad: str, kind: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", ["id", "name", "score"],
                     [["3", "c", "1"], [bad, "d", "2"]])
    with pytest.raises(QueryCraftError) as raised:
        load(scores, path, "scores", if_exists="append")
    message = str(raised.value)
    assert "'id'" in message and "INTEGER" in message.upper()
    assert f"inferred as {kind}" in message and f"{bad!r} on line 3" in message
    assert count(scores, "scores") == 2


def test_failed_append_is_rolled_back(scores: sa.Engine, tmp_path: Path) -> None:
    rows = [[i, "fine", "1"] for i in range(3, 2503)]
    rows[1499][1] = poison(scores)
    path = write_csv(tmp_path / "poisoned.csv", ["id", "name", "score"], rows)
    with pytest.raises(QueryCraftError, match=r"line 1501.*Nothing was written"):
        load(scores, path, "scores", if_exists="append", batch_rows=1000)
    assert count(scores, "scores") == 2


def test_replace_swaps_the_table(scores: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "new.csv", ["code", "label"], [["007", "x"], ["008", "y"]])
    report = load(scores, path, "scores", if_exists="replace")
    assert report.replaced and not report.created and report.rows == 2
    assert [c["name"] for c in sa.inspect(scores).get_columns("scores")] == ["code", "label"]
    assert rows_of(scores, "scores", "code") == [("007", "x"), ("008", "y")]
    assert table_names(scores) == ["scores"]  # no temporary table left


def test_replace_of_a_missing_table_creates_it(engine: sa.Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "new.csv", ["id"], [["1"]])
    report = load(engine, path, "brand_new", if_exists="replace")
    assert report.created and not report.replaced
    assert count(engine, "brand_new") == 1


def test_failed_replace_keeps_the_old_table(scores: sa.Engine, tmp_path: Path) -> None:
    rows = [[i, "fine"] for i in range(1, 2501)]
    rows[1499][1] = poison(scores)
    path = write_csv(tmp_path / "poisoned.csv", ["id", "note"], rows)
    with pytest.raises(QueryCraftError) as raised:
        load(scores, path, "scores", if_exists="replace", batch_rows=1000)
    assert "line 1501" in str(raised.value) and "unchanged" in str(raised.value)
    assert rows_of(scores, "scores", "id") == [(1, "a", 0.5), (2, "b", 1.0)]
    assert table_names(scores) == ["scores"]


# ----------------------------------------------------------------------------------------------
# PostgreSQL specifics
# ----------------------------------------------------------------------------------------------


def test_postgres_check_constraint_violation_rolls_back_append(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE payments (id integer, amount integer "
                             "CONSTRAINT amount_not_1500 CHECK (amount <> 1500))"))
        conn.execute(sa.text("INSERT INTO payments VALUES (0, 0)"))
    path = write_csv(tmp_path / "payments.csv", ["id", "amount"],
                     [[i, i] for i in range(1, 2501)])
    with pytest.raises(QueryCraftError) as raised:
        load(pg_engine, path, "payments", if_exists="append", batch_rows=1000)
    message = str(raised.value)
    assert "line 1501" in message and "amount_not_1500" in message
    assert "Nothing was written" in message
    assert count(pg_engine, "payments") == 1


def test_postgres_replace_refused_by_a_dependent_view_keeps_old_table(
    pg_engine: sa.Engine, tmp_path: Path
) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE items (id integer)"))
        conn.execute(sa.text("INSERT INTO items VALUES (1), (2)"))
        conn.execute(sa.text("CREATE VIEW item_ids AS SELECT id FROM items"))
    path = write_csv(tmp_path / "items.csv", ["id", "name"], [["3", "c"]])
    with pytest.raises(QueryCraftError, match="Could not replace table items"):
        load(pg_engine, path, "items", if_exists="replace")
    assert count(pg_engine, "items") == 2
    assert table_names(pg_engine) == ["items"]


def test_postgres_schema_and_case_folded_names(pg_engine: sa.Engine, tmp_path: Path) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA staging"))
        conn.execute(sa.text("CREATE TABLE sales (id integer)"))  # folded to lower case
    path = write_csv(tmp_path / "sales.csv", ["id"], [["1"], ["2"]])
    report = load(pg_engine, path, "sales", schema="staging")
    assert report.created and table_names(pg_engine, "staging") == ["sales"]
    load(pg_engine, path, "sales", schema="staging", if_exists="append")
    assert count(pg_engine, "sales", schema="staging") == 4
    assert count(pg_engine, "sales") == 0  # the public table was not touched

    with pytest.raises(QueryCraftError, match="Table sales already exists"):
        load(pg_engine, path, "Sales")
    with pytest.raises(QueryCraftError, match="Schema 'nowhere' does not exist"):
        load(pg_engine, path, "sales", schema="nowhere")


# ----------------------------------------------------------------------------------------------
# Bad input: refused before anything is written
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "fragments"), [
    (b"a,b\n1,2\n3\n", ["line 3 has 1 field(s)", "header has 2 column(s)"]),
    (b"id,Name,name\n1,2,3\n", ["'Name' (column 2)", "'name' (column 3)", "ignoring case"]),
    (b"id,,x\n1,2,3\n", ["column 2 of the header (line 1) has no name"]),
    (b"", ["is empty"]),
    (b"\n\n", ["has no header row"]),
    (b"id,name\n1,ok\n2,caf\xe9\n", ["not valid UTF-8", "line 3", "Re-save it as UTF-8"]),
    (b'id,name\n1,ok\n2,"abc"d\n', ["line 3 is not valid CSV", "double quotes"]),
], ids=["field-count", "duplicate-header", "blank-header", "empty", "no-header", "not-utf8",
        "bad-quote"])
def test_malformed_csv_is_refused_before_writing(
    sqlite_engine: sa.Engine, tmp_path: Path, content: bytes, fragments: list[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(QueryCraftError) as raised:
        load(sqlite_engine, path, "t")
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert table_names(sqlite_engine) == []


def test_missing_file_and_bad_arguments_are_refused(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    with pytest.raises(QueryCraftError, match="does not exist"):
        load(sqlite_engine, tmp_path / "nope.csv", "t")
    path = write_csv(tmp_path / "ok.csv", ["id"], [["1"]])
    with pytest.raises(QueryCraftError, match="table name must be a non-empty string"):
        load(sqlite_engine, path, "  ")
    with pytest.raises(QueryCraftError, match="batch_rows must be"):
        load(sqlite_engine, path, "t", batch_rows=0)
    with pytest.raises(QueryCraftError, match="if_exists must be"):
        load(sqlite_engine, path, "t", if_exists="upsert")
    with pytest.raises(QueryCraftError, match="delimiter must be one character"):
        load(sqlite_engine, path, "t", delimiter=";;")
    assert table_names(sqlite_engine) == []


# ----------------------------------------------------------------------------------------------
# Column types per dialect
# ----------------------------------------------------------------------------------------------

SPECS = [
    ColumnSpec("flag", "boolean", 5, 0), ColumnSpec("n", "integer", 3, 0),
    ColumnSpec("big", "bigint", 12, 0), ColumnSpec("x", "float", 4, 0),
    ColumnSpec("born", "date", 10, 0), ColumnSpec("seen", "timestamp", 19, 0),
    ColumnSpec("name", "text", 12, 1), ColumnSpec("nothing", "text", 0, 3),
]


def test_db2_columns_are_varchar_sized_from_the_data() -> None:
    pytest.importorskip("ibm_db_sa")
    from ibm_db_sa.base import DB2Dialect

    dialect = DB2Dialect()
    table = table_for(SPECS, "loaded", sa.MetaData(), dialect.name, schema="app")
    ddl = " ".join(str(sa.schema.CreateTable(table).compile(dialect=dialect)).split())
    assert "CREATE TABLE app.loaded" in ddl
    for column in ("flag BOOLEAN", "n INT", "big BIGINT", "x DOUBLE", "born DATE",
                   "seen TIMESTAMP", "name VARCHAR(12)", "nothing VARCHAR(1)"):
        assert column in ddl
    assert "CLOB" not in ddl and "TEXT" not in ddl


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
def test_text_is_unbounded_on_sqlite_and_postgres(dialect_name: str) -> None:
    table = table_for(SPECS, "loaded", sa.MetaData(), dialect_name)
    assert isinstance(table.c.name.type, sa.Text)
    assert isinstance(table.c.x.type, sa.Double)
    assert isinstance(table.c.big.type, sa.BigInteger)
