"""Dates: rows of a year, after a date, the earliest and latest."""

from __future__ import annotations

import datetime
import re

from sqlglot import exp

from querycraft.synthesis.profile import (
    ColumnProfile,
)
from querycraft.synthesis.rules.common import (
    AGGREGATES,
    Candidate,
    Generator,
    Rule,
    bare,
    plural,
    singular,
    words,
)


def _years(col: ColumnProfile) -> list[int]:
    return sorted({int(str(v)[:4]) for v in col.values if re.match(r"\d{4}", str(v))})


def date_year(g: Generator) -> Candidate | None:
    table = g.table(lambda t: any(_years(c) for c in t.of_kind("date")))
    if table is None:
        return None
    col = g.pick([c for c in table.of_kind("date") if _years(c)])
    year = g.pick(_years(col))
    # A range rather than a year function: the same SQL on every engine, on TEXT and DATE.
    text = isinstance(col.values[0], str)
    low = f"{year}-01-01" if text else datetime.date(year, 1, 1)
    high = f"{year + 1}-01-01" if text else datetime.date(year + 1, 1, 1)
    cond = exp.And(this=exp.GTE(this=g.col(col), expression=g.lit(low)),
                   expression=exp.LT(this=g.col(col), expression=g.lit(high)))
    where = g.category_value(table) if g.implicit() else None
    if where is not None:  # "student members who joined in 2021"
        category, value = where
        cond = exp.And(this=exp.EQ(this=g.col(category), expression=g.lit(value)),
                       expression=cond)
        slots = {"b": bare(value, category), "t": plural(words(table.name)),
                 "c": words(col.name), "y": str(year)}
        if g.rng.random() < 0.5:
            tree = g.select(exp.Count(this=exp.Star()), table=table).where(cond)
            q = g.phrase("How many {b} {t} have a {c} in {y}?",
                         "What is the count of {b} {t} whose {c} falls in {y}?",
                         "Count the {b} {t} from {y}.", **slots)
            return Candidate("date", "date_year", tree, q, ("where", "aggregation"))
        tree = g.select(*g.identity(table), table=table).where(cond)
        q = g.phrase("Which {b} {t} have a {c} in {y}?", "List the {b} {t} with a {c} in {y}.",
                     **slots)
        return Candidate("date", "date_year", tree, q, ("where",))
    numbers = [c for c in table.of_kind("number") if len(c.values) >= 3]
    if numbers and g.rng.random() < 0.35:  # "the average fee of loans in 2022"
        number, name = g.pick(numbers), g.pick(("AVG", "SUM", "MAX", "MIN"))
        how = {"AVG": "average", "SUM": "total", "MAX": "largest", "MIN": "smallest"}[name]
        tree = g.select(AGGREGATES[name][0](this=g.col(number)), table=table).where(cond)
        said = g.name_of(number)
        said = re.sub(r"^total ", "", said) if name == "SUM" else said  # not "total total"
        q = g.phrase("What was the {h} {n} of {t} with a {c} in {y}?",
                     "Find the {h} {n} of {t} from {y}.", "In {y}, what was the {h} {n} "
                     "of the {t}?", h=how, n=said, t=plural(words(table.name)),
                     c=g.name_of(col), y=str(year))
        return Candidate("date", "date_year", tree, q, ("where", "aggregation"))
    if g.rng.random() < 0.5:
        tree = g.select(exp.Count(this=exp.Star()), table=table).where(cond)
        q = g.phrase("How many {t} have a {c} in {y}?", "Count the {t} whose {c} falls in {y}.",
                     t=plural(words(table.name)), c=g.name_of(col), y=str(year))
        tags = ("where", "aggregation")
    else:
        label = g.label(table)
        tree = g.select(g.col(label), g.col(col), table=table).where(cond)
        q = g.phrase("Which {t} have a {c} in {y}? Show their {l} and {c}.",
                     "List the {l} and {c} of the {t} dated {y} by {c}.",
                     t=plural(words(table.name)), c=g.name_of(col), y=str(year),
                     l=words(label.name))
        tags = ("where",)
    return Candidate("date", "date_year", tree, q, tags)


def date_after(g: Generator) -> Candidate | None:
    table = g.table(lambda t: any(len(c.values) >= 3 for c in t.of_kind("date")))
    if table is None:
        return None
    col = g.pick([c for c in table.of_kind("date") if len(c.values) >= 3])
    value, after = g.middle_value(col), g.rng.random() < 0.5
    label = g.label(table)
    op = exp.GT if after else exp.LT
    tree = g.select(g.col(label), g.col(col), table=table).where(
        op(this=g.col(col), expression=g.lit(value)))
    how = "after" if after else "before"
    q = g.phrase("Which {t} have a {c} {h} {v}? Give their {l} and {c}.",
                 "List the {l} and {c} of {t} with a {c} {h} {v}.", t=plural(words(table.name)),
                 c=g.name_of(col), h=how, v=str(value), l=words(label.name))
    return Candidate("date", "date_after", tree, q, ("where",))


def date_extreme(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("date")))
    if table is None:
        return None
    col = g.pick(table.of_kind("date"))
    latest = g.rng.random() < 0.5
    func = exp.Max if latest else exp.Min
    tree = g.select(func(this=g.col(col)), table=table)
    how = "latest" if latest else "earliest"
    q = g.phrase("What is the {h} {c} of any {s}?", "When is the {h} {c} among the {t}?",
                 h=how, c=g.name_of(col), s=singular(words(table.name)),
                 t=plural(words(table.name)))
    return Candidate("date", "date_extreme", tree, q, ("aggregation",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    date_year, date_after, date_extreme,
)
