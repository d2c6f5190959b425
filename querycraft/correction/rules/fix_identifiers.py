"""Rule ``fix_identifiers`` (needs a schema): tables and columns checked against it.

Tables and columns are matched case-insensitively and written as the schema spells them; a
name that does not exist is replaced by the closest existing one (tables among the schema's
tables, columns among the columns of the tables in scope) when that one is close and
unambiguous (see :mod:`querycraft.correction.identifiers`); an unqualified column that
several joined tables have is qualified. Only the identifiers are edited, the rest of the
text is kept. A name that ends the model's output and is the start of its closest match
(``WHERE unit_pri``) was cut off, not misspelt: it is reported, not completed.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from querycraft.correction.common import Context, parse_leniently
from querycraft.correction.identifiers import (
    ROWID_NAMES,
    IdentifierEditor,
    Source,
    closest,
    find_source,
    holders_elsewhere,
)

# Parses the SQL: off when sqlglot does not know the read or write dialect.
PARSES = True
DESCRIPTION = "tables and columns checked against the schema (below)"


class _ColumnFixer(IdentifierEditor):
    """The editor, with the column checks of this rule."""

    def fix_columns(self) -> None:
        try:
            scopes = traverse_scope(self.tree)
        except Exception as err:  # sqlglot could not work out the scopes
            self.ctx.note(f"columns not checked: {err}")
            return
        sources_of = {id(s): self.sources(s) for s in scopes}
        for scope in scopes:
            local = sources_of[id(scope)]
            outer: list[Source] = []
            parent = scope.parent
            while parent is not None:
                outer.extend(sources_of.get(id(parent)) or self.sources(parent))
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

    def _fix_qualified(self, column: exp.Column, local: list[Source],
                       outer: list[Source]) -> None:
        qualifier = column.args["table"]
        source = find_source(qualifier.name, local) or find_source(qualifier.name, outer)
        if source is None:
            names = [s.name for s in local + outer]
            match, nearest = closest(qualifier.name, names, self.ctx.max_edit_distance)
            if match is None:
                self.ctx.note(f"table or alias '{qualifier.name}' of column "
                              f"'{column.name}' not found (candidates: {', '.join(nearest)})")
                return
            source = find_source(match, local) or find_source(match, outer)
            assert source is not None
        wanted = self.source_name(source)
        if qualifier.this != wanted:
            self.rename(qualifier, wanted)
        if self.ctx.requalify and holders_elsewhere(column.name, source, local):
            return  # the right name under the wrong qualifier: fix_qualifiers decides
        self._fix_name(column, [source], f"table '{wanted}'")

    def _fix_name(self, column: exp.Column, sources: list[Source], where: str) -> None:
        """Spell the column as its source does, or replace it by the closest there."""
        name = column.name
        if name.lower() in ROWID_NAMES or any(s.columns.open for s in sources):
            return
        for source in sources:
            spelled = source.columns.get(name)
            if spelled is not None:
                self.rename(column.this, spelled)
                return
        candidates = list(dict.fromkeys(c for s in sources for c in s.columns.by_lower.values()))
        match, nearest = closest(name, candidates, self.ctx.max_edit_distance)
        if match is None:
            self.ctx.note(f"column '{name}' not found in {where} "
                          f"(candidates: {', '.join(nearest)})")
            return
        if self.cut_off(column.this, match, "column"):
            return
        self.rename(column.this, match)

    def _fix_unqualified(self, column: exp.Column, scope: Scope, local: list[Source],
                         outer: list[Source], aliases: dict[str, str], shared: bool) -> None:
        name = column.name
        lowered = name.lower()
        if lowered in ROWID_NAMES:
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
                    self.to_string(column)
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
            if self.cut_off(column.this, match, "column"):
                return
            holders = [s for s in local if s.columns.get(match)]
            if not holders:  # a select alias
                self.rename(column.this, match)
                return
            name = match
        if len(holders) == 1 or shared:
            self.rename(column.this, holders[0].columns.get(name) or name)
            return
        # In several joined tables: qualify with the first of them in FROM order.
        first = holders[0]
        spelled = first.columns.get(name) or name
        qualifier = self.source_name(first)
        if not _equi_joined(scope, name, [self.source_name(h) for h in holders]):
            self.ctx.note(f"column '{spelled}' is in several tables in scope "
                          f"({', '.join(self.source_name(h) for h in holders)}); "
                          f"qualified with '{qualifier}', the first in FROM")
        self.qualify(column, qualifier, spelled)

    # ---- qualifiers (rule fix_qualifiers)


def _select_aliases(expression: exp.Expr) -> dict[str, str]:
    if not isinstance(expression, exp.Select):
        return {}
    return {e.alias.lower(): e.alias for e in expression.expressions if e.alias}


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


def fix_identifiers(sql: str, ctx: Context) -> str:
    """Tables and columns spelled as the schema does; unknown names fixed when clear."""
    if not ctx.schema:
        return sql
    parsed = parse_leniently(sql, ctx.read)
    if parsed is None or not isinstance(parsed[0], exp.Query):
        return sql  # fit_dialect reports what does not parse
    tree, dialect = parsed
    fixer = _ColumnFixer(sql, tree, dialect, ctx)
    fixer.fix_tables()
    fixer.fix_columns()
    return fixer.result()
