"""Filters: a value equal, compared, matched, in a range or a list, two conditions,
a person by full name, the rows of one owner."""

from __future__ import annotations

import re

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    PRICE,
    Candidate,
    Generator,
    Rule,
    bare,
    filter_base,
    full_name,
    plural,
    say,
    singular,
    words,
)


def filter_equals(g: Generator) -> Candidate | None:
    base = filter_base(g, ("text", "number"))
    if base is None:
        return None
    table, col, label = base
    value = g.pick(col.values)
    tree = g.select(g.col(label), table=table).where(
        exp.EQ(this=g.col(col), expression=g.lit(value)))
    plain = bare(value, col)
    slots = {"t": plural(words(table.name)), "s": singular(words(table.name)),
             "c": words(col.name), "v": say(value), "b": plain}
    if g.implicit():
        tree = g.select(*g.identity(table), table=table).where(
            exp.EQ(this=g.col(col), expression=g.lit(value)))
        q = g.phrase("Which {t} have {c} {v}?", "List the {t} whose {c} is {v}.",
                     "Show the {t} with {c} {v}.",
                     *(("List the {b} {t}.", "Which {t} are in {b}?", "Show {t} in {b}.",
                        "Which {b} {t} are there?") if plain else ()), **slots)
        return Candidate("filter", "filter_equals", tree, q, ("where",))
    second = g.pick([c for c in table.of_kind("text", "number", "date") if c.name not in (
        label.name, col.name)]) if g.rng.random() < 0.4 else None
    if second is not None:  # "the titles and page counts of books with genre poetry"
        tree = g.select(g.col(label), g.col(second), table=table).where(
            exp.EQ(this=g.col(col), expression=g.lit(value)))
        q = g.phrase("List the {l} and {o} of {t} with {c} {v}.",
                     "What are the {l} and {o} of the {t} whose {c} is {v}?",
                     "Show the {l} and {o} of each {s} whose {c} is {v}.",
                     *(("List the {l} and {o} of the {b} {t}.",) if plain else ()),
                     l=g.name_of(label), o=g.name_of(second), **slots)
        return Candidate("filter", "filter_equals", tree, q, ("where",))
    q = g.phrase("What is the {l} of the {t} whose {c} is {v}?",
                 "List the {l} of every {s} with {c} {v}.",
                 "Which {t} have {c} {v}? Give their {l}.",
                 *(("List the {l} of the {b} {t}.", "Show the {l} of {t} in {b}.")
                   if plain else ()), l=words(label.name), **slots)
    return Candidate("filter", "filter_equals", tree, q, ("where",))


def filter_compare(g: Generator) -> Candidate | None:
    base = filter_base(g, ("number",))
    if base is None or len(base[1].values) < 3:
        return None
    table, col, label = base
    value, above = g.middle_value(col), g.rng.random() < 0.5
    op = exp.GT if above else exp.LT
    tree = g.select(g.col(label), g.col(col), table=table).where(
        op(this=g.col(col), expression=g.lit(value)))
    more = g.pick(("greater than", "more than", "above")) if above else \
        g.pick(("less than", "below", "smaller than"))
    if g.implicit():
        tree = g.select(*g.identity(table), g.col(col), table=table).where(
            op(this=g.col(col), expression=g.lit(value)))
        q = g.phrase("Which {t} have a {c} {m} {v}?", "Show {t} having a {c} {m} {v}.",
                     "List the {t} whose {c} is {m} {v}, with their {c}.",
                     *(("Which {t} sell for {m} {v}?",) if PRICE.search(col.name) else ()),
                     t=plural(words(table.name)), c=g.name_of(col), m=more, v=say(value))
        return Candidate("filter", "filter_compare", tree, q, ("where",))
    q = g.phrase("Which {t} have a {c} {m} {v}? Show their {l} and {c}.",
                 "List the {l} and {c} of {t} whose {c} is {m} {v}.",
                 "Show the {l} and {c} of every {s} with a {c} {m} {v}.", t=plural(words(
                     table.name)), s=singular(words(table.name)), c=g.name_of(col), m=more,
                 v=say(value), l=words(label.name))
    return Candidate("filter", "filter_compare", tree, q, ("where",))


def filter_like(g: Generator) -> Candidate | None:
    base = filter_base(g, ("text",))
    if base is None:
        return None
    table, col, label = base
    value = g.pick([v for v in col.values if len(v.strip()) >= 3 and "%" not in v
                    and "_" not in v])
    if value is None:
        return None
    if g.rng.random() < 0.5:  # a leading fragment: "starts with"
        fragment = value[: max(2, len(value) // 2)].rstrip()
        pattern, how = fragment + "%", "starts with"
    else:  # a word inside: "contains"
        parts = [w for w in re.split(r"[\s,.;/]+", value) if len(w) >= 3]
        fragment = g.pick(parts) or value[:3]
        pattern, how = f"%{fragment}%", "contains"
    like = exp.Like(this=g.col(col), expression=exp.Literal.string(pattern))
    if g.implicit():
        tree = g.select(*g.identity(table), table=table).where(like)
        inside = ("Which {t} have a {c} with {f} in it?", "List the {t} with '{f}' in their {c}.",
                  "Show {t} whose {c} contains {f}.") if how == "contains" else ()
        q = g.phrase("Which {t} have a {c} that {h} '{f}'?", *inside,
                     t=plural(words(table.name)), c=g.name_of(col), h=how, f=fragment)
        return Candidate("filter", "filter_like", tree, q, ("where",))
    tree = g.select(g.col(label), table=table).where(like)
    q = g.phrase("Which {t} have a {c} that {h} '{f}'? Show their {l}.",
                 "List the {l} of the {t} whose {c} {h} '{f}'.",
                 "Find the {l} of every {s} whose {c} {h} '{f}'.", t=plural(words(table.name)),
                 s=singular(words(table.name)), c=g.name_of(col), h=how, f=fragment,
                 l=words(label.name))
    return Candidate("filter", "filter_like", tree, q, ("where",))


def filter_between(g: Generator) -> Candidate | None:
    base = filter_base(g, ("number", "date"))
    if base is None or len(base[1].values) < 4:
        return None
    table, col, label = base
    low, high = sorted(g.rng.sample(range(len(col.values)), 2))
    a, b = col.values[low], col.values[high]
    between = exp.Between(this=g.col(col), low=g.lit(a), high=g.lit(b))
    if g.implicit():
        tree = g.select(*g.identity(table), g.col(col), table=table).where(between)
        q = g.phrase("Which {t} have a {c} between {a} and {b}?",
                     "Show {t} having a {c} between {a} and {b}, along with the {c}.",
                     "List the {t} with a {c} from {a} to {b}.", t=plural(words(table.name)),
                     c=g.name_of(col), a=say(a), b=say(b))
        return Candidate("filter", "filter_between", tree, q, ("where",))
    tree = g.select(g.col(label), g.col(col), table=table).where(between)
    q = g.phrase("Which {t} have a {c} between {a} and {b}? Give their {l} and {c}.",
                 "List the {l} and {c} of {t} with a {c} from {a} to {b}.",
                 "Show the {l} and {c} of every {s} whose {c} lies between {a} and {b}.",
                 t=plural(words(table.name)), s=singular(words(table.name)), c=g.name_of(col),
                 a=say(a), b=say(b), l=words(label.name))
    return Candidate("filter", "filter_between", tree, q, ("where",))


def filter_full_name(g: Generator) -> Candidate | None:
    """A person's other columns by their full name: "Odile Quill's email address"."""
    table = g.table(lambda t: bool(t.full_names))
    if table is None:
        return None
    named = full_name(g, table)
    if named is None:
        return None
    conditions, person = named
    names = {c.name for c in table.identity()}
    shown = [c for c in table.of_kind("text", "number", "date") if c.name not in names]
    if not shown:
        return None
    cols = g.rng.sample(shown, min(len(shown), g.pick((1, 1, 2))))
    tree = g.select(*[g.col(c) for c in cols], table=table).where(exp.and_(*conditions))
    what = " and ".join(g.name_of(c) for c in cols)
    q = g.phrase("What is the {c} of {p}?", "Give me the {c} on record for the {s} called {p}.",
                 "Find the {c} belonging to {s} {p}.", "What {c} does {p} have?", c=what, p=person,
                 s=singular(words(table.name)))
    return Candidate("filter", "filter_full_name", tree, q, ("where",))


def filter_by_owner(g: Generator) -> Candidate | None:
    """A child's rows for one parent, by the key it holds: "the loans of member 12 and their
    due dates" (``WHERE member_id = 12``, no join needed)."""
    fk = g.pick([fk for fk in g.profile.joins()
                 if g.profile.tables[fk.table].column(fk.columns[0]).values])
    if fk is None:
        return None
    child = g.profile.tables[fk.table]
    key = child.column(fk.columns[0])
    value = g.pick(key.values)
    cond = exp.EQ(this=g.col(key), expression=g.lit(value))
    extra = g.pick([c for c in child.of_kind("number", "date", "text")]) \
        if g.rng.random() < 0.6 else None
    tree = g.select(*g.identity(child), *([g.col(extra)] if extra else []),
                    table=child).where(cond)
    slots = {"ct": plural(words(child.name)), "o": singular(words(fk.ref_table)),
             "v": say(value)}
    if extra is None:
        q = g.phrase("List the {ct} of {o} {v}.", "Which {ct} does {o} {v} have?",
                     "Show all {ct} for {o} {v}.", **slots)
    else:
        q = g.phrase("List the {ct} and their {e} for {o} {v}.",
                     "Show the {ct} of {o} {v} with their {e}.",
                     "What {ct} does {o} {v} have, and what is their {e}?",
                     e=g.name_of(extra), **slots)
    return Candidate("filter", "filter_by_owner", tree, q, ("where",))


def filter_in(g: Generator) -> Candidate | None:
    """``col IN (a, b)``: either of two real values."""
    base = filter_base(g, ("text", "number"))
    if base is None or len(base[1].values) < 3:
        return None
    table, col, label = base
    first, second = g.rng.sample(list(col.values), 2)
    tree = g.select(g.col(label), table=table).where(
        exp.In(this=g.col(col), expressions=[g.lit(first), g.lit(second)]))
    plain = (bare(first, col), bare(second, col))
    q = g.phrase("List the {l} of the {t} whose {c} is {a} or {b}.",
                 "Which {t} have {c} {a} or {b}? Give their {l}.",
                 "Show the {l} of every {s} with {c} {a} or {b}.",
                 *(("List the {l} of {t} in either {pa} or {pb}.",
                    "Show the {l} of the {pa} or {pb} {t}.") if all(plain) else ()),
                 t=plural(words(table.name)), s=singular(words(table.name)), c=g.name_of(col),
                 a=say(first), b=say(second), l=words(label.name), pa=plain[0], pb=plain[1])
    return Candidate("filter", "filter_in", tree, q, ("where",))


def filter_and(g: Generator) -> Candidate | None:
    """Two conditions at once: a value of one column and a threshold on a number."""
    table = g.table(lambda t: bool(t.of_kind("text")) and bool(t.of_kind("number")))
    if table is None:
        return None
    text_col = g.pick(table.of_kind("text"))
    number_col = g.pick([c for c in table.of_kind("number") if len(c.values) >= 3])
    if number_col is None:
        return None
    label = g.pick([c for c in table.labels() if c.name not in (text_col.name,
                                                                  number_col.name)])
    if label is None:
        return None
    value, threshold, above = g.pick(text_col.values), g.middle_value(number_col), \
        g.rng.random() < 0.5
    op = exp.GT if above else exp.LT
    cond = exp.And(this=exp.EQ(this=g.col(text_col), expression=g.lit(value)),
                   expression=op(this=g.col(number_col), expression=g.lit(threshold)))
    tree = g.select(g.col(label), table=table).where(cond)
    more = g.pick(("above", "over", "more than")) if above else g.pick(("below",
                                                                         "under", "less than"))
    plain = bare(value, text_col)
    if plain and g.implicit():  # "overdue loans with a fee above 5"
        tree = g.select(*g.identity(table), g.col(number_col), table=table).where(cond)
        q = g.phrase("Show {b} {t} having a {n} {m} {x}.", "Which {b} {t} have a {n} {m} {x}?",
                     "List the {b} {t} whose {n} is {m} {x}.",
                     *(("Which {b} {t} sell for {m} {x}?",) if PRICE.search(number_col.name)
                       else ()), b=plain, t=plural(words(table.name)),
                     n=words(number_col.name), m=more, x=say(threshold))
        return Candidate("filter", "filter_and", tree, q, ("where",))
    q = g.phrase("Which {t} with {c} {v} have a {n} {m} {x}? Show their {l}.",
                 "List the {l} of the {t} whose {c} is {v} and whose {n} is {m} {x}.",
                 "Show the {l} of every {s} with {c} {v} and a {n} {m} {x}.",
                 t=plural(words(table.name)), s=singular(words(table.name)),
                 c=words(text_col.name), v=say(value), n=words(number_col.name), m=more,
                 x=say(threshold), l=words(label.name))
    return Candidate("filter", "filter_and", tree, q, ("where",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    filter_equals, filter_compare, filter_like, filter_between, filter_in, filter_and,
    filter_full_name, filter_by_owner,
)
