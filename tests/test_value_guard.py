"""The PostgreSQL value guard (``querycraft.engines.postgres.value_guard``) on a real server.

PostgreSQL sends each row whole, so a value bound checked by the client came too late: a
1e9-byte value reached the process (2.9 GB) before it could be refused. The guard describes
the statement without running it and wraps it so that the server measures every value and
sends NULL plus the size instead of one over ``max_value_bytes``. These tests check that:

* a 1e9-byte value is refused while the client's memory grows by less than 2x the cap;
* ordinary results (types, names, NULLs, order, truncation, streaming) are unchanged;
* statements that do not compile fail as before, and the connection stays usable;
* the bound is exact at the cap and counts bytes, not characters;
* a statement without columns still runs.

"Unchanged" is checked three ways: the guarded layer, the same layer with the guard switched
off on that one instance (the behaviour before the guard), and a plain psycopg connection.
Each test uses a fresh database (tests/conftest.py) read through a read-only role; without a
server they skip, unless QC_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from querycraft import db as dbmod
from querycraft.engines.base import QueryError, TooLarge
from querycraft.targets import DatabaseTarget
from tests.conftest import (
    PROJECT_ROOT,
    create_singers,
    fresh_postgres_database,
    postgres_read_only_role,
    require_module,
)

psycopg = require_module("psycopg", "POSTGRES")

CAP = 1000  # a small max_value_bytes, so that the size tests need only small values

# 2,000 rows whose score order differs from their insertion (heap) order: (g * 7919) mod 2003
# is a permutation for g < 2003, so an ORDER BY the wrapper dropped would show. (mod(), not
# '%': the setup goes through the driver, which reads '%' as a placeholder.)
RANKED = ("CREATE TABLE ranked (id INTEGER PRIMARY KEY, score INTEGER UNIQUE, label TEXT)",
          "INSERT INTO ranked SELECT g, mod(g * 7919, 2003), 'n' || g "
          "FROM generate_series(1, 2000) AS g")
KINDS = (
    "CREATE TABLE kinds (id INTEGER PRIMARY KEY, i INTEGER, big BIGINT, n NUMERIC(12, 3), "
    "f DOUBLE PRECISION, t TEXT, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, ok BOOLEAN, "
    "arr INTEGER[], tarr TEXT[], j JSON, jb JSONB, b BYTEA, iv INTERVAL, u UUID)",
    "INSERT INTO kinds VALUES "
    "(1, 7, 9007199254740993, 12.345, 0.1, 'plain', '2024-02-29', '2024-02-29 12:34:56.789', "
    "'2024-02-29 12:34:56+02', true, '{1,2,NULL}', '{\"a b\",NULL,c}', '{\"k\": [1, 2]}', "
    "'{\"k\": {\"x\": null}}', '\\x00ff10', '1 day 02:03:04', "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), "
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL), "
    "(3, -1, -5, -0.5, '-Infinity', 'é ünï 中文 ''quoted''', '0001-01-01', '1999-12-31 23:59:59', "
    "'1970-01-01 00:00:00+00', false, '{}', '{}', '[]', '{}', '', '-1 mon', "
    "'00000000-0000-0000-0000-000000000000')",
)
# Text of exactly CAP - 1, CAP and CAP + 1 bytes, and two-byte characters at CAP and CAP + 2
# bytes (fewer than CAP characters: the bound counts bytes).
SIZED = (
    "CREATE TABLE sized (id INTEGER PRIMARY KEY, s TEXT)",
    f"INSERT INTO sized VALUES (1, repeat('x', {CAP - 1})), (2, repeat('x', {CAP})), "
    f"(3, repeat('x', {CAP + 1})), (4, repeat('é', {CAP // 2})), "
    f"(5, repeat('é', {CAP // 2 + 1})), (6, NULL)",
    "CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BYTEA)",
    f"INSERT INTO blobs VALUES (1, decode(repeat('00', {CAP * 6 // 10}), 'hex'))",
)


@pytest.fixture(scope="module")
def pg_urls() -> Iterator[tuple[str, str]]:
    """(admin URL, read-only URL) of a fresh database holding the tables above; one for the
    module, as every test here only reads."""
    with fresh_postgres_database() as url:
        create_singers(url, *RANKED, *KINDS, *SIZED)
        with postgres_read_only_role(url) as reader:
            yield url, reader


@pytest.fixture
def guarded(pg_urls: tuple[str, str]) -> Iterator[dbmod.ServerDatabase]:
    database = dbmod.ServerDatabase(DatabaseTarget("postgres", url=pg_urls[1]))
    yield database
    database.close()


@pytest.fixture
def unguarded(pg_urls: tuple[str, str]) -> Iterator[dbmod.ServerDatabase]:
    """The same layer with the value guard off on this instance only: what ran before it."""
    database = dbmod.ServerDatabase(DatabaseTarget("postgres", url=pg_urls[1]))
    database.spec = dataclasses.replace(database.spec, value_guard=None)
    yield database
    database.close()


@pytest.fixture
def direct(pg_urls: tuple[str, str]) -> Iterator[Any]:
    """A plain psycopg connection as the admin: the server's own answer."""
    url = sqlalchemy.engine.make_url(pg_urls[0])
    conn = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=True)
    yield conn
    conn.close()


def _direct(conn: Any, sql: str) -> tuple[list[str], list[tuple]]:
    cursor = conn.execute(sql)
    return [c.name for c in cursor.description or []], [tuple(r) for r in cursor.fetchall()]


def _layer(database: dbmod.ServerDatabase, sql: str, **kwargs: Any) -> tuple[list[str],
                                                                             list[tuple]]:
    result = database.execute(sql, timeout_s=10.0, **kwargs)
    return result.columns, result.rows


# --- a. the acceptance item: a 1e9-byte value never reaches the client ----------------------

# Run in a fresh interpreter so that ru_maxrss (the process's peak, KiB on Linux) is this
# query's alone; the warm-up pays for imports, the connection and the refusal path first.
PROBE = textwrap.dedent('''
    import dataclasses, json, os, resource, sys, threading, time
    from querycraft import db as dbmod

    url, cap, big_sql, calibration_sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    PAGE = os.sysconf("SC_PAGE_SIZE")

    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    class Sampler(threading.Thread):
        """The resident size every millisecond while the query runs: the kernel's peak
        (ru_maxrss) misses a buffer that was mapped and unmapped between two updates."""

        def __init__(self):
            super().__init__(daemon=True)
            self.highest, self.running = resident(), True

        def run(self):
            while self.running:
                self.highest = max(self.highest, resident())
                time.sleep(0.001)

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def reset_peak():
        # Linux: "5" resets the peak to the current resident size, so that a peak left by
        # the warm-up cannot hide growth during the query. Without it, the delta is looser.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def measure(database, sql):
        reset = reset_peak()
        peak0, before, start = peak(), resident(), time.monotonic()
        sampler = Sampler()
        sampler.start()
        try:
            database.execute(sql, timeout_s=60, max_value_bytes=cap)
            error = None
        except dbmod.QueryError as err:
            error = {"type": type(err).__name__, "kind": err.kind,
                     "limit": getattr(err, "limit", None), "message": err.message}
        finally:
            sampler.running = False
            sampler.join()
        # The larger of the two meters: the kernel's peak and the sampled resident size.
        return {"error": error, "elapsed_s": time.monotonic() - start,
                "peak_delta": max(peak() - peak0, sampler.highest - before),
                "peak_reset": reset}

    database = dbmod.ServerDatabase(dbmod.DatabaseTarget("postgres", url=url))
    database.execute("SELECT length(s) FROM big", timeout_s=60, max_value_bytes=cap)
    warm = measure(database, "SELECT string_agg(s, '') FROM big, generate_series(1, 10)")
    guarded = measure(database, big_sql)
    # The meter itself: with the guard off, a value far smaller than big_sql's shows up.
    database.spec = dataclasses.replace(database.spec, value_guard=None)
    calibration = measure(database, calibration_sql)
    print(json.dumps({"warm": warm, "guarded": guarded, "calibration": calibration}))
''')


@pytest.mark.slow
def test_a_1e9_byte_value_is_refused_with_client_memory_below_twice_the_cap(
        postgres_url: str, tmp_path: Path) -> None:
    cap = 8 * 2**20
    # One stored 1,000,000-character value, repeated 1,000 times by string_agg over a
    # generate_series: 1e9 bytes (PostgreSQL's largest value is 1 GiB - 1) built on the
    # server in a few seconds, with no literal size for the allow-list's size rules to refuse.
    create_singers(postgres_url, "CREATE TABLE big (s TEXT)",
                   "INSERT INTO big SELECT repeat('x', 1000000)")
    big_sql = "SELECT string_agg(s, '') FROM big, generate_series(1, 1000)"
    calibration_sql = "SELECT string_agg(s, '') FROM big, generate_series(1, 100)"  # 1e8
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    with postgres_read_only_role(postgres_url) as reader:
        done = subprocess.run([sys.executable, str(probe), reader, str(cap), big_sql,
                               calibration_sql], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))  # the numbers, with pytest -s

    guarded = report["guarded"]
    assert guarded["error"]["type"] == "TooLarge"
    assert guarded["error"]["kind"] == "refused"
    assert guarded["error"]["limit"] == "value"
    # The server measured it (the guard), not the client after receiving it.
    assert "1000000000 bytes" in guarded["error"]["message"]
    assert "the server did not send it" in guarded["error"]["message"]
    assert guarded["peak_delta"] < 2 * cap

    # Without the guard the client refuses a 1e8-byte value only after holding it: the meter
    # does see a value that reaches the process.
    calibration = report["calibration"]
    assert calibration["error"]["limit"] == "value"
    assert "the server did not send it" not in calibration["error"]["message"]
    assert calibration["peak_delta"] > 10**8


# --- b. the guard does not change results ----------------------------------------------------

ORDERED = [
    "SELECT * FROM singer ORDER BY singer_id",
    "SELECT name, name FROM singer ORDER BY name DESC",
    "SELECT count(*), 1 + 1, NULL, 'x' FROM singer",
    'SELECT 1 AS "we""ird", 2 AS "Mixed Case", 3 AS qc_value_bytes, 4 AS c0, 5 AS q',
    'SELECT 1 AS "50%", 2 AS "é", 3 AS "q.c0", 4 AS qc_query',
    f"SELECT 1 AS {'a' * 70}",  # the server truncates the name to 63 bytes, with a notice
    "SELECT * FROM kinds ORDER BY id",
    "SELECT b, u, iv, jb, j, tarr, arr FROM kinds ORDER BY id DESC",
    "SELECT i FROM kinds ORDER BY i DESC NULLS LAST",
    "SELECT NULL::INTEGER AS a, NULL::TEXT AS b, NULL::BYTEA AS c",
    "SELECT id, score FROM ranked ORDER BY score",
    "SELECT id, score FROM ranked ORDER BY score DESC",
    "SELECT label FROM ranked ORDER BY score DESC LIMIT 10 OFFSET 5",
    "SELECT label FROM ranked ORDER BY score FETCH FIRST 7 ROWS ONLY",
    "SELECT name FROM singer UNION SELECT label FROM ranked WHERE id < 5 ORDER BY 1 DESC",
    "SELECT name AS v FROM singer UNION ALL SELECT label FROM ranked WHERE score < 9 "
    "ORDER BY v",
    "WITH top AS (SELECT * FROM ranked ORDER BY score DESC LIMIT 50) "
    "SELECT id, score FROM top ORDER BY id",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) "
    "SELECT x FROM c ORDER BY x DESC",
    "SELECT id, score, rank() OVER (ORDER BY score DESC) AS r, "
    "sum(score) OVER (PARTITION BY id % 3 ORDER BY id) AS running FROM ranked "
    "ORDER BY r LIMIT 100",
    "SELECT id % 7 AS k, count(*), string_agg(label, ',' ORDER BY score), "
    "array_agg(id ORDER BY id DESC) FROM ranked GROUP BY 1 ORDER BY 1",
    "SELECT age > 30 AS older, avg(age) FROM singer GROUP BY 1 ORDER BY 1",
    "SELECT DISTINCT score % 10 AS d FROM ranked ORDER BY d",
    "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer) ORDER BY name",
    "SELECT 'a%b' AS pct, 'c%%d' AS two, $$dollar$$, E'back\\\\slash' ORDER BY 1",
    "SELECT generate_series(1, 5) AS g ORDER BY g DESC",
    "SELECT s.name, k.t FROM singer s JOIN kinds k ON k.id = s.singer_id ORDER BY s.name",
    "SELECT singer FROM singer ORDER BY singer_id",  # a whole row, as one composite value
]


@pytest.mark.parametrize("sql", ORDERED)
def test_b_results_are_unchanged(sql: str, guarded: dbmod.ServerDatabase,
                                 unguarded: dbmod.ServerDatabase, direct: Any) -> None:
    expected = _direct(direct, sql)
    assert expected[1], "the case should return rows"
    assert _layer(unguarded, sql) == expected  # the comparison itself is sound
    assert _layer(guarded, sql) == expected    # names, types, values and order


def test_b_unordered_rows_are_the_same_multiset(guarded: dbmod.ServerDatabase,
                                                direct: Any) -> None:
    sql = "SELECT s.name, r.label FROM singer s CROSS JOIN ranked r WHERE r.score < 30"
    columns, rows = _layer(guarded, sql)
    expected_columns, expected_rows = _direct(direct, sql)
    assert columns == expected_columns
    assert sorted(rows) == sorted(expected_rows)


def test_b_truncation_and_streaming_see_no_size_column(guarded: dbmod.ServerDatabase,
                                                        unguarded: dbmod.ServerDatabase) -> None:
    sql = "SELECT id, label FROM ranked ORDER BY score DESC"
    results = []
    for database in (guarded, unguarded):
        streamed: list[tuple] = []
        kept = database.execute(sql, timeout_s=10.0, max_rows=10)
        sunk = database.execute(sql, timeout_s=10.0, max_rows=10, row_sink=streamed.append)
        assert kept.truncated and sunk.truncated
        assert len(kept.rows) == 10 and kept.rows == sunk.rows
        assert len(streamed) == 2000 and all(len(row) == 2 for row in streamed)
        assert streamed[:10] == kept.rows
        results.append((kept.columns, kept.rows, streamed))
    assert results[0] == results[1]


def test_b_the_widest_statement_is_refused_clearly(guarded: dbmod.ServerDatabase,
                                                   unguarded: dbmod.ServerDatabase) -> None:
    """The wrapper adds a column: a statement with PostgreSQL's most columns (1664) cannot
    be guarded, and says so, rather than fail with the server's "target lists" error."""
    sql = "SELECT " + ", ".join(f"{i} AS a{i}" for i in range(1664))
    assert len(_layer(unguarded, sql)[0]) == 1664
    with pytest.raises(TooLarge, match="1664 columns"):
        guarded.execute(sql, timeout_s=10.0)
    narrower = "SELECT " + ", ".join(f"{i} AS a{i}" for i in range(1663))
    assert _layer(guarded, narrower) == _layer(unguarded, narrower)


# --- c. statements that do not compile fail as before ----------------------------------------

FAILING = [
    ("SELECT * FROM nope", "no_such_table", 'relation "nope" does not exist'),
    ("SELECT nope FROM singer", "no_such_column", 'column "nope" does not exist'),
    ("SELECT 1 AS x ORDER BY y", "no_such_column", 'column "y" does not exist'),
    # sqlglot reads this one; the server's parser is the one that refuses it.
    ("SELECT name FROM singer GROUP BY", "syntax", "syntax error at end of input"),
    ("SELECT singer_id FROM singer a, singer b", "ambiguous_column",
     'column reference "singer_id" is ambiguous'),
    ("SELECT * FROM singer WHERE name = 1", "other", "operator does not exist: text = integer"),
    # Not a compile error: it fails while running, inside the wrapped statement.
    ("SELECT age / 0 FROM singer", "other", "division by zero"),
]


@pytest.mark.parametrize(("sql", "kind", "wording"), FAILING)
def test_c_errors_keep_their_kind_and_the_servers_wording(
        sql: str, kind: str, wording: str, guarded: dbmod.ServerDatabase,
        unguarded: dbmod.ServerDatabase, direct: Any) -> None:
    with pytest.raises(psycopg.Error, match=wording):
        direct.execute(sql)
    caught = []
    for database in (guarded, unguarded):
        with pytest.raises(QueryError) as error:
            database.execute(sql, timeout_s=10.0)
        assert not isinstance(error.value, TooLarge | dbmod.ConnectionLost)
        caught.append((error.value.kind, error.value.message))
    assert caught[0] == caught[1]  # exactly what the layer said before the guard
    assert caught[0][0] == kind
    assert wording in caught[0][1]
    assert "qc_query" not in caught[0][1]  # the wrapper's text never shows
    # The failed transaction was rolled back: the same (pooled) connection works again.
    assert _layer(guarded, "SELECT count(*) FROM singer") == (["count"], [(3,)])


# --- d. the bound is exact and counts bytes --------------------------------------------------

@pytest.mark.parametrize(("row_id", "size"), [(1, CAP - 1), (2, CAP), (4, CAP)])
def test_d_values_up_to_the_cap_pass(row_id: int, size: int,
                                     guarded: dbmod.ServerDatabase, direct: Any) -> None:
    sql = f"SELECT s FROM sized WHERE id = {row_id}"
    columns, rows = _layer(guarded, sql, max_value_bytes=CAP)
    assert (columns, rows) == _direct(direct, sql)
    assert len(rows[0][0].encode()) == size


@pytest.mark.parametrize(("sql", "size"), [
    ("SELECT s FROM sized WHERE id = 3", CAP + 1),
    # 501 two-byte characters: under the cap in characters, over it in bytes.
    ("SELECT s FROM sized WHERE id = 5", CAP + 2),
    # Over the cap in another column than the first, and in a later row than the first.
    ("SELECT id, 'small', s FROM sized WHERE id IN (1, 3) ORDER BY id", CAP + 1),
    # Not only text: an array whose text form is over the cap.
    ("SELECT array_agg(id) FROM ranked WHERE id < 500", len(
        "{" + ",".join(str(i) for i in range(1, 500)) + "}")),
])
def test_d_values_over_the_cap_are_refused_by_the_server(
        sql: str, size: int, guarded: dbmod.ServerDatabase) -> None:
    with pytest.raises(TooLarge) as caught:
        guarded.execute(sql, timeout_s=10.0, max_value_bytes=CAP)
    assert caught.value.kind == "refused" and caught.value.limit == "value"
    assert f"is {size} bytes, over the limit of {CAP}" in caught.value.message
    assert "the server did not send it" in caught.value.message
    # A refusal ends the query cleanly: the next one runs.
    assert _layer(guarded, "SELECT count(*) FROM sized") == (["count"], [(6,)])


def test_d_rows_not_returned_are_not_measured(guarded: dbmod.ServerDatabase) -> None:
    # The large values stay in the table: only what the query returns is bounded.
    assert _layer(guarded, "SELECT id, octet_length(s) FROM sized WHERE id IN (3, 5, 6) "
                           "ORDER BY id", max_value_bytes=CAP)[1] == [
        (3, CAP + 1), (5, CAP + 2), (6, None)]
    assert _layer(guarded, "SELECT id, s FROM sized WHERE id IN (1, 2, 4, 6) ORDER BY id "
                           "LIMIT 4", max_value_bytes=CAP)[1][3] == (6, None)


def test_d_bytea_is_measured_as_before(guarded: dbmod.ServerDatabase,
                                       unguarded: dbmod.ServerDatabase) -> None:
    sql = "SELECT b FROM blobs"  # 600 bytes; its text form '\\x0000...' is 1,202 bytes
    before = _layer(unguarded, sql, max_value_bytes=CAP)
    assert len(before[1][0][0]) == CAP * 6 // 10
    assert _layer(guarded, sql, max_value_bytes=CAP) == before


# --- e. a statement without columns ----------------------------------------------------------

@pytest.mark.parametrize("sql", ["SELECT FROM singer", "SELECT FROM singer WHERE age > 30",
                                 "SELECT FROM ranked WHERE id < 0"])
def test_e_zero_column_statements_run(sql: str, guarded: dbmod.ServerDatabase,
                                      direct: Any) -> None:
    assert _layer(guarded, sql) == _direct(direct, sql)
    assert _layer(guarded, sql)[0] == []
    truncated = guarded.execute("SELECT FROM singer", timeout_s=10.0, max_rows=2)
    assert truncated.rows == [(), ()] and truncated.truncated
