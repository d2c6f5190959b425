"""SQL dialects QueryCraft translates between, and a one-statement transpile helper.

Importing this package registers :class:`~querycraft.dialects.db2.Db2` with sqlglot under the
name ``"db2"`` (sqlglot registers every Dialect subclass under its lower-cased class name), so
``sqlglot.transpile(sql, read="sqlite", write="db2")`` works afterwards.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import ParseError

from querycraft.dialects.db2 import Db2

__all__ = ["DIALECTS", "Db2", "parse_statements", "transpile_one"]

DIALECTS = ("sqlite", "postgres", "mysql", "db2")

# A single-quoted literal (skipped) or a double-quoted token (captured).
_QUOTED_RE = re.compile(r"'(?:[^']|'')*'|\"((?:[^\"]|\"\")*)\"")

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike)


def parse_statements(sql: str, read: str, tokens: list | None = None) -> list[exp.Expr]:
    """The statements sqlglot reads in the text with dialect ``read``, Db2 included.

    Defined here rather than in :mod:`querycraft.sql`, which re-exports it, because that module
    imports this package (to register Db2) and so cannot be imported by it. Empty statements
    (``;;``, for which sqlglot yields None) are dropped. ``tokens``: the text's tokens in that
    dialect, when they are already at hand (what ``sqlglot.parse`` would make first).

    Raises:
        sqlglot.errors.SqlglotError: The text does not parse (or the dialect is unknown).
        RecursionError: The text nests deeper than the parser can follow.
    """
    if tokens is None:
        trees = sqlglot.parse(sql, read=read)
    else:
        trees = Dialect.get_or_raise(read).parser().parse(tokens, sql)
    return [tree for tree in trees if tree is not None]


def _sqlite_double_quoted_strings(tree: exp.Expr, sql: str) -> exp.Expr:
    """Turn SQLite's double-quoted string values back into string literals.

    SQLite reads ``"x"`` as a string when no column is called x, and Spider's gold queries rely
    on it (``WHERE genre = "poetry"``). sqlglot parses it as a quoted column, which every other
    engine would reject. Without a schema, a double-quoted unqualified name is taken as a value
    where a value is expected: the right side of a comparison or LIKE, or an IN list item.
    """
    double_quoted = {m.group(1).replace('""', '"') for m in _QUOTED_RE.finditer(sql) if m.group(1)}
    if not double_quoted:
        return tree
    for column in list(tree.find_all(exp.Column)):
        ident = column.this
        if column.table or not isinstance(ident, exp.Identifier) or not ident.quoted:
            continue
        if ident.name not in double_quoted:
            continue
        parent = column.parent
        is_value = (isinstance(parent, _COMPARISONS) and column.arg_key == "expression") or (
            isinstance(parent, exp.In) and column.arg_key == "expressions"
        )
        if is_value:
            column.replace(exp.Literal.string(ident.name))
    return tree


def _unquote_case_insensitive(tree: exp.Expr) -> exp.Expr:
    """Drop needless quotes from names read from a case-insensitive dialect (SQLite, T-SQL).

    There ``"Name"`` and ``name`` are the same column, but a quoted name is case-sensitive in
    Db2. Unquoted, the Db2 generator lets Db2 fold it and quotes it only if it must (reserved
    words, spaces), in the folded spelling.
    """
    for ident in tree.find_all(exp.Identifier):
        if ident.quoted and exp.SAFE_IDENTIFIER_RE.match(ident.name):
            ident.set("quoted", False)
    return tree


def transpile_one(sql: str, read: str, write: str) -> str:
    """Translate exactly one SQL statement from dialect ``read`` to dialect ``write``.

    Raises:
        sqlglot.errors.ParseError: The text is not exactly one statement, or does not parse.
        sqlglot.errors.SqlglotError: Any other sqlglot failure.
    """
    trees = parse_statements(sql, read)
    if len(trees) != 1:
        raise ParseError(f"expected one SQL statement, got {len(trees)}")
    tree = trees[0]
    if read == "sqlite":
        tree = _sqlite_double_quoted_strings(tree, sql)
    read_dialect = Dialect.get_or_raise(read)
    if (
        write == "db2"
        and read_dialect.normalization_strategy is NormalizationStrategy.CASE_INSENSITIVE
    ):
        tree = _unquote_case_insensitive(tree)
    return tree.sql(dialect=write)
