"""Set operations: UNION, INTERSECT and EXCEPT of two filters."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    Candidate,
    Generator,
    Rule,
    group_column,
    plural,
    say,
    words,
)

_SET_OPS = {
    "UNION": (exp.union, ("List the {l} of {t} whose {a} is {va} or whose {b} is {vb}.",
                          "Which {l} values belong to {t} with {a} {va} or with {b} {vb}?")),
    "INTERSECT": (exp.intersect, (
        "Which {l} values are found both among {t} with {a} {va} and among {t} with {b} {vb}?",
        "List the {l} shared by {t} whose {a} is {va} and {t} whose {b} is {vb}.")),
    "EXCEPT": (exp.except_, (
        "Which {l} values belong to {t} with {a} {va} but not to any with {b} {vb}?",
        "List the {l} of {t} whose {a} is {va}, leaving out those of {t} whose {b} is {vb}.")),
}


def set_operation(g: Generator) -> Candidate | None:
    table = g.table(lambda t: len(t.of_kind("text", "number")) >= 1)
    if table is None:
        return None
    label = g.pick(table.labels() + group_column(table))
    filters = [c for c in table.of_kind("text", "number") if c.name != label.name]
    if not filters:
        return None
    a, b = g.pick(filters), g.pick(filters)
    va, vb = g.pick(a.values), g.pick(b.values)
    if a.name == b.name and va == vb:
        return None
    name = g.pick(sorted(_SET_OPS))
    build, templates = _SET_OPS[name]
    left = g.select(g.col(label), table=table).where(exp.EQ(this=g.col(a), expression=g.lit(va)))
    right = g.select(g.col(label), table=table).where(
        exp.EQ(this=g.col(b), expression=g.lit(vb)))
    tree = build(left, right, distinct=True)
    q = g.phrase(*templates, l=words(label.name), t=plural(words(table.name)), a=words(a.name),
                 b=words(b.name), va=say(va), vb=say(vb))
    return Candidate("set_operation", f"set_{name.lower()}", tree, q, ("where",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    set_operation,
)
