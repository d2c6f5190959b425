"""What the synthesizer knows about one database: its tables, typed columns, keys and real
values, read through the execution layer (:class:`querycraft.db.Database`), so every engine
is read the same way and only with read-only, time-limited, row-capped queries.

The schema comes from ``Database.schema_text()`` (CREATE TABLE text rendered from
SQLAlchemy's inspector, with types, primary and foreign keys), parsed with sqlglot; the
values from ``SELECT DISTINCT`` queries built with sqlglot in the database's dialect.
"""

from __future__ import annotations

import datetime
import decimal
import re
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from querycraft.db import Database
from querycraft.engines.base import QueryError
from querycraft.errors import QueryCraftError
from querycraft.sql import parse_statement, split_statements

__all__ = ["ColumnProfile", "DatabaseProfile", "ForeignKey", "TableProfile", "ident",
           "read_profile"]

# Words quoted even where the dialect would accept them bare: quoting costs nothing and a
# column called "order" or "year" must never be read as a keyword.
_RESERVED = frozenset((
    "all", "and", "any", "as", "asc", "between", "by", "case", "cast", "check", "collate",
    "column", "constraint", "count", "create", "cross", "current", "date", "day", "default",
    "delete", "desc", "distinct", "else", "end", "escape", "except", "exists", "false", "fetch",
    "filter", "foreign", "from", "full", "grant", "group", "having", "in", "index", "inner",
    "insert", "intersect", "into", "is", "join", "key", "left", "level", "like", "limit", "max",
    "min", "month", "natural", "not", "null", "offset", "on", "option", "or", "order", "outer",
    "over", "partition", "percent", "position", "primary", "range", "rank", "read", "references",
    "right", "row", "rows", "select", "set", "size", "some", "start", "sum", "table", "then",
    "time", "timestamp", "to", "top", "true", "union", "unique", "update", "user", "using",
    "values", "when", "where", "window", "with", "year",
))
# Columns that name a row: "name", "title", "first_name", "LastName", "song_title".
_NAME_COLUMN = re.compile(r"(^|_|[a-z])(name|title)$|^(name|title)(_|$)", re.IGNORECASE)
_FIRST_NAME = re.compile(r"(?i)f(irst)?_?name$")
_LAST_NAME = re.compile(r"(?i)l(ast)?_?name$")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")
# Dialects that fold unquoted names to lower (PostgreSQL) or, as SQLAlchemy reports names,
# read lower-case names as case-insensitive (Db2): a name with upper-case letters is quoted.
_CASE_SENSITIVE = {"postgres", "db2"}


def ident(name: str, dialect: str) -> exp.Identifier:
    """An identifier for ``name``, quoted when it cannot be written bare in ``dialect``."""
    quoted = (not _PLAIN.fullmatch(name) or name.lower() in _RESERVED
              or (dialect in _CASE_SENSITIVE and name != name.lower()))
    return exp.Identifier(this=name, quoted=quoted)


@dataclass
class ColumnProfile:
    name: str
    type: str  # as the schema reports it, upper-case; "" when untyped
    # number, text, date or other (booleans, binary, JSON...): what filters make sense
    kind: str = "other"
    is_key: bool = False  # part of the primary key, a foreign key, or named like an id
    non_null: int = 0
    distinct: int = 0
    values: list[Any] = field(default_factory=list)  # distinct non-null values, sorted

    table_rows: int = 0

    @property
    def has_nulls(self) -> bool:
        return 0 < self.non_null < self.table_rows


@dataclass
class ForeignKey:
    table: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]


@dataclass
class TableProfile:
    name: str
    columns: list[ColumnProfile]
    primary_key: list[str]
    rows: int = 0
    # With first and last name columns as identity: (first, last) pairs that occur together.
    full_names: list[tuple[str, str]] = field(default_factory=list)

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)

    def of_kind(self, *kinds: str, keys: bool = False, values: bool = True
                ) -> list[ColumnProfile]:
        """Columns of these kinds (keys left out unless ``keys``) that have values."""
        return [c for c in self.columns if c.kind in kinds and (keys or not c.is_key)
                and (c.values or not values)]

    def identity(self) -> list[ColumnProfile]:
        """What a question that names no column shows ("Which members ...?"): the row's
        name columns (``name``, ``title``, ``first_name`` and ``last_name``), else its
        primary key ("Which loans ...?" -> ``loan_id``), else its best label."""
        names = [c for c in self.of_kind("text") if _NAME_COLUMN.search(c.name)
                 and c.distinct > 1]
        # A name shared by many rows ("genre_name") is a category, not the row's name.
        telling = [c for c in names if c.distinct * 4 > self.rows]
        pair = [c for c in telling if _FIRST_NAME.match(c.name) or _LAST_NAME.match(c.name)]
        if len(pair) == 2:
            return pair
        whole = [c for c in telling if c.name.lower() in ("name", "title")
                 or c.name.lower() == f"{self.name.lower()}_name"]
        if whole:  # "Name" alone, not "Name" and "Song_Name"
            return whole[:1]
        if telling or names:
            return telling[:2] or [max(names, key=lambda c: c.distinct)]
        keys = [self.column(k) for k in self.primary_key if self.column(k).values]
        return keys[:1] or self.labels()[:1]

    def name_pair(self) -> tuple[ColumnProfile, ColumnProfile] | None:
        """The first and last name columns (in that order) when they are the row's identity
        (a person table: ``first_name``/``last_name``, Spider's ``Fname``/``LName``)."""
        pair = self.identity()
        first = [c for c in pair if _FIRST_NAME.match(c.name)]
        if len(pair) != 2 or len(first) != 1 or not all(c.kind == "text" for c in pair):
            return None
        return first[0], next(c for c in pair if c is not first[0])

    def labels(self) -> list[ColumnProfile]:
        """The columns that best name a row: text columns with many distinct values (a
        name, a title), else the primary key, else any column."""
        text = sorted(self.of_kind("text"), key=lambda c: -c.distinct)
        if text:
            return text[:3]
        keys = [self.column(k) for k in self.primary_key]
        return keys[:1] or [c for c in self.columns if c.values][:1]


@dataclass
class DatabaseProfile:
    db_id: str
    dialect: str
    tables: dict[str, TableProfile]
    foreign_keys: list[ForeignKey]
    # Why some tables or columns were left out (read but unusable), for the report.
    notes: list[str] = field(default_factory=list)

    def usable_tables(self) -> list[TableProfile]:
        return [t for t in self.tables.values() if t.rows > 0]

    def joins(self) -> list[ForeignKey]:
        """Single-column foreign keys between two non-empty tables."""
        return [fk for fk in self.foreign_keys
                if len(fk.columns) == 1 and len(fk.ref_columns) == 1
                and fk.table in self.tables and fk.ref_table in self.tables
                and fk.table != fk.ref_table
                and self.tables[fk.table].rows and self.tables[fk.ref_table].rows]


def _kind(type_text: str, values: list[Any]) -> str:
    """What a column holds, from its declared type and, where that says little (SQLite's
    TEXT dates), its values."""
    upper = type_text.upper()
    sample = values[:50]
    if any(isinstance(v, (bytes, bytearray, memoryview)) for v in sample):
        return "other"
    if any(isinstance(v, bool) for v in sample) or "BOOL" in upper:
        return "other"
    if any(w in upper for w in ("DATE", "TIME")) or (
            sample and all(isinstance(v, (datetime.date, datetime.datetime)) for v in sample)):
        return "date"
    if sample and all(isinstance(v, (int, float, decimal.Decimal)) for v in sample):
        return "number"
    if sample and all(isinstance(v, str) for v in sample):
        return "date" if all(_ISO_DATE.fullmatch(v) for v in sample) else "text"
    if any(w in upper for w in ("INT", "REAL", "FLOA", "DOUB", "NUM", "DEC")):
        return "number"
    if any(w in upper for w in ("CHAR", "TEXT", "CLOB", "STRING")):
        return "text"
    return "other"


def _parse_tables(ddl: str) -> list[tuple[str, list[tuple[str, str]], list[str],
                                          list[ForeignKey]]]:
    """(table, [(column, type)], primary key, foreign keys) per CREATE TABLE statement.

    The schema text writes identifiers in double quotes whatever the engine, so it is read
    with sqlglot's default dialect, which reads them as identifiers."""
    found = []
    for statement in split_statements(ddl):
        tree = parse_statement(statement, "")
        if not (isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema)):
            continue
        table = tree.this.this
        if not isinstance(table, exp.Table) or not table.name:
            continue
        columns, primary, fks = [], [], []
        for item in tree.this.expressions:
            if isinstance(item, exp.ColumnDef):
                kind = item.args.get("kind")
                columns.append((item.name, kind.sql().upper() if kind else ""))
                if any(isinstance(c.args.get("kind"), exp.PrimaryKeyColumnConstraint)
                       for c in item.args.get("constraints") or []):
                    primary.append(item.name)
            elif isinstance(item, exp.PrimaryKey):
                primary += [e.name for e in item.expressions]
            elif isinstance(item, exp.ForeignKey):
                ref = item.args.get("reference")
                target = ref.this if ref is not None else None
                if isinstance(target, exp.Schema):
                    ref_table, ref_columns = target.this.name, [e.name for e in
                                                                target.expressions]
                elif isinstance(target, exp.Table):
                    ref_table, ref_columns = target.name, []
                else:
                    continue
                fks.append(ForeignKey(table.name, [e.name for e in item.expressions],
                                      ref_table, ref_columns))
        found.append((table.name, columns, primary, fks))
    return found


def _run(database: Database, query: exp.Expression, timeout_s: float, max_rows: int
         ) -> list[tuple]:
    return database.execute(query.sql(dialect=database.dialect), timeout_s=timeout_s,
                            max_rows=max_rows).rows


def read_profile(database: Database, db_id: str, *, timeout_s: float = 10.0,
                 sample_rows: int = 1000) -> DatabaseProfile:
    """Tables, typed columns, keys, row and value counts, and up to ``sample_rows`` distinct
    values per column (the first in sort order), read from ``database``.

    Raises:
        QueryCraftError: When the schema cannot be read or the database has no table.
    """
    dialect = database.dialect
    try:
        ddl = database.schema_text()
    except QueryCraftError:
        raise
    except Exception as err:  # a driver error the schema reader did not word
        raise QueryCraftError(f"Cannot read the schema of {database.name}: {err}") from err
    parsed = _parse_tables(ddl)
    if not parsed:
        raise QueryCraftError(
            f"The database {database.name} has no table to write questions about (its "
            "schema is empty, or the login cannot see any table). Point db.path (SQLite) or "
            "the db settings at a database with tables and rows, or load a CSV into one with "
            "service=ingest ingest.load.csv=<file>.")
    profile = DatabaseProfile(db_id, dialect, {}, [])
    for name, columns, primary, fks in parsed:
        # An unresolvable primary key (a quirk of the rendering) just makes no column a key.
        primary = [p for p in primary if any(p == c for c, _ in columns)]
        table = TableProfile(name, [ColumnProfile(c, t) for c, t in columns], primary)
        profile.tables[name] = table
        profile.foreign_keys += fks
        source = exp.Table(this=ident(name, dialect))
        try:
            counts = [exp.Count(this=exp.Star())]
            for col in table.columns:
                ref = exp.Column(this=ident(col.name, dialect))
                counts += [exp.Count(this=ref), exp.Count(this=exp.Distinct(expressions=[ref]))]
            row = _run(database, exp.select(*counts).from_(source), timeout_s, 1)[0]
        except QueryError as err:
            profile.notes.append(f"table {name} left out: its counts failed ({err.message})")
            continue
        table.rows = int(row[0] or 0)
        for i, col in enumerate(table.columns):
            col.table_rows, col.non_null, col.distinct = table.rows, int(row[1 + 2 * i] or 0), \
                int(row[2 + 2 * i] or 0)
    keyed = {(fk.table, c) for fk in profile.foreign_keys for c in fk.columns}
    keyed |= {(fk.ref_table, c) for fk in profile.foreign_keys for c in fk.ref_columns}
    for table in profile.tables.values():
        for col in table.columns:
            col.is_key = (col.name in table.primary_key or (table.name, col.name) in keyed
                          or bool(re.search(r"(^|_)[iI][dD]$|[a-z]ID$", col.name)))
            if not table.rows or not col.non_null:
                col.kind = _kind(col.type, [])
                continue
            ref = exp.Column(this=ident(col.name, dialect))
            query = (exp.select(ref).distinct().from_(exp.Table(this=ident(table.name, dialect)))
                     .where(exp.Not(this=exp.Is(this=ref.copy(), expression=exp.Null())))
                     .order_by(ref.copy()))
            try:
                values = _run(database, query, timeout_s, sample_rows)
            except QueryError as err:
                profile.notes.append(f"column {table.name}.{col.name}: no values "
                                     f"({err.message})")
                values = []
            col.values = [v[0] for v in values if v[0] is not None]
            col.kind = _kind(col.type, col.values)
            if col.kind == "other":
                col.values = []  # no filter on booleans, binary or JSON
    for table in profile.usable_tables():
        pair = table.name_pair()
        if pair is not None:
            refs = [exp.Column(this=ident(c.name, dialect)) for c in pair]
            query = (exp.select(*refs).distinct().from_(exp.Table(this=ident(table.name,
                                                                            dialect)))
                     .where(exp.and_(*[exp.Not(this=exp.Is(this=r.copy(), expression=exp.Null()))
                                       for r in refs])).order_by(*[r.copy() for r in refs]))
            try:
                table.full_names = [(str(a), str(b)) for a, b in _run(
                    database, query, timeout_s, sample_rows) if str(a).strip() and str(b).strip()]
            except QueryError as err:
                profile.notes.append(f"table {table.name}: no full names ({err.message})")
    if not profile.usable_tables():
        raise QueryCraftError(
            f"Every table of {database.name} is empty or unreadable, so no query can return "
            "rows: load data into it first (service=ingest ingest.load.csv=<file>)."
            + (f" ({'; '.join(profile.notes[:3])})" if profile.notes else ""))
    return profile
