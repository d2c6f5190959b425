"""Rule ``join_split_operators``: ``> =``, ``< =``, ``! =``, ``< >`` written back together,
outside string literals, quoted identifiers and comments."""

from __future__ import annotations

import re

from querycraft.correction.common import Context, map_code

DESCRIPTION = ("`> =`, `< =`, `! =`, `< >` joined, outside string literals, quoted names and "
               "comments")

_SPLIT_OPERATOR_RE = re.compile(r"(?<![<>!=])([<>!])[ \t\r\n]+=(?![=>])")
_SPLIT_NOT_EQUAL_RE = re.compile(r"(?<![<>!=])<[ \t\r\n]+>(?![=>])")


def _join_operators(code: str) -> str:
    return _SPLIT_NOT_EQUAL_RE.sub("<>", _SPLIT_OPERATOR_RE.sub(r"\1=", code))


def join_split_operators(sql: str, ctx: Context) -> str:
    """``a > = 1`` -> ``a >= 1`` (also ``< =``, ``! =``, ``< >``) outside literals."""
    return map_code(sql, _join_operators)
