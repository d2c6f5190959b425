"""Comparing query results: whether a predicted result answers the question the same way as
the gold result (execution accuracy), and how it differs when it does not.

Engine-independent: results are plain :class:`~querycraft.engines.base.QueryResult` values,
and numbers compare by value whatever type a driver returns them as (int, float, Decimal).

A result cut at the row cap is never compared by its first rows: :func:`results_match` says
False when either side was cut, and :class:`ResultDigest` fingerprints a whole result as it
streams past (evaluate uses it when both sides were cut).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from querycraft.engines.base import QueryResult

__all__ = ["RELATIONS", "ResultDigest", "digest_permutations", "result_relation",
           "results_match"]


class _Inexact(tuple):
    """A non-integral number after rounding; never equal to an int or a string."""

    __slots__ = ()


def _normalize_value(value: Any, float_digits: int | None = None) -> Hashable:
    """A hashable stand-in for a cell: numbers equal when equal in value (1 == 1.0, as
    Python and the official Spider evaluator compare them), or, with ``float_digits``, when
    non-integral numbers are equal after rounding to that many significant digits."""
    if value is None or isinstance(value, str | bytes):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        if math.isnan(number):
            return _Inexact(("nan",))
        if math.isinf(number):
            return _Inexact((number,))
        if number.is_integer() and (isinstance(value, float) or value == int(number)):
            return int(number)  # 1.0 == 1
        if float_digits is None:
            return _Inexact((number,))
        return _Inexact((float(f"{number:.{float_digits}g}"),))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _normalize_rows(rows: Iterable[Sequence[Any]], float_digits: int | None = None
                    ) -> list[tuple[Hashable, ...]]:
    return [tuple(_normalize_value(v, float_digits) for v in row) for row in rows]


def _width(result: QueryResult) -> int:
    return len(result.rows[0]) if result.rows else len(result.columns)


def _column_assignments(
    gold: list[tuple[Hashable, ...]], pred: list[tuple[Hashable, ...]], width: int, ordered: bool
) -> Iterable[tuple[int, ...]]:
    """Column orders of ``pred`` worth trying: each maps gold column j to pred column p[j].

    Only pred columns whose values (as a multiset, or as a list when row order matters) equal
    gold column j's are candidates, and pred columns with identical values are interchangeable,
    so only one of their orders is tried. Partial assignments are cut as soon as the projected
    rows disagree.
    """
    gold_cols = list(zip(*gold, strict=True)) if gold else [() for _ in range(width)]
    pred_cols = list(zip(*pred, strict=True)) if pred else [() for _ in range(width)]

    def signature(col: tuple[Hashable, ...]) -> Hashable:
        return col if ordered else frozenset(Counter(col).items())

    pred_sigs = [signature(c) for c in pred_cols]

    # Identical pred columns are interchangeable: keyed by the first of them, use the first free.
    first_with: dict[tuple[Hashable, ...], int] = {}
    twins: dict[int, list[int]] = {}
    for i, col in enumerate(pred_cols):
        twins.setdefault(first_with.setdefault(col, i), []).append(i)
    candidates: list[list[int]] = []
    for gcol in gold_cols:
        sig = signature(gcol)
        options = [rep for rep in twins if pred_sigs[rep] == sig]
        if not options:
            return
        candidates.append(options)

    def projected(rows: list[tuple[Hashable, ...]], cols: Sequence[int]) -> Counter:
        return Counter(tuple(r[c] for c in cols) for r in rows)

    gold_prefixes: dict[int, Counter] = {}  # gold rows projected on their first n columns

    def prefix_agrees(cols: list[int]) -> bool:
        n = len(cols)
        if n not in gold_prefixes:
            gold_prefixes[n] = projected(gold, range(n))
        return projected(pred, cols) == gold_prefixes[n]

    def extend(assigned: list[int], used: set[int]) -> Iterable[tuple[int, ...]]:
        j = len(assigned)
        if j == width:
            yield tuple(assigned)
            return
        for rep in candidates[j]:
            free = [i for i in twins[rep] if i not in used]
            if not free:
                continue
            choice = free[0]
            new = [*assigned, choice]
            if not ordered and j > 0 and not prefix_agrees(new):
                continue
            used.add(choice)
            yield from extend(new, used)
            used.discard(choice)

    yield from extend([], set())


def results_match(gold: QueryResult, pred: QueryResult, *, order_matters: bool,
                  float_digits: int | None = None) -> bool:
    """Whether a predicted result answers the question the same way as the gold result.

    Follows Spider's execution check (Zhong et al., 2020, the official test-suite evaluator's
    ``result_eq``):
        * two empty results are equal, whatever their columns;
        * rows are compared as multisets (duplicates count), or as ordered lists when
          ``order_matters`` (use :func:`querycraft.sql.has_order_by` on the gold query);
        * column order and names are ignored: the prediction's columns may be any permutation
          of the gold's, but the column counts must be equal;
        * numbers compare by value: ``1 == 1.0``, booleans are 0/1; non-integral numbers
          exactly, or, with ``float_digits``, rounded to that many significant digits first;
          strings never equal numbers; None equals None.

    A result cut at the row cap (``truncated``) is never equal to anything: its first rows
    do not say what the rest holds. Compare whole results with :class:`ResultDigest`.

    Args:
        gold: The result of the reference query.
        pred: The result of the predicted query.
        order_matters: Compare rows in order.
        float_digits: Round non-integral numbers to this many significant digits (None:
            compare them exactly, as the official evaluator does).

    Returns:
        True when the results match.
    """
    if gold.truncated or pred.truncated:
        return False
    if not gold.rows and not pred.rows:
        return True
    if len(gold.rows) != len(pred.rows):
        return False
    width = _width(gold)
    if width != _width(pred):
        return False
    gold_rows = _normalize_rows(gold.rows, float_digits)
    pred_rows = _normalize_rows(pred.rows, float_digits)
    if any(len(r) != width for r in gold_rows) or any(len(r) != width for r in pred_rows):
        return False
    if order_matters and gold_rows == pred_rows:
        return True
    if not order_matters and Counter(gold_rows) == Counter(pred_rows):
        return True
    gold_count = Counter(gold_rows)
    for perm in _column_assignments(gold_rows, pred_rows, width, order_matters):
        permuted = [tuple(row[i] for i in perm) for row in pred_rows]
        if (permuted == gold_rows) if order_matters else (Counter(permuted) == gold_count):
            return True
    return False


RELATIONS = ("same", "prediction_empty", "gold_empty", "different_columns", "order_differs",
             "more_rows", "fewer_rows", "partial_overlap", "different_values")


def result_relation(gold: QueryResult, pred: QueryResult, *, order_matters: bool,
                    float_digits: int | None = None) -> str:
    """How a predicted result relates to the gold one, for diagnostics (see ``RELATIONS``).

    "same" exactly when :func:`results_match` holds. Otherwise, in this order: one side
    empty; a different number of columns; the same rows in another order (gold has ORDER
    BY); more or fewer rows (a side cut at the row cap has more than the other); some rows in
    common (compared with each row's values sorted, so column order does not hide an
    overlap); nothing in common.
    """
    if results_match(gold, pred, order_matters=order_matters, float_digits=float_digits):
        return "same"
    if not pred.rows:
        return "prediction_empty"
    if not gold.rows:
        return "gold_empty"
    if _width(gold) != _width(pred):
        return "different_columns"
    if order_matters and results_match(gold, pred, order_matters=False,
                                       float_digits=float_digits):
        return "order_differs"
    if gold.truncated != pred.truncated:
        return "more_rows" if pred.truncated else "fewer_rows"
    if len(pred.rows) != len(gold.rows):
        return "more_rows" if len(pred.rows) > len(gold.rows) else "fewer_rows"

    def bag(rows: list[tuple]) -> Counter:
        return Counter(tuple(sorted(row, key=repr))
                       for row in _normalize_rows(rows, float_digits))

    return "partial_overlap" if bag(gold.rows) & bag(pred.rows) else "different_values"



# ---------------------------------------------------------------- whole results, streamed

_MASK = (1 << 128) - 1


def _hash(value: Hashable) -> bytes:
    # repr of normalized values: equal values have equal reprs (numbers are int or _Inexact).
    return hashlib.blake2b(repr(value).encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ResultDigest:
    """A fingerprint of a whole result, taken row by row as it streams from the database, so
    results of any length compare without being held in memory.

    For each column order in ``orders`` (tuples of column indices; the row as returned when
    None): an order-aware digest (``ordered``: a running hash over the rows in turn) or a
    multiset digest (the sum of the rows' hashes, so row order does not count and duplicates
    do). Also a multiset digest per column, from which :func:`digest_permutations` finds the
    column orders worth trying. Equal digests mean equal results up to a 128-bit hash
    collision; different digests mean different results.
    """

    def __init__(self, ordered: bool, orders: Sequence[tuple[int, ...]] | None = None,
                 float_digits: int | None = None) -> None:
        self.ordered = ordered
        self.orders = [tuple(o) for o in orders] if orders is not None else None
        self.float_digits = float_digits
        self.rows = 0
        self.width: int | None = None
        self.columns: list[int] = []
        self._sums: list[int] = []
        self._chains: list[Any] = []

    def add(self, row: Sequence[Any]) -> None:
        values = tuple(_normalize_value(v, self.float_digits) for v in row)
        if self.width is None:
            self.width = len(values)
            self.columns = [0] * self.width
            if self.orders is None:
                self.orders = [tuple(range(self.width))]
            self._sums = [0] * len(self.orders)
            self._chains = [hashlib.blake2b(digest_size=16) for _ in self.orders]
        elif len(values) != self.width:
            raise ValueError("rows of different widths in one result")
        self.rows += 1
        for i, value in enumerate(values):
            self.columns[i] = (self.columns[i] + int.from_bytes(_hash(value), "big")) & _MASK
        for k, order in enumerate(self.orders):
            key = _hash(tuple(values[i] for i in order))
            if self.ordered:
                self._chains[k].update(key)
            else:
                self._sums[k] = (self._sums[k] + int.from_bytes(key, "big")) & _MASK

    def digests(self) -> list[int]:
        """One digest per column order, in the order of ``orders``."""
        if self.ordered:
            return [int.from_bytes(c.digest(), "big") for c in self._chains]
        return list(self._sums)


def digest_permutations(gold: ResultDigest, pred: ResultDigest, limit: int = 120
                        ) -> list[tuple[int, ...]] | None:
    """The column orders of ``pred`` that could make it ``gold``: gold column j from a pred
    column whose values, as a multiset, are gold column j's. [] when none can; None when
    more than ``limit`` could (too many to try)."""
    if gold.width != pred.width or gold.width is None:
        return []
    options = [[p for p in range(pred.width) if pred.columns[p] == gold.columns[j]]
               for j in range(gold.width)]
    found: list[tuple[int, ...]] = []
    for order in itertools.product(*options):
        if len(set(order)) == len(order):
            found.append(order)
            if len(found) > limit:
                return None
    return found
