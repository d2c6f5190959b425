"""The query-correct engine: named rules that turn raw model output into a runnable query.

:func:`correct_sql` applies the rules in :data:`RULES` order, each a plain function of the
text, each switchable by name:

1. ``extract_statement``: the SQL statement out of chatter (:func:`querycraft.sql.extract_sql`:
   code fences, "SQL:" lead-ins, inline code spans, echoed template markers, a schema echo of
   CREATE TABLE statements before the query, trailing explanations, extra statements).
2. ``join_split_operators``: ``> =``, ``< =``, ``! =``, ``< >`` written back together, outside
   string literals, quoted identifiers and comments.
3. ``balance_quotes_and_parentheses``: a string literal left open at the very end is closed,
   and exactly one missing ``)`` at the end is added (or one extra trailing ``)`` dropped),
   only where the place is unambiguous; done where the model's output ends, it is listed in
   ``unresolved`` as a guess (generation cut off at its token limit ends like that).
4. ``fix_identifiers`` (needs a schema): tables and columns matched case-insensitively and
   written as the schema spells them; a name that does not exist replaced by the closest
   existing one (tables among the schema's tables, columns among the columns of the tables in
   scope) when that one is close and unambiguous; an unqualified column that several joined
   tables have is qualified. Only the identifiers are edited, the rest of the text is kept.
   A name that ends the model's output and is the start of its closest match (``WHERE
   unit_pri``) was cut off, not misspelt: it is reported, not completed.
5. ``fix_qualifiers`` (needs a schema): a column qualified with a table or alias of its
   SELECT whose table lacks it (``T1.name`` where T1 is order_item) is qualified with the one
   other table of that SELECT's FROM that has it; with several, or a table of unknown
   columns there, it is left and reported. Correlated references to an outer query are left
   alone (see :meth:`_IdentifierFixer.fix_qualifiers`).
6. ``fit_dialect``: the query written in the target dialect. Text that does not parse in the
   read dialect is parsed as T-SQL, MySQL or PostgreSQL (``SELECT TOP 3``, ``FETCH FIRST``...),
   functions the target lacks are taken from another dialect (``NOW()``), and ``ILIKE``
   becomes ``LIKE`` for SQLite (whose LIKE already ignores ASCII case).
7. ``reformat``: re-rendered with sqlglot when it parses, in the target dialect.

Rules 6 and 7 leave a statement that is no query (a CREATE TABLE echo) as it is and report
that it cannot run.

Nothing here raises on bad SQL: what no rule could fix is listed in ``Correction.unresolved``.
:func:`validate` checks a corrected query against a SQLite database without running it.

Closeness (rule 4): the Damerau-Levenshtein distance (adjacent swaps count one edit) between
lower-cased names must be at most ``min(max_edit_distance, max(1, len(name) // 4))`` (one
edit for names of up to 7 characters, two from 8, never more than ``max_edit_distance``),
names shorter than 3 characters are never replaced, and the closest candidate must be the
only one at its distance.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel
from sqlglot.optimizer.scope import Scope, traverse_scope

from querycraft.sql import extract_sql, split_statements

__all__ = [
    "RULES",
    "Correction",
    "correct_sql",
    "dialect_known",
    "schema_from_ddl",
    "validate",
]

RULES: tuple[str, ...] = (
    "extract_statement",
    "join_split_operators",
    "balance_quotes_and_parentheses",
    "fix_identifiers",
    "fix_qualifiers",
    "fit_dialect",
    "reformat",
)

# Dialects tried, in this order, for text the read dialect cannot parse. T-SQL and MySQL
# order NULLs like SQLite; PostgreSQL comes last because reading with it adds NULLS LAST to
# every ORDER BY written for SQLite.
FALLBACK_DIALECTS: tuple[str, ...] = ("tsql", "mysql", "postgres")

MIN_FUZZY_LENGTH = 3

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

# How much of a statement's end is compared with the end of the raw output.
_TAIL_CHARS = 24

# SQLite's implicit row-id columns: valid on every ordinary table.
_ROWID_NAMES = frozenset({"rowid", "oid", "_rowid_"})

_SAFE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Correction:
    """What :func:`correct_sql` made of one raw output.

    Attributes:
        sql: The corrected statement.
        fired: The rules that changed the text, in the order they ran.
        unresolved: Problems no rule could fix (or fixed by a guess), one sentence each.
    """

    sql: str
    fired: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


@dataclass
class _Context:
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


# --------------------------------------------------------------------------------------------
# Text segments: code vs literals, quoted identifiers and comments
# --------------------------------------------------------------------------------------------

_SEGMENT_RE = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*(?:(?P<string_end>')|\Z))
  | (?P<dquote>"(?:[^"]|"")*(?:(?P<dquote_end>")|\Z))
  | (?P<bquote>`(?:[^`]|``)*(?:(?P<bquote_end>`)|\Z))
  | (?P<bracket>\[[^\]]*(?:(?P<bracket_end>\])|\Z))
  | (?P<code>[^'"`\[/-]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class _Segment:
    kind: str  # code, comment, string, dquote, bquote or bracket
    text: str
    start: int
    closed: bool = True

    @property
    def end(self) -> int:
        return self.start + len(self.text)


def _segments(sql: str) -> list[_Segment]:
    """The text cut into code and quoted pieces; adjacent code pieces merged."""
    out: list[_Segment] = []
    for m in _SEGMENT_RE.finditer(sql):
        kind = m.lastgroup or "code"
        if kind.endswith("_end"):
            kind = kind[: -len("_end")]
        closed = kind in ("code", "comment") or m.group(f"{kind}_end") is not None
        if kind == "comment" and m.group().startswith("/*"):
            closed = m.group().endswith("*/") and len(m.group()) >= 4
        if kind == "code" and out and out[-1].kind == "code":
            prev = out.pop()
            out.append(_Segment("code", prev.text + m.group(), prev.start))
            continue
        out.append(_Segment(kind, m.group(), m.start(), closed))
    return out


def _map_code(sql: str, function: Callable[[str], str]) -> str:
    return "".join(function(s.text) if s.kind == "code" else s.text for s in _segments(sql))


# --------------------------------------------------------------------------------------------
# Rule 1: extract the statement
# --------------------------------------------------------------------------------------------

# "... WHERE age > 20. This query ...": the lexer reads "20." as a number, so the sentence
# after it is not cut by extract_sql; cut it here.
_NUMBER_SENTENCE_RE = re.compile(r"(?<=\d)\.\s+([A-Z][a-z]+)\b")


@functools.cache
def _sqlglot_keywords() -> frozenset[str]:
    return frozenset(sqlglot.tokens.Tokenizer.KEYWORDS)


def extract_statement(sql: str, ctx: _Context) -> str:
    """The first SQL statement in the text, without chatter around it."""
    out = extract_sql(sql)
    pieces: list[str] = []
    for seg in _segments(out):
        if seg.kind == "code":
            m = next((m for m in _NUMBER_SENTENCE_RE.finditer(seg.text)
                      if m.group(1).upper() not in _sqlglot_keywords()), None)
            if m:
                pieces.append(seg.text[: m.start()])
                return "".join(pieces).strip()
        pieces.append(seg.text)
    return out


# --------------------------------------------------------------------------------------------
# Rule 2: split operators
# --------------------------------------------------------------------------------------------

_SPLIT_OPERATOR_RE = re.compile(r"(?<![<>!=])([<>!])[ \t\r\n]+=(?![=>])")
_SPLIT_NOT_EQUAL_RE = re.compile(r"(?<![<>!=])<[ \t\r\n]+>(?![=>])")


def _join_operators(code: str) -> str:
    return _SPLIT_NOT_EQUAL_RE.sub("<>", _SPLIT_OPERATOR_RE.sub(r"\1=", code))


def join_split_operators(sql: str, ctx: _Context) -> str:
    """``a > = 1`` -> ``a >= 1`` (also ``< =``, ``! =``, ``< >``) outside literals."""
    return _map_code(sql, _join_operators)


# --------------------------------------------------------------------------------------------
# Rule 3: balance quotes and parentheses
# --------------------------------------------------------------------------------------------

_CLOSERS = {"string": "'", "dquote": '"', "bquote": "`", "bracket": "]"}
# Words that would end a value: an open literal holding one of them has no clear end.
_CLAUSE_WORDS_RE = re.compile(
    r"\b(?:and|or|from|where|group|order|having|limit|union|intersect|except|join|on|select)\b",
    re.IGNORECASE,
)
_TOP_CLAUSE_RE = re.compile(
    r"\b(?:from|where|group|order|having|limit|union|intersect|except|join)\b", re.IGNORECASE
)


def _paren_depths(segments: list[_Segment]) -> tuple[int, int, list[int]]:
    """Final depth, lowest depth reached, and offsets of the '(' still open at the end."""
    depth, lowest, open_at = 0, 0, []
    for seg in segments:
        if seg.kind != "code":
            continue
        for i, ch in enumerate(seg.text):
            if ch == "(":
                depth += 1
                open_at.append(seg.start + i)
            elif ch == ")":
                depth -= 1
                lowest = min(lowest, depth)
                if open_at:
                    open_at.pop()
    return depth, lowest, open_at


def balance_quotes_and_parentheses(sql: str, ctx: _Context) -> str:
    """Close a literal left open at the end; add the one ')' missing at the end.

    A literal is closed only when its text holds no clause word or parenthesis (otherwise
    where it should end is a guess). A ')' is added only when exactly one is missing and the
    '(' left open starts a subquery or holds no clause keyword (``IN (1, 2``, ``count(*``); a
    single extra ')' is dropped only when it is the last character. When the output itself
    ends there, it may have been cut off at the token limit (``channel = 'SMS_SMS_``), so the
    fix is a guess and is listed in ``unresolved``.
    """
    segments = _segments(sql)
    text = sql
    last = segments[-1] if segments else None
    if last is not None and not last.closed and last.kind in _CLOSERS:
        body = last.text[1:]
        if _CLAUSE_WORDS_RE.search(body) or any(c in body for c in "()"):
            ctx.note(f"unclosed quote {last.text[0]} at offset {last.start}: where it should "
                     f"end is unclear")
            return sql
        text = sql.rstrip("\n") + _CLOSERS[last.kind]
        if ctx.ends_output(sql):  # real outputs end inside a literal when cut off
            ctx.note(f"closed the quote {last.text[0]} left open at the end of the output; "
                     f"the output may have been cut off inside the literal")
        segments = _segments(text)
    elif last is not None and not last.closed:
        return sql  # an open block comment: nothing to balance after it
    depth, lowest, open_at = _paren_depths(segments)
    if depth == 1 and lowest >= 0:
        inside = text[open_at[0] + 1 :]
        subquery = inside.lstrip().upper().startswith(("SELECT", "WITH"))
        if inside.strip() and (subquery or not _TOP_CLAUSE_RE.search(_code_only(inside))):
            # Before a trailing comment, if any.
            tail = next((seg for seg in reversed(segments)
                         if seg.kind != "comment" and seg.text.strip()), None)
            cut = tail.start + len(tail.text.rstrip()) if tail is not None else len(text)
            rest = text[cut:].strip()
            if ctx.ends_output(text[:cut]):
                ctx.note("added the ')' missing at the end of the output; the output may have "
                         "been cut off there")
            return text[:cut] + ")" + (" " + rest if rest else "")
        ctx.note("one ')' is missing and where it belongs is unclear")
    elif depth == -1 and lowest == -1 and text.rstrip().endswith(")"):
        trimmed = text.rstrip()[:-1]
        d, low, _ = _paren_depths(_segments(trimmed))
        if d == 0 and low == 0:
            return trimmed.rstrip()
        ctx.note("unbalanced parentheses")
    elif depth != 0 or lowest < 0:
        ctx.note("unbalanced parentheses")
    return text


def _code_only(sql: str) -> str:
    """The code segments of the text, literals and comments blanked out."""
    return "".join(s.text if s.kind == "code" else " " for s in _segments(sql))


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


@functools.cache
def _load_plugin_dialects() -> bool:
    """Import querycraft.dialects (the Db2 dialect) when it is installed."""
    try:
        import querycraft.dialects  # noqa: F401
    except ImportError:
        return False
    return True


def dialect_known(name: str) -> bool:
    """Whether sqlglot (with the Db2 plugin, when installed) knows the dialect."""
    _load_plugin_dialects()
    try:
        Dialect.get_or_raise(name)
    except Exception:  # sqlglot raises ValueError (or others across versions)
        return False
    return True


def _parse(sql: str, dialect: str) -> exp.Expr | None:
    """One statement parsed with ``dialect``, or None (several statements, error, command)."""
    _load_plugin_dialects()
    try:
        trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except Exception:  # ParseError, TokenError, unknown dialect, RecursionError...
        return None
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return None
    return trees[0]


def _parse_error(sql: str, dialect: str) -> str:
    try:
        sqlglot.parse(sql, read=dialect)
    except Exception as err:  # the message only
        return re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split("\n")[0]
    return "not one statement"


def _fallbacks(sql: str, read: str) -> list[str]:
    dialects = [d for d in FALLBACK_DIALECTS if d != read]
    if "||" in _code_only(sql):
        dialects = [d for d in dialects if d != "mysql"]  # MySQL reads || as OR
    return dialects


def _parse_leniently(sql: str, read: str) -> tuple[exp.Expr, str] | None:
    """The tree and the dialect that parsed it: the read dialect first, then the fallbacks."""
    for dialect in [read, *_fallbacks(sql, read)]:
        tree = _parse(sql, dialect)
        if tree is not None:
            return tree, dialect
    return None


def _render(tree: exp.Expr, dialect: str, ctx: _Context) -> str:
    """The tree in ``dialect``; constructs the dialect cannot express are noted."""
    try:
        return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as err:
        ctx.note(f"not expressible in {dialect}: {str(err).splitlines()[0]}")
    return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.IGNORE)


def _ident_sql(name: str, dialect: str, quote_like: str | None = None) -> str:
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


# --------------------------------------------------------------------------------------------
# Rule 4: identifiers against the schema
# --------------------------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: a swap is one edit)."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(
    name: str, candidates: list[str], max_edit_distance: int
) -> tuple[str | None, list[str]]:
    """The one candidate close enough to ``name``, and the nearest candidates for messages.

    Returns:
        ``(match, nearest)``: match is None when no candidate is within the limit (see the
        module docstring) or when several are equally close.
    """
    lowered = name.lower()
    scored = sorted({(edit_distance(lowered, c.lower()), c.lower(), c) for c in candidates})
    nearest = [c for _, _, c in scored[:5]]
    if len(lowered) < MIN_FUZZY_LENGTH or not scored:
        return None, nearest
    limit = min(max_edit_distance, max(1, len(lowered) // 4))
    best = scored[0][0]
    if best > limit:
        return None, nearest
    winners = {low for d, low, _ in scored if d == best}
    if len(winners) != 1:
        return None, nearest
    return scored[0][2], nearest


class _Columns:
    """The columns a source offers: lower-case name -> spelling, or open (unknown)."""

    def __init__(self, names: list[str] | None) -> None:
        self.open = names is None
        self.by_lower = {n.lower(): n for n in reversed(names or [])}

    def get(self, name: str) -> str | None:
        return self.by_lower.get(name.lower())

    def has(self, name: str) -> bool:
        return self.open or name.lower() in self.by_lower


@dataclass
class _Source:
    name: str  # how the query names it (alias, or the table's name)
    node: exp.Expr
    columns: _Columns
    table: exp.Table | None  # the table node when the source is a table without alias
    # Other names it answers to: a misspelled table's name as written, when fixed.
    also: tuple[str, ...] = ()


class _IdentifierFixer:
    """Edits identifiers in place: spans of the original text, the tree kept in step."""

    def __init__(self, sql: str, tree: exp.Expr, dialect: str, ctx: _Context) -> None:
        self.sql = sql
        self.tree = tree
        self.dialect = dialect
        self.ctx = ctx
        assert ctx.schema is not None
        self.tables = {t.lower(): (t, _Columns(list(cols))) for t, cols in ctx.schema.items()}
        self.table_names = list(ctx.schema)
        self.edits: dict[int, tuple[exp.Identifier, str]] = {}
        self.positional = True
        self.resolved: dict[int, str] = {}  # id(Table node) -> schema table spelling
        self.written: dict[int, str] = {}  # id(Table node) -> its name before a fix
        self.ctes = {c.alias_or_name.lower(): c.alias_or_name for c in tree.find_all(exp.CTE)}

    # ---- edits

    def _edit(self, ident: exp.Identifier, new_name: str, qualifier: str | None = None) -> None:
        meta = ident.meta or {}
        start, end = meta.get("start"), meta.get("end")
        original = None
        if isinstance(start, int) and isinstance(end, int):
            original = self.sql[start : end + 1]
            if ident.quoted:
                ok = len(original) >= 2 and original[0] in "\"`[" and (
                    original[1:-1].replace(original[-1] * 2, original[-1]) == ident.this)
            else:
                ok = original == ident.this
            if not ok:
                self.positional = False
        else:
            self.positional = False
        text = _ident_sql(new_name, self.dialect, original if ident.quoted else None)
        if qualifier is not None:
            text = f"{qualifier}.{text}"
        self.edits[id(ident)] = (ident, text)

    def _to_string(self, column: exp.Column) -> None:
        """A double-quoted name SQLite reads as a string, written as a string literal."""
        ident = column.this
        meta = ident.meta or {}
        literal = exp.Literal.string(ident.this)
        if isinstance(meta.get("start"), int):
            self.edits[id(ident)] = (ident, literal.sql(dialect=self.dialect))
        else:
            self.positional = False
        column.replace(literal)

    def _rename(self, ident: exp.Identifier, new_name: str) -> None:
        if ident.this == new_name:
            return
        self._edit(ident, new_name)
        ident.set("this", new_name)
        if not ident.quoted and _ident_sql(new_name, self.dialect) != new_name:
            ident.set("quoted", True)

    def _qualify(self, column: exp.Column, qualifier: str, name: str) -> None:
        ident = column.this
        self._edit(ident, name, qualifier=_ident_sql(qualifier, self.dialect))
        ident.set("this", name)
        column.set("table", exp.to_identifier(qualifier))

    def result(self) -> str:
        if not self.edits:
            return self.sql
        if not self.positional:
            return _render(self.tree, self.dialect, self.ctx)
        spans = []
        for ident, text in self.edits.values():
            spans.append((ident.meta["start"], ident.meta["end"] + 1, text))
        out = self.sql
        for start, end, text in sorted(spans, reverse=True):
            out = out[:start] + text + out[end:]
        return out

    # ---- tables

    def fix_tables(self, *, repair: bool = True) -> None:
        """Resolve the query's tables against the schema; with ``repair``, also spell them
        as the schema does and replace unknown ones by the closest."""
        for table in self.tree.find_all(exp.Table):
            ident = table.this
            if not isinstance(ident, exp.Identifier) or not ident.this:
                continue
            name = ident.this
            if not table.db and name.lower() in self.ctes:
                continue
            known = self.tables.get(name.lower())
            if known is not None:
                self.resolved[id(table)] = known[0]
                if repair:
                    self._rename(ident, known[0])
                continue
            if not repair:
                continue  # an unknown table: its columns stay unknown
            candidates = self.table_names + ([] if table.db else list(self.ctes.values()))
            match, nearest = closest(name, candidates, self.ctx.max_edit_distance)
            if match is None:
                self.ctx.note(f"table '{name}' not found (candidates: {', '.join(nearest)})")
                continue
            if self._cut_off(ident, match, "table"):
                continue
            if match.lower() in self.tables:
                self.resolved[id(table)] = self.tables[match.lower()][0]
            self.written[id(table)] = name
            self._rename(ident, match)

    # ---- columns

    def _sources(self, scope: Scope) -> list[_Source]:
        out = []
        try:
            selected = scope.selected_sources
        except Exception:  # a repeated alias: sqlglot refuses to resolve the scope
            return []
        for name, (node, source) in selected.items():
            if isinstance(source, exp.Table):
                spelled = self.resolved.get(id(source))
                columns = self.tables[spelled.lower()][1] if spelled else _Columns(None)
                no_alias = not source.alias
                written = self.written.get(id(source))
                out.append(_Source(name, node, columns, source if no_alias else None,
                                   (written,) if written and no_alias else ()))
            else:
                out.append(_Source(name, node, _Columns(_outputs(source)), None))
        return out

    def _cut_off(self, ident: exp.Identifier, match: str, what: str) -> bool:
        """Whether the name is the output's unfinished last word: the last thing in the text
        and in the model's output, and the start of ``match`` (``WHERE unit_pri``). Output cut
        at the token limit ends like that; completing the word would guess a different query
        (the rest of it is lost), so it is reported instead."""
        end = (ident.meta or {}).get("end")
        name, full = ident.this.lower(), match.lower()
        if (not isinstance(end, int) or self.sql[end + 1 :].strip() or name == full
                or not full.startswith(name) or not self.ctx.ends_output(self.sql)):
            return False
        self.ctx.note(f"{what} '{ident.this}' ends the output unfinished (the start of "
                      f"'{match}'?); not completed")
        return True

    def _source_name(self, source: _Source) -> str:
        if source.table is not None:  # named by the table itself: its (fixed) spelling
            return source.table.name
        return source.name

    def fix_columns(self) -> None:
        try:
            scopes = traverse_scope(self.tree)
        except Exception as err:  # sqlglot could not work out the scopes
            self.ctx.note(f"columns not checked: {err}")
            return
        sources_of = {id(s): self._sources(s) for s in scopes}
        for scope in scopes:
            local = sources_of[id(scope)]
            outer: list[_Source] = []
            parent = scope.parent
            while parent is not None:
                outer.extend(sources_of.get(id(parent)) or self._sources(parent))
                parent = parent.parent
            aliases = _select_aliases(scope.expression)
            joins = scope.expression.args.get("joins") or [] if isinstance(
                scope.expression, exp.Select) else []
            natural = any((j.args.get("method") or "").upper() == "NATURAL" for j in joins)
            using = {i.name.lower() for j in joins for i in (j.args.get("using") or [])}
            for column in list(scope.walk()):
                if type(column) is not exp.Column or not isinstance(column.this,
                                                                    exp.Identifier):
                    continue
                if column.args.get("db"):
                    continue  # schema.table.column: left as written
                if column.table:
                    self._fix_qualified(column, local, outer)
                else:
                    self._fix_unqualified(column, scope, local, outer, aliases,
                                          natural or column.name.lower() in using)

    def _fix_qualified(self, column: exp.Column, local: list[_Source],
                       outer: list[_Source]) -> None:
        qualifier = column.args["table"]
        source = _find_source(qualifier.name, local) or _find_source(qualifier.name, outer)
        if source is None:
            names = [s.name for s in local + outer]
            match, nearest = closest(qualifier.name, names, self.ctx.max_edit_distance)
            if match is None:
                self.ctx.note(f"table or alias '{qualifier.name}' of column "
                              f"'{column.name}' not found (candidates: {', '.join(nearest)})")
                return
            source = _find_source(match, local) or _find_source(match, outer)
            assert source is not None
        wanted = self._source_name(source)
        if qualifier.this != wanted:
            self._rename(qualifier, wanted)
        if self.ctx.requalify and _holders_elsewhere(column.name, source, local):
            return  # the right name under the wrong qualifier: fix_qualifiers decides
        self._fix_name(column, [source], f"table '{wanted}'")

    def _fix_name(self, column: exp.Column, sources: list[_Source], where: str) -> None:
        """Spell the column as its source does, or replace it by the closest there."""
        name = column.name
        if name.lower() in _ROWID_NAMES or any(s.columns.open for s in sources):
            return
        for source in sources:
            spelled = source.columns.get(name)
            if spelled is not None:
                self._rename(column.this, spelled)
                return
        candidates = list(dict.fromkeys(c for s in sources for c in s.columns.by_lower.values()))
        match, nearest = closest(name, candidates, self.ctx.max_edit_distance)
        if match is None:
            self.ctx.note(f"column '{name}' not found in {where} "
                          f"(candidates: {', '.join(nearest)})")
            return
        if self._cut_off(column.this, match, "column"):
            return
        self._rename(column.this, match)

    def _fix_unqualified(self, column: exp.Column, scope: Scope, local: list[_Source],
                         outer: list[_Source], aliases: dict[str, str], shared: bool) -> None:
        name = column.name
        lowered = name.lower()
        if lowered in _ROWID_NAMES:
            return
        holders = [s for s in local if not s.columns.open and s.columns.get(name)]
        if not holders:
            if lowered in aliases or any(s.columns.open for s in local):
                return
            if any(s.columns.has(name) for s in outer):
                return  # a correlated reference to an outer query
            start = (column.this.meta or {}).get("start")
            if (column.this.quoted and self.ctx.read == "sqlite" and isinstance(start, int)
                    and self.sql[start] == '"'):
                # SQLite reads a double-quoted name that is no column as a string.
                if self.ctx.write != "sqlite":
                    self._to_string(column)
                return
            candidates = [c for s in local for c in s.columns.by_lower.values()]
            candidates += list(aliases.values())
            if not local:
                candidates += [c for s in outer for c in s.columns.by_lower.values()]
            match, nearest = closest(name, list(dict.fromkeys(candidates)),
                                     self.ctx.max_edit_distance)
            if match is None:
                self.ctx.note(f"column '{name}' not found in scope "
                              f"(candidates: {', '.join(nearest)})")
                return
            if self._cut_off(column.this, match, "column"):
                return
            holders = [s for s in local if s.columns.get(match)]
            if not holders:  # a select alias
                self._rename(column.this, match)
                return
            name = match
        if len(holders) == 1 or shared:
            self._rename(column.this, holders[0].columns.get(name) or name)
            return
        # In several joined tables: qualify with the first of them in FROM order.
        first = holders[0]
        spelled = first.columns.get(name) or name
        qualifier = self._source_name(first)
        if not _equi_joined(scope, name, [self._source_name(h) for h in holders]):
            self.ctx.note(f"column '{spelled}' is in several tables in scope "
                          f"({', '.join(self._source_name(h) for h in holders)}); "
                          f"qualified with '{qualifier}', the first in FROM")
        self._qualify(column, qualifier, spelled)

    # ---- qualifiers (rule fix_qualifiers)

    def fix_qualifiers(self) -> None:
        """Re-qualify columns whose qualifier's table lacks them, one SELECT scope at a time.

        ``X.col`` becomes ``Y.col`` only when X names a source of the column's own scope (its
        FROM and JOINs; a subquery has its own), X's columns are known and lack ``col``, the
        other sources of the scope all have known columns, and Y is the only one of them
        with ``col``. Y is written as the query names it: its alias, else its table's name.
        Left as written, and reported: several candidates, a source of unknown columns
        beside the one candidate, and a rewrite that would turn an equality between two
        sources into one within a source (``ON T1.a = T2.b`` into ``ON T1.a = T1.b`` no
        longer joins). Left alone: X naming an outer query's source (a correlated
        reference: the inner query sees the tables of every enclosing scope, so which was
        meant is a guess), and a column no source of the scope has (fix_identifiers' job).
        """
        try:
            scopes = traverse_scope(self.tree)
        except Exception:  # fix_identifiers reports scopes sqlglot cannot work out
            return
        planned: dict[int, tuple[exp.Column, _Source]] = {}
        for scope in scopes:
            local = self._sources(scope)
            for column in scope.walk():
                if (type(column) is not exp.Column or not isinstance(column.this, exp.Identifier)
                        or not column.table or column.args.get("db")):
                    continue
                qualifier = column.args["table"]
                source = _find_source(qualifier.name, local)
                if source is None:
                    continue  # an outer query's source, or a name fix_identifiers reported
                holders = _holders_elsewhere(column.name, source, local)
                if not holders:
                    continue
                where = (f"column '{qualifier.name}.{column.name}': '{qualifier.name}' has no "
                         f"column '{column.name}'")
                if len(holders) > 1:
                    names = ", ".join(self._source_name(h) for h in holders)
                    self.ctx.note(f"{where} and several tables in scope have it ({names}); "
                                  f"left as written")
                elif any(s.columns.open for s in local if s is not source):
                    self.ctx.note(f"{where}; '{self._source_name(holders[0])}' has it, but so "
                                  f"may a source in scope whose columns are unknown; left as "
                                  f"written")
                else:
                    planned[id(column)] = (column, holders[0])
        # Decided on the qualifiers as written, before any is changed.
        renames = []
        for column, holder in planned.values():
            new = self._source_name(holder)
            partner = _compared_column(column)
            if partner is not None and partner.table.lower() != column.table.lower():
                partner_plan = planned.get(id(partner))
                after = self._source_name(partner_plan[1]) if partner_plan else partner.table
                if after.lower() == new.lower():
                    self.ctx.note(f"column '{column.table}.{column.name}': only '{new}' has "
                                  f"'{column.name}', but the equality would then compare two "
                                  f"columns of '{new}' instead of two tables; left as written")
                    continue
            renames.append((column, holder, new))
        for column, holder, new in renames:
            self._rename(column.args["table"], new)
            self._rename(column.this, holder.columns.get(column.name) or column.name)


def _find_source(name: str, sources: list[_Source]) -> _Source | None:
    lowered = name.lower()
    for source in sources:
        if source.name.lower() == lowered:
            return source
    for source in sources:
        if lowered in (a.lower() for a in source.also):
            return source
    return None


def _holders_elsewhere(name: str, source: _Source, local: list[_Source]) -> list[_Source]:
    """The other sources of the scope that have column ``name``, when ``source`` (one of the
    scope's own, with known columns) lacks it; else none."""
    if (name.lower() in _ROWID_NAMES or source.columns.has(name)
            or not any(s is source for s in local)):
        return []
    return [s for s in local if s is not source and s.columns.get(name)]


def _select_aliases(expression: exp.Expr) -> dict[str, str]:
    if not isinstance(expression, exp.Select):
        return {}
    return {e.alias.lower(): e.alias for e in expression.expressions if e.alias}


def _outputs(scope: Scope) -> list[str] | None:
    """The column names a derived table or CTE offers; None when they cannot be known."""
    if scope.outer_columns:
        return list(scope.outer_columns)
    expression = scope.expression
    if isinstance(expression, exp.Subquery):
        expression = expression.unnest()
    if not isinstance(expression, exp.Query):
        return None
    names = []
    for projection in expression.selects:
        if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
            return None
        if projection.alias_or_name:
            names.append(projection.alias_or_name)
        else:
            return None  # an unnamed expression: SQLite names it by its text
    return names


def _equi_joined(scope: Scope, name: str, qualifiers: list[str]) -> bool:
    """Whether the scope's joins equate ``name`` across the tables that have it."""
    lowered = name.lower()
    quals = {q.lower() for q in qualifiers}
    linked: set[str] = set()
    for eq in scope.expression.find_all(exp.EQ):
        left, right = eq.left, eq.right
        if (isinstance(left, exp.Column) and isinstance(right, exp.Column)
                and left.name.lower() == right.name.lower() == lowered
                and left.table.lower() in quals and right.table.lower() in quals):
            linked |= {left.table.lower(), right.table.lower()}
    return linked == quals


def fix_identifiers(sql: str, ctx: _Context) -> str:
    """Tables and columns spelled as the schema does; unknown names fixed when clear."""
    if not ctx.schema:
        return sql
    parsed = _parse_leniently(sql, ctx.read)
    if parsed is None or not isinstance(parsed[0], exp.Query):
        return sql  # fit_dialect reports what does not parse
    tree, dialect = parsed
    fixer = _IdentifierFixer(sql, tree, dialect, ctx)
    fixer.fix_tables()
    fixer.fix_columns()
    return fixer.result()


# --------------------------------------------------------------------------------------------
# Rule 5: qualifiers
# --------------------------------------------------------------------------------------------


def _compared_column(column: exp.Column) -> exp.Column | None:
    """The qualified column on the other side of an equality with ``column``, if any."""
    node: exp.Expr = column
    while isinstance(node.parent, exp.Paren):
        node = node.parent
    eq = node.parent
    if not isinstance(eq, exp.EQ):
        return None
    other = (eq.right if node is eq.left else eq.left).unnest()
    return other if type(other) is exp.Column and other.table else None


def fix_qualifiers(sql: str, ctx: _Context) -> str:
    """``T1.name`` where T1's table has no ``name`` and exactly one other table of the same
    SELECT has it: qualified with that table's alias (or name)."""
    if not ctx.schema:
        return sql
    parsed = _parse_leniently(sql, ctx.read)
    if parsed is None or not isinstance(parsed[0], exp.Query):
        return sql
    tree, dialect = parsed
    fixer = _IdentifierFixer(sql, tree, dialect, ctx)
    fixer.fix_tables(repair=False)  # fix_identifiers, when on, already repaired them
    fixer.fix_qualifiers()
    return fixer.result()


# --------------------------------------------------------------------------------------------
# Rule 6: fit the target dialect
# --------------------------------------------------------------------------------------------


def _not_a_query(tree: exp.Expr, ctx: _Context) -> bool:
    """Note and say so when the statement is no query (a schema echo such as CREATE TABLE):
    it can never run, so rewriting it for a dialect or reformatting it helps nobody."""
    if isinstance(tree, exp.Query):
        return False
    kind = tree.key.upper() if tree.key else type(tree).__name__.upper()
    ctx.note(f"not a query but a {kind} statement; only one read-only SELECT can run")
    return True


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _repair_for_sqlite(tree: exp.Expr, used: str, ctx: _Context) -> tuple[exp.Expr, bool]:
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
            other = _parse(f"SELECT {text}", dialect)
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


def fit_dialect(sql: str, ctx: _Context) -> str:
    """The query in the target dialect, with other dialects' constructs rewritten."""
    parsed = _parse_leniently(sql, ctx.read)
    if parsed is None:
        ctx.note(f"does not parse as {ctx.read}: {_parse_error(sql, ctx.read)}")
        return sql
    tree, used = parsed
    if _not_a_query(tree, ctx):
        return sql
    repaired = False
    if ctx.write == "sqlite":
        tree, repaired = _repair_for_sqlite(tree, used, ctx)
    if used == ctx.read == ctx.write and not repaired:
        return sql
    if used == ctx.write:
        return _render(tree, ctx.write, ctx)
    transpile_one = _plugin_transpile()
    if transpile_one is not None:  # the Db2 module's translation (SQLite strings, name case)
        try:
            return transpile_one(tree.sql(dialect=used) if repaired else sql, used, ctx.write)
        except Exception as err:  # what it refuses, sqlglot's own generator may still write
            ctx.note(f"not translated from {used} to {ctx.write}: {str(err).splitlines()[0]}")
    return _render(tree, ctx.write, ctx)


def _plugin_transpile() -> Callable[[str, str, str], str] | None:
    if not _load_plugin_dialects():
        return None
    import querycraft.dialects as dialects

    return getattr(dialects, "transpile_one", None)


# --------------------------------------------------------------------------------------------
# Rule 7: reformat
# --------------------------------------------------------------------------------------------


def reformat(sql: str, ctx: _Context) -> str:
    """The query re-rendered by sqlglot in the target dialect, when it parses there."""
    tree = _parse(sql, ctx.write)
    if tree is None or _not_a_query(tree, ctx):
        return sql
    try:
        return tree.sql(dialect=ctx.write)
    except Exception:  # a construct the generator cannot write back: keep the text
        return sql


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------

_RULE_FUNCTIONS: dict[str, Callable[[str, _Context], str]] = {
    "extract_statement": extract_statement,
    "join_split_operators": join_split_operators,
    "balance_quotes_and_parentheses": balance_quotes_and_parentheses,
    "fix_identifiers": fix_identifiers,
    "fix_qualifiers": fix_qualifiers,
    "fit_dialect": fit_dialect,
    "reformat": reformat,
}


def correct_sql(
    raw: str,
    *,
    schema: Mapping[str, list[str]] | None = None,
    read_dialect: str = "sqlite",
    write_dialect: str | None = "sqlite",
    rules: Mapping[str, bool] | None = None,
    max_edit_distance: int = 2,
) -> Correction:
    """Correct one raw model output with the rules in :data:`RULES` order.

    Args:
        raw: The model's output (or any SQL text).
        schema: ``{table: [columns]}`` of the database the query is for; without it
            ``fix_identifiers`` and ``fix_qualifiers`` do nothing.
        read_dialect: sqlglot dialect the SQL is meant to be in.
        write_dialect: Dialect of the result (None: the read dialect).
        rules: Rule name -> on/off; rules left out are on.
        max_edit_distance: The most edits ``fix_identifiers`` accepts for a replacement.

    Returns:
        The corrected text, the rules that changed it, and what stayed unresolved.

    Raises:
        ValueError: For a rule name that does not exist (bad SQL never raises).
    """
    switches = dict(rules or {})
    unknown = sorted(set(switches) - set(RULES))
    if unknown:
        raise ValueError(f"unknown correction rule(s) {', '.join(unknown)}; the rules are "
                         f"{', '.join(RULES)}")
    write = write_dialect or read_dialect
    ctx = _Context(schema=dict(schema) if schema else None, read=read_dialect, write=write,
                   max_edit_distance=max_edit_distance, unresolved=[], raw=raw or "")
    for name in (read_dialect, write):
        if not dialect_known(name):
            ctx.note(f"unknown SQL dialect '{name}'")
            switches.update(fix_identifiers=False, fix_qualifiers=False, fit_dialect=False,
                            reformat=False)
    ctx.requalify = switches.get("fix_qualifiers", True)
    sql = raw or ""
    fired: list[str] = []
    for name in RULES:
        if not switches.get(name, True):
            continue
        if not sql.strip():
            ctx.note("no SQL statement found")
            break
        try:
            out = _RULE_FUNCTIONS[name](sql, ctx)
        except Exception as err:  # a rule's own bug must not lose the query
            ctx.note(f"rule {name} failed: {type(err).__name__}: {err}")
            continue
        if out != sql:
            fired.append(name)
            sql = out
    return Correction(sql=sql.strip(), fired=fired, unresolved=ctx.unresolved)


# --------------------------------------------------------------------------------------------
# Schema from CREATE TABLE text, and validation against a database
# --------------------------------------------------------------------------------------------

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


def _split_top_level(body: str) -> Iterator[str]:
    depth, start = 0, 0
    code = _code_only(body)
    for i, ch in enumerate(code):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield body[start:i]
            start = i + 1
    yield body[start:]


def _table_from_text(statement: str) -> tuple[str, list[str]] | None:
    m = _CREATE_RE.search(statement)
    if m is None:
        return None
    columns = []
    for part in _split_top_level(m.group("body")):
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
        tree = _parse(statement, dialect)
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema):
            table = tree.this.this
            columns = [c.name for c in tree.this.expressions if isinstance(c, exp.ColumnDef)]
            if isinstance(table, exp.Table) and table.name:
                schema[table.name] = columns
                continue
        found = _table_from_text(statement)
        if found is not None:
            schema[found[0]] = found[1]
    return schema


def validate(sql: str, connection: sqlite3.Connection) -> str | None:
    """Check a query against a SQLite database without running it (see
    :func:`querycraft.db.explain_sqlite`; other engines: ``Database.check``).

    Returns:
        None when SQLite accepts it, else the error message.
    """
    from querycraft.db import explain_sqlite  # local: db imports this package's sql module

    return explain_sqlite(connection, sql)
