"""GROUP BY and HAVING: counts and averages per group, groups past a count, a sum, or a
number of children."""

from __future__ import annotations

from sqlglot import exp

from querycraft.synthesis.profile import (
    ColumnProfile,
    TableProfile,
)
from querycraft.synthesis.rules.common import (
    AGGREGATES,
    Candidate,
    Generator,
    Rule,
    group_column,
    join_parts,
    plural,
    say,
    summed_children,
    total_of,
    words,
)


def group_count(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(group_column(t)))
    if table is None:
        return None
    by = g.pick(group_column(table))
    tree = g.select(g.col(by), exp.Count(this=exp.Star()), table=table).group_by(g.col(by))
    q = g.phrase("How many {t} are there for each {b}?", "For each {b}, count the {t}.",
                 "Show every {b} and the number of {t} with it.", t=plural(words(table.name)),
                 b=words(by.name))
    return Candidate("group_by", "group_count", tree, q, ("aggregation",))


def group_average(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(group_column(t)) and bool(t.of_kind("number")))
    if table is None:
        return None
    by = g.pick(group_column(table))
    col = g.pick([c for c in table.of_kind("number") if c.name != by.name])
    if col is None:
        return None
    name = g.pick(("AVG", "SUM", "MAX"))
    how = {"AVG": "average", "SUM": "total", "MAX": "highest"}[name]
    tree = g.select(g.col(by), AGGREGATES[name][0](this=g.col(col)), table=table).group_by(
        g.col(by))
    q = g.phrase("What is the {h} {c} of the {t} for each {b}?",
                 "For every {b}, give the {h} {c} of its {t}.", h=how, c=g.name_of(col),
                 t=plural(words(table.name)), b=words(by.name))
    return Candidate("group_by", "group_aggregate", tree, q, ("aggregation",))


def _having_count(g: Generator, table: TableProfile, by: ColumnProfile, k: int,
                  show_share: float) -> tuple[exp.Select, str, bool]:
    """``SELECT by [, COUNT(*)] ... GROUP BY by HAVING COUNT(*) > k`` (or ``>= k``, "at
    least", in 40 % of them); the count is shown in ``show_share`` of them. Returns the
    query, the comparison in words and whether the count is shown."""
    at_least = g.rng.random() < 0.4  # "at least 17" as well as "more than 17"
    counted = g.rng.random() < show_share
    count = exp.Count(this=exp.Star())
    tree = g.select(g.col(by), *([count.copy()] if counted else []), table=table).group_by(
        g.col(by)).having((exp.GTE if at_least else exp.GT)(this=count,
                                                              expression=exp.Literal.number(k)))
    return tree, "at least" if at_least else "more than", counted


def group_having(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(group_column(t)))
    if table is None:
        return None
    by = g.pick(group_column(table))
    # A threshold near the average group size keeps some groups, not all.
    k = max(1, table.rows // max(by.distinct, 1) - g.rng.randrange(0, 2))
    tree, more, counted = _having_count(g, table, by, k, 0.5)
    slots = {"b": g.name_of(by), "bt": plural(g.name_of(by)), "k": str(k),
             "t": plural(words(table.name)), "m": more}
    if counted:  # the count shown too: "... with the count"
        q = g.phrase("Show every {b} that has {m} {k} {t}, together with how many.",
                     "List the {bt} with {m} {k} {t}, and how many {t} each has.",
                     "Which {bt} have {m} {k} {t}? How many does each have?", **slots)
    else:
        q = g.phrase("Which {b} values have {m} {k} {t}?", "Which {bt} have {m} {k} {t}?",
                     "List each {b} shared by {m} {k} {t}.",
                     "Find the {b} values that appear in {m} {k} {t}.", **slots)
    return Candidate("group_by", "group_having", tree, q, ("having", "aggregation"))


def group_having_children(g: Generator) -> Candidate | None:
    """Parents with more than k children, counted on the child's key: "Which members have
    more than 6 loans?" (GROUP BY the foreign key, HAVING COUNT)."""
    parts = join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    key = child.column(fk.columns[0])
    if key.distinct < 3:
        return None
    k = max(1, child.rows // key.distinct - g.rng.randrange(0, 2))
    tree, more, counted = _having_count(g, child, key, k, 0.6)
    slots = {"pt": plural(words(parent.name)), "ct": plural(words(child.name)), "k": str(k),
             "m": more, "key": words(key.name)}
    if counted:
        q = g.phrase("Which {pt} have {m} {k} {ct}? How many does each have?",
                     "List the {key}s with {m} {k} {ct} and their {ct} count.",
                     "Show {pt} with {m} {k} {ct}, and how many {ct} each has.", **slots)
    else:
        q = g.phrase("Which {pt} have {m} {k} {ct}?", "List the {key}s of {pt} with {m} {k} "
                     "{ct}.", "Find the {pt} that have {m} {k} {ct}.", **slots)
    return Candidate("group_by", "group_having_children", tree, q, ("having", "aggregation"))


def group_having_sum(g: Generator) -> Candidate | None:
    """``GROUP BY key HAVING SUM(x) > k``: "Which loans have more than 4 copies altogether?"."""
    parts = summed_children(g)
    if parts is None:
        return None
    fk, child, parent, col = parts
    # A middle value times the average group size: some groups pass, not all.
    size = max(1, child.rows // max(child.column(fk.columns[0]).distinct, 1))
    k = g.middle_value(col) * size
    k = round(k) if isinstance(k, float) and k > 10 else k
    key = g.col(fk.columns[0])
    tree = g.select(key, exp.Sum(this=g.col(col)), table=child).group_by(key.copy()).having(
        exp.GT(this=exp.Sum(this=g.col(col)), expression=g.lit(k)))
    q = g.phrase("Which {pt} have more than {k} {c} altogether?",
                 "Which {pt} have a {tc} above {k}?",
                 "List the {pt} whose {ct} add up to more than {k} {c}.", pt=plural(
                     words(parent.name)), ct=plural(words(child.name)), c=g.name_of(col),
                 tc=total_of(col), k=say(k))
    return Candidate("group_by", "group_having_sum", tree, q, ("having", "aggregation"))


# The feature's rules, in the order the report lists them.
RULES: tuple[Rule, ...] = (
    group_count, group_average, group_having, group_having_sum, group_having_children,
)
