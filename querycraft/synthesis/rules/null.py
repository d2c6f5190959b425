"""NULL handling: rows with a missing value, and how many."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.profile import (
    ColumnProfile,
    TableProfile,
)
from querycraft.synthesis.rules.common import (
    Candidate,
    Generator,
    Rule,
    bare,
    plural,
    singular,
    words,
)


def _nullable(t: TableProfile) -> list[ColumnProfile]:
    return [c for c in t.columns if c.has_nulls]


def null_rows(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(_nullable(t)))
    if table is None:
        return None
    col = g.pick(_nullable(table))
    label = g.pick([c for c in table.labels() if c.name != col.name]) or g.label(table)
    missing = g.rng.random() < 0.5
    test = exp.Null() if missing else exp.Not(this=exp.Null())
    if g.implicit():
        cond: exp.Expression = exp.Is(this=g.col(col), expression=test)
        category = g.pick([c for c in table.of_kind("text") if c.name != col.name
                           and any(bare(v, c) for v in c.values)])
        kind = ""
        if category is not None and g.rng.random() < 0.6:
            value = g.pick([v for v in category.values if bare(v, category)])
            cond = exp.And(this=cond, expression=exp.EQ(this=g.col(category),
                                                        expression=g.lit(value)))
            kind = bare(value, category) + " "
        tree = g.select(*g.identity(table), table=table).where(cond)
        if missing:
            q = g.phrase("Which {k}{t} have no {c}?", "List {k}{t} lacking a {c}.",
                         "Which {k}{t} are without a {c}?", k=kind,
                         t=plural(words(table.name)), c=g.name_of(col))
        else:
            q = g.phrase("Which {k}{t} have a {c}?", "List {k}{t} whose {c} is known.",
                         k=kind, t=plural(words(table.name)), c=g.name_of(col))
        return Candidate("null", "null_rows", tree, q, ("where",))
    tree = g.select(g.col(label), table=table).where(exp.Is(this=g.col(col), expression=test))
    if missing:
        q = g.phrase("Which {t} have no {c}? Show their {l}.",
                     "List the {l} of the {t} whose {c} is missing.",
                     "Show the {l} of every {s} without a {c}.", t=plural(words(table.name)),
                     s=singular(words(table.name)), c=g.name_of(col), l=words(label.name))
    else:
        q = g.phrase("Which {t} have a {c} recorded? Show their {l}.",
                     "List the {l} of the {t} whose {c} is known.", t=plural(words(table.name)),
                     c=g.name_of(col), l=words(label.name))
    return Candidate("null", "null_rows", tree, q, ("where",))


def null_count(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(_nullable(t)))
    if table is None:
        return None
    col = g.pick(_nullable(table))
    missing = g.rng.random() < 0.5
    test = exp.Null() if missing else exp.Not(this=exp.Null())
    cond: exp.Expression = exp.Is(this=g.col(col), expression=test)
    # Among one category as often as not: "How many student members have an email address?"
    within = g.category_value(table, exclude=col) if g.rng.random() < 0.5 else None
    if within is not None:
        cond = exp.And(this=cond, expression=exp.EQ(this=g.col(within[0]),
                                                    expression=g.lit(within[1])))
    tree = g.select(exp.Count(this=exp.Star()), table=table).where(cond)
    slots = {"t": plural(words(table.name)), "c": g.name_of(col),
             "b": bare(within[1], within[0]) + " " if within is not None else ""}
    if missing:
        q = g.phrase("How many {b}{t} have no {c}?", "Count the {b}{t} whose {c} is missing.",
                     **slots)
    else:
        q = g.phrase("How many {b}{t} have a {c}?", "Count the {b}{t} whose {c} is filled in.",
                     "How many {b}{t} have a {c} entered?", **slots)
    return Candidate("null", "null_count", tree, q, ("where", "aggregation"))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    null_rows, null_count,
)
