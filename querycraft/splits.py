"""Train/evaluation splits that cannot leak, and the overlap report that shows when one does.

A figure that says a model got better must hold on questions it never trained on. Text-to-SQL
data sets write several questions for one query (Spider: two or more per query), so a split
of the *questions* at random puts most evaluation queries, reworded, in training: the figure
then measures recall of trained SQL. The split strategies (``ingest.split_by``):

* ``random``: questions at random (leaks paraphrases; kept for comparison);
* ``db_id``: the same share of each database's questions at random (in-domain, leaks the same
  way);
* ``query``: by normalised gold SQL: every question of one query on the same side
  (in-domain: new queries about the databases trained on);
* ``skeleton``: by the query's shape, literals and aliases masked: the evaluation holds query
  shapes never trained on;
* ``database``: whole databases held out (cross-database: databases never seen).

:func:`overlap` measures, on any split, how many evaluation items have their normalised SQL
or their skeleton in training; ingest writes it into every report and warns above
:data:`OVERLAP_WARNING`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlglot import exp

from querycraft.errors import QueryCraftError
from querycraft.sql import QUOTED_KINDS, lex, normalize_sql, parse_statement_shared

__all__ = ["OVERLAP_WARNING", "SPLIT_KINDS", "Overlap", "overlap", "query_key",
           "query_skeleton", "split_examples"]

SPLIT_KINDS = ("random", "db_id", "query", "skeleton", "database")
# Above this share of evaluation items whose query is in training, the report warns.
OVERLAP_WARNING = 0.05


class HasQuery(Protocol):
    query: str
    db_id: str


def query_key(sql: str, dialect: str = "sqlite") -> str:
    """One text per query: sqlglot's rendering of its tree, names lower-cased (layout,
    keyword case, quoting style and ``==`` / ``=`` differences left out; a double-quoted
    value, which SQLite reads as a string, written as one); the normalised text when it does
    not parse."""
    tree = parse_statement_shared(sql, dialect)
    if tree is None:
        return normalize_sql(sql).lower()
    return _values_as_strings(tree.copy()).sql(dialect=dialect, normalize=True)


def query_skeleton(sql: str, dialect: str = "sqlite") -> str:
    """The query's shape: :func:`query_key` with every literal replaced by ``?`` and every
    table, column and CTE alias by a name given in order of appearance (``T1``/``T2`` and
    ``a``/``b`` are the same shape); table and column names are kept."""
    tree = parse_statement_shared(sql, dialect)
    if tree is None:
        return _token_skeleton(sql)
    tree = _values_as_strings(tree.copy())
    names: dict[str, str] = {}
    for node in tree.walk():
        alias = node.name if isinstance(node, exp.TableAlias) else \
            node.alias if isinstance(node, exp.Alias | exp.CTE) else ""
        if alias:
            names.setdefault(alias.lower(), f"_a{len(names) + 1}")

    def mask(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
            return exp.Placeholder()
        if isinstance(node, exp.Identifier) and node.name.lower() in names \
                and _is_alias_position(node):
            return exp.to_identifier(names[node.name.lower()])
        return node

    return tree.transform(mask).sql(dialect=dialect, normalize=True)


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.In)


def _values_as_strings(tree: exp.Expression) -> exp.Expression:
    """A double-quoted name compared with a column (``name = "Bob"``, common in Spider's gold
    SQL, a string to SQLite when no such column exists) as the string literal it is."""
    def literal(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.this.quoted \
                and isinstance(node.parent, _COMPARISONS) \
                and node.arg_key in ("expression", "expressions"):
            return exp.Literal.string(node.name)
        return node

    return tree.transform(literal)


def _is_alias_position(identifier: exp.Identifier) -> bool:
    """Whether an identifier names an alias: where one is defined, a column's table
    qualifier, a column alone (ORDER BY an output alias) or a table reference (a CTE)."""
    parent = identifier.parent
    if isinstance(parent, exp.TableAlias | exp.Alias | exp.CTE):
        return True
    if isinstance(parent, exp.Column):
        return parent.args.get("table") is identifier or not parent.table
    return isinstance(parent, exp.Table) and parent.args.get("this") is identifier \
        and not parent.db


def _token_skeleton(sql: str) -> str:
    """The skeleton of a query sqlglot cannot parse: its normalised tokens, literals masked."""
    parts = []
    for token in lex(normalize_sql(sql)):
        if token.kind in ("ws", "comment"):
            continue
        parts.append("?" if token.kind in ("number",) or
                     (token.kind in QUOTED_KINDS and token.text.startswith("'")) else
                     token.text.lower())
    return " ".join(parts)


def _group_key(by: str, dialect: str) -> Callable[[HasQuery], str] | None:
    if by == "query":
        return lambda e: query_key(e.query, dialect)
    if by == "skeleton":
        return lambda e: query_skeleton(e.query, dialect)
    if by == "database":
        return lambda e: e.db_id
    return None


def split_examples(examples: Sequence[Any], eval_fraction: float, seed: int,
                   by: str = "random", dialect: str = "sqlite") -> tuple[list[Any], list[Any]]:
    """Deterministic train/eval split: the same seed and input give the same split.

    ``eval_fraction`` 1.0 puts every example in the evaluation split (a test file). With
    ``random`` and ``db_id`` each example is drawn on its own (per database for ``db_id``);
    with ``query``, ``skeleton`` and ``database`` whole groups are drawn, in a seeded order,
    until the evaluation split holds its share, so that no group is on both sides.
    """
    if by not in SPLIT_KINDS:
        raise QueryCraftError(f"ingest.split_by must be one of {', '.join(SPLIT_KINDS)}, "
                              f"not {by!r}")
    if eval_fraction >= 1.0:
        return [], list(examples)
    if len(examples) < 2:
        raise QueryCraftError(f"Only {len(examples)} valid example(s): at least 2 are needed "
                              f"to make a training and an evaluation split.")
    key = _group_key(by, dialect)
    if key is None:
        eval_ids = _draw_each(examples, eval_fraction, seed, by)
    else:
        eval_ids = _draw_groups(examples, eval_fraction, seed, key, by)
    train = [e for i, e in enumerate(examples) if i not in eval_ids]
    evaluation = [e for i, e in enumerate(examples) if i in eval_ids]
    return train, evaluation


def _draw_each(examples: Sequence[Any], eval_fraction: float, seed: int, by: str) -> set[int]:
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(example.db_id if by == "db_id" else "", []).append(i)
    eval_ids: set[int] = set()
    for name in sorted(groups):
        order = list(groups[name])
        random.Random(f"{seed}:{name}" if name else seed).shuffle(order)
        if len(order) < 2:
            continue  # a database with one example trains on it
        n_eval = min(len(order) - 1, max(1, round(len(order) * eval_fraction)))
        eval_ids.update(order[:n_eval])
    return eval_ids


def _draw_groups(examples: Sequence[Any], eval_fraction: float, seed: int,
                 key: Callable[[Any], str], by: str) -> set[int]:
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(key(example), []).append(i)
    if len(groups) < 2:
        what = {"database": "database", "query": "distinct query"}.get(by, "query skeleton")
        raise QueryCraftError(
            f"ingest.split_by={by} holds out whole groups of one {what}, so it needs at "
            f"least two, and all {len(examples)} examples share one: use another split_by "
            "(random or db_id), or add examples. (The sample's preset, data=sample, splits "
            "by skeleton; for your own file use data=csv data.path=..., which keeps "
            "ingest's default split.)")
    order = sorted(groups)
    random.Random(f"{seed}:{by}").shuffle(order)
    target = max(1, round(len(examples) * eval_fraction))
    eval_ids: set[int] = set()
    for name in order[:-1]:  # the last group always trains
        if len(eval_ids) >= target:
            break
        if len(eval_ids) + len(groups[name]) > target * 1.5 and eval_ids:
            continue  # a large group would overshoot the share: a later one fits better
        eval_ids.update(groups[name])
    return eval_ids


@dataclass(frozen=True)
class Overlap:
    """How much of the evaluation split's SQL is in training.

    Attributes:
        eval_items: Evaluation items.
        same_query: Items whose normalised gold SQL (on the same database) is a training
            query: a reworded trained question.
        same_skeleton: Items whose query shape is a training shape (any database).
    """

    eval_items: int
    same_query: int
    same_skeleton: int

    @property
    def query_share(self) -> float:
        return self.same_query / self.eval_items if self.eval_items else 0.0

    @property
    def skeleton_share(self) -> float:
        return self.same_skeleton / self.eval_items if self.eval_items else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"eval_items": self.eval_items, "same_query": self.same_query,
                "same_query_share": round(self.query_share, 4),
                "same_skeleton": self.same_skeleton,
                "same_skeleton_share": round(self.skeleton_share, 4)}

    def warning(self) -> str | None:
        """A warning when the evaluation mostly re-asks trained queries, else None."""
        if self.query_share <= OVERLAP_WARNING:
            return None
        return (f"{self.same_query} of {self.eval_items} evaluation items "
                f"({self.query_share:.0%}) have their gold SQL in the training split, only "
                "worded differently: their score measures recall of trained queries, not new "
                "questions. Split with ingest.split_by=query (new queries), skeleton (new "
                "query shapes) or database (new databases)")


def overlap(train: Sequence[Any], evaluation: Sequence[Any], dialect: str = "sqlite"
            ) -> Overlap:
    """The :class:`Overlap` of two splits (examples with ``query`` and ``db_id``)."""
    keys: dict[str, tuple[str, str]] = {}

    def identity(sql: str) -> tuple[str, str]:
        if sql not in keys:
            keys[sql] = (query_key(sql, dialect), query_skeleton(sql, dialect))
        return keys[sql]

    queries = {(e.db_id, identity(e.query)[0]) for e in train}
    skeletons = {identity(e.query)[1] for e in train}
    same_query = sum((e.db_id, identity(e.query)[0]) in queries for e in evaluation)
    same_skeleton = sum(identity(e.query)[1] in skeletons for e in evaluation)
    return Overlap(len(evaluation), same_query, same_skeleton)
