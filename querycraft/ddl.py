"""Table and column names from CREATE TABLE text (a prompt's schema context, a database's DDL).

Kept apart from :mod:`querycraft.db` and :mod:`querycraft.correction`, which both need it, so
that neither imports the other for it. It imports only :mod:`querycraft.sql` and sqlglot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import TokenType

from querycraft.sql import parse_statement, split_statements, strip_comments

__all__ = ["schema_from_ddl"]

_CREATE_RE = re.compile(
    r"""CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?
        (?P<name>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[\w.]+)\s*\((?P<body>.*)\)""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_CONSTRAINT_WORDS = ("PRIMARY", "FOREIGN", "UNIQUE", "CHECK", "CONSTRAINT", "KEY", "INDEX")


def _strip_quotes(name: str) -> str:
    if len(name) >= 2 and name[0] in "\"`[" and name[-1] in "\"`]":
        return name[1:-1]
    return name


def _top_level_commas(body: str, dialect: str) -> list[int]:
    """Offsets of the commas outside parentheses, literals, quoted names and comments.

    sqlglot's tokenizer tells which characters are code; when it refuses the text (an
    unterminated literal), parentheses are counted on the raw text.
    """
    try:
        tokens = [(t.token_type, t.start) for t in
                  Dialect.get_or_raise(dialect).tokenizer_class().tokenize(body)]
    except Exception:  # TokenError, unknown dialect
        names = {"(": TokenType.L_PAREN, ")": TokenType.R_PAREN, ",": TokenType.COMMA}
        tokens = [(names[ch], i) for i, ch in enumerate(body) if ch in names]
    depth, commas = 0, []
    for kind, start in tokens:
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
        elif kind == TokenType.COMMA and depth == 0:
            commas.append(start)
    return commas


def _split_top_level(body: str, dialect: str) -> Iterator[str]:
    start = 0
    for comma in _top_level_commas(body, dialect):
        yield body[start:comma]
        start = comma + 1
    yield body[start:]


def _table_from_text(statement: str, dialect: str) -> tuple[str, list[str]] | None:
    m = _CREATE_RE.search(statement)
    if m is None:
        return None
    columns = []
    for item in _split_top_level(m.group("body"), dialect):
        part = strip_comments(item)
        words = part.split()
        if not words or words[0].upper().strip("(") in _CONSTRAINT_WORDS:
            continue
        first = re.match(r'\s*("(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[^\s(]+)', part)
        if first:
            columns.append(_strip_quotes(first.group(1)))
    return _strip_quotes(m.group("name").split(".")[-1]), columns


def schema_from_ddl(text: str, dialect: str = "sqlite") -> dict[str, list[str]]:
    """``{table: [columns]}`` from CREATE TABLE statements (a prompt's schema context).

    Each statement is parsed with sqlglot; one it cannot parse is read with a simple pattern
    (name, then the first word of each top-level item that is not a constraint). Other
    statements are ignored.
    """
    schema: dict[str, list[str]] = {}
    for statement in split_statements(text or ""):
        if not re.match(r"\s*CREATE\b", statement, re.IGNORECASE):
            continue
        tree = parse_statement(statement, dialect)
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
            table = tree.this.this
            columns = [c.name for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
            if isinstance(table, exp.Table) and table.name:
                schema[table.name] = columns
                continue
        found = _table_from_text(statement, dialect)
        if found is not None:
            schema[found[0]] = found[1]
    return schema
