"""What the schema rules (fix_identifiers, fix_qualifiers) share: name closeness, the sources
of a SELECT scope with their known columns, and an editor that changes identifiers in the
original text (layout and comments kept) with the sqlglot tree kept in step.

Closeness: the Damerau-Levenshtein distance (adjacent swaps count one edit) between
lower-cased names must be at most ``min(max_edit_distance, max(1, len(name) // 4))`` (one
edit for names of up to 7 characters, two from 8, never more than ``max_edit_distance``),
names shorter than 3 characters are never replaced, and the closest candidate must be the
only one at its distance.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from querycraft.correction.common import Context, ident_sql, render

__all__ = [
    "MIN_FUZZY_LENGTH",
    "ROWID_NAMES",
    "Columns",
    "IdentifierEditor",
    "Source",
    "closest",
    "edit_distance",
    "find_source",
    "holders_elsewhere",
]

MIN_FUZZY_LENGTH = 3

# SQLite's implicit row-id columns: valid on every ordinary table.
ROWID_NAMES = frozenset({"rowid", "oid", "_rowid_"})


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


class Columns:
    """The columns a source offers: lower-case name -> spelling, or open (unknown)."""

    def __init__(self, names: list[str] | None) -> None:
        self.open = names is None
        self.by_lower = {n.lower(): n for n in reversed(names or [])}

    def get(self, name: str) -> str | None:
        return self.by_lower.get(name.lower())

    def has(self, name: str) -> bool:
        return self.open or name.lower() in self.by_lower


@dataclass
class Source:
    name: str  # how the query names it (alias, or the table's name)
    node: exp.Expr
    columns: Columns
    table: exp.Table | None  # the table node when the source is a table without alias
    # Other names it answers to: a misspelled table's name as written, when fixed.
    also: tuple[str, ...] = ()


class IdentifierEditor:
    """Edits identifiers in place: spans of the original text, the tree kept in step."""

    def __init__(self, sql: str, tree: exp.Expr, dialect: str, ctx: Context) -> None:
        self.sql = sql
        self.tree = tree
        self.dialect = dialect
        self.ctx = ctx
        assert ctx.schema is not None
        self.tables = {t.lower(): (t, Columns(list(cols))) for t, cols in ctx.schema.items()}
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
        text = ident_sql(new_name, self.dialect, original if ident.quoted else None)
        if qualifier is not None:
            text = f"{qualifier}.{text}"
        self.edits[id(ident)] = (ident, text)

    def to_string(self, column: exp.Column) -> None:
        """A double-quoted name SQLite reads as a string, written as a string literal."""
        ident = column.this
        meta = ident.meta or {}
        literal = exp.Literal.string(ident.this)
        if isinstance(meta.get("start"), int):
            self.edits[id(ident)] = (ident, literal.sql(dialect=self.dialect))
        else:
            self.positional = False
        column.replace(literal)

    def rename(self, ident: exp.Identifier, new_name: str) -> None:
        if ident.this == new_name:
            return
        self._edit(ident, new_name)
        ident.set("this", new_name)
        if not ident.quoted and ident_sql(new_name, self.dialect) != new_name:
            ident.set("quoted", True)

    def qualify(self, column: exp.Column, qualifier: str, name: str) -> None:
        ident = column.this
        self._edit(ident, name, qualifier=ident_sql(qualifier, self.dialect))
        ident.set("this", name)
        column.set("table", exp.to_identifier(qualifier))

    def result(self) -> str:
        if not self.edits:
            return self.sql
        if not self.positional:
            return render(self.tree, self.dialect, self.ctx)
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
                    self.rename(ident, known[0])
                continue
            if not repair:
                continue  # an unknown table: its columns stay unknown
            candidates = self.table_names + ([] if table.db else list(self.ctes.values()))
            match, nearest = closest(name, candidates, self.ctx.max_edit_distance)
            if match is None:
                self.ctx.note(f"table '{name}' not found (candidates: {', '.join(nearest)})")
                continue
            if self.cut_off(ident, match, "table"):
                continue
            if match.lower() in self.tables:
                self.resolved[id(table)] = self.tables[match.lower()][0]
            self.written[id(table)] = name
            self.rename(ident, match)

    # ---- sources

    def sources(self, scope: Scope) -> list[Source]:
        """The tables, derived tables and CTEs a scope selects from, with their columns."""
        out = []
        try:
            selected = scope.selected_sources
        except Exception:  # a repeated alias: sqlglot refuses to resolve the scope
            return []
        for name, (node, source) in selected.items():
            if isinstance(source, exp.Table):
                spelled = self.resolved.get(id(source))
                columns = self.tables[spelled.lower()][1] if spelled else Columns(None)
                no_alias = not source.alias
                written = self.written.get(id(source))
                out.append(Source(name, node, columns, source if no_alias else None,
                                   (written,) if written and no_alias else ()))
            else:
                out.append(Source(name, node, Columns(_outputs(source)), None))
        return out

    def cut_off(self, ident: exp.Identifier, match: str, what: str) -> bool:
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

    def source_name(self, source: Source) -> str:
        if source.table is not None:  # named by the table itself: its (fixed) spelling
            return source.table.name
        return source.name


def find_source(name: str, sources: list[Source]) -> Source | None:
    """The source the query names ``name`` (alias or table, or a fixed table's old name)."""
    lowered = name.lower()
    for source in sources:
        if source.name.lower() == lowered:
            return source
    for source in sources:
        if lowered in (a.lower() for a in source.also):
            return source
    return None


def holders_elsewhere(name: str, source: Source, local: list[Source]) -> list[Source]:
    """The other sources of the scope that have column ``name``, when ``source`` (one of the
    scope's own, with known columns) lacks it; else none."""
    if (name.lower() in ROWID_NAMES or source.columns.has(name)
            or not any(s is source for s in local)):
        return []
    return [s for s in local if s is not source and s.columns.get(name)]


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
