"""Aggregation: counts, with and without a condition, and sums, averages, minima and
maxima."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    AGGREGATES,
    Candidate,
    Generator,
    Rule,
    bare,
    filter_base,
    plural,
    say,
    singular,
    words,
)


def count_all(g: Generator) -> Candidate | None:
    table = g.table()
    if table is None:
        return None
    tree = g.select(exp.Count(this=exp.Star()), table=table)
    q = g.phrase("How many {t} are there?", "Count the {t}.", "What is the number of {t}?",
                 t=plural(words(table.name)))
    return Candidate("aggregation", "count_all", tree, q)


def count_where(g: Generator) -> Candidate | None:
    base = filter_base(g, ("text", "number"))
    if base is None:
        return None
    table, col, _ = base
    value = g.pick(col.values)
    tree = g.select(exp.Count(this=exp.Star()), table=table).where(
        exp.EQ(this=g.col(col), expression=g.lit(value)))
    plain = bare(value, col)
    other = g.category_value(table, exclude=col) if g.implicit() else None
    if other is not None:  # two conditions: "How many poetry books have language 'Welsh'?"
        category, kind = other
        tree = tree.where(exp.EQ(this=g.col(category), expression=g.lit(kind)))
        q = g.phrase("How many {k} {t} have {c} {v}?", "Count the {k} {t} whose {c} is {v}.",
                     "What is the number of {k} {t} with {c} {v}?",
                     *(("How many {k} {t} are {b}?",) if plain else ()),
                     k=bare(kind, category), t=plural(words(table.name)), c=g.name_of(col),
                     v=say(value), b=plain)
        return Candidate("aggregation", "count_where", tree, q, ("where",))
    q = g.phrase("How many {t} have {c} {v}?", "Count the {t} whose {c} is {v}.",
                 "What is the number of {t} with {c} {v}?",
                 *(("How many {b} {t} are there?", "Count the {b} {t}.",
                    "How many {t} are in {b}?") if plain else ()),
                 t=plural(words(table.name)), c=g.name_of(col), v=say(value), b=plain)
    return Candidate("aggregation", "count_where", tree, q, ("where",))


def aggregate(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("number")))
    if table is None:
        return None
    col = g.pick(table.of_kind("number"))
    name = g.pick(sorted(AGGREGATES))
    func, templates = AGGREGATES[name]
    tree = g.select(func(this=g.col(col)), table=table)
    q = g.phrase(*templates, c=g.name_of(col), t=plural(words(table.name)),
                 s=singular(words(table.name)))
    return Candidate("aggregation", "aggregate", tree, q)


def aggregate_where(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("number")) and bool(t.of_kind("text")))
    if table is None:
        return None
    col, by = g.pick(table.of_kind("number")), g.pick(table.of_kind("text"))
    value = g.pick(by.values)
    name = g.pick(("AVG", "SUM", "MAX", "MIN"))
    func = AGGREGATES[name][0]
    how = {"AVG": "average", "SUM": "total", "MAX": "highest", "MIN": "lowest"}[name]
    tree = g.select(func(this=g.col(col)), table=table).where(
        exp.EQ(this=g.col(by), expression=g.lit(value)))
    q = g.phrase("What is the {h} {c} of the {t} whose {b} is {v}?",
                 "Among {t} with {b} {v}, what is the {h} {c}?", h=how, c=g.name_of(col),
                 t=plural(words(table.name)), b=words(by.name), v=say(value))
    return Candidate("aggregation", "aggregate_where", tree, q, ("where",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    count_all, count_where, aggregate, aggregate_where,
)
