"""Generated SQL is read exactly as the server reads it (issue 30).

Three parts:

* the reader's own cases (``querycraft/engines/syntax.py``), per engine: what it rebuilds and
  what it refuses, with the reason;
* the attacks that got past the allow-list before, on the real servers through the layer every
  service uses (``Database.execute``): MariaDB's ``--`` + U+00A0 / U+3000 comment that is
  code to the server (LOAD_FILE, INTO OUTFILE, SLEEP), its executable comments and hints, and
  SQLite's ``printf`` widths that ran for seconds inside one call;
* differential tests: thousands of generated statements per engine that hide a call of a
  canary function (which raises when the server runs it) or a second statement behind
  comments, whitespace, quotes, escapes and Unicode. Each is run on the real server as it is
  (as a privileged login, several statements allowed, MariaDB under every ``sql_mode``
  combination that changes its lexer) and checked by the layer. Whenever the server calls the
  canary, the layer must have refused the statement; whenever the layer accepts one, the text
  it would send must not call the canary and must give the server's answer to the original.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlglot import exp

from querycraft import db as dbmod
from querycraft.engines import get_engine
from querycraft.engines.base import QueryError, allowed_statement
from querycraft.sql import parse_shared
from querycraft.targets import DatabaseTarget
from tests.conftest import (
    FIXTURE_SPIDER,
    create_singers,
    fresh_postgres_database,
    mysql_admin,
    mysql_select_only_user,
    postgres_read_only_role,
    require_module,
)

CONCERT = FIXTURE_SPIDER / "database" / "concert_singer" / "concert_singer.sqlite"
NBSP, IDEOGRAPHIC_SPACE = "\u00a0", "\u3000"


def _reads(kind: str, sql: str) -> str:
    return allowed_statement(sql, get_engine(kind))


def _refused(kind: str, sql: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        allowed_statement(sql, get_engine(kind))
    return caught.value


# ---------------------------------------------------------------------------------------------
# The reader's own cases
# ---------------------------------------------------------------------------------------------

# (engine, SQL, what the layer sends), comments become one space each.
REBUILT = [
    ("mysql", "SELECT 1 -- a comment\n, 2 FROM t", "SELECT 1  \n, 2 FROM t"),
    ("mysql", "SELECT 1 # a comment\nFROM t;", "SELECT 1  \nFROM t"),
    ("mysql", "SELECT 1 /* c */ FROM t", "SELECT 1   FROM t"),
    ("mysql", "SELECT 1 /*m! only MySQL's /*! is code */ FROM t", "SELECT 1   FROM t"),
    ("mysql", "SELECT 'a''b', `c``d` FROM t", "SELECT 'a''b', `c``d` FROM t"),
    ("mysql", "SELECT 'a\\\\' FROM t", "SELECT 'a\\\\' FROM t"),  # '\\' ends alike either way
    ("mysql", "SELECT prénom FROM t", "SELECT prénom FROM t"),  # a letter in a name
    ("mysql", "SELECT 1;", "SELECT 1"),
    ("mysql", "SELECT 1 ; ; -- trailing\n", "SELECT 1"),
    ("mysql", "SELECT 2 --", "SELECT 2"),
    ("postgres", "SELECT 1 /* a /* nested */ comment */ FROM t", "SELECT 1   FROM t"),
    ("postgres", "SELECT $$it's$$, $q$a$$b$q$, E'\\'' FROM t",
     "SELECT $$it's$$, $q$a$$b$q$, E'\\'' FROM t"),
    ("postgres", "SELECT $1::int", "SELECT $1::int"),
    ("postgres", "SELECT a$b FROM t", "SELECT a$b FROM t"),
    ("postgres", "SELECT 1 --\r\n, 2", "SELECT 1  \n, 2"),  # '\r\n' ends it for every reader
    ("sqlite", "SELECT [a b], \"c\", `d` FROM t", "SELECT [a b], \"c\", `d` FROM t"),
    ("sqlite", "SELECT printf('%.2f', 1.5), printf('%5d|%-5s', 1, 'x')",
     "SELECT printf('%.2f', 1.5), printf('%5d|%-5s', 1, 'x')"),
    ("db2", "SELECT 1 FROM t /* c */ -- c", "SELECT 1 FROM t"),
]

# (engine, SQL, QueryError kind, words of the reason).
REFUSED = [
    # The bypass: '--' before a no-break space is code to MariaDB, a comment to Python.
    ("mysql", f"SELECT 1 --{NBSP}x.age, LOAD_FILE('/etc/passwd')\nFROM singer AS{NBSP}x",
     "refused", "U+00A0"),
    ("mysql", f"SELECT 1 --{IDEOGRAPHIC_SPACE}x, SLEEP(5)\nFROM t", "refused", "U+3000"),
    ("mysql", "SELECT 1 --\x0bx, 2 FROM t", "refused", "U+000B"),
    ("mysql", "SELECT 1 --1 INTO OUTFILE '/tmp/x'", "refused", "two minus signs"),
    ("mysql", "SELECT 1 /*! , LOAD_FILE('/etc/passwd') */", "refused", "executable comment"),
    ("mysql", "SELECT 1 /*!50000 , 2 */", "refused", "executable comment"),
    ("mysql", "SELECT 1 /*M! , 2 */", "refused", "executable comment"),
    ("mysql", "SELECT 1 /*M!100000 , 2 */", "refused", "executable comment"),
    ("mysql", "SELECT /*+ MAX_EXECUTION_TIME(100000000) */ 1", "refused", "hint"),
    ("mysql", "SELECT 'a\\' , LOAD_FILE('/etc/passwd'), '' FROM t", "refused", "backslash"),
    ("mysql", "SELECT \"a\\\" , 2, \" FROM t", "refused", "backslash"),
    ("mysql", f"SELECT{NBSP}1", "refused", "U+00A0"),
    ("mysql", "SELECT 1 # c\r, SLEEP(5)\n", "refused", "U+000D"),
    ("mysql", "SELECT 1 -- c\u2028, SLEEP(5)\n", "refused", "U+2028"),
    ("mysql", "SELECT 1\x00, 2", "refused", "NUL"),
    ("mysql", "SELECT 1; SELECT 2", "refused", "several statements (2)"),
    ("mysql", "SELECT 1 /* ; */ ; DROP TABLE t /* */", "refused", "several statements"),
    ("mysql", "SELECT 'never closed", "syntax", "never closed"),
    ("mysql", "SELECT 1 /* never closed", "syntax", "never closed"),
    ("mysql", "SELECT @@datadir", "refused", "variables"),
    ("mysql", "SELECT repeat('x', 1000000000)", "refused", "db.max_value_bytes"),
    ("mysql", "SELECT lpad(name, 1e9) FROM t", "refused", "db.max_value_bytes"),
    ("mysql", "SELECT space(price) FROM t", "refused", "computed"),
    # PostgreSQL: '\r' ends a line comment there, not elsewhere; standard_conforming_strings.
    ("postgres", "SELECT 1 --\r, pg_sleep(5)\n", "refused", "U+000D"),
    ("postgres", "SELECT 'a\\' , pg_sleep(5), '' FROM t", "refused", "backslash"),
    ("postgres", "SELECT $a$ never closed", "syntax", "never closed"),
    ("postgres", "SELECT 1 /* /* */ still a comment", "syntax", "never closed"),
    ("postgres", f"SELECT 1{IDEOGRAPHIC_SPACE}FROM t", "refused", "U+3000"),
    ("postgres", "SELECT repeat('ab', 40000)", "refused", "80,000 bytes"),
    ("postgres", "SELECT format('%*s', 1000000000, 'x')", "refused", "db.max_value_bytes"),
    ("postgres", "SELECT format('%*s', n, 'x') FROM t", "refused", "computed"),
    ("postgres", "SELECT rpad('x', 100000, 'é')", "refused", "200,000 bytes"),
    # SQLite: one printf call with a huge %c precision ran for seconds.
    ("sqlite", "SELECT printf('%.*c', 999999999, 'x')", "refused", "999,999,999 bytes"),
    ("sqlite", "SELECT printf('%.999999999c', 'x')", "refused", "db.max_value_bytes"),
    ("sqlite", "SELECT format('%.*c', 999999999, 'x')", "refused", "db.max_value_bytes"),
    ("sqlite", "SELECT printf('%999999999d', 1)", "refused", "db.max_value_bytes"),
    ("sqlite", "SELECT printf('%.*c', n, 'x') FROM t", "refused", "computed"),
    ("sqlite", "SELECT printf(name) FROM t", "refused", "format is computed"),
    ("sqlite", "SELECT zeroblob(1000000000)", "refused", "db.max_value_bytes"),
    ("sqlite", "SELECT 1 -- c\x0c, 2", "refused", "U+000C"),
    ("sqlite", "SELECT [a FROM t", "syntax", "never closed"),
    # Db2: nesting of comments and non-ASCII outside quotes are not known for sure.
    ("db2", "SELECT 1 /* a /* b */ FROM t", "refused", "nests"),
    ("db2", "SELECT prénom FROM t", "refused", "U+00E9"),
    ("db2", "SELECT 1 FROM t\x0c", "refused", "U+000C"),
]


@pytest.mark.parametrize(("kind", "sql", "sent"), REBUILT)
def test_the_layer_sends_the_code_without_comments(kind: str, sql: str, sent: str) -> None:
    assert _reads(kind, sql) == sent


@pytest.mark.parametrize(("kind", "sql", "error_kind", "words"), REFUSED)
def test_what_the_server_could_read_otherwise_is_refused(kind: str, sql: str, error_kind: str,
                                                         words: str) -> None:
    error = _refused(kind, sql)
    assert error.kind == error_kind
    assert words in error.message


def test_a_larger_value_bound_allows_larger_sizes() -> None:
    engine = get_engine("postgres")
    assert allowed_statement("SELECT repeat('ab', 40000)", engine, max_value_bytes=100_000)
    with pytest.raises(QueryError):
        allowed_statement("SELECT repeat('ab', 40000)", engine, max_value_bytes=50_000)


# ---------------------------------------------------------------------------------------------
# The attacks, on the real servers through Database.execute
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mysql_singers_url() -> Iterator[str]:
    from tests.conftest import fresh_mysql_database

    with fresh_mysql_database() as url:
        yield create_singers(url)


def _mysql_logins(url: str) -> Iterator[tuple[str, dbmod.ServerDatabase]]:
    """The database as root let through with allow_privileged (the allow-list alone stands
    between the SQL and the server's files), then as a SELECT-only user."""
    root = dbmod.ServerDatabase(DatabaseTarget("mysql", url=url, allow_privileged=True))
    try:
        yield "root", root
    finally:
        root.close()
    with mysql_select_only_user(url) as reader_url:
        reader = dbmod.ServerDatabase(DatabaseTarget("mysql", url=reader_url))
        try:
            yield "reader", reader
        finally:
            reader.close()


def test_mariadb_comment_space_bypass_is_refused(mysql_singers_url: str,
                                                tmp_path: Path) -> None:
    marker = Path("/tmp") / f"qc_outfile_{uuid.uuid4().hex[:8]}"
    attacks = []
    for space in (NBSP, IDEOGRAPHIC_SPACE):
        attacks += [
            f"SELECT 1 --{space}x.age, LOAD_FILE('/etc/passwd')\nFROM singer AS {space}x",
            f"SELECT 1 --{space}x.age FROM singer AS {space}x INTO OUTFILE '{marker}'",
            f"SELECT 1 --{space}x.age, SLEEP(3)\nFROM singer AS {space}x",
        ]
    for login, database in _mysql_logins(mysql_singers_url):
        # The server does read these as code: the attack is real, not a syntax error.
        for sql in attacks:
            with pytest.raises(QueryError) as caught:
                database.execute(sql, timeout_s=1)
            assert caught.value.kind == "refused", (login, sql, caught.value)
            assert "U+" in caught.value.message, (login, caught.value.message)
        assert database.execute("SELECT count(*) FROM singer").rows == [(3,)]
    assert not marker.exists()


def test_the_server_reads_the_comment_space_attack_as_code(mysql_singers_url: str) -> None:
    """Proof that the test above tests something: MariaDB itself runs the hidden call."""
    admin = mysql_admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"USE `{mysql_singers_url.rsplit('/', 1)[1]}`")
            for space in (NBSP, IDEOGRAPHIC_SPACE):
                cursor.execute(f"SELECT 1 --{space}x.age, LOAD_FILE('/etc/hostname') AS f\n"
                               f"FROM singer AS {space}x LIMIT 1")
                assert [d[0] for d in cursor.description] == ["1 --" + space + "x.age", "f"]
    finally:
        admin.close()


@pytest.mark.parametrize("opener", ["/*!", "/*!50000", "/*!00000", "/*M!", "/*M!100000",
                                    "/*+"])
def test_mariadb_executable_comments_are_refused(mysql_singers_url: str, opener: str) -> None:
    for _login, database in _mysql_logins(mysql_singers_url):
        with pytest.raises(QueryError) as caught:
            database.execute(f"SELECT name {opener} , LOAD_FILE('/etc/passwd') */ FROM singer",
                             timeout_s=2)
        assert caught.value.kind == "refused"
        assert "comment" in caught.value.message or "hint" in caught.value.message


@pytest.mark.parametrize("sql", [
    "SELECT printf('%.*c', 999999999, 'x')",
    "SELECT printf('%.999999999c', 'x')",
    "SELECT format('%.*c', 999999999, name) FROM singer",
    "SELECT printf('%999999999c', 'x')",
])
def test_sqlite_printf_widths_are_refused_before_they_run(sql: str) -> None:
    database = dbmod.SqliteDatabase(CONCERT)
    try:
        with pytest.raises(QueryError) as caught:
            database.execute(sql, timeout_s=1)
        assert caught.value.kind == "refused"
        assert "db.max_value_bytes" in caught.value.message
        # Widths within the bound still work.
        assert database.execute("SELECT printf('%.3c|%5.1f', 'x', 2.5)").rows == [("xxx|  2.5",)]
    finally:
        database.close()


def test_postgres_sizes_are_bounded_before_they_run() -> None:
    with fresh_postgres_database() as url:
        create_singers(url)
        with postgres_read_only_role(url) as reader_url:
            database = dbmod.ServerDatabase(DatabaseTarget("postgres", url=reader_url))
            try:
                for sql in ("SELECT repeat('x', 1000000000)", "SELECT lpad(name, 100000000) "
                            "FROM singer", "SELECT format('%1000000000s', 'x')"):
                    with pytest.raises(QueryError) as caught:
                        database.execute(sql, timeout_s=2)
                    assert "db.max_value_bytes" in caught.value.message
                assert database.execute("SELECT repeat('ab', 3), lpad('7', 3, '0')").rows \
                    == [("ababab", "007")]
            finally:
                database.close()


# ---------------------------------------------------------------------------------------------
# Differential tests: the layer against the real servers
# ---------------------------------------------------------------------------------------------

CASES = int(os.environ.get("QC_DIFFERENTIAL_CASES", "2000"))
CANARY = "QC_CANARY_CALLED"

# Characters around the hiding places: ASCII and Unicode spaces, line and paragraph breaks,
# control characters, quotes, escapes and comment characters.
SPECIALS = [" ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x01", "\x1c", "\x1f", "\x7f",
            "\x85", NBSP, "\u1680", "\u2000", "\u2028", "\u2029", "\u200b", IDEOGRAPHIC_SPACE,
            "\ufeff", "\\", "'", '"', "`", "*", "/", "-", "#", ";", "$", "é", "x"]
OPENERS = ["--", "-- ", "#", "/*", "/* /*", "/**/", "/*/", "/*!", "/*!50000", "/*M!", "/*+",
           "'", '"', "`", "[", "$$", "$a$", "E'", "e'", "U&'", "N'", "X'", "'\\", '"\\', "'\\'",
           "'''", "\\", "-", "/", ""]
CLOSERS = ["\n", "\r", "\r\n", "*/", "*/ */", "'", '"', "`", "]", "$$", "$a$", "\\'", "''",
           "\\\\'", " ", ""]
BENIGN = ["", " ", "\n", " -- note\n", " /* note */ ", "\t", "\r\n"]


def _hider(rng: random.Random, parts: list[str], before: bool) -> str:
    glue = "".join(rng.choice(SPECIALS) for _ in range(rng.randint(0, 2)))
    part = rng.choice(parts)
    return part + glue if before else glue + part


# Non-ASCII characters that are a name character to the servers and a space (or nothing) to
# Unicode-aware readers: the test table has a column "<c>z" for each, so that a statement
# where the server reads "--<c>z" as two minus signs and a column is valid SQL and runs.
NAME_SPECIALS = ["\x85", NBSP, "\u1680", "\u2000", "\u2028", "\u2029", "\u200b",
                 IDEOGRAPHIC_SPACE, "\ufeff", "é"]
WEIRD_COLUMNS = [f"{c}z" for c in NAME_SPECIALS]

# Statements that are valid SQL whichever way a hiding place is read, so that the server runs
# the canary wherever it does not read a comment or a string ("{c}": a special character,
# "{X}": the hidden call).
VALID_BOTH_WAYS = [
    "SELECT a --{c}z{X}\nFROM t",
    "SELECT a --{c}{X}\nFROM t",
    "SELECT a #{c}z{X}\nFROM t",
    "SELECT a # 1{c}{X}\nFROM t",
    "SELECT a --\r{c}{X}\nFROM t",
    "SELECT a -- x{c}{X}\nFROM t",
    "SELECT '\\'{X}, '\\' AS w FROM t",
    "SELECT \"\\\"{X}, \"\\\" AS w FROM t",
    "SELECT E'\\\\'{X}, '' AS w FROM t",
    "SELECT E'\\'{X}, '' AS w FROM t",
    "SELECT $a$ $b${X}, $b$ $a$ AS w FROM t",
    "SELECT $${X}$$ AS w FROM t",
    "SELECT a /* /* */{X} -- */\nFROM t",
    "SELECT a /* /* */ */{X}\nFROM t",
    "SELECT a /*!{X} */ FROM t",
    "SELECT a /*!50000{X} */ FROM t",
    "SELECT a /*M!{X} */ FROM t",
    "SELECT a /*m!{X} */ FROM t",
    "SELECT a /*+{X} */ FROM t",
    "SELECT a /*{c}*/{X} FROM t",
    "SELECT a{c}{X} FROM t",
    "SELECT [a{X}] FROM t",
    "SELECT `a{X}` FROM t",
    "SELECT a FROM t WHERE a = 1 --{c}z; SELECT canary()\n",
    "SELECT a FROM t WHERE a = 1 /*!; SELECT canary() */",
    "SELECT a FROM t WHERE a = 1 --\r; SELECT canary()\n",
    "SELECT a FROM t WHERE s = '\\'; SELECT canary(); SELECT '\\'",
    "SELECT a FROM t WHERE s = $x$; SELECT canary(); $x$",
]


def _hider(rng: random.Random, parts: list[str], before: bool) -> str:
    glue = "".join(rng.choice(SPECIALS) for _ in range(rng.randint(0, 2)))
    part = rng.choice(parts)
    return part + glue if before else glue + part


def generate_cases(seed: int, count: int) -> list[str]:
    """Statements that hide a canary call or a second statement, each in its own way: about
    two in five from :data:`VALID_BOTH_WAYS`, two in five composed at random from openers,
    closers and special characters, one in five benign (only ordinary comments and
    whitespace), so that the accepting side is tested too."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.2:
            a, b = rng.choice(BENIGN), rng.choice(BENIGN)
            cases.append(rng.choice([f"SELECT a{a}, s{b}FROM t",
                                     f"SELECT a{a} FROM t{b}",
                                     f"SELECT 'x{rng.choice(SPECIALS)}y'{a}AS v FROM t{b}"]))
        elif draw < 0.6:
            call = rng.choice([", canary() AS y", ", canary()", " + canary()"])
            cases.append(rng.choice(VALID_BOTH_WAYS).replace("{X}", call)
                         .replace("{c}", rng.choice(SPECIALS + NAME_SPECIALS)))
        else:
            opener, closer = _hider(rng, OPENERS, True), _hider(rng, CLOSERS, False)
            shape = rng.randrange(4)
            if shape == 0:
                cases.append(f"SELECT a {opener}, canary() {closer} FROM t")
            elif shape == 1:
                cases.append(f"SELECT a {opener}, canary(){closer}\nFROM t")
            elif shape == 2:
                cases.append(f"SELECT a FROM t {opener}; SELECT canary() {closer}")
            else:
                cases.append(f"SELECT a {opener} AS x, canary() AS y {closer} FROM t AS{closer}z")
    return cases


Outcome = tuple  # ("ok", rows) or ("error",)


def _calls_canary(statement: str, dialect: str) -> bool:
    """Whether the layer's own reading of an accepted statement calls the canary."""
    tree = parse_shared(statement, dialect)[0]
    return any(isinstance(node, exp.Anonymous) and str(node.name).lower() == "canary"
               for node in tree.walk())


def _check_layer(kind: str, run_raw: Callable[[str], tuple[bool, Outcome]],
                 cases: list[str]) -> dict[str, int]:
    """The properties, for every case; returns counts so the caller can show the cases tested
    both sides. ``run_raw(text)`` -> (whether the server called the canary, outcome).

    Whenever the server calls the canary, the layer refused the statement or its own reading
    calls it too (then the function allow-list, or on SQLite the authorizer, decides: the
    canary is on neither). Whenever the layer accepts a statement, the text it sends calls the
    canary only if its reading does, and the server answers it as it answers the original.
    """
    engine = get_engine(kind)
    stats = {"server_called": 0, "accepted": 0, "refused": 0, "seen": 0}
    failures = []
    for text in cases:
        called, outcome = run_raw(text)
        stats["server_called"] += called
        try:
            sent = allowed_statement(text, engine)
        except QueryError:
            stats["refused"] += 1
            continue
        stats["accepted"] += 1
        seen = _calls_canary(sent, engine.dialect)
        stats["seen"] += seen
        if called and not seen:
            failures.append(("the server ran the canary the layer did not see", text, sent))
            continue
        sent_called, sent_outcome = run_raw(sent)
        if sent_called and not seen:
            failures.append(("the text the layer sends runs an unseen canary", text, sent))
        elif sent_outcome != outcome:
            failures.append((f"the server reads the sent text otherwise: {outcome} vs "
                             f"{sent_outcome}", text, sent))
    assert not failures, f"{len(failures)} of {len(cases)} cases; first: {failures[:5]}"
    print(kind, stats)  # shown with pytest -s
    return stats


def _assert_both_sides(stats: dict[str, int]) -> None:
    # The generator must reach the server's hidden-call paths and the layer's accepting path,
    # or the test would pass by refusing everything.
    assert stats["server_called"] >= CASES // 20, stats
    assert stats["accepted"] >= CASES // 10, stats


def test_differential_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    weird = "".join(f', "{c}" INTEGER DEFAULT 1' for c in WEIRD_COLUMNS)
    conn.execute(f"CREATE TABLE t (a INTEGER, s TEXT, z INTEGER{weird})")
    conn.execute("INSERT INTO t (a, s, z) VALUES (1, 'one', 2)")
    calls = []
    conn.create_function("canary", 0, lambda: calls.append(1) or 1)

    def run_raw(text: str) -> tuple[bool, Outcome]:
        calls.clear()
        # executescript runs every statement, as a server taking several would.
        with contextlib.suppress(sqlite3.Error, ValueError):
            conn.executescript(text)
        called = bool(calls)
        try:
            outcome: Outcome = ("ok", conn.execute(text).fetchall())
        except (sqlite3.Error, ValueError):
            outcome = ("error",)
        return called or bool(calls), outcome

    stats = _check_layer("sqlite", run_raw, generate_cases(1, CASES))
    _assert_both_sides(stats)


def test_differential_postgres() -> None:
    psycopg = require_module("psycopg", "POSTGRES")
    with fresh_postgres_database() as url:
        from sqlalchemy.engine import make_url

        parts = make_url(url)
        conn = psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username,
                               dbname=parts.database, autocommit=True)
        try:
            weird = "".join(f', "{c}" integer DEFAULT 1' for c in WEIRD_COLUMNS)
            conn.execute(f"CREATE TABLE t (a integer, s text, z integer{weird})")
            conn.execute("INSERT INTO t (a, s, z) VALUES (1, 'one', 2)")
            conn.execute("CREATE FUNCTION canary() RETURNS integer LANGUAGE plpgsql VOLATILE AS "
                         f"$$ BEGIN RAISE EXCEPTION '{CANARY}'; END $$")
            conn.autocommit = False
            cursor = psycopg.ClientCursor(conn)  # the simple protocol: several statements

            def run_raw(text: str) -> tuple[bool, Outcome]:
                try:
                    cursor.execute(text)
                    outcome: Outcome = ("ok", cursor.fetchall() if cursor.description else [])
                    called = False
                except (psycopg.Error, ValueError) as err:  # ValueError: a NUL character
                    called, outcome = CANARY in str(err), ("error",)
                conn.rollback()
                return called, outcome

            stats = _check_layer("postgres", run_raw, generate_cases(2, CASES))
        finally:
            conn.close()
    _assert_both_sides(stats)


# The sql_mode flags that change MariaDB's lexer, in every combination.
MYSQL_MODES = ["", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"]


@pytest.mark.slow
def test_differential_mariadb() -> None:
    import pymysql
    from pymysql.constants import CLIENT

    admin = mysql_admin()
    name = f"qc_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn = pymysql.connect(host=admin.host, port=admin.port, user=admin.user,
                           password=admin.password or "", database=name, autocommit=True,
                           client_flag=CLIENT.MULTI_STATEMENTS, charset="utf8mb4")
    try:
        with conn.cursor() as cursor:
            weird = "".join(f", `{c}` INT DEFAULT 1" for c in WEIRD_COLUMNS)
            cursor.execute(f"CREATE TABLE t (a INT, s TEXT, z INT{weird})")
            cursor.execute("INSERT INTO t (a, s, z) VALUES (1, 'one', 2)")
            cursor.execute("CREATE FUNCTION canary() RETURNS INT NOT DETERMINISTIC NO SQL "
                           f"BEGIN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{CANARY}'; "
                           "RETURN 1; END")

        def run_raw(text: str) -> tuple[bool, Outcome]:
            """The text under every sql_mode: called if any mode calls the canary; the outcome
            of each mode (the sent text must match it mode by mode)."""
            called, outcomes = False, []
            for mode in MYSQL_MODES:
                with conn.cursor() as cursor:
                    cursor.execute(f"SET SESSION sql_mode = '{mode}'")
                    try:
                        cursor.execute(text)
                        rows = [tuple(r) for r in cursor.fetchall()] if cursor.description \
                            else []
                        while cursor.nextset():  # the later statements' errors surface here
                            pass
                        outcomes.append(("ok", rows))
                    except (pymysql.Error, UnicodeEncodeError, ValueError) as err:
                        called = called or CANARY in str(err)
                        outcomes.append(("error",))
                        # A failed multi-statement leaves the connection mid-results.
                        conn.ping(reconnect=True)
            return called, tuple(outcomes)

        stats = _check_layer("mysql", run_raw, generate_cases(3, CASES))
    finally:
        conn.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    _assert_both_sides(stats)
