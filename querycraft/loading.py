"""Data ingestion: load a CSV file into a database table (SQLite, PostgreSQL, Db2, ...).

The file is read twice with the csv module, never pandas: a first pass validates it and infers
each column's type from all of its values, a second pass converts and inserts the rows in
batches inside one transaction. Nothing is written until the whole file has been checked, and
a failed load leaves the database as it was: a new table is not left behind, an appended-to
table keeps its rows, and a replaced table survives a load that fails.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import NullType
from tqdm.auto import tqdm

from querycraft.engines import Engine, engine_for_sqlalchemy
from querycraft.errors import QueryCraftError

__all__ = [
    "DEFAULT_NULL_VALUES",
    "KINDS",
    "ColumnSpec",
    "LoadReport",
    "infer_columns",
    "load_csv_table",
    "table_for",
]

log = logging.getLogger("querycraft")

DEFAULT_NULL_VALUES: tuple[str, ...] = ("", "NULL", "null", "NaN", "nan", "None")
KINDS = ("boolean", "integer", "bigint", "float", "date", "timestamp", "text")

# A database QueryCraft has no engine module for gets the cautious defaults: VARCHAR(n) text,
# lower-case names, declared types enforced.
_OTHER_ENGINE = Engine(kind="other", dialect="", prompt_name="SQL", sqlalchemy_names=())


def _engine(dialect_name: str) -> Engine:
    """The engine whose SQLAlchemy dialect is ``dialect_name``: its loader column types."""
    return engine_for_sqlalchemy(dialect_name) or _OTHER_ENGINE


_TRUE_WORDS = frozenset({"true", "t", "yes"})
_FALSE_WORDS = frozenset({"false", "f", "no"})
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
# ASCII digits only: Python's int() and float() also accept other scripts' digits and "1_000".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# "007", "-01.5": identifiers and zip codes whose leading zeros a number would lose.
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]", re.ASCII)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?",
    re.ASCII,
)
# Which single-value kinds widen to which column kind (anything else mixed becomes text).
_NUMERIC_RANK = {"integer": 0, "bigint": 1, "float": 2}


@dataclass(frozen=True)
class ColumnSpec:
    """One CSV column as inferred from all of its values.

    Attributes:
        name: The column's name as in the CSV header (surrounding spaces removed).
        kind: One of ``KINDS``: "boolean", "integer", "bigint", "float", "date", "timestamp"
            or "text".
        max_length: The longest non-null value, in characters as written in the file (sizes
            VARCHAR(n) on databases that need a length).
        nulls: How many cells were NULL (their exact content was one of the null values).
    """

    name: str
    kind: str
    max_length: int
    nulls: int


@dataclass(frozen=True)
class LoadReport:
    """What ``load_csv_table`` did.

    Attributes:
        table: The table loaded, as named in the database.
        rows: Rows inserted.
        columns: The CSV's columns as inferred.
        created: The table did not exist and was created.
        replaced: ``if_exists="replace"`` swapped an existing table for the loaded one.
        seconds: Wall-clock time of the whole load, reading the file included.
    """

    table: str
    rows: int
    columns: list[ColumnSpec]
    created: bool
    replaced: bool
    seconds: float


# ----------------------------------------------------------------------------------------------
# Single values
# ----------------------------------------------------------------------------------------------


def _parse_date(text: str) -> dt.date | None:
    match = _DATE.fullmatch(text)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:  # 2021-02-30, month 13, year 0000
        return None


def _parse_timestamp(text: str) -> dt.datetime | None:
    # Parsed by hand rather than with fromisoformat: Python 3.10's accepts only 3 or 6
    # fraction digits, and later versions also accept forms (zones, week dates) we keep as text.
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        return dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                           int(second or 0), int((fraction or "0").ljust(6, "0")))
    except ValueError:
        return None


def _value_kind(raw: str) -> str:
    """The narrowest kind that holds one non-null value (tested without surrounding spaces)."""
    value = raw.strip()
    lowered = value.lower()
    if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
        return "boolean"
    if _INTEGER.fullmatch(value):
        # Length first: int() refuses very long digit strings, and they fit nothing anyway.
        if _LEADING_ZERO.match(value) or len(value) > 20:
            return "text"
        number = int(value)
        if _INT32[0] <= number <= _INT32[1]:
            return "integer"
        # Larger than 64 bits: text keeps every digit, where a float would round them.
        return "bigint" if _INT64[0] <= number <= _INT64[1] else "text"
    if _FLOAT.fullmatch(value):
        if _LEADING_ZERO.match(value):
            return "text"
        return "float" if math.isfinite(float(value)) else "text"
    if _parse_date(value) is not None:
        return "date"
    if _parse_timestamp(value) is not None:
        return "timestamp"
    return "text"


def _join(column_kind: str | None, value_kind: str) -> str:
    """The narrowest column kind that holds both (None: no value seen yet)."""
    if column_kind is None or column_kind == value_kind:
        return value_kind
    if column_kind in _NUMERIC_RANK and value_kind in _NUMERIC_RANK:
        return max(column_kind, value_kind, key=_NUMERIC_RANK.__getitem__)
    if {column_kind, value_kind} == {"date", "timestamp"}:
        return "timestamp"
    return "text"


def _to_bool(raw: str) -> bool:
    return raw.strip().lower() in _TRUE_WORDS


def _to_datetime(raw: str) -> dt.datetime:
    value = raw.strip()
    stamp = _parse_timestamp(value)
    if stamp is not None:
        return stamp
    day = _parse_date(value)
    if day is None:
        raise ValueError(f"not a date or timestamp: {raw!r}")
    return dt.datetime(day.year, day.month, day.day)


def _to_date(raw: str) -> dt.date:
    day = _parse_date(raw.strip())
    if day is None:
        raise ValueError(f"not a date: {raw!r}")
    return day


def _to_int(raw: str) -> int:
    value = raw.strip()
    lowered = value.lower()
    # Booleans only reach here when appending to an integer column (Db2 and MySQL reflect
    # their BOOLEAN as a small integer).
    if lowered in _TRUE_WORDS:
        return 1
    if lowered in _FALSE_WORDS:
        return 0
    return int(value)


_KIND_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "boolean": _to_bool,
    "integer": _to_int,
    "bigint": _to_int,
    "float": lambda raw: float(raw.strip()),
    "date": _to_date,
    "timestamp": _to_datetime,
    "text": lambda raw: raw,  # text is stored exactly as written, spaces included
}


# ----------------------------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------------------------


def _first_bad_utf8(path: Path) -> tuple[int, bytes]:
    """The line number and bytes of the first invalid UTF-8 sequence in the file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as raw:
        for number, line in enumerate(raw, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as err:
                return number, line[err.start:err.end]
    return 0, b""


def _read_records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Every non-blank record with the line it starts on, as QueryCraftError on bad input."""
    # Kept apart from ingest's CSV reader: this one streams (read twice), reports start lines.
    try:
        # utf-8-sig drops the byte-order mark that Excel writes; newline="" lets the csv
        # module see line breaks inside quoted values.
        with path.open(encoding="utf-8-sig", newline="") as file:
            # strict: a stray quote ('"abc"def', or one never closed) is an error, not a
            # silently merged value.
            reader = csv.reader(file, delimiter=delimiter, strict=True)
            line = 1
            while True:
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    raise QueryCraftError(
                        f"{path}: the record starting on line {line} is not valid CSV ({err}). "
                        "Check its quotes: a value that contains the delimiter, a quote or a "
                        "line break must be enclosed in double quotes, with inner quotes "
                        'doubled ("").'
                    ) from err
                if record:  # blank lines carry no data
                    yield line, record
                line = reader.line_num + 1
    except UnicodeDecodeError as err:
        number, bad = _first_bad_utf8(path)
        where = f"line {number} has bytes ({bad.hex(' ')})" if number else "it has bytes"
        raise QueryCraftError(
            f"{path} is not valid UTF-8: {where} that UTF-8 cannot decode, so the file was "
            "probably saved in another encoding (such as Windows-1252 or Latin-1). Re-save "
            "it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and load it again."
        ) from err
    except OSError as err:
        raise QueryCraftError(
            f"Cannot read {path}: {err.strerror or err}. Check the path and its permissions."
        ) from err


def _header(path: Path, records: Iterator[tuple[int, list[str]]]) -> list[str]:
    first = next(records, None)
    if first is None:
        raise QueryCraftError(
            f"{path} has no header row (it holds only blank lines). The first line must name "
            "the columns, e.g. id,name,price."
        )
    line, names = first
    names = [name.strip() for name in names]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise QueryCraftError(
                f"{path}: column {position} of the header (line {line}) has no name. Give "
                "every column a name in the first line of the file."
            )
        # Case-insensitive: PostgreSQL folds unquoted names, and Db2 upper-cases them.
        folded = name.casefold()
        if folded in seen:
            other = names[seen[folded] - 1]
            raise QueryCraftError(
                f"{path}: the header (line {line}) names two columns {other!r} (column "
                f"{seen[folded]}) and {name!r} (column {position}); column names must differ "
                "even ignoring case. Rename one of them."
            )
        seen[folded] = position
    return names


def _data_records(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header, and the data records each checked to have as many fields as the header."""
    records = _read_records(path, delimiter)
    names = _header(path, records)

    def checked() -> Iterator[tuple[int, list[str]]]:
        for line, record in records:
            if len(record) != len(names):
                raise QueryCraftError(
                    f"{path}: line {line} has {len(record)} field(s) but the header has "
                    f"{len(names)} column(s). Look for a missing or extra {delimiter!r}, or a "
                    "value containing the delimiter that should be enclosed in double quotes."
                )
            yield line, record

    return names, checked()


def _check_path(csv_path: str | Path) -> Path:
    path = Path(csv_path).expanduser()
    if not path.exists():
        raise QueryCraftError(f"CSV file {path} does not exist. Check the path.")
    if not path.is_file():
        raise QueryCraftError(f"{path} is not a file. Give the path of a CSV file.")
    if path.stat().st_size == 0:
        raise QueryCraftError(
            f"{path} is empty. A CSV to load needs a header line naming the columns, then rows."
        )
    return path


def _check_format(null_values: Sequence[str], delimiter: str) -> frozenset[str]:
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise QueryCraftError(
            f"delimiter must be one character other than a quote or a line break, not "
            f"{delimiter!r}. Use ',' (the default), ';' or '\\t'."
        )
    if isinstance(null_values, str) or not all(isinstance(v, str) for v in null_values):
        raise QueryCraftError(
            f"null_values must be a list of strings, such as ['', 'NULL'], not {null_values!r}."
        )
    return frozenset(null_values)


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    """What the first pass learns about one column."""

    name: str
    kind: str | None = None
    max_length: int = 0
    nulls: int = 0
    values: int = 0
    low: int | None = None  # integer range, for appending to narrower integer columns
    high: int | None = None

    def spec(self) -> ColumnSpec:
        # No value at all: text is the one kind that takes anything appended later.
        return ColumnSpec(self.name, self.kind or "text", self.max_length, self.nulls)


@dataclass
class _Scan:
    path: Path
    names: list[str]
    stats: list[_Stats]
    rows: int

    @property
    def specs(self) -> list[ColumnSpec]:
        return [stat.spec() for stat in self.stats]


def _scan(path: Path, nulls: frozenset[str], delimiter: str) -> _Scan:
    names, records = _data_records(path, delimiter)
    stats = [_Stats(name) for name in names]
    rows = 0
    for _line, record in records:
        rows += 1
        for stat, raw in zip(stats, record, strict=True):
            if raw in nulls:
                stat.nulls += 1
                continue
            stat.values += 1
            stat.max_length = max(stat.max_length, len(raw))
            if stat.kind == "text":
                continue  # nothing widens text: skip the type tests
            kind = _value_kind(raw)
            stat.kind = _join(stat.kind, kind)
            if kind in ("integer", "bigint"):
                number = int(raw.strip())
                stat.low = number if stat.low is None else min(stat.low, number)
                stat.high = number if stat.high is None else max(stat.high, number)
    return _Scan(path, names, stats, rows)


def infer_columns(
    csv_path: str | Path,
    *,
    null_values: Sequence[str] = DEFAULT_NULL_VALUES,
    delimiter: str = ",",
) -> tuple[list[ColumnSpec], int]:
    """Read the whole CSV once and infer each column's type from all of its non-null values.

    Kinds, narrowest first: boolean (true/false/t/f/yes/no, any case; not 0/1), integer (signed
    32-bit), bigint (signed 64-bit), float (finite decimals and exponents; not inf/nan), date
    (YYYY-MM-DD), timestamp (YYYY-MM-DD HH:MM[:SS[.ffffff]], with a space or a T), else text.
    Integers with a leading zero ("007") and integers beyond 64 bits are text, to keep every
    character. Values are tested without surrounding spaces. A column without a single
    non-null value is text.

    Args:
        csv_path: A UTF-8 CSV file (a byte-order mark is allowed) whose first line is a header.
        null_values: Cell contents (compared exactly) that mean NULL.
        delimiter: The one-character field separator.

    Returns:
        The column specs in header order, and the number of data rows (blank lines skipped).

    Raises:
        QueryCraftError: The file is missing, empty, not UTF-8, not valid CSV, has a blank or
            duplicate header name, or a row whose field count differs from the header's.
    """
    scan = _scan(_check_path(csv_path), _check_format(null_values, delimiter), delimiter)
    return scan.specs, scan.rows


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def _sql_type(spec: ColumnSpec, dialect_name: str) -> sqlalchemy.types.TypeEngine:
    if spec.kind == "text":
        # Unbounded TEXT only where it compares with '=' like VARCHAR (Db2's CLOB does not).
        if _engine(dialect_name).text_type_comparable:
            return sqlalchemy.Text()
        return sqlalchemy.String(max(1, spec.max_length))
    return {
        "boolean": sqlalchemy.Boolean,
        "integer": sqlalchemy.Integer,
        "bigint": sqlalchemy.BigInteger,
        "float": sqlalchemy.Double,
        "date": sqlalchemy.Date,
        "timestamp": sqlalchemy.DateTime,
    }[spec.kind]()


def table_for(
    specs: Sequence[ColumnSpec],
    table: str,
    metadata: sqlalchemy.MetaData,
    dialect_name: str,
    schema: str | None = None,
) -> sqlalchemy.Table:
    """The table that holds a CSV with these columns, typed for one database.

    Text is TEXT where the engine compares TEXT with '=' (``Engine.text_type_comparable``:
    SQLite, PostgreSQL, ...) and VARCHAR(n) elsewhere (n: the longest value, at least 1),
    because Db2's TEXT/CLOB cannot be compared with '='.

    Args:
        specs: The columns, as ``infer_columns`` returns them.
        table: The table's name.
        metadata: Where the table is defined.
        dialect_name: ``engine.dialect.name``: "sqlite", "postgresql", "ibm_db_sa", ...
        schema: The schema to create it in (None: the connection's default).

    Returns:
        A ``sqlalchemy.Table`` without keys or constraints; every column is nullable.
    """
    columns = [sqlalchemy.Column(server_name(spec.name, dialect_name),
                                 _sql_type(spec, dialect_name), nullable=True)
               for spec in specs]
    return sqlalchemy.Table(server_name(table, dialect_name), metadata, *columns, schema=schema)


def server_name(name: str, dialect_name: str) -> str:
    """The name a new table or column gets: lower-cased on servers, so that SQL written
    without quotes finds it (PostgreSQL folds unquoted names to lower case, Db2 to upper case,
    and SQLAlchemy leaves lower-case names unquoted); kept as written on SQLite, which
    compares names without regard to case anyway."""
    return name if _engine(dialect_name).keeps_name_case else name.lower()


# What each kind of existing column accepts, judged value by value.
_ACCEPTS: dict[str, frozenset[str]] = {
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"boolean", "integer", "bigint"}),
    "float": frozenset({"integer", "bigint", "float"}),
    "decimal": frozenset({"integer", "bigint", "float"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date", "timestamp"}),
}


@dataclass
class _Target:
    """An existing column a CSV column is appended to, and how to convert values for it."""

    stat: _Stats
    column: sqlalchemy.Column
    category: str  # a key of _ACCEPTS, or "string", "any" (untyped), "other"
    int_range: tuple[int, int] | None = None
    max_chars: int | None = None

    def accepts(self, raw: str) -> bool:
        if self.category in ("any", "other"):
            return True
        if self.category == "string":
            return self.max_chars is None or len(raw) <= self.max_chars
        kind = _value_kind(raw)
        if kind not in _ACCEPTS[self.category]:
            return False
        if self.int_range and kind in ("integer", "bigint"):
            return self.int_range[0] <= int(raw.strip()) <= self.int_range[1]
        return True

    def fits_without_looking(self) -> bool:
        """Whether the column's inferred kind and range prove every value fits."""
        stat = self.stat
        if stat.values == 0 or self.category in ("any", "other"):
            return True
        if self.category == "string":
            return self.max_chars is None or stat.max_length <= self.max_chars
        if stat.kind not in _ACCEPTS[self.category]:
            return False
        if self.int_range and stat.low is not None and stat.high is not None:
            return self.int_range[0] <= stat.low and stat.high <= self.int_range[1]
        return True

    def converter(self) -> Callable[[str], Any]:
        if self.category == "any":  # untyped (SQLite): store what a new table would
            return _KIND_CONVERTERS[self.stat.kind or "text"]
        return {
            "boolean": _to_bool,
            "integer": _to_int,
            "float": lambda raw: float(raw.strip()),
            "decimal": lambda raw: Decimal(raw.strip()),  # exact digits for NUMERIC(p, s)
            "date": _to_date,
            "datetime": _to_datetime,
        }.get(self.category, _KIND_CONVERTERS["text"])  # strings, and types we let the
        # database parse (time, interval, uuid, ...), get the text as written


def _target(stat: _Stats, column: sqlalchemy.Column, dialect_name: str) -> _Target:
    sql_type = column.type
    if isinstance(sql_type, NullType):
        return _Target(stat, column, "any")
    if isinstance(sql_type, sqlalchemy.Boolean):
        return _Target(stat, column, "boolean")
    if isinstance(sql_type, sqlalchemy.Integer):
        if _engine(dialect_name).loose_column_types or isinstance(sql_type,
                                                                  sqlalchemy.BigInteger):
            bounds = _INT64  # SQLite's INTEGER is 64-bit whatever the declared name
        elif isinstance(sql_type, sqlalchemy.SmallInteger):
            bounds = (-(2**15), 2**15 - 1)
        else:
            bounds = _INT32
        return _Target(stat, column, "integer", int_range=bounds)
    if isinstance(sql_type, sqlalchemy.Float):
        return _Target(stat, column, "float")
    if isinstance(sql_type, sqlalchemy.Numeric):
        return _Target(stat, column, "decimal")
    if isinstance(sql_type, sqlalchemy.DateTime):
        return _Target(stat, column, "datetime")
    if isinstance(sql_type, sqlalchemy.Date):
        return _Target(stat, column, "date")
    if isinstance(sql_type, sqlalchemy.String):
        # SQLite ignores VARCHAR lengths, so only other databases would refuse a long value.
        length = getattr(sql_type, "length", None)
        return _Target(stat, column, "string",
                       max_chars=None if _engine(dialect_name).loose_column_types else length)
    return _Target(stat, column, "other")


def _type_name(column: sqlalchemy.Column, dialect: sqlalchemy.Dialect) -> str:
    try:
        return column.type.compile(dialect=dialect)
    except sa_exc.SQLAlchemyError:
        return type(column.type).__name__


def _append_targets(
    scan: _Scan, existing: sqlalchemy.Table, null_set: frozenset[str], delimiter: str,
    dialect: sqlalchemy.Dialect,
) -> list[_Target]:
    """Map CSV columns onto the table's, refusing a different shape or values that won't fit."""
    by_name = {column.name.casefold(): column for column in existing.columns}
    csv_folded = {name.casefold() for name in scan.names}
    missing = [name for name in scan.names if name.casefold() not in by_name]
    extra = [column.name for column in existing.columns if column.name.casefold() not in csv_folded]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"the table has no column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"the CSV has no column(s) {', '.join(extra)}")
        raise QueryCraftError(
            f"Cannot append {scan.path} to table {existing.name}: {'; '.join(parts)}. Refusing "
            "to append silently to a table of a different shape. Make the CSV header match the "
            "table's columns (any order, any case), or load into another table, or use "
            "if_exists='replace'."
        )
    targets = [_target(stat, by_name[stat.name.casefold()], dialect.name) for stat in scan.stats]
    doubtful = [i for i, target in enumerate(targets) if not target.fits_without_looking()]
    if not doubtful:
        return targets
    # Look at the values themselves: the column's kind may be wider than every one of them
    # (true/false mixed with integers is text, yet each fits an INTEGER column).
    examples: dict[int, tuple[int, str]] = {}
    _names, records = _data_records(scan.path, delimiter)
    for line, record in records:
        for index in doubtful:
            raw = record[index]
            if index not in examples and raw not in null_set and not targets[index].accepts(raw):
                examples[index] = (line, raw)
        if len(examples) == len(doubtful):
            break
    if examples:
        problems = []
        for index, (line, raw) in sorted(examples.items()):
            target = targets[index]
            if target.category == "string":
                what = "longer than the column allows"
            elif _value_kind(raw) in _ACCEPTS[target.category]:
                what = "outside the column's range"
            else:
                what = f"inferred as {target.stat.kind or 'text'}"
            problems.append(
                f"CSV column {target.stat.name!r} goes into {target.column.name} "
                f"{_type_name(target.column, dialect)} but its values are {what}, e.g. "
                f"{raw!r} on line {line}"
            )
        raise QueryCraftError(
            f"Cannot append {scan.path} to table {existing.name}: {'; '.join(problems)}. "
            "Fix those values, or load into a new table (or use if_exists='replace') so that "
            "the column types come from the CSV."
        )
    return targets


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


class _BatchFailed(Exception):
    """An insert failed; carries the CSV line of the failing row (or its batch's first)."""

    def __init__(self, line: int, exact: bool, cause: sa_exc.SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.line = line
        self.exact = exact
        self.cause = cause


def _db_message(err: BaseException) -> str:
    """The database's own message, first line only (SQLAlchemy appends SQL and parameters)."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _transaction(engine: sqlalchemy.Engine) -> Iterator[sqlalchemy.Connection]:
    """``engine.begin()``, made to cover DDL on SQLite too.

    The sqlite3 driver opens a transaction only before INSERT/UPDATE/DELETE, so a CREATE,
    DROP or ALTER issued first would commit on its own and survive a rollback. An explicit
    BEGIN makes it transactional (SQLite's DDL is), without changing the caller's engine.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            dbapi_connection = conn.connection.dbapi_connection
            if not getattr(dbapi_connection, "in_transaction", True):
                conn.exec_driver_sql("BEGIN")
        yield conn


def _insert_batch(conn: sqlalchemy.Connection, insert: Any, rows: list[dict[str, Any]],
                  lines: list[int]) -> None:
    try:
        # A savepoint per batch: after a failure the transaction is still usable (PostgreSQL
        # aborts it otherwise), so the failing row can be found before everything rolls back.
        with conn.begin_nested():
            conn.execute(insert, rows)
        return
    except sa_exc.SQLAlchemyError as batch_error:
        failure = _BatchFailed(lines[0], False, batch_error)
    try:
        for row, line in zip(rows, lines, strict=True):
            try:
                with conn.begin_nested():
                    conn.execute(insert, [row])
            except sa_exc.DBAPIError as row_error:
                failure = _BatchFailed(line, True, row_error)
                break
    except sa_exc.SQLAlchemyError:
        pass  # the connection itself failed: report the batch
    raise failure


def _insert_all(
    conn: sqlalchemy.Connection, table: sqlalchemy.Table, scan: _Scan,
    converters: list[tuple[str, Callable[[str], Any]]], null_set: frozenset[str],
    delimiter: str, batch_rows: int, progress: bool,
) -> int:
    insert = table.insert()
    inserted = 0
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    _names, records = _data_records(scan.path, delimiter)
    with tqdm(total=scan.rows, unit="rows", desc=f"loading {table.name}",
              disable=not progress) as bar:
        for line, record in records:
            try:
                row = {key: None if raw in null_set else convert(raw)
                       for (key, convert), raw in zip(converters, record, strict=True)}
            except ValueError as err:  # only if the file changed since it was read
                raise QueryCraftError(
                    f"{scan.path}, line {line}: {err}. The file changed while it was being "
                    "loaded; nothing was written. Load it again once it is no longer written to."
                ) from err
            rows.append(row)
            lines.append(line)
            if len(rows) >= batch_rows:
                _insert_batch(conn, insert, rows, lines)
                inserted += len(rows)
                bar.update(len(rows))
                rows, lines = [], []
        if rows:
            _insert_batch(conn, insert, rows, lines)
            inserted += len(rows)
            bar.update(len(rows))
    return inserted


def _rename_sql(engine: sqlalchemy.Engine, old: str, new: str, schema: str | None) -> str:
    quote = engine.dialect.identifier_preparer
    qualified = quote.quote(old)
    if schema is not None:
        qualified = f"{quote.quote_schema(schema)}.{qualified}"
    if engine.dialect.name.startswith("ibm_db"):  # Db2 has RENAME TABLE, not ALTER ... RENAME
        return f"RENAME TABLE {qualified} TO {quote.quote(new)}"
    return f"ALTER TABLE {qualified} RENAME TO {quote.quote(new)}"


def _drop_if_left(engine: sqlalchemy.Engine, name: str, schema: str | None) -> None:
    """Drop a table this call created, if a failed load left it (non-transactional DDL)."""
    try:
        if sqlalchemy.inspect(engine).has_table(name, schema=schema):
            with engine.begin() as conn:
                sqlalchemy.Table(name, sqlalchemy.MetaData(), schema=schema).drop(conn)
    except sa_exc.SQLAlchemyError as err:
        log.warning("Could not drop the partly loaded table %s: %s. Drop it by hand.",
                    name, _db_message(err))


def _existing_table(inspector: sqlalchemy.Inspector, table: str, schema: str | None) -> str | None:
    """The table's name as stored, matching case-insensitively when no exact match exists.

    SQLAlchemy quotes mixed-case names, so "Sales" would otherwise not find the table that
    ``CREATE TABLE Sales`` made in PostgreSQL (stored as sales).
    """
    if inspector.has_table(table, schema=schema):
        return table
    names = [*inspector.get_table_names(schema=schema), *inspector.get_view_names(schema=schema)]
    folded = [name for name in names if name.casefold() == table.casefold()]
    return folded[0] if len(folded) == 1 else None


def _check_schema(inspector: sqlalchemy.Inspector, schema: str | None) -> None:
    if schema is None:
        return
    names = inspector.get_schema_names()
    if schema not in names and schema.casefold() not in {name.casefold() for name in names}:
        raise QueryCraftError(
            f"Schema {schema!r} does not exist in the database (it has: {', '.join(names)}). "
            f"Create it first (CREATE SCHEMA {schema}) or pass another schema."
        )


def _check_arguments(table: str, if_exists: str, batch_rows: int) -> None:
    if not isinstance(table, str) or not table.strip():
        raise QueryCraftError(f"The table name must be a non-empty string, not {table!r}.")
    if if_exists not in ("fail", "append", "replace"):
        raise QueryCraftError(
            f"if_exists must be 'fail', 'append' or 'replace', not {if_exists!r}."
        )
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise QueryCraftError(
            f"batch_rows must be a whole number of at least 1, not {batch_rows!r}."
        )


def load_csv_table(
    engine: sqlalchemy.Engine,
    csv_path: str | Path,
    table: str,
    *,
    schema: str | None = None,
    if_exists: Literal["fail", "append", "replace"] = "fail",
    batch_rows: int = 1000,
    null_values: Sequence[str] = DEFAULT_NULL_VALUES,
    delimiter: str = ",",
    progress: bool = True,
) -> LoadReport:
    """Load a CSV file into a database table, all rows or none.

    The whole file is read and checked first (see ``infer_columns``); only then is the
    database touched. Rows are inserted in batches of ``batch_rows`` inside one transaction,
    so a failure rolls everything back. Tables created in this call are removed again when the
    load fails, also where DDL is not transactional. "replace" loads a new table under a
    temporary name and then drops the old one and renames the new one in the same transaction,
    so the old table survives any failure.

    Args:
        engine: Where to load (SQLite, PostgreSQL, Db2 via ibm_db_sa, ...).
        csv_path: A UTF-8 CSV file whose first line names the columns.
        table: The table to load into.
        schema: The database schema of the table (None: the connection's default).
        if_exists: What to do when the table exists: "fail" refuses, "append" adds the rows
            (the table must have the CSV's columns, in any order and case, and types that hold
            its values), "replace" swaps the table for one made from the CSV.
        batch_rows: Rows per INSERT batch.
        null_values: Cell contents (compared exactly) stored as SQL NULL.
        delimiter: The one-character field separator.
        progress: Show a progress bar.

    Returns:
        A ``LoadReport``.

    Raises:
        QueryCraftError: For any problem with the file, the arguments, the existing table or
            the database; the message says what to change, and that nothing was written when
            the database refused rows.
    """
    started = time.perf_counter()
    _check_arguments(table, if_exists, batch_rows)
    null_set = _check_format(null_values, delimiter)
    scan = _scan(_check_path(csv_path), null_set, delimiter)

    try:
        inspector = sqlalchemy.inspect(engine)
        _check_schema(inspector, schema)
        existing = _existing_table(inspector, table, schema)
        reflected = (sqlalchemy.Table(existing, sqlalchemy.MetaData(), schema=schema,
                                      autoload_with=engine)
                     if existing is not None and if_exists == "append" else None)
    except sa_exc.SQLAlchemyError as err:
        raise QueryCraftError(
            f"Cannot read the database to load table {table}: {_db_message(err)}. Check the "
            "database URL, that the server is running, and your permissions."
        ) from err

    if existing is not None and if_exists == "fail":
        raise QueryCraftError(
            f"Table {existing} already exists. Pass if_exists='append' to add the CSV's rows to "
            "it, if_exists='replace' to replace it with the CSV, or load into another table name."
        )

    created = replaced = False
    if reflected is not None:  # append to the existing table
        targets = _append_targets(scan, reflected, null_set, delimiter, engine.dialect)
        target_table = reflected
        converters = [(target.column.key, target.converter()) for target in targets]
        final_name = reflected.name
        temporary = None
    else:
        created = existing is None
        replaced = existing is not None
        final_name = existing or server_name(table, engine.dialect.name)
        # The identifier stays short: PostgreSQL truncates names at 63 bytes.
        temporary = f"qc_load_{uuid.uuid4().hex[:12]}" if replaced else None
        target_table = table_for(scan.specs, temporary or final_name, sqlalchemy.MetaData(),
                                 engine.dialect.name, schema)
        converters = [(column.key, _KIND_CONVERTERS[spec.kind])
                      for column, spec in zip(target_table.columns, scan.specs, strict=True)]

    made: str | None = None  # a table this call created, to remove if the load fails
    done = False
    try:
        with _transaction(engine) as conn:
            if reflected is None:
                target_table.create(conn)
                made = target_table.name
            inserted = _insert_all(conn, target_table, scan, converters, null_set, delimiter,
                                   batch_rows, progress)
            if replaced:
                sqlalchemy.Table(final_name, sqlalchemy.MetaData(), schema=schema).drop(conn)
                conn.exec_driver_sql(_rename_sql(engine, target_table.name, final_name, schema))
        done = True
    except _BatchFailed as failure:
        where = (f"on line {failure.line}" if failure.exact
                 else f"in the batch of rows starting on line {failure.line}")
        kept = f" The existing table {final_name} is unchanged." if existing is not None else ""
        raise QueryCraftError(
            f"Loading {scan.path} into table {final_name} failed {where}: the database said "
            f"{_db_message(failure.cause)!r}. Nothing was written (the transaction was rolled "
            f"back).{kept} Fix that row or the table definition and load again."
        ) from failure.cause
    except sa_exc.SQLAlchemyError as err:
        step = "replace" if replaced else ("create" if reflected is None else "append to")
        raise QueryCraftError(
            f"Could not {step} table {final_name} from {scan.path}: the database said "
            f"{_db_message(err)!r}. Nothing was written (the transaction was rolled back)."
        ) from err
    finally:
        if not done and made is not None:
            _drop_if_left(engine, made, schema)

    seconds = time.perf_counter() - started
    action = "replaced" if replaced else ("created" if created else "appended to")
    log.info("Loaded %d rows from %s into %s (%s) in %.1fs", inserted, scan.path, final_name,
             action, seconds)
    return LoadReport(table=final_name, rows=inserted, columns=scan.specs, created=created,
                      replaced=replaced, seconds=seconds)
