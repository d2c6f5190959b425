"""ORDER BY and LIMIT: the top k rows, a sorted list, the top groups."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.rules.common import (
    PRICE,
    Candidate,
    Generator,
    Rule,
    bare,
    plural,
    singular,
    summed_children,
    total_of,
    words,
)


def top_k(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("number", "date")) and t.rows > 3)
    if table is None:
        return None
    col = g.pick(table.of_kind("number", "date"))
    label = g.label(table)
    k, desc = g.pick((1, 3, 5)), g.rng.random() < 0.6
    tree = g.select(g.col(label), g.col(col), table=table).order_by(
        g.order(g.col(col), desc)).limit(k)
    most = ("highest" if desc else "lowest") if col.kind == "number" else \
        ("latest" if desc else "earliest")
    price = ("most expensive" if desc else "cheapest") if PRICE.search(col.name) else None
    implicit = g.implicit()
    if implicit and k == 1:  # "Which book is the cheapest?": its title, nothing more
        tree = g.select(*g.identity(table), table=table).order_by(
            g.order(g.col(col), desc)).limit(1)
        q = g.phrase("Which {s} has the {m} {c}?", "Find the {s} with the {m} {c}.",
                     *(("Which {s} is the {p}?",) if price else ()),
                     s=singular(words(table.name)), m=most, c=g.name_of(col), p=price)
        return Candidate("order_limit", "top_k", tree, q, ("order_by", "limit"))
    if implicit:
        tree = g.select(*g.identity(table), g.col(col), table=table)
        # Within one category as often as not: "the top 5 overdue loans by fee".
        within = g.category_value(table, exclude=col) if g.rng.random() < 0.5 else None
        if within is not None:
            tree = tree.where(exp.EQ(this=g.col(within[0]), expression=g.lit(within[1])))
        tree = tree.order_by(g.order(g.col(col), desc)).limit(k)
        kind = bare(within[1], within[0]) + " " if within is not None else ""
        q = g.phrase("Show the {k} {b}{t} with the {m} {c}.",
                     "List the top {k} {b}{t} in order of {c}." if desc else
                     "List the {k} {b}{t} with the {m} {c}, with their {c}.",
                     *(("List the {k} {p} {b}{t} along with their {c}.", "Show the {k} {p} "
                        "{b}{t}, giving their {c}.") if price else ()),
                     k=str(k), b=kind, t=plural(words(table.name)), m=most, c=g.name_of(col),
                     p=price)
        return Candidate("order_limit", "top_k", tree, q, ("order_by", "limit") + (
            ("where",) if within is not None else ()))
    if k == 1:
        q = g.phrase("Which {s} has the {m} {c}? Give its {l} and {c}.",
                     "Show the {l} and {c} of the {s} with the {m} {c}.",
                     s=singular(words(table.name)), m=most, c=g.name_of(col),
                     l=words(label.name))
    else:
        q = g.phrase("Show the {l} and {c} of the {k} {t} with the {m} {c}.",
                     "Which {k} {t} have the {m} {c}? List their {l} and {c}.",
                     k=str(k), t=plural(words(table.name)), m=most, c=g.name_of(col),
                     l=words(label.name))
    return Candidate("order_limit", "top_k", tree, q, ("order_by", "limit"))


def group_top_k(g: Generator) -> Candidate | None:
    """The parents with the largest sum over their children: GROUP BY, ORDER BY the sum,
    LIMIT ("the 5 members who paid the most in fees")."""
    parts = summed_children(g)
    if parts is None:
        return None
    fk, child, parent, col = parts
    k = g.pick((3, 5, 8, 10))
    names = parent.identity()
    if len(names) == 1 and names[0].kind == "text":  # by name, through the join
        key = g.col(names[0], "T2")
        total = exp.Sum(this=g.col(col, "T1"))
        tree = g.join(fk).select(key, total).group_by(key.copy())
    else:  # by the key the child holds
        key = g.col(fk.columns[0])
        total = exp.Sum(this=g.col(col))
        tree = g.select(key, total, table=child).group_by(key.copy())
    tree = tree.order_by(g.order(total.copy(), True)).limit(k)
    q = g.phrase("Show the {k} {pt} whose {tc} is largest.",
                 "What are the {k} {pt} with the largest {tc} over their {ct}?",
                 "List the {k} leading {pt} by {tc}.", k=str(k), pt=plural(words(parent.name)),
                 ct=plural(words(child.name)), tc=total_of(col))
    return Candidate("order_limit", "group_top_k", tree, q,
                     ("group_by", "aggregation", "order_by", "limit"))


def sorted_list(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("number", "date", "text")))
    if table is None:
        return None
    label = g.label(table)
    col = g.pick(table.of_kind("number", "date", "text"))
    desc = g.rng.random() < 0.5
    columns = [g.col(label)] + ([g.col(col)] if col.name != label.name else [])
    tree = g.select(*columns, table=table).order_by(g.order(g.col(col), desc))
    order = "descending" if desc else "ascending"
    shown = words(label.name) + (f" and {words(col.name)}" if col.name != label.name else "")
    q = g.phrase("List the {l} of all {t}, sorted by {c} in {o} order.",
                 "Show every {s}'s {l}, ordered by {c} ({o}).", l=shown,
                 t=plural(words(table.name)), s=singular(words(table.name)),
                 c=g.name_of(col), o=order)
    return Candidate("order_limit", "sorted_list", tree, q, ("order_by",))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    top_k, sorted_list, group_top_k,
)
