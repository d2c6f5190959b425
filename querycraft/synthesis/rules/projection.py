"""Projection: the rows' columns, one or two of them, or their distinct values."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    Candidate,
    Generator,
    Rule,
    bare,
    plural,
    say,
    singular,
    words,
)


def projection_one(g: Generator) -> Candidate | None:
    table = g.table()
    if table is None:
        return None
    col = g.pick(table.labels() + table.of_kind("text", "number", "date"))
    if col is None:
        return None
    tree = g.select(g.col(col), table=table)
    names = plural(words(table.name))
    q = g.phrase("List the {c} of all {t}.", "What is the {c} of each of the {t}?",
                 "Show the {c} for every {s}.", c=g.name_of(col), t=names,
                 s=singular(words(table.name)))
    return Candidate("projection", "projection_one", tree, q)


def projection_two(g: Generator) -> Candidate | None:
    table = g.table(lambda t: len(t.of_kind("text", "number", "date")) >= 2)
    if table is None:
        return None
    first = g.label(table)
    others = [c for c in table.of_kind("text", "number", "date") if c.name != first.name]
    second = g.pick(others)
    if second is None:
        return None
    tree = g.select(g.col(first), g.col(second), table=table)
    q = g.phrase("Show the {a} and {b} of every {s}.", "List each {s}'s {a} and {b}.",
                 "What are the {a} and the {b} of all {t}?", a=words(first.name),
                 b=words(second.name), s=singular(words(table.name)),
                 t=plural(words(table.name)))
    return Candidate("projection", "projection_two", tree, q)


def projection_distinct(g: Generator) -> Candidate | None:
    table = g.table(lambda t: any(c.distinct < t.rows for c in t.of_kind("text", "number")))
    if table is None:
        return None
    col = g.pick([c for c in table.of_kind("text", "number") if c.distinct < table.rows])
    tree = g.select(g.col(col), table=table).distinct()
    numbers = [c for c in table.of_kind("number") if c.name != col.name and len(c.values) >= 3]
    if numbers and g.rng.random() < 0.25:  # "genres with books priced above 20"
        number, above = g.pick(numbers), g.rng.random() < 0.5
        value = g.middle_value(number)
        tree = tree.where((exp.GT if above else exp.LT)(this=g.col(number),
                                                         expression=g.lit(value)))
        q = g.phrase("Which {c} values have {t} with a {n} {m} {v}?",
                     "Which {cp} have {t} with a {n} {m} {v}?",
                     "List the distinct {c} values of {t} whose {n} is {m} {v}.",
                     "What different {c} values appear among {t} with a {n} {m} {v}?",
                     c=g.name_of(col), cp=plural(g.name_of(col)), t=plural(words(table.name)),
                     n=g.name_of(number), m="above" if above else "below", v=say(value))
        return Candidate("projection", "projection_distinct", tree, q, ("distinct", "where"))
    where = g.category_value(table, exclude=col) if g.implicit() else None
    if where is not None:  # "the distinct genres of books in Spanish"
        category, value = where
        tree = tree.where(exp.EQ(this=g.col(category), expression=g.lit(value)))
        q = g.phrase("List the distinct {c} values of {t} in {b}.",
                     "What different {c} values do the {b} {t} have?",
                     "Which {c} values appear among {t} in {b}?", c=g.name_of(col),
                     t=plural(words(table.name)), b=bare(value, category))
        return Candidate("projection", "projection_distinct", tree, q, ("distinct", "where"))
    q = g.phrase("What are the different {c} values of the {t}?",
                 "List the distinct {c} values found among {t}.",
                 "Which {c} values do the {t} have?", c=g.name_of(col),
                 t=plural(words(table.name)))
    return Candidate("projection", "projection_distinct", tree, q, ("distinct",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    projection_one, projection_two, projection_distinct,
)
