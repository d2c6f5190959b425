"""The first query-correct rules: extraction from chatter and a sqlglot re-render."""

from __future__ import annotations

import pytest

from querycraft.services.correct import correct_sql


@pytest.mark.parametrize(("raw", "expected", "rules"), [
    ("SELECT name FROM singer", "SELECT name FROM singer", []),
    ("```sql\nSELECT name FROM singer;\n```", "SELECT name FROM singer", ["extract_statement"]),
    ("SQL: select  name from singer", "SELECT name FROM singer",
     ["extract_statement", "reformat"]),
    # Unparseable (an unterminated string) is left as extracted, never raises.
    ("SELECT name FROM singer WHERE id = '20", "SELECT name FROM singer WHERE id = '20", []),
])
def test_correct_sql(raw, expected, rules):
    corrected, fired = correct_sql(raw)
    assert corrected == expected
    assert fired == rules
