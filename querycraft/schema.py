"""Reading a database's schema (the context retriever): tables, typed columns, primary and
foreign keys, rendered as compact CREATE TABLE statements, through SQLAlchemy's inspector so
that every engine (SQLite, PostgreSQL, Db2, ...) is read the same way.

Optionally each column carries a few example values (read with SQLAlchemy Core, so every
dialect gets its own row-limit syntax), and the tables can be narrowed to those a question
is likely about (:func:`relevant_tables`)."""

from __future__ import annotations

import contextlib
import decimal
import json
import re
import sqlite3
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import NullType, TypeEngine

from querycraft.errors import QueryCraftError

__all__ = [
    "describe_schema",
    "read_schema",
    "readonly_sqlite_engine",
    "readonly_uri",
    "relevant_tables",
    "render_create_table",
    "sample_values_query",
    "select_tables",
]

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ident(name: str) -> str:
    """Quote an identifier only when it cannot be written bare."""
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def readonly_uri(file: Path) -> str:
    # Percent-encode the path so that '?', '#' and '%' in file names stay part of the name.
    return f"file:{urllib.parse.quote(str(file.resolve()))}?mode=ro"


def readonly_sqlite_engine(file: Path) -> sqlalchemy.Engine:
    """A SQLAlchemy engine on an existing SQLite file, opened read-only (the schema reader's)."""
    if not file.is_file():
        raise QueryCraftError(
            f"Cannot read the schema: {file} is not an existing file. Give the path of a .sqlite "
            "file or a SQLAlchemy URL such as postgresql://user@host/dbname."
        )
    uri = readonly_uri(file)
    # A creator rather than a sqlite:///file:...?mode=ro&uri=true URL: SQLAlchemy un-escapes
    # URLs, which would let a '#' or '?' in the file name cut off mode=ro.
    return sqlalchemy.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    )


def _schema_engine(url_or_path: str) -> tuple[sqlalchemy.Engine, str]:
    """An engine for the database, and how to name it in messages (password hidden)."""
    if "://" not in url_or_path:
        file = Path(url_or_path).expanduser()
        return readonly_sqlite_engine(file), str(file)
    try:
        url = make_url(url_or_path)
    except sa_exc.ArgumentError as err:
        raise QueryCraftError(f"{url_or_path} is not a valid database URL: {err}") from err
    database = url.database or ""
    is_file_url = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and is_file_url:
        # A plain SQLite file URL is opened read-only too, so a missing file is never created.
        file = Path(database).expanduser()
        return readonly_sqlite_engine(file), str(file)
    shown = url.render_as_string(hide_password=True)
    try:
        return sqlalchemy.create_engine(url), shown
    except (sa_exc.ArgumentError, ImportError) as err:
        raise QueryCraftError(
            f"Cannot connect to {shown}: {err}. Check the URL and that its driver is installed."
        ) from err


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _type_text(col_type: Any, dialect: sqlalchemy.Dialect) -> str | None:
    """A column type as the dialect writes it, upper-case; None for an untyped column."""
    if isinstance(col_type, type) and issubclass(col_type, TypeEngine):
        # Dialects' get_columns may hand back a type class; the Inspector instantiates it,
        # a caller feeding raw dialect output might not.
        col_type = col_type()
    if isinstance(col_type, NullType):
        return None
    try:
        type_text = col_type.compile(dialect=dialect)
    except Exception:  # a type the dialect cannot print; its generic name will do
        type_text = str(col_type)
    return type_text.upper()


def _same_schema(a: str, b: str | None) -> bool:
    # Db2 reports names lower-cased (SQLAlchemy's normalisation) while a caller may write them
    # upper-case; schemas that differ only by case are too rare to tell apart here.
    return b is not None and a.lower() == b.lower()


def render_create_table(
    name: str,
    columns: Sequence[Mapping[str, Any]],
    primary_key: Sequence[str],
    foreign_keys: Sequence[Mapping[str, Any]],
    dialect: sqlalchemy.Dialect,
    *,
    schema: str | None = None,
    samples: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One table as a one-line ``CREATE TABLE`` statement.

    The arguments are what SQLAlchemy's inspector reports, so any dialect's output can be
    rendered without a connection.

    Args:
        name: The table name (written unqualified).
        columns: ``inspector.get_columns(...)`` entries; ``name`` and ``type`` are used.
        primary_key: The ``constrained_columns`` of ``inspector.get_pk_constraint(...)``.
        foreign_keys: ``inspector.get_foreign_keys(...)`` entries.
        dialect: Compiles the column types (``engine.dialect``).
        schema: The schema being described: a foreign key into it is written unqualified,
            one into another schema as ``schema.table``.
        samples: Example values per column name, already SQL literals; each column that has
            some gets them as a comment after its type: ``Name TEXT /* 'Joe', 'Ann' */``.

    Returns:
        ``CREATE TABLE name (col TYPE, ..., PRIMARY KEY (a, b), FOREIGN KEY (x) REFERENCES t(y));``
    """
    parts = []
    for col in columns:
        text = _ident(col["name"])
        type_text = _type_text(col["type"], dialect)
        if type_text is not None:
            text += f" {type_text}"
        values = (samples or {}).get(col["name"])
        if values:
            text += f" /* {', '.join(values)} */"
        parts.append(text)
    if primary_key:
        parts.append(f"PRIMARY KEY ({', '.join(_ident(c) for c in primary_key)})")
    for fk in foreign_keys:
        local = ", ".join(_ident(c) for c in fk["constrained_columns"])
        target = _ident(fk["referred_table"])
        referred_schema = fk.get("referred_schema")
        if referred_schema and not _same_schema(referred_schema, schema):
            target = f"{_ident(referred_schema)}.{target}"
        remote = ", ".join(_ident(c) for c in fk.get("referred_columns") or [])
        parts.append(
            f"FOREIGN KEY ({local}) REFERENCES {target}" + (f"({remote})" if remote else "")
        )
    return f"CREATE TABLE {_ident(name)} ({', '.join(parts)});"


# --------------------------------------------------------------------------------------------
# Sample values
# --------------------------------------------------------------------------------------------

SAMPLE_SCAN_ROWS = 1000  # rows read per column when sampling; bounds the cost on huge tables
SAMPLE_MAX_CHARS = 40  # longer values are cut to this many characters and "..."

def _fetch_first(dialect: sqlalchemy.Dialect | None) -> bool:
    """Whether row limits must be ``FETCH FIRST n ROWS ONLY`` (the engine says so: Db2's
    ibm_db_sa renders .limit(n) as "LIMIT n", which only newer Db2 servers accept)."""
    from querycraft.engines import engine_for_sqlalchemy  # local: engines import this module

    engine = engine_for_sqlalchemy(dialect.name) if dialect is not None else None
    return engine is not None and engine.fetch_first


def _first_rows(stmt: sqlalchemy.Select, n: int, dialect: sqlalchemy.Dialect | None
                ) -> sqlalchemy.Select:
    if _fetch_first(dialect):
        # Written into the SQL at execution like .limit()'s count, not sent as a '?'
        # parameter, which older Db2 servers refuse in FETCH FIRST.
        return stmt.fetch(sqlalchemy.literal(n, sqlalchemy.Integer, literal_execute=True))
    return stmt.limit(n)


def sample_values_query(
    table: str,
    column: str,
    n: int,
    *,
    schema: str | None = None,
    dialect: sqlalchemy.Dialect | None = None,
    scan_rows: int = SAMPLE_SCAN_ROWS,
) -> sqlalchemy.Select:
    """The query for up to ``n`` distinct non-null values of one column, in order.

    Only the first ``scan_rows`` rows (in whatever order the database returns them) are
    read, then made distinct, sorted and cut to ``n``, so the cost does not grow with the
    table. The column is untyped on purpose: values come back as the driver gives them,
    without SQLAlchemy's conversions (SQLite's BOOLEAN columns in Spider hold 'T'/'F').

    Args:
        table: Table name, unqualified.
        column: Column name.
        n: How many values at most.
        schema: The table's schema, if not the default one.
        dialect: The dialect the query will run on; it picks the row-limit form (Db2 gets
            ``FETCH FIRST n ROWS ONLY``, the others ``.limit()``, e.g. SQLite's ``LIMIT n``).
        scan_rows: How many rows to look at.
    """
    source = sqlalchemy.table(table, sqlalchemy.column(column), schema=schema)
    first = _first_rows(
        sqlalchemy.select(source.c[column].label("sample_value")), scan_rows, dialect
    ).subquery("first_rows")
    value = first.c.sample_value
    return _first_rows(
        sqlalchemy.select(value).where(value.is_not(None)).distinct().order_by(value),
        n,
        dialect,
    )


def _sample_literal(value: Any) -> str | None:
    """A sample value as a short SQL literal on one line, or None to leave it out."""
    if value is None or isinstance(value, (bytes, bytearray, memoryview)):
        return None
    quoted = True
    if isinstance(value, bool):
        text, quoted = ("TRUE" if value else "FALSE"), False
    elif isinstance(value, (int, float, decimal.Decimal)):
        text, quoted = str(value), False
    elif isinstance(value, (dict, list)):  # PostgreSQL jsonb and arrays: as JSON, not repr
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:  # text, and dates, times, UUIDs... as str() writes them ('2020-02-01 10:00:00')
        text = str(value)
    # One line per table, and nothing that could end the comment the values sit in.
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = text.replace("*/", "* /").replace("/*", "/ *")
    if len(text) > SAMPLE_MAX_CHARS:
        text = text[:SAMPLE_MAX_CHARS] + "..."
    return "'" + text.replace("'", "''") + "'" if quoted else text


def _is_binary(col_type: Any) -> bool:
    if isinstance(col_type, type):
        return issubclass(col_type, sqltypes._Binary)
    return isinstance(col_type, sqltypes._Binary)


def _read_samples(
    conn: sqlalchemy.Connection,
    table: str,
    columns: Sequence[Mapping[str, Any]],
    n: int,
    schema: str | None,
) -> dict[str, list[str]]:
    samples: dict[str, list[str]] = {}
    for col in columns:
        if _is_binary(col["type"]):
            continue
        query = sample_values_query(table, col["name"], n, schema=schema, dialect=conn.dialect)
        try:
            rows = conn.execute(query).all()
        except Exception:
            # Samples are a garnish: no permission, a type without equality or order
            # (PostgreSQL json, Db2 LOBs), undecodable text... cost only this column's values.
            # PostgreSQL refuses further statements in a failed transaction, hence the rollback.
            with contextlib.suppress(sa_exc.SQLAlchemyError):
                conn.rollback()
            continue
        literals = (_sample_literal(row[0]) for row in rows)
        # Two long values can render alike once cut; show each rendering once.
        values = list(dict.fromkeys(v for v in literals if v is not None))
        if values:
            samples[col["name"]] = values
    return samples


# --------------------------------------------------------------------------------------------
# Table selection for a question
# --------------------------------------------------------------------------------------------

# Words that say nothing about which table a question is about.
_STOP_WORDS = frozenset(re.findall(r"\w+", """
    a an the of in on at to for from by with and or not no is are was were be been being do
    does did have has had what which who whom whose where when how many much all each every any
    some that this these those there their its it his her they them we our you your i me my
    than then as per show list give find return tell display count number total
"""))
TABLE_NAME_WEIGHT = 3.0  # a question word naming the table counts this much,
TABLE_PART_WEIGHT = 1.0  # one inside a word of its name ("language" in countrylanguage) this,
# and a word naming one of its columns 1 / (number of tables having such a column).
KEEP_SCORE = 1.0
PART_MIN_CHARS = 4  # shorter words would be found inside too many names


def _words(text: str) -> list[str]:
    """Lower-case words of a name or question: snake_case and camelCase split."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)  # petType -> pet Type
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", text)  # HTMLPage -> HTML Page
    return [w for w in re.split(r"[\W_]+", text.lower()) if w]


def _singular(word: str) -> str:
    """A crude singular, applied alike to question and schema words, so they need only agree."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"  # countries -> country
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]  # classes -> class, matches -> match
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]  # singers -> singer, courses -> course
    return word


def _terms(text: str) -> set[str]:
    return {
        _singular(w) for w in _words(text)
        if w not in _STOP_WORDS and not w.isdigit() and len(w) > 1
    }


def select_tables(
    question: str,
    columns: Mapping[str, Sequence[str]],
    links: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """The tables a question is probably about, and those that join them.

    The heuristic, on words (names split at '_' and camelCase, lower-cased, crudely made
    singular, common question words dropped):

    1. Score each table:

       - ``TABLE_NAME_WEIGHT`` for each question word in the table's name. A word that is
         the whole name of one table (``singer``) counts for that table only, not for longer
         names holding it (``singer_in_concert``), which step 3 adds when they join two
         tables the question names;
       - ``TABLE_PART_WEIGHT`` for each other question word of ``PART_MIN_CHARS`` or more
         letters found inside a word of its name, for names written run together
         (``countrylanguage``, ``Highschooler``);
       - for each question word naming one of its columns, 1 divided by the number of tables
         with a column of that word (``name`` in five tables is weak evidence for each).
         Column words that are also words of a table name (``Stadium_ID`` in ``concert``)
         are left out: they point at that other table, which scores by name.

    2. Keep the tables scoring at least ``KEEP_SCORE``.
    3. Join them up: repeatedly add the shortest foreign-key path (in either direction) from
       the kept tables to the nearest kept table not yet connected, so bridge tables such as
       ``singer_in_concert`` come along. Kept tables nothing connects stay, unconnected.
    4. Add the tables that the step-2 tables' foreign keys refer to: they usually hold the
       names of what a row points at ("flights from Aberdeen" needs ``airports``).
    5. When step 2 keeps no table, every table is kept: an empty schema never helps.

    Args:
        question: The natural-language question.
        columns: Column names per table; its order is the order of the result.
        links: ``(table, referred_table)`` pairs, one per foreign key.

    Returns:
        Table names, a subset of ``columns``'s keys in its order.
    """
    names = list(columns)
    links = list(links)
    asked = _terms(question)
    table_terms = {t: _terms(t) for t in names}
    all_table_terms = set().union(*table_terms.values())
    owners: dict[str, set[str]] = {}  # word -> the tables named by that word alone
    for t in names:
        whole = {_singular(w) for w in _words(t)}  # stop words kept: Has_Pet is not "pet"
        if len(whole) == 1:
            owners.setdefault(next(iter(whole)), set()).add(t)
    column_terms = {t: set().union(*(_terms(c) for c in columns[t])) - all_table_terms
                    for t in names}
    spread: dict[str, int] = {}
    for terms in column_terms.values():
        for term in terms:
            spread[term] = spread.get(term, 0) + 1
    scores = {}
    for t in names:
        named = [w for w in asked & table_terms[t] if t in owners.get(w, {t})]
        inside = [w for w in asked - table_terms[t]
                  if len(w) >= PART_MIN_CHARS and any(w in term for term in table_terms[t])]
        scores[t] = (TABLE_NAME_WEIGHT * len(named)
                     + TABLE_PART_WEIGHT * len(inside)
                     + sum(1 / spread[w] for w in asked & column_terms[t]))
    hits = [t for t in sorted(names, key=lambda t: -scores[t]) if scores[t] >= KEEP_SCORE]
    if not hits:
        return names
    kept = _connect(hits, links)
    kept.update(b for a, b in links if a in hits)
    return [t for t in names if t in kept]


def _connect(hits: list[str], links: Iterable[tuple[str, str]]) -> set[str]:
    """``hits`` plus the tables on shortest foreign-key paths joining them (best hit first)."""
    graph: dict[str, set[str]] = {}
    for a, b in links:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set()).add(a)
    kept = {hits[0]}
    pending = [t for t in hits[1:] if t not in kept]
    while pending:
        path = _shortest_path(kept, set(pending), graph)
        if path is None:  # nothing joins the rest to what is kept: keep the next one alone
            kept.add(pending[0])
        else:
            kept.update(path)
        pending = [t for t in pending if t not in kept]
    return kept


def _shortest_path(sources: set[str], targets: set[str], graph: Mapping[str, set[str]]
                   ) -> list[str] | None:
    parent: dict[str, str | None] = dict.fromkeys(sources)
    queue = deque(sorted(sources))  # sorted: the same path every run
    while queue:
        node = queue.popleft()
        if node in targets:
            path = []
            step: str | None = node
            while step is not None:
                path.append(step)
                step = parent[step]
            return path
        for nxt in sorted(graph.get(node, ())):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def _sorted_table_names(inspector: sqlalchemy.Inspector, schema: str | None) -> list[str]:
    return sorted(inspector.get_table_names(schema=schema), key=lambda n: (n.lower(), n))


def _relevant(inspector: sqlalchemy.Inspector, names: list[str], question: str,
              schema: str | None) -> list[str]:
    columns = {t: [c["name"] for c in inspector.get_columns(t, schema=schema)] for t in names}
    present = set(names)
    links = []
    for t in names:
        for fk in inspector.get_foreign_keys(t, schema=schema):
            other = fk.get("referred_schema")
            same = not other or _same_schema(other, schema)
            if same and fk["referred_table"] in present:
                links.append((t, fk["referred_table"]))
    return select_tables(question, columns, links)


def relevant_tables(
    source: sqlalchemy.Engine | sqlalchemy.Inspector,
    question: str,
    *,
    schema: str | None = None,
) -> list[str]:
    """The tables of a database that a question is probably about (see :func:`select_tables`).

    Args:
        source: An engine, or an inspector already made from one (its cache is reused).
        question: The natural-language question.
        schema: The database schema to look in; the default one if None.

    Returns:
        Table names in the order :func:`describe_schema` renders them (by name,
        case-insensitively); every table when no word of the question matches any.
    """
    inspector = source if isinstance(source, sqlalchemy.Inspector) else sqlalchemy.inspect(source)
    return _relevant(inspector, _sorted_table_names(inspector, schema), question, schema)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def _describe(
    engine: sqlalchemy.Engine,
    shown: str,
    *,
    schema: str | None,
    tables: list[str] | None,
    sample_values: int,
    question: str | None,
) -> str:
    try:
        inspector = sqlalchemy.inspect(engine)
        names = _sorted_table_names(inspector, schema)
        if tables is not None:
            by_lower = {n.lower(): n for n in names}
            missing = [t for t in tables if t.lower() not in by_lower]
            if missing:
                raise QueryCraftError(
                    f"{shown} has no table named {', '.join(missing)}. "
                    f"Its tables are: {', '.join(names) or '(none)'}."
                )
            names = list(dict.fromkeys(by_lower[t.lower()] for t in tables))
        elif question:
            names = _relevant(inspector, names, question, schema)
        # Everything is read from the catalogue before any sampling connection is opened:
        # SQLite's in-memory pool hands the same connection to both.
        described = [
            (
                t,
                inspector.get_columns(t, schema=schema),
                inspector.get_pk_constraint(t, schema=schema).get("constrained_columns") or [],
                inspector.get_foreign_keys(t, schema=schema),
            )
            for t in names
        ]
        samples: dict[str, dict[str, list[str]]] = {}
        if sample_values > 0 and described:
            with engine.connect() as conn:
                for t, cols, _, _ in described:
                    samples[t] = _read_samples(conn, t, cols, sample_values, schema)
        return "\n".join(
            render_create_table(t, cols, pk, fks, engine.dialect, schema=schema,
                                samples=samples.get(t))
            for t, cols, pk, fks in described
        )
    except sa_exc.SQLAlchemyError as err:
        raise QueryCraftError(
            f"Cannot read the schema of {shown}: {err.__class__.__name__}: "
            f"{str(err).splitlines()[0]}"
        ) from err


def describe_schema(
    engine: sqlalchemy.Engine,
    *,
    schema: str | None = None,
    tables: list[str] | None = None,
    sample_values: int = 0,
    question: str | None = None,
) -> str:
    """Describe a database's tables as compact one-line CREATE TABLE statements.

    This is the schema context given to the model. Each table becomes
    ``CREATE TABLE name (col TYPE, ..., PRIMARY KEY (a, b), FOREIGN KEY (x) REFERENCES t(y));``
    with types as the database reports them (upper-case) and identifiers double-quoted only
    when they hold characters other than letters, digits and '_' or start with a digit.

    With ``sample_values=n`` each column's type is followed by up to ``n`` distinct example
    values in a block comment, e.g.
    ``CREATE TABLE singer (Singer_ID INTEGER /* 1, 2, 3 */, Name TEXT /* 'Joe Sharp',
    'John Nizinik', 'Justin Brown' */, ...);`` (one line). Values are SQL literals (strings
    quoted with ``''`` for a quote), sorted, taken from the first
    :data:`SAMPLE_SCAN_ROWS` rows, cut to :data:`SAMPLE_MAX_CHARS` characters plus ``...``;
    binary columns get none, nor does a column whose sampling query fails. A comment keeps
    the statement valid SQL: sqlglot, and so
    :func:`querycraft.correction.schema_from_ddl`, reads the same tables and columns.

    Args:
        engine: Any SQLAlchemy engine (SQLite, PostgreSQL, Db2 via ibm_db_sa...).
        schema: The database schema to read (PostgreSQL / Db2 schema name); the
            connection's default one if None. Table names are written unqualified.
        tables: Only these tables, in this order (names match case-insensitively); by default
            every table, sorted by name.
        sample_values: How many example values per column; 0 for none.
        question: Only the tables :func:`relevant_tables` picks for this question. Ignored
            when ``tables`` is given.

    Returns:
        One statement per line.

    Raises:
        QueryCraftError: When the database cannot be read or a requested table is missing.
    """
    shown = engine.url.render_as_string(hide_password=True)
    return _describe(engine, shown, schema=schema, tables=tables, sample_values=sample_values,
                     question=question)


def read_schema(
    url_or_path: str | Path,
    *,
    tables: list[str] | None = None,
    sample_values: int = 0,
    question: str | None = None,
    schema: str | None = None,
) -> str:
    """:func:`describe_schema` for a SQLite file path or a SQLAlchemy URL.

    Args:
        url_or_path: A SQLite file path (opened read-only; the file is never modified, nor
            created when missing) or any SQLAlchemy URL.
        tables: Only these tables, in this order; see :func:`describe_schema`.
        sample_values: Example values per column; see :func:`describe_schema`.
        question: Only the tables relevant to this question; see :func:`describe_schema`.
        schema: The database schema to read; see :func:`describe_schema`.

    Returns:
        One statement per line.

    Raises:
        QueryCraftError: When the database cannot be read or a requested table is missing.
    """
    engine, shown = _schema_engine(str(url_or_path))
    try:
        return _describe(engine, shown, schema=schema, tables=tables,
                         sample_values=sample_values, question=question)
    finally:
        engine.dispose()
