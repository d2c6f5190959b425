"""Rule ``balance_quotes_and_parentheses``: a string literal left open at the very end is
closed, and exactly one missing ``)`` at the end is added (or one extra trailing ``)``
dropped), only where the place is unambiguous; done where the model's output ends, it is
listed in ``unresolved`` as a guess (generation cut off at its token limit ends like that).
"""

from __future__ import annotations

import re

from querycraft.correction.common import Context, code_only, segments
from querycraft.sql import Token

DESCRIPTION = ("a literal left open at the very end is closed; exactly one missing `)` is "
               "added at the end; one extra `)` at the very end is dropped")

_CLOSERS = {"string": "'", "dquote": '"', "bquote": "`", "bracket": "]"}
# Words that would end a value: an open literal holding one of them has no clear end.
_CLAUSE_WORDS_RE = re.compile(
    r"\b(?:and|or|from|where|group|order|having|limit|union|intersect|except|join|on|select)\b",
    re.IGNORECASE,
)
_TOP_CLAUSE_RE = re.compile(
    r"\b(?:from|where|group|order|having|limit|union|intersect|except|join)\b", re.IGNORECASE
)


def _paren_depths(pieces: list[Token]) -> tuple[int, int, list[int]]:
    """Final depth, lowest depth reached, and offsets of the '(' still open at the end."""
    depth, lowest, open_at = 0, 0, []
    for seg in pieces:
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


def balance_quotes_and_parentheses(sql: str, ctx: Context) -> str:
    """Close a literal left open at the end; add the one ')' missing at the end.

    A literal is closed only when its text holds no clause word or parenthesis (otherwise
    where it should end is a guess). A ')' is added only when exactly one is missing and the
    '(' left open starts a subquery or holds no clause keyword (``IN (1, 2``, ``count(*``); a
    single extra ')' is dropped only when it is the last character. When the output itself
    ends there, it may have been cut off at the token limit (``channel = 'SMS_SMS_``), so the
    fix is a guess and is listed in ``unresolved``.
    """
    pieces = segments(sql)
    text = sql
    last = pieces[-1] if pieces else None
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
        pieces = segments(text)
    elif last is not None and not last.closed:
        return sql  # an open block comment: nothing to balance after it
    depth, lowest, open_at = _paren_depths(pieces)
    if depth == 1 and lowest >= 0:
        inside = text[open_at[0] + 1 :]
        subquery = inside.lstrip().upper().startswith(("SELECT", "WITH"))
        if inside.strip() and (subquery or not _TOP_CLAUSE_RE.search(code_only(inside))):
            # Before a trailing comment, if any.
            tail = next((seg for seg in reversed(pieces)
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
        d, low, _ = _paren_depths(segments(trimmed))
        if d == 0 and low == 0:
            return trimmed.rstrip()
        ctx.note("unbalanced parentheses")
    elif depth != 0 or lowest < 0:
        ctx.note("unbalanced parentheses")
    return text
