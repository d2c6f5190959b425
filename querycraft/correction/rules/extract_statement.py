"""Rule ``extract_statement``: the SQL statement out of chatter around it.

:func:`querycraft.sql.extract_sql` does the work: code fences, "SQL:" lead-ins, inline code
spans, echoed template markers, ``<think>`` blocks, a schema echo of CREATE TABLE statements
before the query, trailing explanations, stop markers, extra statements.
"""

from __future__ import annotations

import functools
import re

import sqlglot

from querycraft.correction.common import Context, segments
from querycraft.sql import extract_sql

DESCRIPTION = ("the first statement out of chatter: code fences, `SQL:` / \"Here is the query:\" "
               "lead-ins, echoed template markers (`### SQL`), `<think>` blocks, trailing "
               "explanations, stop markers, a second statement (`querycraft.sql.extract_sql`)")

# "... WHERE age > 20. This query ...": the lexer reads "20." as a number, so the sentence
# after it is not cut by extract_sql; cut it here.
_NUMBER_SENTENCE_RE = re.compile(r"(?<=\d)\.\s+([A-Z][a-z]+)\b")


@functools.cache
def _sqlglot_keywords() -> frozenset[str]:
    return frozenset(sqlglot.tokens.Tokenizer.KEYWORDS)


def extract_statement(sql: str, ctx: Context) -> str:
    """The first SQL statement in the text, without chatter around it."""
    out = extract_sql(sql)
    pieces: list[str] = []
    for seg in segments(out):
        if seg.kind == "code":
            m = next((m for m in _NUMBER_SENTENCE_RE.finditer(seg.text)
                      if m.group(1).upper() not in _sqlglot_keywords()), None)
            if m:
                pieces.append(seg.text[: m.start()])
                return "".join(pieces).strip()
        pieces.append(seg.text)
    return out
