"""Joins: a child's rows filtered by its parent, pairs, counts per parent, the rows a key
holds, a person's rows by full name, totals for one parent, joins through a linking table."""

from __future__ import annotations

import re

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    AGGREGATES,
    Candidate,
    Generator,
    Rule,
    bare,
    full_name,
    group_column,
    join_parts,
    plural,
    say,
    singular,
    summed_children,
    total_of,
    words,
)


def join_filter(g: Generator) -> Candidate | None:
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    col = g.pick(parent.of_kind("text", "number"))
    if col is None:
        return None
    label = g.pick([c for c in child.columns if c.values and c.name != fk.columns[0]]
                   ) or g.label(child)
    value = g.pick(col.values)
    cond = exp.EQ(this=g.col(col, "T2"), expression=g.lit(value))
    plain = bare(value, col)
    if g.implicit():  # "Which loans belong to members with last name Fenwick?"
        extra = g.pick([c for c in child.of_kind("number", "date", "text")]) \
            if g.rng.random() < 0.5 else None
        tree = g.join(fk).select(*g.identity(child, "T1"),
                                 *([g.col(extra, "T1")] if extra else [])).where(cond)
        slots = {"ct": plural(words(child.name)), "pt": plural(words(parent.name)),
                 "c": g.name_of(col), "v": say(value), "b": plain,
                 "e": g.name_of(extra) if extra else ""}
        if extra is None:
            q = g.phrase("List the {ct} of {pt} with {c} {v}.",
                         "Which {ct} belong to {pt} whose {c} is {v}?",
                         *(("Show the {ct} of {b} {pt}.",) if plain else ()), **slots)
        else:
            q = g.phrase("List the {ct} of {pt} with {c} {v}, with their {e}.",
                         "Show the {ct} and {e} for {pt} whose {c} is {v}.",
                         *(("List the {ct} of {b} {pt} and their {e}.",) if plain else ()),
                         **slots)
        return Candidate("join", "join_filter", tree, q, ("where",))
    tree = g.join(fk).select(g.col(label, "T1")).where(cond)
    q = g.phrase("List the {l} of the {ct} whose {p} has {c} {v}.",
                 "For {pt} with {c} {v}, show the {l} of their {ct}.",
                 "What is the {l} of each {cs} linked to a {p} with {c} {v}?",
                 *(("List the {l} of the {ct} of {b} {pt}.",) if plain else ()),
                 l=words(label.name), ct=plural(words(child.name)),
                 cs=singular(words(child.name)), p=singular(words(parent.name)),
                 pt=plural(words(parent.name)), c=g.name_of(col), v=say(value), b=plain)
    return Candidate("join", "join_filter", tree, q, ("where",))


def join_for_key(g: Generator) -> Candidate | None:
    """Rows of a parent reached through a child that another key filters: "the book titles
    in loan 12, with their copies" (loan_item joined to book, on one loan_id)."""
    # The filtering key's table must be the child's container, as its name says (a
    # loan_item belongs to a loan): "the members for branch 3" reads wrong.
    joins = g.profile.joins()
    pairs = [(fk, other) for fk in joins for other in joins
             if other.table == fk.table and other.columns[0] != fk.columns[0]
             and singular(words(other.ref_table)) in words(fk.table).split()
             and g.profile.tables[fk.table].column(other.columns[0]).values]
    if not pairs:
        return None
    fk, other = g.pick(pairs)
    child, parent = g.profile.tables[fk.table], g.profile.tables[fk.ref_table]
    key = child.column(other.columns[0])
    value = g.pick(key.values)
    shown = g.identity(parent, "T2")
    mine = g.pick(child.of_kind("number", "text", "date")) if g.rng.random() < 0.6 else None
    tree = g.join(fk).select(*shown, *([g.col(mine, "T1")] if mine else [])).where(
        exp.EQ(this=g.col(key, "T1"), expression=g.lit(value)))
    names = [c.name for c in parent.identity()]
    whole = words(names[0]) if len(names) == 1 and re.search(r"(?i)name|title", names[0]) \
        else None  # "book titles", else "books"
    slots = {"pt": plural(words(parent.name)), "os": singular(words(other.ref_table)),
             "v": say(value), "n": f"{singular(words(parent.name))} {plural(whole)}"
             if whole and not whole.startswith(singular(words(parent.name))) else
             plural(whole or words(parent.name))}
    if mine is None:
        q = g.phrase("Which {pt} are in {os} {v}?", "List the {n} that belong to {os} {v}.",
                     "What {pt} does {os} {v} have?", **slots)
        return Candidate("join", "join_for_key", tree, q, ("where",))
    q = g.phrase("List the {n} in {os} {v} and their {m}.",
                 "Which {pt} are in {os} {v}, and with what {m}?",
                 "Show the {n} of {os} {v} with their {m}.", m=g.name_of(mine), **slots)
    return Candidate("join", "join_for_key", tree, q, ("where",))


def join_full_name(g: Generator) -> Candidate | None:
    """A person's child rows by the person's full name: "the titles and genres of the books
    of Odile Quill" (child JOIN person WHERE first AND last name)."""
    joins = [fk for fk in g.profile.joins() if g.profile.tables[fk.ref_table].full_names]
    fk = g.pick(joins)
    if fk is None:
        return None
    child, parent = g.profile.tables[fk.table], g.profile.tables[fk.ref_table]
    named = full_name(g, parent, "T2")
    if named is None:
        return None
    conditions, person = named
    shown = [c for c in child.of_kind("text", "number", "date")]
    if not shown:
        return None
    cols = g.rng.sample(shown, min(len(shown), g.pick((1, 2, 2))))
    tree = g.join(fk).select(*[g.col(c, "T1") for c in cols]).where(exp.and_(*conditions))
    q = g.phrase("List the {c} of each {cs} that {p} has.", "What {c} do the {ct} of {p} have?",
                 "Show the {c} of the {ct} of {ps} {p}.", "For {p}, list the {c} of each "
                 "{cs}.", c=" and ".join(g.name_of(c) for c in cols), p=person,
                 cs=singular(words(child.name)), ct=plural(words(child.name)),
                 ps=singular(words(parent.name)))
    return Candidate("join", "join_full_name", tree, q, ("where",))


def join_total_for(g: Generator) -> Candidate | None:
    """A child number added up for one named parent: "the copies of Tidewater Almanac over
    all its loan items" (SUM through the join, WHERE the parent's name)."""
    parts = summed_children(g)
    if parts is None:
        return None
    fk, child, parent, col = parts
    names = parent.identity()
    if len(names) != 1 or names[0].kind != "text" or not names[0].values:
        return None
    value = g.pick(names[0].values)
    name = g.pick(("SUM", "SUM", "AVG", "COUNT"))
    total = exp.Count(this=exp.Star()) if name == "COUNT" else \
        AGGREGATES[name][0](this=g.col(col, "T1"))
    tree = g.join(fk).select(total).where(
        exp.EQ(this=g.col(names[0], "T2"), expression=g.lit(value)))
    slots = {"c": g.name_of(col), "ct": plural(words(child.name)), "v": say(value),
             "p": singular(words(parent.name)), "tc": total_of(col)}
    if name == "COUNT":
        q = g.phrase("How many {ct} are there for {v}?", "Count the {ct} of the {p} {v}.",
                     "How many {ct} does {v} have?", **slots)
    elif name == "AVG":
        q = g.phrase("What is the average {c} of the {ct} for {v}?",
                     "On average, what {c} do the {ct} of {v} have?", **slots)
    else:
        q = g.phrase("What is the {tc} of {v}?", "What is the total {c} for {p} {v}?",
                     "How much {c} in total do the {ct} of {v} have?",
                     "Sum the {c} of the {ct} for {v}.", **slots)
    return Candidate("join", "join_total_for", tree, q, ("where", "aggregation"))


def join_through(g: Generator) -> Candidate | None:
    """Rows of one table reached from another through a table that links both (many to
    many): "the books in the loans of member 12" (loan JOIN loan_item JOIN book, DISTINCT,
    filtered on the first table)."""
    joins = g.profile.joins()
    links = [(a, b) for a in joins for b in joins if a.table == b.table
             and a.ref_table != b.ref_table and a.columns[0] != b.columns[0]]
    if not links:
        return None
    into, out = g.pick(links)  # link.into -> start table, link.out -> the rows to list
    start, link, end = (g.profile.tables[into.ref_table], g.profile.tables[into.table],
                        g.profile.tables[out.ref_table])
    tree = exp.Select(expressions=[g.col(c, "T3") for c in end.identity()]).distinct()
    tree = tree.from_(g.src(start, "T1")).join(g.src(link, "T2"), on=exp.EQ(
        this=g.col(into.ref_columns[0], "T1"), expression=g.col(into.columns[0], "T2"))).join(
        g.src(end, "T3"), on=exp.EQ(this=g.col(out.columns[0], "T2"),
                                    expression=g.col(out.ref_columns[0], "T3")))
    slots = {"et": plural(words(end.name)), "st": plural(words(start.name)),
             "ss": singular(words(start.name))}
    # On the start table: a key it holds ("the loans of member 12") or a category word.
    owners = [fk for fk in joins if fk.table == start.name and fk.ref_table != end.name
              and start.column(fk.columns[0]).values]
    category = g.category_value(start)
    if owners and (category is None or g.rng.random() < 0.5):
        fk = g.pick(owners)
        value = g.pick(start.column(fk.columns[0]).values)
        tree = tree.where(exp.EQ(this=g.col(fk.columns[0], "T1"), expression=g.lit(value)))
        q = g.phrase("What {et} occur in the {st} of {o} {v}?",
                     "Which {et} are in the {st} of {o} {v}?",
                     "List the {et} found in {o} {v}'s {st}.",
                     o=singular(words(fk.ref_table)), v=say(value), **slots)
    elif category is not None:
        column, value = category
        tree = tree.where(exp.EQ(this=g.col(column, "T1"), expression=g.lit(value)))
        q = g.phrase("What {et} occur in {b} {st}?", "Which {et} are in {b} {st}?",
                     "List the distinct {et} of the {b} {st}.", b=bare(value, column), **slots)
    else:
        return None
    return Candidate("join", "join_through", tree, q, ("where", "distinct"))


def join_parent_by_child(g: Generator) -> Candidate | None:
    """Parents that have a child with some value: "the members with an overdue loan"
    (DISTINCT parent names through the join, the child filtered)."""
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    col = g.pick([c for c in child.of_kind("text", "number") if c.name != fk.columns[0]])
    if col is None:
        return None
    value = g.pick(col.values)
    # The parent first here (T1), the child it is reached through second (T2).
    on = exp.EQ(this=g.col(fk.ref_columns[0], "T1"), expression=g.col(fk.columns[0], "T2"))
    tree = exp.Select(expressions=g.identity(parent, "T1")).distinct().from_(
        g.src(parent, "T1")).join(g.src(child, "T2"), on=on).where(
        exp.EQ(this=g.col(col, "T2"), expression=g.lit(value)))
    plain = bare(value, col)
    q = g.phrase("Which {pt} have a {cs} with {c} {v}?",
                 "List the {pt} that have at least one {cs} whose {c} is {v}.",
                 "Show the {pt} with a {cs} whose {c} is {v}.",
                 *(("Which {pt} have a {cs} in {b}?", "List the {pt} with {b} {ct}.")
                   if plain else ()), pt=plural(words(parent.name)),
                 cs=singular(words(child.name)), ct=plural(words(child.name)),
                 c=g.name_of(col), v=say(value), b=plain)
    return Candidate("join", "join_parent_by_child", tree, q, ("where", "distinct"))


def join_pairs(g: Generator) -> Candidate | None:
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    mine = g.pick([c for c in child.of_kind("text", "number", "date")
                   if c.name != fk.columns[0]]) or g.label(child)
    theirs = g.label(parent)
    tree = g.join(fk).select(g.col(mine, "T1"), g.col(theirs, "T2"))
    q = g.phrase("Show the {m} of every {cs} together with the {t} of its {p}.",
                 "For each {cs}, list its {m} and the {t} of the {p} it belongs to.",
                 m=words(mine.name), cs=singular(words(child.name)), t=words(theirs.name),
                 p=singular(words(parent.name)))
    return Candidate("join", "join_pairs", tree, q)


def join_count(g: Generator) -> Candidate | None:
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    by = g.pick(group_column(parent) or parent.labels())
    if by is None:
        return None
    if g.rng.random() < 0.5:
        tree = g.join(fk).select(g.col(by, "T2"), exp.Count(this=exp.Star())).group_by(
            g.col(by, "T2"))
        q = g.phrase("How many {ct} are there for each {p} {b}?",
                     "For each {b} of the {pt}, count their {ct}.", ct=plural(words(child.name)),
                     p=singular(words(parent.name)), pt=plural(words(parent.name)),
                     b=words(by.name))
        tags: tuple[str, ...] = ("group_by", "aggregation")
    else:
        value = g.pick(by.values)
        tree = g.join(fk).select(exp.Count(this=exp.Star())).where(
            exp.EQ(this=g.col(by, "T2"), expression=g.lit(value)))
        q = g.phrase("How many {ct} belong to a {p} with {b} {v}?",
                     "Count the {ct} of the {pt} whose {b} is {v}.",
                     ct=plural(words(child.name)), p=singular(words(parent.name)),
                     pt=plural(words(parent.name)), b=words(by.name), v=say(value))
        tags = ("where", "aggregation")
    return Candidate("join", "join_count", tree, q, tags)


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    join_filter, join_pairs, join_count, join_for_key, join_full_name, join_total_for,
    join_through, join_parent_by_child,
)
