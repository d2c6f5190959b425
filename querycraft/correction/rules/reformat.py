"""Rule ``reformat``: the query re-rendered by sqlglot in the target dialect (keywords
upper-case, one space, the dialect's quotes), when it parses there. A statement that is no
query (a CREATE TABLE echo) is left as it is and reported."""

from __future__ import annotations

from querycraft.correction.common import Context, not_a_query, parse

# Parses the SQL: off when sqlglot does not know the read or write dialect.
PARSES = True
DESCRIPTION = "re-rendered by sqlglot in the target dialect, when it parses"


def reformat(sql: str, ctx: Context) -> str:
    """The query re-rendered by sqlglot in the target dialect, when it parses there."""
    tree = parse(sql, ctx.write)
    if tree is None or not_a_query(tree, ctx):
        return sql
    try:
        return tree.sql(dialect=ctx.write)
    except Exception:  # a construct the generator cannot write back: keep the text
        return sql
