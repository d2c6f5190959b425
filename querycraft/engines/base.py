"""What every database engine shares: the :class:`Engine` description, query results and
errors, and the error classifier built from every registered engine's wordings.

An engine module (``querycraft/engines/<kind>.py``) builds one :class:`Engine` and registers
it (see :mod:`querycraft.engines`); the execution layer (:mod:`querycraft.db`), the schema
reader, the CSV loader and the config check read everything engine-specific from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import sqlalchemy
from sqlglot import exp

from querycraft.engines.bounds import SizeRule, call_arguments
from querycraft.engines.syntax import (
    Quote,
    Reading,
    SqlNotReadable,
    Syntax,
    parser_disagreement,
    read_statement,
)
from querycraft.errors import QueryCraftError
from querycraft.sql import is_read_only_statement, parse_shared

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_MAX_SQL_BYTES",
    "DEFAULT_MAX_VALUE_BYTES",
    "ERROR_KINDS",
    "GENERIC_SYNTAX",
    "Engine",
    "ErrorKind",
    "QueryError",
    "QueryResult",
    "TableScope",
    "TooLarge",
    "allowed_statement",
    "check_limits",
    "function_problem",
    "function_refusal",
    "privileged_login_message",
    "relation_problem",
    "size_problem",
]

# The byte bounds' defaults: db.max_sql_bytes, db.max_value_bytes and db.max_result_bytes.
DEFAULT_MAX_SQL_BYTES = 100_000
DEFAULT_MAX_VALUE_BYTES = 65_536
DEFAULT_MAX_RESULT_BYTES = 16_777_216

# The lexical rules of an engine that does not say its own: standard SQL quoting, comments
# that might nest, ASCII only outside quotes (querycraft/engines/syntax.py).
GENERIC_SYNTAX = Syntax(
    server="the database",
    quotes=(Quote("'", "'"), Quote('"', '"', name=True)),
    nested_comments=None,
    whitespace=" \t\n\r",
    unicode_names=False,
)

ErrorKind = Literal[
    "syntax", "no_such_table", "no_such_column", "ambiguous_column", "timeout", "refused", "other"
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)


@dataclass(frozen=True)
class QueryResult:
    """The outcome of a successful query.

    Attributes:
        columns: Column names, in the order the query returned them.
        rows: The rows, each a tuple of Python values.
        truncated: True when the query had more rows than were fetched.
        elapsed_s: Wall-clock seconds spent running the query and fetching its rows.
    """

    columns: list[str]
    rows: list[tuple]
    truncated: bool
    elapsed_s: float


class QueryError(Exception):
    """A query that could not run, with the kind of failure for error statistics.

    Attributes:
        kind: One of :data:`ERROR_KINDS`.
        message: What went wrong, as the database (or the read-only check) said it.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown query error kind {kind!r}; expected one of {ERROR_KINDS}")
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class TooLarge(QueryError):
    """A statement or result over a byte bound: refused before parsing (the SQL text) or
    stopped while fetching (one value, the whole result). ``kind`` is "refused"; ``limit``
    names the bound ("sql", "value" or "result"). Every engine raises it (the execution
    layer, :mod:`querycraft.db`, for servers)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__("refused", message)
        self.limit = limit


# A server session hook: (DBAPI connection, schema or None, read_only) -> None.
SessionSetup = Callable[[Any, "str | None", bool], None]
# The login check: (DBAPI connection, schema or None) -> why the login is too privileged to
# run generated SQL (one paragraph naming the fix), or None.
PrivilegeCheck = Callable[[Any, "str | None"], "str | None"]
# The value bound on the server: (connection, statement, max_value_bytes) -> the statement to
# run instead and what to do with each of its rows (raise TooLarge, or return the row).
ValueGuard = Callable[[sqlalchemy.Connection, str, int],
                      "tuple[str, Callable[[tuple], tuple]] | None"]


@dataclass(frozen=True)
class TableScope:
    """The schemas (or, on MySQL, databases) generated SQL may name before a table.

    Attributes:
        schemas: Allowed qualifiers of ``qualifier.table``, as the server names them.
        catalogs: Allowed first parts of ``catalog.schema.table`` (the database itself).
        name_case: How the engine folds an unquoted name before looking it up: "lower"
            (PostgreSQL), "upper" (Db2) or "exact" (MySQL's database names).
    """

    schemas: frozenset[str]
    catalogs: frozenset[str] = frozenset()
    name_case: str = "exact"

    def fold(self, identifier: exp.Identifier | str) -> str:
        if isinstance(identifier, exp.Identifier):
            if identifier.quoted:
                return identifier.this
            identifier = identifier.this
        if self.name_case == "lower":
            return identifier.lower()
        return identifier.upper() if self.name_case == "upper" else identifier


@dataclass(frozen=True)
class Engine:
    """One database engine, as data: everything the rest of QueryCraft needs to know.

    Attributes:
        kind: ``db.kind``, the name of ``conf/db/<kind>.yaml`` and of the engine's module.
        dialect: The sqlglot dialect its SQL is checked, corrected and written in.
        prompt_name: How a prompt names the dialect ("PostgreSQL").
        sqlalchemy_names: The ``engine.dialect.name`` values of its SQLAlchemy dialects; the
            CSV loader and the schema reader, which see only a SQLAlchemy engine, find the
            Engine by them.
        is_server: False for a file opened in-process (SQLite); True for a server reached
            through SQLAlchemy with :attr:`driver` (the execution layer's ``ServerDatabase``).
        driver: The default SQLAlchemy drivername of the URL built from ``db.host`` etc.
        default_port: The port when ``db.port`` is not set.
        install: What to install when the driver is missing.
        error_patterns: Regular-expression alternatives, per error kind, for the engine's own
            wording of an error; :func:`querycraft.engines.classify_error` tries them all.
        connect_args: Driver connect arguments from ``db.connect_timeout_s``.
        session_setup: Run on every new DBAPI connection: the session's read-only guard (when
            ``read_only``) and the schema (search path / current schema / database).
        query_setup: Run before each query on its connection: a read-only transaction, the
            statement time limit (seconds) and, where the server has one, a row cap.
        query_teardown: Run after each query's rollback: reset the session so that nothing a
            query did (settings, advisory or user locks, variables) survives into the next use
            of the pooled connection (PostgreSQL ``DISCARD ALL``, MariaDB/MySQL a connection
            reset), then apply the session setup again.
        privilege_problem: Run on every new connection that will run generated SQL: why the
            login is too privileged for it (a superuser, a role that can write, read server
            files or signal other sessions), or None. The layer refuses to go on with that
            message unless ``db.allow_privileged`` is true.
        allowed_functions: The functions generated SQL may call, lower case (aggregates,
            string, date, math, casts, conditionals): any other function, known to sqlglot or
            not, is refused with its name. None: no function allow-list (SQLite, whose
            authorizer allows functions one by one).
        system_relations: A regular expression for tables generated SQL may not name
            (``schema.table`` or ``table``, lower case): the server's catalogue and settings.
        check_statement: Compile one statement without running it (raises the DBAPI error);
            None: ``EXPLAIN <statement>``.
        refuse: An engine-specific addition to the shared allow-list: the reason a statement,
            as the server reads it (:class:`~querycraft.engines.syntax.Reading`), must not
            run on this engine (MySQL's ``INTO OUTFILE``, variables), or None.
        syntax: Its lexical rules (comments, whitespace, quoting and escapes), as data: every
            statement is read by them and rebuilt without comments before it is checked
            (:mod:`querycraft.engines.syntax`).
        size_rules: The allowed functions whose result size is one of their arguments
            (``repeat``, ``lpad``, ``printf``), by the call's lower-case name (sqlglot's own
            name for a function it knows: ``pad`` for ``lpad``/``rpad``, ``format``): a call
            whose size is not a number in the query, or is over ``db.max_value_bytes``, is
            refused (:mod:`querycraft.engines.bounds`).
        value_guard: Bounds every value on the server, while the result streams: the
            statement is wrapped so that a value over ``db.max_value_bytes`` never reaches
            the client (PostgreSQL, which otherwise sends a value whole). None: values are
            measured as they arrive.
        name_case: How it folds unquoted names: "lower", "upper" or "exact".
        default_schema: The schema tables are found in when ``db.schema`` is not set, from
            the URL (PostgreSQL: public; Db2: the user's); None: none besides the database.
        database_qualifies: A database name qualifies a table like a schema (MySQL's
            ``sales.orders``).
        is_connection_error: Whether a DBAPI error is about reaching the database (not the
            query); None: SQLSTATE classes 08/28/3D, else the DBAPI error class.
        text_type_comparable: The loader's text columns: unbounded TEXT when the engine
            compares it with '=' like VARCHAR, else VARCHAR(n) sized from the data.
        keeps_name_case: New tables and columns keep the CSV's case (SQLite compares names
            without regard to case); servers get lower-case names, which unquoted SQL finds.
        loose_column_types: Any value fits any column (SQLite's type affinity): the loader's
            append check ignores declared lengths and integer widths.
        fetch_first: Row limits in the schema reader's sampling queries are written
            ``FETCH FIRST n ROWS ONLY`` (old Db2 servers refuse ``LIMIT``).
    """

    kind: str
    dialect: str
    prompt_name: str
    sqlalchemy_names: tuple[str, ...]
    is_server: bool = True
    driver: str | None = None
    default_port: int | None = None
    install: str = "pip"
    error_patterns: Mapping[ErrorKind, str] = field(default_factory=dict)
    connect_args: Callable[[float], dict[str, Any]] | None = None
    session_setup: SessionSetup | None = None
    query_setup: Callable[[sqlalchemy.Connection, float, int], None] | None = None
    query_teardown: Callable[[sqlalchemy.Connection], None] | None = None
    check_statement: Callable[[sqlalchemy.Connection, str], None] | None = None
    refuse: Callable[[Reading], str | None] | None = None
    syntax: Syntax = GENERIC_SYNTAX
    size_rules: Mapping[str, SizeRule] = field(default_factory=dict)
    value_guard: ValueGuard | None = None
    name_case: str = "exact"
    default_schema: Callable[[sqlalchemy.URL], str | None] | None = None
    database_qualifies: bool = False
    privilege_problem: PrivilegeCheck | None = None
    allowed_functions: frozenset[str] | None = None
    system_relations: str | None = None
    is_connection_error: Callable[[BaseException], bool] | None = None
    text_type_comparable: bool = False
    keeps_name_case: bool = False
    loose_column_types: bool = False
    fetch_first: bool = False


# Functions every SQL dialect here spells the same way and a question may need: aggregates,
# window functions, string, date, math, casts and conditionals. Each engine's allow-list is
# this plus its own (``allowed_functions``); sqlglot's canonical names for syntax it parses as
# a function call (CASE, CAST, EXISTS, ...) are included.
COMMON_FUNCTIONS: frozenset[str] = frozenset({
    # aggregates and window functions
    "count", "sum", "avg", "min", "max", "stddev", "stddev_pop", "stddev_samp", "variance",
    "var_pop", "var_samp", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist",
    "ntile", "lag", "lead", "first_value", "last_value", "nth_value", "group_concat",
    # conditionals, casts, predicates sqlglot models as calls
    "case", "if", "coalesce", "nullif", "greatest", "least", "cast", "try_cast", "exists",
    "any", "all", "some", "in", "between",
    # strings
    "length", "char_length", "character_length", "octet_length", "lower", "upper", "trim",
    "ltrim", "rtrim", "substr", "substring", "left", "right", "concat", "concat_ws",
    "replace", "position", "str_position", "lpad", "rpad", "pad", "reverse", "repeat",
    "initcap", "translate", "ascii", "chr", "char", "regexp_replace", "regexp_like",
    "regexp_substr", "regexp_extract", "regexp_instr", "split_part", "starts_with",
    "startswith", "ends_with",
    # dates and times
    "current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
    "extract", "year", "month", "day", "quarter", "week", "hour", "minute", "second",
    "dayofweek", "dayofmonth", "dayofyear", "date", "time", "timestamp", "date_trunc",
    "timestamp_trunc", "date_add", "date_sub", "datediff", "date_diff", "timestamp_add",
    "timestamp_sub", "timestampdiff", "timestamp_diff", "ts_or_ds_to_date",
    "ts_or_ds_to_timestamp", "ts_or_ds_add", "ts_or_ds_diff", "str_to_date", "str_to_time",
    "time_to_str", "to_char", "to_date", "to_timestamp", "to_number", "last_day",
    "date_from_parts", "make_date", "unix_to_time", "time_to_unix", "str_to_unix",
    "date_str_to_date", "date_to_date_str", "ts_or_ds_to_date_str", "monthname", "dayname",
    # numbers
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "truncate", "mod", "power", "pow",
    "sqrt", "cbrt", "exp", "ln", "log", "log2", "log10", "sign", "pi", "div", "degrees",
    "radians", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "rand", "random",
    "safe_divide", "width_bucket",
})

# The allow-list's own refusals and wordings several engines share; each engine adds its own.
COMMON_ERROR_PATTERNS: dict[ErrorKind, str] = {
    "timeout": r"\binterrupted\b|timed? ?out",
    "refused": r"read-only|only read-only|only select|several statements|"
               r"one statement at a time",
    "no_such_table": r"table .* does not exist",
    "syntax": r"syntax error",
}
# The order kinds are tried in: a timeout or a refusal may mention a table or column too.
KIND_ORDER: tuple[ErrorKind, ...] = ("timeout", "refused", "ambiguous_column", "no_such_table",
                                     "no_such_column", "syntax")


def compile_error_patterns(engines: list[Engine]) -> list[tuple[ErrorKind, re.Pattern[str]]]:
    """One case-insensitive pattern per kind: the common wording plus every engine's."""
    compiled = []
    for kind in KIND_ORDER:
        parts = [p for p in (COMMON_ERROR_PATTERNS.get(kind),
                             *(e.error_patterns.get(kind) for e in engines)) if p]
        if parts:
            compiled.append((kind, re.compile("|".join(parts), re.IGNORECASE)))
    return compiled


def check_limits(timeout_s: float, max_rows: int) -> None:
    """Refuse a time limit or row cap that is not positive."""
    if not timeout_s > 0:
        raise QueryCraftError(f"The query time limit must be positive seconds, not {timeout_s}.")
    if max_rows < 1:
        raise QueryCraftError(f"The row cap must be at least 1, not {max_rows}.")


def allowed_statement(sql: str, engine: Engine, *,
                      max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
                      scope: TableScope | None = None) -> str:
    """The one statement to run, once it passed the allow-list; else a QueryError.

    First the statement is read as the engine's server reads it and rebuilt without comments
    (:func:`querycraft.engines.syntax.read_statement`; refused where the readings could
    differ), and sqlglot's tokenizer must agree with that reading. Everything after looks at
    the rebuilt text, which is also exactly what is returned, to be sent to the server: the
    engine's own refusals, the shared allow-list (:func:`querycraft.sql.is_read_only_statement`,
    in the engine's dialect), the function allow-list, the size bounds of functions that build
    values (``max_value_bytes``), system tables and, with ``scope``, tables of other schemas.
    """
    try:
        reading = read_statement(sql, engine.syntax)
    except SqlNotReadable as err:
        raise QueryError("syntax" if err.syntax else "refused", str(err)) from None
    statement = reading.statement
    why = parser_disagreement(reading, engine.dialect)
    if why is None and engine.refuse is not None:
        why = engine.refuse(reading)
    if why:
        raise QueryError("refused", why)
    ok, reason = is_read_only_statement(statement, engine.dialect)
    if not ok:
        raise QueryError("syntax" if reason.startswith("syntax error") else "refused", reason)
    tree = parse_shared(statement, engine.dialect)[0]  # parsed above: it parses
    why = function_problem(tree, engine) or relation_problem(tree, engine, scope)
    if why:
        raise QueryError("refused", why)
    why = size_problem(tree, engine, max_value_bytes)
    if why:
        raise TooLarge("value", why)
    return statement


_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _function_names(node: exp.Func, dialect: str) -> tuple[str, ...]:
    """The names one function call goes by: an unknown function's own name; for one sqlglot
    knows, its canonical name and the name it is written with in ``dialect``."""
    if isinstance(node, exp.Anonymous):
        return (str(node.name).lower(),)
    head = _HEAD.match(node.sql(dialect))
    return tuple(dict.fromkeys(
        n for n in ((head.group(0).lower() if head else ""), node.sql_name().lower()) if n))


def function_problem(tree: exp.Expression, engine: Engine) -> str | None:
    """Why a parsed statement calls a function that is not on the engine's allow-list, or
    None: every call (sqlglot's known functions and ``Anonymous`` ones) is looked up."""
    allowed = engine.allowed_functions
    if allowed is None:
        return None
    for node in tree.walk():
        # sqlglot models operators (AND, ||, %, NOT) as functions too: not calls.
        if isinstance(node, exp.Func) and not isinstance(node, exp.Binary | exp.Unary):
            names = _function_names(node, engine.dialect)
            if not any(n in allowed for n in names):
                return function_refusal(names[0], engine.prompt_name)
    return None


def function_refusal(name: str, engine_name: str) -> str:
    """Why a call of ``name`` is refused: it is not on the engine's function allow-list."""
    return (f"the function {name}() is not on the {engine_name} allow-list of functions "
            "generated SQL may call (aggregates, string, date, math, casts, conditionals)")


def relation_problem(tree: exp.Expression, engine: Engine,
                     scope: TableScope | None = None) -> str | None:
    """Why a parsed statement names a system table or view (the catalogue, server settings)
    or, with ``scope``, a table of a schema or database outside it; or None."""
    pattern = (re.compile(engine.system_relations, re.IGNORECASE)
               if engine.system_relations is not None else None)
    for table in tree.find_all(exp.Table):
        name = ".".join(p for p in (table.db, table.name) if p).lower()
        if pattern is not None and name and pattern.search(name):
            return (f"the system table {name} is not one generated SQL may read; only the "
                    "database's own tables")
        if scope is None:
            continue
        catalog, schema = table.args.get("catalog"), table.args.get("db")
        if isinstance(catalog, exp.Identifier) and scope.fold(catalog) not in scope.catalogs:
            return _outside_scope(table, scope)
        if isinstance(schema, exp.Identifier) and scope.fold(schema) not in scope.schemas:
            return _outside_scope(table, scope)
    return None


def _outside_scope(table: exp.Table, scope: TableScope) -> str:
    allowed = ", ".join(sorted(scope.schemas)) or "none"
    return (f"the table {table.sql()} is outside the configured database (generated SQL may "
            f"name only tables of {allowed}); add its schema to db.allow_schemas to allow it")


def size_problem(tree: exp.Expression, engine: Engine, max_value_bytes: int) -> str | None:
    """Why a call of one of the engine's value-building functions (``size_rules``) could
    build a value over ``max_value_bytes`` bytes, or cannot be bounded before it runs."""
    if not engine.size_rules:
        return None
    for node in tree.walk():
        if isinstance(node, exp.Func) and not isinstance(node, exp.Binary | exp.Unary):
            # The call's own name (sqlglot's canonical one for a function it knows: its
            # arguments are in that function's order; MySQL's SPACE(n) is written REPEAT).
            name = (str(node.name) if isinstance(node, exp.Anonymous)
                    else node.sql_name()).lower()
            rule = engine.size_rules.get(name)
            if rule is not None:
                shown = _function_names(node, engine.dialect)[0]
                why = rule.problem(shown, call_arguments(node), max_value_bytes)
                if why:
                    return why
    return None


def privileged_login_message(kind: str, user: str, reasons: list[str], fix: str) -> str:
    """The one-paragraph refusal of a login that is too privileged for generated SQL."""
    return (f"Refusing to run model-generated SQL on {kind} as {user!r}: the login "
            f"{'; '.join(reasons)}. Generated SQL is hostile input and must run as a role "
            f"that can only read the tables it needs. {fix} Then set QC_DB_USER (db.user) to "
            "that role and its password in QC_DB_PASSWORD (docs/DATABASES.md, \"Least "
            "privilege\"). Only on a throwaway server: db.allow_privileged=true.")
