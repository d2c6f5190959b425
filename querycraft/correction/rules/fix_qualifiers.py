"""Rule ``fix_qualifiers`` (needs a schema): a column qualified with a table or alias of its
SELECT whose table lacks it (``T1.name`` where T1 is order_item) is qualified with the one
other table of that SELECT's FROM that has it; with several, or a table of unknown columns
there, it is left and reported. Correlated references to an outer query are left alone.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from querycraft.correction.common import Context, parse_leniently
from querycraft.correction.identifiers import (
    IdentifierEditor,
    Source,
    find_source,
    holders_elsewhere,
)

# Parses the SQL: off when sqlglot does not know the read or write dialect.
PARSES = True
DESCRIPTION = ("`T1.name` where T1's table has no `name`: qualified with the one other table of "
               "that SELECT that has it (below)")


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


def _requalify(editor: IdentifierEditor) -> None:
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
        scopes = traverse_scope(editor.tree)
    except Exception:  # fix_identifiers reports scopes sqlglot cannot work out
        return
    planned: dict[int, tuple[exp.Column, Source]] = {}
    for scope in scopes:
        local = editor.sources(scope)
        for column in scope.walk():
            if (type(column) is not exp.Column or not isinstance(column.this, exp.Identifier)
                    or not column.table or column.args.get("db")):
                continue
            qualifier = column.args["table"]
            source = find_source(qualifier.name, local)
            if source is None:
                continue  # an outer query's source, or a name fix_identifiers reported
            holders = holders_elsewhere(column.name, source, local)
            if not holders:
                continue
            where = (f"column '{qualifier.name}.{column.name}': '{qualifier.name}' has no "
                     f"column '{column.name}'")
            if len(holders) > 1:
                names = ", ".join(editor.source_name(h) for h in holders)
                editor.ctx.note(f"{where} and several tables in scope have it ({names}); "
                                f"left as written")
            elif any(s.columns.open for s in local if s is not source):
                editor.ctx.note(f"{where}; '{editor.source_name(holders[0])}' has it, but so "
                                f"may a source in scope whose columns are unknown; left as "
                                f"written")
            else:
                planned[id(column)] = (column, holders[0])
    # Decided on the qualifiers as written, before any is changed.
    renames = []
    for column, holder in planned.values():
        new = editor.source_name(holder)
        partner = _compared_column(column)
        if partner is not None and partner.table.lower() != column.table.lower():
            partner_plan = planned.get(id(partner))
            after = editor.source_name(partner_plan[1]) if partner_plan else partner.table
            if after.lower() == new.lower():
                editor.ctx.note(f"column '{column.table}.{column.name}': only '{new}' has "
                                f"'{column.name}', but the equality would then compare two "
                                f"columns of '{new}' instead of two tables; left as written")
                continue
        renames.append((column, holder, new))
    for column, holder, new in renames:
        editor.rename(column.args["table"], new)
        editor.rename(column.this, holder.columns.get(column.name) or column.name)


def fix_qualifiers(sql: str, ctx: Context) -> str:
    """``T1.name`` where T1's table has no ``name`` and exactly one other table of the same
    SELECT has it: qualified with that table's alias (or name)."""
    if not ctx.schema:
        return sql
    parsed = parse_leniently(sql, ctx.read)
    if parsed is None or not isinstance(parsed[0], exp.Query):
        return sql
    tree, dialect = parsed
    editor = IdentifierEditor(sql, tree, dialect, ctx)
    editor.fix_tables(repair=False)  # fix_identifiers, when on, already repaired them
    _requalify(editor)
    return editor.result()

