"""Rule ``fit_dialect``: the query written in the target dialect.

Text that does not parse in the read dialect is parsed as T-SQL, MySQL or PostgreSQL
(``SELECT TOP 3``, ``FETCH FIRST``...), functions the target lacks are taken from another
dialect (``NOW()``), and ``ILIKE`` becomes ``LIKE`` for SQLite (whose LIKE already ignores
ASCII case). A statement that is no query (a CREATE TABLE echo) is left as it is and reported.
"""

from __future__ import annotations

import re

from sqlglot import exp

from querycraft.correction.common import (
    FALLBACK_DIALECTS,
    Context,
    not_a_query,
    parse,
    parse_error,
    parse_leniently,
    render,
)
from querycraft.dialects import transpile_one

# Parses the SQL: off when sqlglot does not know the read or write dialect.
PARSES = True
DESCRIPTION = ("the query written in the target dialect, other dialects' constructs rewritten "
               "(below)")

# SQLite's built-in functions (core, aggregate, window, date, math, JSON): a call to any
# other name is "another dialect's construct" when SQLite is the target.
# fmt: off
SQLITE_FUNCTIONS = frozenset({
    "abs", "changes", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex",
    "ifnull", "iif", "instr", "last_insert_rowid", "length", "like", "likelihood", "likely",
    "lower", "ltrim", "max", "min", "nullif", "octet_length", "printf", "quote", "random",
    "randomblob", "replace", "round", "rtrim", "sign", "soundex", "substr", "substring",
    "total_changes", "trim", "typeof", "unhex", "unicode", "unlikely", "upper", "zeroblob",
    "avg", "count", "group_concat", "string_agg", "sum", "total", "row_number", "rank",
    "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
    "last_value", "nth_value", "date", "time", "datetime", "julianday", "unixepoch",
    "strftime", "timediff", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh",
    "ceil", "ceiling", "cos", "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2",
    "mod", "pi", "pow", "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
    "json", "json_array", "json_array_length", "json_extract", "json_insert", "json_object",
    "json_patch", "json_remove", "json_replace", "json_set", "json_type", "json_valid",
    "json_quote", "json_group_array", "json_group_object", "json_each", "json_tree",
    "regexp", "match", "current_date", "current_time", "current_timestamp",
})
# fmt: on


def _repair_for_sqlite(tree: exp.Expr, used: str, ctx: Context) -> tuple[exp.Expr, bool]:
    """Replace what SQLite lacks: ILIKE -> LIKE, other dialects' functions, FETCH FIRST."""
    changed = False
    for node in list(tree.find_all(exp.ILike)):
        node.replace(exp.Like(this=node.this, expression=node.expression))
        changed = True
    if tree.find(exp.Fetch) is not None:
        changed = True  # the SQLite generator writes FETCH FIRST n ROWS as LIMIT n
    for node in list(tree.find_all(exp.Anonymous)):
        name = node.name.lower()
        if name in SQLITE_FUNCTIONS:
            continue
        text = node.sql(dialect=used)
        for dialect in FALLBACK_DIALECTS:
            other = parse(f"SELECT {text}", dialect)
            if other is None or not isinstance(other, exp.Select) or not other.expressions:
                continue
            call = other.expressions[0]
            if isinstance(call, exp.Func) and not isinstance(call, exp.Anonymous):
                rendered = call.sql(dialect="sqlite")
                head = re.match(r"\s*(\w+)", rendered)
                if head is None or head.group(1).lower() in SQLITE_FUNCTIONS | {"cast"} or (
                        "(" not in rendered):
                    node.replace(call)
                    changed = True
                    break
        else:
            ctx.note(f"function {node.name}() is not a SQLite function")
    return tree, changed


def fit_dialect(sql: str, ctx: Context) -> str:
    """The query in the target dialect, with other dialects' constructs rewritten."""
    parsed = parse_leniently(sql, ctx.read)
    if parsed is None:
        ctx.note(f"does not parse as {ctx.read}: {parse_error(sql, ctx.read)}")
        return sql
    tree, used = parsed
    if not_a_query(tree, ctx):
        return sql
    repaired = False
    if ctx.write == "sqlite":
        tree, repaired = _repair_for_sqlite(tree, used, ctx)
    if used == ctx.read == ctx.write and not repaired:
        return sql
    if used == ctx.write:
        return render(tree, ctx.write, ctx)
    try:  # querycraft.dialects' translation: the Db2 dialect, SQLite strings, name case
        return transpile_one(tree.sql(dialect=used) if repaired else sql, used, ctx.write)
    except Exception as err:  # what it refuses, sqlglot's own generator may still write
        ctx.note(f"not translated from {used} to {ctx.write}: {str(err).splitlines()[0]}")
    return render(tree, ctx.write, ctx)
