"""Nested queries: IN and NOT IN a subquery, a comparison with a scalar subquery."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    AGGREGATES,
    Candidate,
    Generator,
    Rule,
    join_parts,
    plural,
    say,
    singular,
    words,
)


def nested_in(g: Generator) -> Candidate | None:
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    col = g.pick([c for c in child.of_kind("text", "number") if c.name != fk.columns[0]])
    if col is None:
        return None
    value = g.pick(col.values)
    label = g.label(parent)
    inner = g.select(g.col(fk.columns[0]), table=child).where(
        exp.EQ(this=g.col(col), expression=g.lit(value)))
    tree = g.select(g.col(label), table=parent).where(
        g.col(fk.ref_columns[0]).isin(query=inner))
    q = g.phrase("List the {l} of the {pt} that have a {cs} with {c} {v}.",
                 "Which {pt} have at least one {cs} whose {c} is {v}? Give their {l}.",
                 l=words(label.name), pt=plural(words(parent.name)),
                 cs=singular(words(child.name)), c=g.name_of(col), v=say(value))
    return Candidate("nested", "nested_in", tree, q, ("where",))


def nested_not_in(g: Generator) -> Candidate | None:
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    label = g.label(parent)
    key = g.col(fk.columns[0])
    # IS NOT NULL inside: a NULL in the list would make NOT IN match nothing.
    inner = g.select(key, table=child).where(
        exp.Is(this=key.copy(), expression=exp.Not(this=exp.Null())))
    tree = g.select(g.col(label), table=parent).where(
        exp.Not(this=g.col(fk.ref_columns[0]).isin(query=inner)))
    q = g.phrase("Which {pt} have no {ct}? Show their {l}.",
                 "List the {l} of the {pt} without any {cs}.", pt=plural(words(parent.name)),
                 ct=plural(words(child.name)), cs=singular(words(child.name)),
                 l=words(label.name))
    return Candidate("nested", "nested_not_in", tree, q, ("where",))


def nested_scalar(g: Generator) -> Candidate | None:
    table = g.table(lambda t: any(c.distinct > 2 for c in t.of_kind("number")))
    if table is None:
        return None
    col = g.pick([c for c in table.of_kind("number") if c.distinct > 2])
    label = g.label(table)
    name = g.pick(("AVG", "MAX", "MIN"))
    inner = g.select(AGGREGATES[name][0](this=g.col(col)), table=table)
    if name == "AVG":
        above = g.rng.random() < 0.5
        op = exp.GT if above else exp.LT
        how = "above" if above else "below"
        q = g.phrase("Which {t} have a {c} {h} the average? Show their {l} and {c}.",
                     "List the {l} and {c} of {t} whose {c} is {h} the average {c}.",
                     t=plural(words(table.name)), c=g.name_of(col), h=how,
                     l=words(label.name))
    else:
        op = exp.EQ
        most = "highest" if name == "MAX" else "lowest"
        q = g.phrase("Which {t} have the {m} {c}? Show their {l} and {c}.",
                     "List the {l} and {c} of the {t} whose {c} equals the {m} {c} of all.",
                     t=plural(words(table.name)), c=g.name_of(col), m=most,
                     l=words(label.name))
    tree = g.select(g.col(label), g.col(col), table=table).where(
        op(this=g.col(col), expression=exp.Subquery(this=inner)))
    return Candidate("nested", "nested_scalar", tree, q, ("where", "aggregation"))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    nested_in, nested_not_in, nested_scalar,
)
