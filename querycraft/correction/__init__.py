"""The query-correct engine: named rules that turn raw model output into a runnable query.

:func:`correct_sql` applies the rules of :mod:`querycraft.correction.rules` in
:data:`RULES` order, each a plain function of the text in a module of its own, each
switchable by name (docs/CORRECT.md lists them):

1. ``extract_statement``: the SQL statement out of chatter.
2. ``join_split_operators``: ``> =`` and the like written back together.
3. ``balance_quotes_and_parentheses``: a literal or one ``)`` left open at the end closed.
4. ``fix_identifiers`` (needs a schema): tables and columns spelled as the schema does.
5. ``fix_qualifiers`` (needs a schema): a column under the wrong table's alias re-qualified.
6. ``fit_dialect``: the query written in the target dialect.
7. ``reformat``: re-rendered with sqlglot in the target dialect.

Nothing here raises on bad SQL: what no rule could fix is listed in ``Correction.unresolved``.
:func:`validate` checks a corrected query against a SQLite database without running it.
A new rule: a module in ``rules/`` and one line in ``rules.RULES`` (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from querycraft.correction.common import Context, dialect_known
from querycraft.correction.identifiers import closest, edit_distance
from querycraft.correction.rules import RULES as RULE_LIST

__all__ = [
    "RULES",
    "RULE_LIST",
    "Correction",
    "closest",
    "correct_sql",
    "dialect_known",
    "edit_distance",
    "validate",
]

# The rule names in the order they run (RULE_LIST: the rules themselves): the switches of
# ``correct.rules``.
RULES: tuple[str, ...] = tuple(rule.name for rule in RULE_LIST)

# The rules that need a dialect sqlglot knows; off when either dialect is unknown.
_PARSING_RULES = tuple(rule.name for rule in RULE_LIST if rule.parses)


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
    ctx = Context(schema=dict(schema) if schema else None, read=read_dialect, write=write,
                  max_edit_distance=max_edit_distance, unresolved=[], raw=raw or "")
    for name in (read_dialect, write):
        if not dialect_known(name):
            ctx.note(f"unknown SQL dialect '{name}'")
            switches.update(dict.fromkeys(_PARSING_RULES, False))
    ctx.requalify = switches.get("fix_qualifiers", True)
    sql = raw or ""
    fired: list[str] = []
    for rule in RULE_LIST:
        if not switches.get(rule.name, True):
            continue
        if not sql.strip():
            ctx.note("no SQL statement found")
            break
        try:
            out = rule.apply(sql, ctx)
        except Exception as err:  # a rule's own bug must not lose the query
            ctx.note(f"rule {rule.name} failed: {type(err).__name__}: {err}")
            continue
        if out != sql:
            fired.append(rule.name)
            sql = out
    return Correction(sql=sql.strip(), fired=fired, unresolved=ctx.unresolved)


def validate(sql: str, connection: sqlite3.Connection) -> str | None:
    """Check a query against a SQLite database without running it (see
    :func:`querycraft.engines.sqlite.explain_sqlite`; other engines: ``Database.check``).

    Returns:
        None when SQLite accepts it, else the error message.
    """
    # Local: correct_sql alone needs none of the engines (sqlalchemy, drivers).
    from querycraft.engines.sqlite import explain_sqlite

    return explain_sqlite(connection, sql)
