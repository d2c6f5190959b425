"""Execution-guided voting: of several queries a model wrote for one question, the one whose
result most of them agree on (self-consistency over execution results, as in OmniSQL's
major voting).

Each candidate runs read-only through the shared execution layer (time limit, row cap, byte
bounds); invalid and refused candidates drop out; the rest are grouped by result
(:func:`querycraft.compare.results_match`: rows as a multiset, or in order when the query
orders them; a result cut at the row cap only groups with itself); the largest group wins,
ties broken by the model's likelihood of the group's best candidate when the backend can
score (else the earliest); within the winning group the greedy candidate, else its most
frequent text. No candidate runs: the greedy one is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from querycraft.compare import results_match
from querycraft.engines.base import QueryError, QueryResult
from querycraft.sql import mentions_order_by

__all__ = ["Vote", "vote"]


@dataclass
class Vote:
    """The choice and how it was made, as kept in the predictions."""

    chosen: int  # index into the candidates
    # Per candidate: sql, valid, error, rows, group (None when it did not run), logprob.
    candidates: list[dict[str, Any]] = field(default_factory=list)
    group_sizes: list[int] = field(default_factory=list)
    tie: bool = False
    fallback: bool = False  # no candidate ran: the greedy one (index 0) was kept

    def summary(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "groups": self.group_sizes, "tie": self.tie,
                "fallback": self.fallback}


def vote(candidates: list[str], run: Callable[[str], QueryResult],
         logprobs: Callable[[list[int]], list[float]] | None = None) -> Vote:
    """Choose among ``candidates`` (candidate 0 is the greedy one) by their results.

    Args:
        candidates: The SQL of each candidate.
        run: Runs one query read-only; raises :class:`QueryError` when it cannot.
        logprobs: The model's log-likelihood of the candidates at these indices, for ties
            between groups; None: ties go to the group found first.

    Returns:
        The vote; ``candidates[vote.chosen]`` is the answer.
    """
    results: dict[str, QueryResult | str] = {}  # each distinct text runs once
    rows: list[dict[str, Any]] = []
    groups: list[list[int]] = []
    representatives: list[tuple[str, QueryResult]] = []
    for index, sql in enumerate(candidates):
        row: dict[str, Any] = {"sql": sql, "valid": False, "error": "", "rows": None,
                               "group": None}
        rows.append(row)
        if not sql.strip():
            row["error"] = "no SQL"
            continue
        if sql not in results:
            try:
                results[sql] = run(sql)
            except QueryError as err:
                results[sql] = f"{err.kind}: {err.message}"
        result = results[sql]
        if isinstance(result, str):
            row["error"] = result
            continue
        row.update(valid=True, rows=len(result.rows))
        for number, (rep_sql, rep) in enumerate(representatives):
            same_text = rep_sql == sql
            if same_text or results_match(rep, result, order_matters=mentions_order_by(rep_sql)
                                          or mentions_order_by(sql)):
                groups[number].append(index)
                row["group"] = number
                break
        else:
            row["group"] = len(groups)
            groups.append([index])
            representatives.append((sql, result))
    sizes = [len(g) for g in groups]
    if not groups:
        return Vote(chosen=0, candidates=rows, group_sizes=sizes, fallback=True)
    largest = max(sizes)
    tied = [g for g in groups if len(g) == largest]
    winner = tied[0]
    if len(tied) > 1 and logprobs is not None:
        # Each distinct text is scored once; a group counts with its best-liked text.
        first_of: dict[str, int] = {}
        for group in tied:
            for i in group:
                first_of.setdefault(candidates[i], i)
        indices = list(first_of.values())
        scores = dict(zip(indices, logprobs(indices), strict=True))
        for i, score in scores.items():
            rows[i]["logprob"] = round(score, 4)
        winner = max(tied, key=lambda g: max(scores[first_of[candidates[i]]] for i in g))
    if 0 in winner:
        chosen = 0
    else:
        text, _ = Counter(candidates[i] for i in winner).most_common(1)[0]
        chosen = next(i for i in winner if candidates[i] == text)
    return Vote(chosen=chosen, candidates=rows, group_sizes=sizes, tie=len(tied) > 1)
