"""Corrected SQL fitted to PostgreSQL runs for real on PostgreSQL and gives SQLite's answer.

Two bundled Spider databases are copied into a fresh PostgreSQL database (created and
dropped by the test); every fixture gold query, written for SQLite, goes through the
correction engine with ``write_dialect="postgres"`` and runs in a read-only transaction.
Skipped when no PostgreSQL server answers on 127.0.0.1:5432 (CI installs and starts one).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from querycraft.compare import results_match
from querycraft.correction import correct_sql
from querycraft.ddl import schema_from_ddl
from querycraft.engines.base import QueryResult
from querycraft.engines.sqlite import execute_readonly, open_sqlite_readonly
from querycraft.schema import read_schema
from querycraft.sql import has_order_by
from tests.conftest import FIXTURE_SPIDER, require_module, skip_or_fail

psycopg = require_module("psycopg", "POSTGRES")
SERVER = "host=127.0.0.1 port=5432 user=postgres"
DATABASES = ("concert_singer", "pets_1")


def _server_or_skip():
    try:
        return psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        skip_or_fail("POSTGRES", f"no PostgreSQL server on 127.0.0.1:5432 ({err})")


def _typed(values: list) -> tuple[str, list]:
    """A PostgreSQL type for a column from its data, and the values converted to it.

    SQLite's declared types are advisory (Spider stores years as text and joins text ids to
    integer ids); a PostgreSQL copy of the same data, as a user would load it, has one type
    per column, taken from what the column holds.
    """
    present = [v for v in values if v is not None]
    for pg_type, convert in (("BIGINT", int), ("DOUBLE PRECISION", float)):
        try:
            converted = [None if v is None else convert(v) for v in values]
        except (TypeError, ValueError):
            continue
        if pg_type == "BIGINT" and any(isinstance(v, float) and not v.is_integer()
                                       for v in present):
            continue
        return pg_type, converted
    return "TEXT", [None if v is None else str(v) for v in values]


def _copy_sqlite_to_postgres(sqlite_file: Path, pg) -> None:
    """Every table of one database: columns typed by their data, unquoted (lower-case) names."""
    source = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = source.execute(f'SELECT * FROM "{table}"')
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()
            typed = [_typed([row[i] for row in rows]) for i in range(len(names))]
            columns = ", ".join(f"{n} {t}" for n, (t, _) in zip(names, typed, strict=True))
            pg.execute(f"CREATE TABLE {table} ({columns})")
            if rows:
                converted = list(zip(*(values for _, values in typed), strict=True))
                marks = ", ".join(["%s"] * len(names))
                with pg.cursor() as out:
                    out.executemany(f"INSERT INTO {table} VALUES ({marks})", converted)
    finally:
        source.close()


@pytest.fixture(scope="module")
def postgres_database():
    admin = _server_or_skip()
    name = f"qc_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(f"{SERVER} dbname={name}", autocommit=True) as pg:
            for db_id in DATABASES:
                _copy_sqlite_to_postgres(
                    FIXTURE_SPIDER / "database" / db_id / f"{db_id}.sqlite", pg)
        yield name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _run_read_only(pg, sql: str) -> QueryResult:
    with pg.transaction():
        pg.execute("SET TRANSACTION READ ONLY")
        pg.execute("SET LOCAL statement_timeout = '10s'")
        cursor = pg.execute(sql)
        rows = [tuple(r) for r in cursor.fetchall()]
        columns = [c.name for c in cursor.description]
    return QueryResult(columns=columns, rows=rows, truncated=False, elapsed_s=0.0)


@pytest.mark.slow
def test_gold_queries_fitted_to_postgres_run_there_with_sqlites_results(postgres_database):
    from decimal import Decimal

    items = json.loads((FIXTURE_SPIDER / "dev.json").read_text())
    failures, mismatches = [], []
    with psycopg.connect(f"{SERVER} dbname={postgres_database}") as pg:
        for item in items:
            sqlite_file = FIXTURE_SPIDER / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
            schema = schema_from_ddl(read_schema(sqlite_file))
            fitted = correct_sql(item["query"], schema=schema, read_dialect="sqlite",
                                 write_dialect="postgres").sql
            conn = open_sqlite_readonly(sqlite_file)
            try:
                expected = execute_readonly(conn, item["query"])
            finally:
                conn.close()
            try:
                got = _run_read_only(pg, fitted)
            except psycopg.Error as err:
                failures.append((item["query"], fitted, str(err).splitlines()[0]))
                continue
            # PostgreSQL returns NUMERIC averages as Decimal; compare them as numbers.
            got = QueryResult(
                columns=got.columns, truncated=False, elapsed_s=0.0,
                rows=[tuple(float(v) if isinstance(v, Decimal) else v for v in row)
                      for row in got.rows])
            if not results_match(expected, got, order_matters=has_order_by(item["query"])):
                mismatches.append((item["query"], fitted))
    print(f"{len(items)} queries: {len(failures)} fail on PostgreSQL, {len(mismatches)} differ")
    # What is left is SQLite-only semantics the rewrite does not carry over (docs/CORRECT.md):
    # a bare column outside GROUP BY (SQLite picks a row, PostgreSQL refuses), and a top-1
    # with ties (ORDER BY ... LIMIT 1) that the two engines break differently.
    for sql, fitted, message in failures:
        assert "must appear in the GROUP BY clause" in message, (sql, fitted, message)
    for sql, fitted in mismatches:
        assert "LIMIT 1" in fitted.upper() and "ORDER BY" in fitted.upper(), (sql, fitted)
    assert len(items) - len(failures) - len(mismatches) >= 0.8 * len(items)
