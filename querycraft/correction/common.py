"""What the correction rules share: the rule record, the context a rule reads and notes into,
the text segments (code vs literals and comments, from querycraft.sql's lexer) and the sqlglot
parse helpers.

A rule is ``(sql, ctx) -> sql``: a plain function of the text, which never raises on bad SQL
(what it cannot fix it notes in ``ctx``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel

import querycraft.dialects  # noqa: F401  (registers the Db2 dialect with sqlglot)
from querycraft.sql import QUOTED_KINDS, Token, lex, parse_statement, parses

__all__ = [
    "FALLBACK_DIALECTS",
    "Context",
    "Rule",
    "code_only",
    "dialect_known",
    "ident_sql",
    "map_code",
    "not_a_query",
    "parse",
    "parse_error",
    "parse_leniently",
    "render",
    "segments",
]

# Dialects tried, in this order, for text the read dialect cannot parse. T-SQL and MySQL
# order NULLs like SQLite; PostgreSQL comes last because reading with it adds NULLS LAST to
# every ORDER BY written for SQLite.
FALLBACK_DIALECTS: tuple[str, ...] = ("tsql", "mysql", "postgres")

# How much of a statement's end is compared with the end of the raw output.
_TAIL_CHARS = 24

_SAFE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Context:
    """What every rule of one :func:`querycraft.correction.correct_sql` call reads."""

    schema: dict[str, list[str]] | None
    read: str
    write: str
    max_edit_distance: int
    unresolved: list[str]
    raw: str = ""  # the text given to correct_sql: the model's output
    # Whether fix_qualifiers runs after fix_identifiers: a qualified column that another table
    # in scope has is then left to it rather than fuzzy-matched within the wrong table.
    requalify: bool = False

    def note(self, message: str) -> None:
        if message not in self.unresolved:
            self.unresolved.append(message)

    def ends_output(self, sql: str) -> bool:
        """Whether the text ends where the model's output ends (no ';', closing fence or
        prose after it), as when generation stopped at its token limit mid-statement."""
        tail = sql.rstrip()[-_TAIL_CHARS:]
        return bool(tail) and self.raw.rstrip().endswith(tail)


RuleFunction = Callable[[str, Context], str]


@dataclass(frozen=True)
class Rule:
    """One correction rule: its name (the switch ``correct.rules.<name>``), the function,
    the one-line description the docs table shows, and whether it parses the SQL (such a rule
    is off when sqlglot does not know the dialect)."""

    name: str
    apply: RuleFunction
    description: str
    parses: bool = False

    @classmethod
    def of(cls, module: ModuleType) -> Rule:
        """The rule a module of :mod:`querycraft.correction.rules` defines: the function
        named like the module, its ``DESCRIPTION`` and ``PARSES`` (absent: a text rule)."""
        name = module.__name__.rsplit(".", 1)[-1]
        return cls(name, getattr(module, name), module.DESCRIPTION,
                   getattr(module, "PARSES", False))


# --------------------------------------------------------------------------------------------
# Text segments: code vs literals, quoted identifiers and comments
# --------------------------------------------------------------------------------------------


def segments(sql: str) -> list[Token]:
    """The text cut into code and quoted pieces (comment, string, dquote, bquote, bracket),
    from :func:`querycraft.sql.lex`; the tokens between quoted pieces are merged into one
    "code" piece."""
    out: list[Token] = []
    code: list[str] = []  # the code tokens since the last quoted piece
    code_start = 0

    def add_code(text: str, start: int) -> None:
        nonlocal code_start
        if not code:
            code_start = start
        code.append(text)

    def add_quoted(tok: Token) -> None:
        if code:
            out.append(Token("code", "".join(code), code_start))
            code.clear()
        out.append(tok)

    for tok in lex(sql):
        if tok.kind == "string" and tok.text[0] != "'":
            # The rules read a literal's prefix letter (N'x', X'0a') as code and the quote as
            # the literal's first character.
            add_code(tok.text[0], tok.start)
            add_quoted(Token("string", tok.text[1:], tok.start + 1, tok.closed))
        elif tok.kind in QUOTED_KINDS or tok.kind == "comment":
            add_quoted(tok)
        else:
            add_code(tok.text, tok.start)
    if code:
        out.append(Token("code", "".join(code), code_start))
    return out


def map_code(sql: str, function: Callable[[str], str]) -> str:
    """The text with ``function`` applied to its code pieces only."""
    return "".join(function(s.text) if s.kind == "code" else s.text for s in segments(sql))


def code_only(sql: str) -> str:
    """The code segments of the text, literals and comments blanked out."""
    return "".join(s.text if s.kind == "code" else " " for s in segments(sql))


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


def dialect_known(name: str) -> bool:
    """Whether sqlglot (with the Db2 dialect of querycraft.dialects) knows the dialect."""
    try:
        Dialect.get_or_raise(name)
    except Exception:  # sqlglot raises ValueError (or others across versions)
        return False
    return True


def parse(sql: str, dialect: str) -> exp.Expr | None:
    """One statement parsed with ``dialect``, or None (several statements, error, command)."""
    tree = parse_statement(sql, dialect)
    return None if isinstance(tree, exp.Command) else tree


def parse_error(sql: str, dialect: str) -> str:
    """Why :func:`parse` gave None, in one line."""
    # sqlglot accepts a command or several statements, which parse() refuses.
    return parses(sql, dialect) or "not one statement"


def _fallbacks(sql: str, read: str) -> list[str]:
    dialects = [d for d in FALLBACK_DIALECTS if d != read]
    if "||" in code_only(sql):
        dialects = [d for d in dialects if d != "mysql"]  # MySQL reads || as OR
    return dialects


def parse_leniently(sql: str, read: str) -> tuple[exp.Expr, str] | None:
    """The tree and the dialect that parsed it: the read dialect first, then the fallbacks."""
    for dialect in [read, *_fallbacks(sql, read)]:
        tree = parse(sql, dialect)
        if tree is not None:
            return tree, dialect
    return None


def render(tree: exp.Expr, dialect: str, ctx: Context) -> str:
    """The tree in ``dialect``; constructs the dialect cannot express are noted."""
    try:
        return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as err:
        ctx.note(f"not expressible in {dialect}: {str(err).splitlines()[0]}")
    return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.IGNORE)


def ident_sql(name: str, dialect: str, quote_like: str | None = None) -> str:
    """An identifier as ``dialect`` needs it: bare when it can be, else quoted.

    ``quote_like`` is the original quoted text; its quote characters are kept.
    """
    if quote_like:
        opener, closer = quote_like[0], quote_like[-1]
        return opener + name.replace(closer, closer * 2) + closer
    keywords = Dialect.get_or_raise(dialect).tokenizer_class.KEYWORDS
    if _SAFE_IDENTIFIER.fullmatch(name) and name.upper() not in keywords:
        return name
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def not_a_query(tree: exp.Expr, ctx: Context) -> bool:
    """Note and say so when the statement is no query (a schema echo such as CREATE TABLE):
    it can never run, so rewriting it for a dialect or reformatting it helps nobody."""
    if isinstance(tree, exp.Query):
        return False
    kind = tree.key.upper() if tree.key else type(tree).__name__.upper()
    ctx.note(f"not a query but a {kind} statement; only one read-only SELECT can run")
    return True
