"""Pure functions on SQL text: splitting, normalising, comparing, extracting and vetting queries.

Nothing here touches a database. A small hand-written lexer does the quote- and comment-aware
work (splitting, comment stripping, normalisation); sqlglot does the parsing where a real syntax
tree is needed (the read-only check, ORDER BY detection, table names).
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

# Importing querycraft.dialects registers the Db2 dialect with sqlglot: read="db2".
from querycraft.dialects import parse_statements

__all__ = [
    "QUOTED_KINDS",
    "BudgetExceeded",
    "Token",
    "exact_match",
    "extract_sql",
    "has_order_by",
    "is_read_only_statement",
    "lex",
    "normalize_sql",
    "parse_statement",
    "parses",
    "split_statements",
    "strip_comments",
    "tables_in",
    "time_budget",
    "token_match_score",
]


# --------------------------------------------------------------------------------------------
# A wall-clock budget for work on untrusted SQL
# --------------------------------------------------------------------------------------------


class BudgetExceeded(Exception):
    """The block of :func:`time_budget` ran past its seconds."""


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` inside the block once ``seconds`` have passed.

    Parsing generated SQL is pure Python whose cost grows with the text and its nesting; a
    SIGALRM timer stops it wherever it is. Native code (a database call) is not interrupted
    by it: give queries their own time limit, at most the time left. Where no timer can be
    set (not the main thread, or no SIGALRM) the block runs unbounded, and the caller's own
    checks between steps are the only bound.
    """
    if threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def _expired(_signum: int, _frame: object) -> None:
        raise BudgetExceeded

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------

# Order matters: comments and quoted text first so that ';', '--' and '/*' inside them are
# inert; hex before decimal numbers; parameters before words.
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>[xXnNeEbB]?'(?:[^']|'')*(?:(?P<string_end>')|\Z))
  | (?P<dquote>"(?:[^"]|"")*(?:(?P<dquote_end>")|\Z))
  | (?P<bquote>`(?:[^`]|``)*(?:(?P<bquote_end>`)|\Z))
  | (?P<bracket>\[[^\]]*(?:(?P<bracket_end>\])|\Z))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<param>\?\d*|\$\d+|[:@$][^\W\d]\w*)
  | (?P<word>[^\W\d]\w*)
  | (?P<op><=|>=|<>|!=|==|\|\||::|->>|->|[-+*/%<>=~&|^!])
  | (?P<punct>[(),;.])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


# The kinds whose token ends with a closing character, which may be missing at the end of text.
QUOTED_KINDS = ("string", "dquote", "bquote", "bracket")


class Token(NamedTuple):
    """One token of :func:`lex`: ``kind`` is the name of the group of ``_TOKEN_RE`` it matched
    (ws, comment, string, dquote, bquote, bracket, number, param, word, op, punct, other)."""

    kind: str
    text: str
    start: int
    # False for a literal, quoted name or block comment the text ends inside (a model's
    # output cut off at its token limit): the correction rules close those.
    closed: bool = True

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def upper(self) -> str:
        return self.text.upper()


def lex(sql: str) -> Iterator[Token]:
    """The text cut into tokens, quote- and comment-aware; the tokens' texts join up to ``sql``.

    A quote or block comment never closed runs to the end of the text, as one token with
    ``closed=False``.
    """
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup  # the outer group: an *_end group closes before it
        assert kind is not None  # every alternative is a named group
        text = m.group()
        if kind in QUOTED_KINDS:
            closed = m.group(f"{kind}_end") is not None
        elif kind == "comment" and text.startswith("/*"):
            closed = len(text) >= 4 and text.endswith("*/")  # "/*/" opens without closing
        else:
            closed = True
        yield Token(kind, text, m.start(), closed)


def _significant(sql: str) -> list[Token]:
    return [t for t in lex(sql) if t.kind not in ("ws", "comment")]


# SQLite's keyword list (sqlite.org/lang_keywords.html) minus rarely-reserved words that are
# common column names (KEY, ACTION, NO, PLAN, QUERY, ROW, FIRST, LAST, ...), plus the standard
# aggregates and a few ANSI words. Fixed so normalisation does not depend on context.
# fmt: off
_KEYWORDS = frozenset({
    "ABORT", "ADD", "AFTER", "ALL", "ALTER", "ANALYZE", "AND", "AS", "ASC", "ATTACH",
    "AUTOINCREMENT", "BEFORE", "BEGIN", "BETWEEN", "BY", "CASCADE", "CASE", "CAST", "CHECK",
    "COLLATE", "COMMIT", "CONFLICT", "CONSTRAINT", "CREATE", "CROSS", "CURRENT_DATE",
    "CURRENT_TIME", "CURRENT_TIMESTAMP", "DEFAULT", "DEFERRABLE", "DEFERRED", "DELETE", "DESC",
    "DETACH", "DISTINCT", "DROP", "ELSE", "END", "ESCAPE", "EXCEPT", "EXCLUSIVE", "EXISTS",
    "EXPLAIN", "FILTER", "FOLLOWING", "FOR", "FOREIGN", "FROM", "FULL", "GLOB", "GROUP", "HAVING",
    "IF", "IGNORE", "IMMEDIATE", "IN", "INDEXED", "INNER", "INSERT", "INSTEAD", "INTERSECT",
    "INTO", "IS", "ISNULL", "JOIN", "LEFT", "LIKE", "LIMIT", "MATCH", "NATURAL", "NOT", "NOTNULL",
    "NULL", "NULLS", "OFFSET", "ON", "OR", "ORDER", "OUTER", "OVER", "PARTITION", "PRAGMA",
    "PRECEDING", "PRIMARY", "RAISE", "RANGE", "RECURSIVE", "REFERENCES", "REGEXP", "REINDEX",
    "RELEASE", "RENAME", "REPLACE", "RESTRICT", "RETURNING", "RIGHT", "ROLLBACK", "ROWS",
    "SAVEPOINT", "SELECT", "SET", "TRANSACTION", "TRIGGER", "UNBOUNDED", "UNION", "UNIQUE",
    "UPDATE", "USING", "VACUUM", "VALUES", "WHEN", "WHERE", "WINDOW", "WITH", "WITHOUT", "COUNT",
    "SUM", "AVG", "MIN", "MAX", "TRUE", "FALSE", "ILIKE", "FETCH", "INTERVAL", "LATERAL", "TABLE"
})
# fmt: on

# Keywords written like functions: no space before their '('.
# fmt: off
_FUNCTION_KEYWORDS = frozenset({
    "COUNT", "SUM", "AVG", "MIN", "MAX", "CAST", "REPLACE", "GLOB", "LIKE", "MATCH", "REGEXP",
    "COALESCE", "IFNULL", "NULLIF"
})
# fmt: on

_COMPARISONS = frozenset(["=", "!=", "<", ">", "<=", ">=", "LIKE", "GLOB", "REGEXP", "ILIKE"])

_OP_SPELLING = {"==": "=", "<>": "!="}


def _unquote(tok: Token) -> str:
    """The content of a quoted token, with doubled quote characters undone."""
    body = tok.text[1:]
    closer = {"'": "'", '"': '"', "`": "`", "[": "]"}[tok.text[0]]
    if body.endswith(closer):
        body = body[:-1]
    return body if closer == "]" else body.replace(closer * 2, closer)


# --------------------------------------------------------------------------------------------
# Splitting and comments
# --------------------------------------------------------------------------------------------


def split_statements(sql: str) -> list[str]:
    """Split SQL text on top-level semicolons.

    Semicolons inside string literals, quoted identifiers and comments do not split.

    Args:
        sql: One or more SQL statements.

    Returns:
        The statements, stripped of surrounding whitespace and without their ';'. Pieces that
        hold nothing but whitespace and comments are dropped.
    """
    pieces: list[str] = []
    start = 0
    has_content = False
    for tok in lex(sql):
        if tok.kind == "punct" and tok.text == ";":
            if has_content:
                pieces.append(sql[start : tok.start].strip())
            start, has_content = tok.end, False
        elif tok.kind not in ("ws", "comment"):
            has_content = True
    if has_content:
        pieces.append(sql[start:].strip())
    return pieces


def strip_comments(sql: str) -> str:
    """Remove ``--`` and ``/* */`` comments that are not inside quotes.

    A block comment becomes a single space so that the words around it stay apart.

    Args:
        sql: SQL text.

    Returns:
        The text without comments, stripped of surrounding whitespace.
    """
    parts: list[str] = []
    for tok in lex(sql):
        if tok.kind != "comment":
            parts.append(tok.text)
        elif tok.text.startswith("/*"):
            parts.append(" ")
    return "".join(parts).strip()


# --------------------------------------------------------------------------------------------
# Normalisation and text metrics
# --------------------------------------------------------------------------------------------


def _string_positions(toks: list[Token]) -> set[int]:
    """Indices of double-quoted tokens that sit where only a value can be.

    SQLite (and Spider's gold queries) accept "text" as a string literal. A double-quoted token
    is taken as a literal only after a comparison operator, LIKE, BETWEEN ... AND, THEN/ELSE, or
    inside an ``IN (...)`` list, and never when a '.' follows it (then it names a table).
    """
    found: set[int] = set()
    in_list_stack: list[bool] = []  # one entry per open '(': is it an IN (...) value list?
    between_pending = False  # inside "BETWEEN x", waiting for its AND
    after_between_and = False  # the previous token was the AND of a BETWEEN
    prev: Token | None = None
    for i, tok in enumerate(toks):
        prev_up = prev.upper if prev is not None else ""
        if tok.kind == "dquote":
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            value_slot = (
                prev_up in _COMPARISONS
                or prev_up in ("BETWEEN", "THEN", "ELSE", "==", "<>")
                or after_between_and
                or (prev_up in ("(", ",") and bool(in_list_stack) and in_list_stack[-1])
            )
            if value_slot and not (nxt is not None and nxt.text == "."):
                found.add(i)
        elif tok.text == "(":
            in_list_stack.append(prev_up == "IN")
        elif tok.text == ")":
            if in_list_stack:
                in_list_stack.pop()
        elif tok.upper == "SELECT" and in_list_stack:
            in_list_stack[-1] = False  # IN (SELECT ...) holds a query, not values
        after_between_and = between_pending and tok.upper == "AND"
        if tok.upper == "BETWEEN":
            between_pending = True
        elif after_between_and:
            between_pending = False
        prev = tok
    return found


def _render_token(tok: Token, as_string: bool) -> str:
    if tok.kind == "word":
        return tok.upper if tok.upper in _KEYWORDS else tok.text.lower()
    if tok.kind == "dquote" and as_string:
        return "'" + _unquote(tok).replace("'", "''") + "'"
    if tok.kind in ("bquote", "bracket"):
        return '"' + _unquote(tok).replace('"', '""') + '"'
    if tok.kind == "op":
        return _OP_SPELLING.get(tok.text, tok.text)
    if tok.kind == "number":
        return tok.text.lower()
    return tok.text


def _needs_space(prev: Token, prev_text: str, cur: Token, cur_text: str, prev_unary: bool) -> bool:
    if prev_unary or cur_text in (")", ",", ".", ";", "::") or prev_text in ("(", ".", "::"):
        return False
    if cur_text == "(" and prev.kind == "word":
        # Function call: identifier or function-like keyword directly before '('.
        return prev.upper in _KEYWORDS and prev.upper not in _FUNCTION_KEYWORDS
    return True


# A string literal (kept as is) or a comparison operator split by one space ("> =").
_SPLIT_OPERATOR = re.compile(r"'(?:[^']|'')*'|([<>!]) =")


def join_split_operators(sql: str) -> str:
    """``>=``, ``<=`` and ``!=`` for ``> =``, ``< =`` and ``! =`` outside string literals: what
    the official Spider evaluator does to gold and prediction before running them (small
    models split operators; the database would call it a syntax error)."""
    if " =" not in sql:
        return sql
    return _SPLIT_OPERATOR.sub(lambda m: m.group(1) + "=" if m.group(1) else m.group(0), sql)


def normalize_sql(sql: str) -> str:
    """Canonical text of a query, for exact-match comparison.

    Rules:
        * comments are removed and whitespace is rebuilt from the tokens, so layout is ignored:
          one space between tokens, none inside parentheses, before ',' or around '.', none
          between a function name and its '(' (``count (*)`` -> ``COUNT(*)``);
        * unquoted words that are SQL keywords (a fixed list) are upper-cased and all other
          unquoted words (table, column, alias and function names) are lower-cased, because
          SQLite and most databases treat unquoted identifiers case-insensitively; quoted
          identifiers keep their case, and backtick/bracket quoting becomes double quotes;
        * a double-quoted token in a value position (after a comparison, LIKE, BETWEEN/AND,
          THEN/ELSE, inside ``IN (...)``) is a string literal in SQLite and is rewritten with
          single quotes; elsewhere it is left as a quoted identifier;
        * ``==`` becomes ``=`` and ``<>`` becomes ``!=``;
        * a trailing ';' is dropped; several statements are joined with ``'; '``.

    Keywords are classified by a fixed word list rather than by ``sqlparse.format``, whose
    lexer upper-cases ``count (*)`` but not ``count(*)``; a context-free rule keeps the result
    independent of layout.

    Args:
        sql: SQL text.

    Returns:
        The normalised text ('' for text without tokens).
    """
    statements = []
    for piece in split_statements(sql):
        toks = _significant(piece)
        as_string = _string_positions(toks)
        out: list[str] = []
        prev: Token | None = None
        prev_text = ""
        prev_unary = False
        for i, tok in enumerate(toks):
            text = _render_token(tok, i in as_string)
            unary = tok.text in ("-", "+") and (
                prev is None
                or prev.kind == "op"
                or prev_text in ("(", ",")
                or (prev.kind == "word" and prev.upper in _KEYWORDS)
            )
            if prev is not None and _needs_space(prev, prev_text, tok, text, prev_unary):
                out.append(" ")
            out.append(text)
            prev, prev_text, prev_unary = tok, text, unary
        statements.append("".join(out))
    return "; ".join(statements)


def exact_match(gold: str, pred: str) -> bool:
    """Whether two queries are the same text after :func:`normalize_sql`."""
    return normalize_sql(gold) == normalize_sql(pred)


_WORD_RE = re.compile(r"\b\w+\b")


def token_match_score(gold: str, pred: str) -> float:
    """Share of the reference's word tokens that also occur in the prediction.

    Both queries are normalised and lower-cased, then split into word tokens with the regex
    ``\\b\\w+\\b``. The score counts the reference tokens (as a list, so repeats count each
    time) that appear anywhere in the prediction's set of tokens, divided by the number of
    reference tokens.

    Args:
        gold: The reference query.
        pred: The predicted query.

    Returns:
        A score in [0, 1]. An empty reference scores 1.0 against an empty prediction and 0.0
        otherwise.
    """
    ref = _WORD_RE.findall(normalize_sql(gold).lower())
    hyp = set(_WORD_RE.findall(normalize_sql(pred).lower()))
    if not ref:
        return 1.0 if not hyp else 0.0
    return sum(1 for t in ref if t in hyp) / len(ref)


# --------------------------------------------------------------------------------------------
# Extracting SQL from model output
# --------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)(?P<body>.*?)(?:```|\Z)", re.DOTALL)
# fmt: off
_FENCE_LANGS = frozenset({
    "sql", "sqlite", "sqlite3", "postgres", "postgresql", "psql", "pgsql", "mysql", "tsql",
    "plsql", "db2", "ansi"
})
# fmt: on
# Words that may start a SQL statement when the output begins with one.
# fmt: off
_STATEMENT_STARTS = frozenset({
    "SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE", "DROP", "CREATE", "ALTER",
    "PRAGMA", "ATTACH", "DETACH", "VACUUM", "EXPLAIN", "REINDEX", "ANALYZE", "BEGIN", "COMMIT",
    "ROLLBACK"
})
# fmt: on
# Words that may start a continuation line of a query.
# fmt: off
_CONTINUATION_STARTS = frozenset({
    "SELECT", "FROM", "WHERE", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL",
    "OUTER", "ON", "USING", "AND", "OR", "NOT", "GROUP", "ORDER", "BY", "HAVING", "LIMIT",
    "OFFSET", "UNION", "INTERSECT", "EXCEPT", "ALL", "DISTINCT", "AS", "CASE", "WHEN", "THEN",
    "ELSE", "END", "IN", "IS", "EXISTS", "BETWEEN", "LIKE", "GLOB", "ASC", "DESC", "WINDOW",
    "OVER", "PARTITION", "NULLS", "FETCH", "VALUES", "WITH", "COLLATE", "ESCAPE", "FILTER"
})
# fmt: on
# A line ending with one of these cannot be the end of a query.
# fmt: off
_OPEN_ENDINGS = frozenset({
    "SELECT", "FROM", "WHERE", "JOIN", "ON", "AND", "OR", "NOT", "BY", "HAVING", "UNION",
    "INTERSECT", "EXCEPT", "ALL", "AS", "IN", "BETWEEN", "LIKE", "CASE", "WHEN", "THEN", "ELSE",
    "DISTINCT", "WITH", "INNER", "LEFT", "RIGHT", "OUTER", "CROSS", "NATURAL", "LIMIT", "OFFSET",
    ",", "(", "=", "!=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "||", "IS"
})
# fmt: on
# Markers that end the SQL wherever they appear outside quotes.
_STOP_MARKERS = ("```", "##", "</s>", "<s>", "<|", "[/INST]", "[INST]", "<eos>", "[END]")
# "Explanation:" and similar labels end the SQL.
_PROSE_LABEL_RE = re.compile(
    r"(?i)(?:explanation|note|notes|answer|question|output|result|results|reasoning|comment|"
    r"comments|description|input|response|schema|context|sql|query)\s*:"
)
# Where SQL starts after prose: "select" at a line start or after a colon (any case), or an
# upper-case SELECT anywhere.
_SQL_START_RE = re.compile(r"(?:^|(?<=[:\n]))[ \t]*(?P<a>(?i:select))\b|\b(?P<b>SELECT)\b")
# Reasoning models think aloud first; that text may mention SELECT.
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_SENTENCE_RE = re.compile(r"\.\s+[A-Z][a-z']*\s+[a-z]")
_CTE_START_RE = re.compile(
    r"""(?i)\bWITH\s+(?:RECURSIVE\s+)?[\w"`\[\]]+\s*(?:\([^)]*\))?\s*AS\s*\("""
)
# Statements a model writes before its query when it echoes the schema or invents data.
_ECHO_STARTS = frozenset({"CREATE", "INSERT"})


def _fenced_block(text: str) -> str | None:
    """The first fenced code block that holds SQL, passing over blocks that only echo the
    schema (CREATE / INSERT) when a later one holds a query; else the first non-empty block;
    None without SQL-language fences."""
    first_any: str | None = None
    first_echo: str | None = None
    for m in _FENCE_RE.finditer(text):
        lang, body = m.group("lang"), m.group("body")
        if lang.upper() in _STATEMENT_STARTS:  # "```SELECT a FROM t```" on one line
            body = lang + body
        elif lang and lang.lower() not in _FENCE_LANGS:
            continue  # a block in another language
        if first_any is None and body.strip():
            first_any = body
        if not _starts_with_statement(body):
            continue
        if _starts_with_query(_skip_schema_echo(body)) or not _starts_with_echo(body):
            return body
        first_echo = first_echo if first_echo is not None else body
    return first_echo if first_echo is not None else first_any


def _starts_with_statement(text: str) -> bool:
    first = next((t for t in lex(text) if t.kind not in ("ws", "comment")), None)
    return first is not None and (first.upper in _STATEMENT_STARTS or first.text == "(")


def _starts_with_echo(text: str) -> bool:
    first = next((t for t in lex(text) if t.kind not in ("ws", "comment")), None)
    return first is not None and first.upper in _ECHO_STARTS


def _starts_with_query(text: str) -> bool:
    """Whether the text opens with SELECT or WITH, possibly after '(' (no statement check)."""
    toks = _significant(text[:200])  # the opening words are enough; keeps long text linear
    toks = toks[next((i for i, t in enumerate(toks) if t.text != "("), len(toks)) :]
    return bool(toks) and toks[0].upper in ("SELECT", "WITH")


def _skip_schema_echo(text: str) -> str:
    """The text from the first query on, when only CREATE/INSERT statements precede it.

    Small models echo the prompt's CREATE TABLE context (or invent INSERTs) before the query.
    Only one read-only query may run, so such a statement is never the useful answer; other
    leading statements (DROP, DELETE, ...) are kept so that the read-only check refuses them.
    Statements end at ';' outside quotes and comments, as in :func:`split_statements`.
    """
    at_start = True  # the next significant token opens a statement
    skipped = False
    for tok in lex(text):
        if tok.kind in ("ws", "comment"):
            continue
        if tok.text == ";":
            at_start = True
            continue
        if at_start:
            at_start = False
            if skipped and _starts_with_query(text[tok.start : tok.start + 200]):
                return text[tok.start :]
            if tok.upper not in _ECHO_STARTS:
                return text
            skipped = True
    return text


def _inline_span_end(text: str, start: int) -> int | None:
    """Where the inline code span that opens just before ``text[start]`` closes; None when no
    backtick opens one there, or when it never closes (the output was cut off)."""
    before = text[max(0, start - 64) : start].rstrip(" \t")
    ticks = len(before) - len(before.rstrip("`"))
    if ticks not in (1, 2):  # three or more open a fence, handled by _fenced_block
        return None
    closer = re.compile(rf"(?<!`){'`' * ticks}(?!`)").search(text, start)
    return closer.start() if closer else None


def _find_sql_start(text: str) -> tuple[int, int | None] | None:
    """Where the SQL begins in text that opens with prose, and where it must end (the closing
    backtick of an inline code span holding it; None: not bounded), or None when no SQL.

    A span holding a single word (prose such as "use the `SELECT` statement") is no query.
    """
    candidates = sorted(
        [m.start("a") if m.group("a") else m.start("b") for m in _SQL_START_RE.finditer(text)]
        + [m.start() for m in _CTE_START_RE.finditer(text)]
    )
    for start in candidates:
        end = _inline_span_end(text, start)
        if end is not None and len(_significant(text[start:end])) < 2:
            continue
        return start, end
    return None


def _cut_markers(text: str) -> str:
    """Cut text at the first stop marker or prose label that lies outside quotes."""
    prev: Token | None = None
    line_blank = True  # nothing but whitespace so far on the current line
    for tok in lex(text):
        pos = tok.start
        if tok.kind not in ("string", "dquote", "comment", "ws"):
            if text.startswith(_STOP_MARKERS, pos) or (tok.text == "#" and line_blank):
                return text[:pos]  # '#' at a line start: a Markdown heading
            # "label:" not part of a "::" cast and not a ":name" parameter.
            if tok.kind == "word" and (prev is None or prev.text not in (".", "::")):
                m = _PROSE_LABEL_RE.match(text, pos)
                if m and not text.startswith(":", m.end()):
                    return text[:pos]
            # The end of a sentence: ". This query ..." (SQL never has '.' then a space).
            if tok.text == "." and _SENTENCE_RE.match(text, pos):
                return text[:pos]
        if tok.kind != "ws":
            prev = tok
            line_blank = False
        if "\n" in tok.text:
            line_blank = tok.kind == "ws" and not tok.text[tok.text.rfind("\n") + 1 :].strip()
    return text


class _QueryState:
    """What the SQL kept so far says about where it may end (fed one token at a time)."""

    def __init__(self) -> None:
        self.depth = 0
        self.first: Token | None = None
        self.last: Token | None = None
        self.awaiting_body = False  # a WITH clause whose main query has not started

    def feed(self, tok: Token) -> None:
        if self.first is None:
            self.first = tok
            self.awaiting_body = tok.upper == "WITH"
        elif tok.text == "(":
            self.depth += 1
        elif tok.text == ")":
            self.depth -= 1
        elif self.depth == 0 and tok.upper in _STATEMENT_STARTS:
            self.awaiting_body = False
        self.last = tok

    def must_continue(self) -> bool:
        return (
            self.depth > 0
            or self.awaiting_body
            or (self.last is not None and self.last.upper in _OPEN_ENDINGS)
        )


def _keep_lines(text: str) -> str:
    """Keep the leading lines that belong to the query; stop at prose or a new query."""
    toks = [t for t in lex(text) if t.kind != "ws"]
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    state = _QueryState()
    ti = 0  # tokens before this index are already fed to the state
    blank_before = False
    for n, start in enumerate(line_starts):
        stop = line_starts[n + 1] if n + 1 < len(line_starts) else len(text)
        inside_token = False  # the line continues a multi-line string or comment
        while ti < len(toks) and toks[ti].start < start:
            inside_token = toks[ti].end > start
            if toks[ti].kind != "comment":
                state.feed(toks[ti])
            ti += 1
        if n == 0 or inside_token:
            continue
        fi = ti
        while fi < len(toks) and toks[fi].kind == "comment" and toks[fi].end <= stop:
            fi += 1  # comments that end on this line do not count
        first = toks[fi] if fi < len(toks) else None
        if first is None or first.start >= stop or first.kind == "comment":
            blank_before = blank_before or not text[start:stop].strip()
            continue
        open_end = state.must_continue()
        if first.upper in ("SELECT", "WITH") and not open_end:
            return text[:start].rstrip()  # a second query
        sqlish = first.upper in _CONTINUATION_STARTS or first.kind in (
            "punct",
            "op",
            "number",
            "string",
            "param",
        )
        indented = text[start : start + 1] in (" ", "\t")
        if not (open_end or sqlish or (indented and not blank_before)):
            return text[:start].rstrip()
        blank_before = False
    return text


def extract_sql(text: str) -> str:
    """Pull the SQL statement out of raw model output.

    Handles, in order:

    * a ``<think>...</think>`` block (dropped);
    * a fenced code block: the first one that holds a query, else the first that holds a
      statement (a missing closing fence is tolerated);
    * a prose lead-in such as ``SQL:`` or ``Here is the query:``: the SQL starts at the first
      ``select`` at a line start or after a colon, the first upper-case ``SELECT``, or the
      first ``WITH name AS (``; when that start sits in an inline code span (``the `SELECT
      ...` query``), the SQL ends at the span's closing backtick, and a span holding a single
      word (``the `SELECT` statement``) is prose, not a query;
    * leading ``CREATE`` / ``INSERT`` statements (a schema echo) before a ``SELECT`` or
      ``WITH`` query are skipped; other statements, and such statements with no query after
      them, are kept so that the read-only check refuses them by name;
    * trailing junk such as ``### End``, ``</s>``, ``Explanation: ...``, a sentence, a blank
      line followed by prose, or a second query.

    Only the first statement is kept, and a trailing ';' and surrounding whitespace are
    removed. Nothing is added or re-spelled: a clean query comes back unchanged, output cut
    off mid-token comes back as the fragment it is, and text with no recognisable SQL comes
    back stripped (all of it, or all of the fenced block that holds it), so that running it
    reports the problem.

    Args:
        text: The model's output.

    Returns:
        The SQL statement.
    """
    body = _THINK_RE.sub("", text).strip()
    if not _starts_with_statement(body):
        block = _fenced_block(body)
        if block is not None:
            body = block.strip()
        elif len(body) > 1 and body[0] == body[-1] == "`" and _starts_with_statement(body[1:]):
            body = body[1:-1].strip()  # `SELECT ...` as inline code
    if not _starts_with_statement(body):
        found = _find_sql_start(body)
        if found is None:
            return body  # no SQL: the text itself, so that running it says what is wrong
        start, end = found
        body = body[start:end]
    body = _skip_schema_echo(_cut_markers(body).strip())
    if body:
        body = _keep_lines(body)
    statements = split_statements(body)
    if not statements:
        return ""
    sql = statements[0]
    toks = _significant(sql)
    if len(toks) > 1 and toks[-1].text == ".":  # a sentence's full stop after the query
        sql = sql[: toks[-1].start]
    return sql.strip()


# --------------------------------------------------------------------------------------------
# Parsing with sqlglot
# --------------------------------------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _error_text(err: Exception) -> str:
    """A one-line message for a sqlglot error, without its terminal colour codes."""
    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        where = f"line {first.get('line')}, column {first.get('col')}"
        near = (first.get("highlight") or "").strip()
        return f"{first.get('description')} ({where}" + (f", near {near!r})" if near else ")")
    return _ANSI_RE.sub("", str(err)).split("\n")[0]


# Parsed trees shared by the checks and analyses of one query (the allow-list, row order,
# hardness, features, exact-set match all read the same gold and predicted query, and
# sqlglot parsing was most of evaluate's scoring time): the last SHARED_TREES_KEPT texts,
# with their parse error when they had one. Read-only: a caller that changes a tree copies
# it first (``tree.copy()``); :func:`parse_statement` still returns a tree of its own.
SHARED_TREES_KEPT = 128
_shared_trees: OrderedDict[tuple[str, str], list[exp.Expr] | Exception] = OrderedDict()
_shared_lock = threading.Lock()


_shared_tokens: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()


def tokenize_shared(text: str, dialect: str) -> list[Any]:
    """sqlglot's tokens of ``text`` in ``dialect``, made once and shared with
    :func:`parse_shared` (the execution layer compares them with the server's reading, then
    parses the same text).

    Raises:
        sqlglot.errors.SqlglotError: The text cannot be tokenized (or the dialect is unknown).
    """
    key = (text, dialect)
    with _shared_lock:
        found = _shared_tokens.get(key)
    if found is None:
        from sqlglot.dialects.dialect import Dialect

        found = Dialect.get_or_raise(dialect).tokenize(text)
        with _shared_lock:
            _shared_tokens[key] = found
            while len(_shared_tokens) > SHARED_TREES_KEPT:
                _shared_tokens.popitem(last=False)
    return found


def parse_shared(text: str, dialect: str) -> list[exp.Expr]:
    """The statements sqlglot reads in ``text``, parsed once and shared (do not change them).

    Raises:
        sqlglot.errors.SqlglotError: The text does not parse.
        RecursionError: The text nests deeper than the parser can follow.
    """
    key = (text, dialect)
    with _shared_lock:
        found = _shared_trees.get(key)
        if found is not None:
            _shared_trees.move_to_end(key)
        tokens = _shared_tokens.get(key) if found is None else None
    if found is None:
        try:
            found = parse_statements(text, dialect, tokens)
        except (SqlglotError, RecursionError) as err:
            found = err
        with _shared_lock:
            _shared_trees[key] = found
            while len(_shared_trees) > SHARED_TREES_KEPT:
                _shared_trees.popitem(last=False)
    if isinstance(found, Exception):
        raise found
    return found


def parse_statement_shared(sql: str, dialect: str) -> exp.Expr | None:
    """:func:`parse_statement`'s answer from the shared trees: read it, never change it."""
    try:
        trees = parse_shared(sql, dialect)
    except Exception:  # ParseError, TokenError, ValueError (unknown dialect), RecursionError...
        return None
    return trees[0] if len(trees) == 1 else None


def _parse_one(sql: str, dialect: str) -> exp.Expression:
    """Parse exactly one statement (a shared tree: read it, never change it); raise
    ValueError with a readable message otherwise."""
    pieces = split_statements(sql)
    if not pieces:
        raise ValueError("empty statement")
    if len(pieces) > 1:
        raise ValueError(f"expected one statement, found {len(pieces)}")
    try:
        trees = parse_shared(pieces[0], dialect)
    except (SqlglotError, RecursionError) as err:
        raise ValueError(_error_text(err)) from err
    if len(trees) != 1:
        raise ValueError(f"expected one statement, found {len(trees)}")
    return trees[0]


def parse_statement(sql: str, dialect: str) -> exp.Expr | None:
    """The one statement sqlglot reads in the text, or None: none or several, a parse error,
    an unknown dialect. Never raises, for text (model output) that callers must survive."""
    try:
        trees = parse_statements(sql, dialect)
    except Exception:  # ParseError, TokenError, ValueError (unknown dialect), RecursionError...
        return None
    return trees[0] if len(trees) == 1 else None


def parses(sql: str, dialect: str = "sqlite") -> str | None:
    """Check that sqlglot parses the text as exactly one statement.

    Args:
        sql: SQL text.
        dialect: sqlglot dialect name.

    Returns:
        None when it parses, else the error message.
    """
    try:
        _parse_one(sql, dialect)
    except ValueError as err:
        return str(err)
    return None


def _node_types(*names: str) -> tuple[type[exp.Expression], ...]:
    # Look names up defensively: sqlglot renames node classes between releases.
    return tuple(getattr(exp, n) for n in names if hasattr(exp, n))


_WRITE_NODES = _node_types(
    "Insert",
    "Update",
    "Delete",
    "Merge",
    "Create",
    "Drop",
    "Alter",
    "AlterTable",
    "Command",
    "Pragma",
    "Attach",
    "Detach",
    "Into",
    "Copy",
    "Set",
    "Transaction",
    "Commit",
    "Rollback",
    "Use",
    "LoadData",
    "Lock",
    "TruncateTable",
    "Analyze",
    "Grant",
    "Revoke",
    "Kill",
    "Refresh",
    "Cache",
    "Uncache",
)
# Functions that read or write files, load code or change server state.
# fmt: off
_DENIED_FUNCTIONS = frozenset({
    "load_extension", "writefile", "readfile", "edit", "fts3_tokenizer", "pg_read_file",
    "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_sleep", "pg_terminate_backend",
    "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "lo_import", "lo_export",
    "lo_unlink", "set_config", "nextval", "setval", "dblink", "dblink_exec", "dblink_connect"
})
# fmt: on


def is_read_only_statement(sql: str, dialect: str = "sqlite") -> tuple[bool, str]:
    """Allow-list check that the text is one read-only query.

    Accepted: exactly one statement (after comment stripping) that is a SELECT, a set
    operation (UNION / INTERSECT / EXCEPT) or a ``WITH ... SELECT``, possibly parenthesised.
    Refused: anything else, including several statements (also when the second hides behind a
    comment), a CTE that holds INSERT/UPDATE/DELETE, ``SELECT ... INTO``, row locking
    (``FOR UPDATE``), and functions that touch files or server state (``load_extension``,
    ``pg_read_file``, ``nextval``, ...).

    Args:
        sql: SQL text.
        dialect: sqlglot dialect name used to parse it.

    Returns:
        ``(True, "")`` when allowed, else ``(False, reason)``; the reason starts with
        ``"syntax error: "`` when sqlglot cannot parse the text.
    """
    pieces = split_statements(sql)
    if not pieces:
        return False, "empty statement: there is no SQL to run"
    if len(pieces) > 1:
        return False, f"several statements ({len(pieces)}); only one query may run at a time"
    first = _significant(pieces[0])[0]
    if first.upper not in ("SELECT", "WITH") and first.text != "(":
        return False, f"only SELECT queries may run, not {first.text.upper()} statements"
    try:
        tree = _parse_one(pieces[0], dialect)
    except ValueError as err:
        return False, f"syntax error: {err}"
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, exp.Select | exp.SetOperation):
        return False, f"only SELECT queries may run, not {type(root).__name__.upper()} statements"
    for node in tree.walk():
        if isinstance(node, _WRITE_NODES):
            what = "SELECT ... INTO" if isinstance(node, exp.Into) else type(node).__name__.upper()
            return False, f"{what} found inside the query; only read-only queries may run"
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in _DENIED_FUNCTIONS:
                return False, f"the function {name}() is not allowed in read-only queries"
    return True, ""


def _has_order_by_tokens(sql: str) -> bool:
    depth = 0
    prev = ""
    for tok in _significant(sql):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        elif depth == 0 and prev == "ORDER" and tok.upper == "BY":
            return True
        prev = tok.upper
    return False


def has_order_by(sql: str, dialect: str = "sqlite") -> bool:
    """Whether the outermost query has an ORDER BY (so its row order is part of the answer).

    ORDER BY inside subqueries, CTEs or window definitions does not count. Uses sqlglot, and
    falls back to a scan for ``ORDER BY`` outside parentheses when sqlglot cannot parse it.

    Args:
        sql: One query.
        dialect: sqlglot dialect name.

    Returns:
        True when the outermost query orders its rows.
    """
    try:
        tree = _parse_one(sql, dialect)
    except ValueError:
        return _has_order_by_tokens(strip_comments(sql))
    while isinstance(tree, exp.Subquery) and not tree.args.get("order"):
        tree = tree.this
    return bool(tree.args.get("order"))


def mentions_order_by(sql: str) -> bool:
    """The official Spider evaluator's test for whether row order counts: "order by" anywhere
    in the text (a subquery, a string literal), case-insensitive."""
    return "order by" in sql.lower()


def tables_in(sql: str, dialect: str = "sqlite") -> set[str]:
    """Lower-case names of the tables a query reads (CTE names excluded).

    Args:
        sql: One query.
        dialect: sqlglot dialect name.

    Returns:
        The table names, without schema qualifiers.

    Raises:
        ValueError: When sqlglot cannot parse the text as one statement.
    """
    try:
        tree = _parse_one(sql, dialect)
    except ValueError as err:
        raise ValueError(f"cannot find the tables of a query that does not parse: {err}") from err
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if name and not (name in ctes and not table.db):
            names.add(name)
    return names
