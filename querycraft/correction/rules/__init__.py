"""The correction rules, one module each, and :data:`RULES`: the one place a rule is listed.

Like sqlglot's optimizer, a rule is a plain function of the text, ``(sql, ctx) -> sql``, in a
module of its own named like it, which also holds its one-line ``DESCRIPTION`` (the table in
docs/CORRECT.md). :func:`querycraft.correction.correct_sql` applies them in :data:`RULES`
order; the switches ``correct.rules.<name>`` and the docs are checked against it
(tests/test_correction_rules.py).
"""

from __future__ import annotations

from querycraft.correction.common import Rule
from querycraft.correction.rules import (
    balance_quotes_and_parentheses,
    extract_statement,
    fit_dialect,
    fix_identifiers,
    fix_qualifiers,
    join_split_operators,
    reformat,
)

__all__ = ["RULES"]

# The order matters: text repairs before anything is parsed, the schema rules before the
# dialect is changed, and the re-rendering last. fix_qualifiers runs after fix_identifiers,
# which leaves it a qualified column another table of the SELECT has exactly.
RULES: tuple[Rule, ...] = tuple(Rule.of(module) for module in (
    extract_statement,
    join_split_operators,
    balance_quotes_and_parentheses,
    fix_identifiers,
    fix_qualifiers,
    fit_dialect,
    reformat,
))
