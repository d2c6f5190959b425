"""The generation rules: one function per query shape, each writing the SQL (a sqlglot tree,
identifiers quoted for the dialect, literals taken from the database) and its question from
built-in English templates, several phrasings each.

A rule gets a :class:`Generator` (the database profile, the seeded random source and the
helpers) and returns a :class:`Candidate`, or None when the schema has nothing it can use
(no numeric column, no foreign key...). :data:`RULES` lists them by feature; a new rule is a
function here and one entry there.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from querycraft.synthesis.profile import (
    ColumnProfile,
    DatabaseProfile,
    ForeignKey,
    TableProfile,
    ident,
)

__all__ = ["FEATURES", "RULES", "Candidate", "Generator", "name_the_rows", "plural", "singular",
           "words"]

# The declared spread, in report order.
FEATURES: tuple[str, ...] = (
    "projection", "filter", "join", "aggregation", "group_by", "order_limit", "null", "date",
    "nested", "set_operation",
)

# The default spread: close to how often each kind of query appears in questions people
# write (in Spider dev, measured with teacher.feature_of: GROUP BY 25 %, joins 18 %,
# aggregates 16 %, filters 12 %, ORDER BY/LIMIT 9 %, nested 8 %, set operations 8 %,
# projection only 4 %), with filters counted more because conditions also make up the null
# and date questions Spider rarely has. synthesize.weights overrides it per feature.
DEFAULT_WEIGHTS: dict[str, float] = {
    "projection": 0.5, "filter": 2.0, "join": 1.5, "aggregation": 1.5, "group_by": 1.5,
    "order_limit": 1.0, "null": 1.0, "date": 1.0, "nested": 0.75, "set_operation": 0.5,
}


@dataclass
class Candidate:
    feature: str  # the rule's feature (the spread is counted on it)
    rule: str
    tree: exp.Query
    question: str
    tags: tuple[str, ...] = ()  # further features the query uses (join + aggregation ...)


# ---------------------------------------------------------------- words


def words(name: str) -> str:
    """A name as words: snake_case and CamelCase split, lower-case ("StuID" -> "stu id")."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return " ".join(spaced.replace("_", " ").replace("-", " ").lower().split()) or name


def plural(phrase: str) -> str:
    """The plural of a phrase's last word (English rules that fit table names)."""
    head, _, last = phrase.rpartition(" ")
    if last.endswith("ss") or last.endswith(("x", "ch", "sh")):
        last += "es"
    elif last.endswith("s"):
        pass  # "loans", "members": table names are often plural already
    elif re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def singular(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        last = last[:-1]
    return f"{head} {last}" if head else last


def say(value: Any) -> str:
    """A value as the question writes it: text quoted, numbers and dates bare."""
    if isinstance(value, str):
        return "'" + value + "'"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    return str(value)


# A column with at most this many distinct values is a category ("genre", "branch"): its
# values can stand alone in a question ("poetry books"); names and e-mails cannot.
CATEGORY_VALUES = 25


def bare(value: Any, column: ColumnProfile) -> str | None:
    """A category's value as people put it in a question, unquoted and without its column
    ("poetry books", "loans in Eastfield"); None for other values."""
    if not isinstance(value, str) or not value.strip() or len(value.split()) > 3 \
            or column.distinct > CATEGORY_VALUES or re.search(r"[\d@/]", value) \
            or re.search(r"name|mail|phone|street|code|title", column.name, re.IGNORECASE):
        return None  # an identifier of one thing (a name, an address), not a category
    return value.strip()


# A share of the filter, order and null questions name no column to show ("Which books
# have more than 300 pages?"): their SQL shows the row's name columns or key, as people expect.
IMPLICIT_SHARE = 0.5
# A share of questions name a column by its last word ("price" for list_price).
SHORT_NAME_SHARE = 0.35
# A share of questions write their text values without quotes, as people do ("branches in
# Eastfield or Northgate"): trained on quoted values only, a model copies the word after a
# space into its SQL as ' Eastfield'.
UNQUOTED_SHARE = 0.5
# What people call a column whose name is short for it (keyed by the name as words): a
# model trained only on "phone" writes an invented phone_number for "phone number".
COLUMN_PHRASES: dict[str, tuple[str, ...]] = {
    "phone": ("phone number",), "telephone": ("telephone number", "phone number"),
    "tel": ("telephone number",), "mobile": ("mobile number",),
    "email": ("email address",), "e mail": ("email address",),
    "last name": ("surname", "family name"), "surname": ("last name",),
    "first name": ("given name",), "dob": ("date of birth",), "birth date": ("date of birth",),
    "birthday": ("date of birth",), "zip": ("zip code",), "zipcode": ("zip code",),
    "postcode": ("postal code",), "qty": ("quantity",), "amt": ("amount",),
    "desc": ("description",), "dept": ("department",), "addr": ("address",),
}
# The share of questions that use such a phrase instead of the column's own words.
PHRASE_SHARE = 0.5
_PRICE = re.compile(r"price|cost|fee", re.IGNORECASE)


def total_of(column: ColumnProfile) -> str:
    """"total <column>" in words, without doubling a "total" the name already has."""
    name = words(column.name)
    return name if name.startswith("total") else f"total {name}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------- the generator


class Generator:
    """The helpers rules share: random choices (seeded), names, SQL pieces."""

    def __init__(self, profile: DatabaseProfile, rng: random.Random,
                 column_phrases: dict[str, Sequence[str]] | None = None) -> None:
        """``column_phrases``: more of COLUMN_PHRASES, keyed by column name (as written or
        in words); they replace a built-in entry for the same name."""
        self.profile, self.rng, self.dialect = profile, rng, profile.dialect
        self.tables = profile.usable_tables()
        self.phrases = {**COLUMN_PHRASES, **{words(name): tuple(p.strip() for p in said)
                                             for name, said in (column_phrases or {}).items()}}

    # random choices ---------------------------------------------------------------

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.rng.randrange(len(items))] if items else None

    def table(self, need: Callable[[TableProfile], bool] = lambda t: True
              ) -> TableProfile | None:
        return self.pick([t for t in self.tables if need(t)])

    def phrase(self, *templates: str, **slots: str) -> str:
        text = self.pick(templates).format(**slots)
        if self.rng.random() < UNQUOTED_SHARE:  # "members with last name Fenwick"
            text = re.sub(r"'([^'\s][^']*?)'", r"\1", text)
        return _capital(re.sub(r"\b([aA]) (?=[aeiouAEIOU])(?![uU](ni|s[eu]))", r"\1n ",
                                  text))  # "an author", "a unit price"

    def middle_value(self, col: ColumnProfile) -> Any:
        """A value away from both ends (a threshold that keeps some rows, not all)."""
        values = col.values
        low, high = len(values) // 5, max(len(values) * 4 // 5, len(values) // 5 + 1)
        return values[self.rng.randrange(low, min(high, len(values)))]

    def label(self, table: TableProfile) -> ColumnProfile:
        return self.pick(table.labels())

    def implicit(self) -> bool:
        """Whether this question names no column to show (see IMPLICIT_SHARE)."""
        return self.rng.random() < IMPLICIT_SHARE

    def name_of(self, column: ColumnProfile) -> str:
        """A column as a question names it: its words ("list price"); in a share of
        questions (PHRASE_SHARE) what people call it where its name is short for that
        ("phone number" for phone, COLUMN_PHRASES; "home branch" for a reference
        ``home_branch_id``); in another (SHORT_NAME_SHARE) its last
        word alone ("price", "amount", "date") where no other column of its table ends in
        that word, as people shorten names."""
        full = words(column.name)
        table = next((t for t in self.tables if any(c is column for c in t.columns)), None)
        said = list(self.phrases.get(full, ()))
        if full.endswith(" id") and table is not None and column.name not in \
                table.primary_key:  # a reference: "members without a home branch"
            said.append(full[:-3])
        phrases = [p for p in said if table is None or not any(
            words(c.name) == p for c in table.columns)]  # never another column's own name
        if phrases and self.rng.random() < PHRASE_SHARE:
            return self.pick(phrases)
        parts = full.split()
        if len(parts) < 2 or parts[-1] in ("id", "no", "code", "number", "name") or \
                self.rng.random() >= SHORT_NAME_SHARE:
            return full
        if table is None or sum(words(c.name).split()[-1] == parts[-1]
                                for c in table.columns) > 1:
            return full
        return parts[-1]

    def category_value(self, table: TableProfile, exclude: ColumnProfile | None = None
                       ) -> tuple[ColumnProfile, Any] | None:
        """A category column of ``table`` and one of its values that can stand alone in a
        question (see :func:`bare`), or None when the table has none."""
        columns = [c for c in table.of_kind("text") if (exclude is None or
                   c.name != exclude.name) and any(bare(v, c) for v in c.values)]
        column = self.pick(columns)
        if column is None:
            return None
        return column, self.pick([v for v in column.values if bare(v, column)])

    def identity(self, table: TableProfile, alias: str | None = None) -> list[exp.Column]:
        """The columns a question that names none shows (:meth:`TableProfile.identity`)."""
        return [self.col(c, alias) for c in table.identity()]

    # SQL pieces -------------------------------------------------------------------

    def src(self, table: TableProfile, alias: str | None = None) -> exp.Table:
        node = exp.Table(this=ident(table.name, self.dialect))
        if alias:
            node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        return node

    def col(self, column: ColumnProfile | str, alias: str | None = None) -> exp.Column:
        name = column if isinstance(column, str) else column.name
        return exp.Column(this=ident(name, self.dialect),
                          table=exp.to_identifier(alias) if alias else None)

    @staticmethod
    def lit(value: Any) -> exp.Expression:
        if isinstance(value, bool):
            return exp.Boolean(this=value)
        if isinstance(value, (int, float, decimal.Decimal)):
            return exp.Literal.number(repr(value) if isinstance(value, float) else str(value))
        if isinstance(value, (datetime.date, datetime.datetime)):
            return exp.Literal.string(str(value))
        return exp.Literal.string(str(value))

    def order(self, column: exp.Expression, desc: bool) -> exp.Ordered:
        """ORDER BY with the dialect's own NULL placement, so none is written out."""
        nulls = Dialect.get_or_raise(self.dialect).NULL_ORDERING
        first = (nulls == "nulls_are_small" and not desc) or (nulls == "nulls_are_large" and desc)
        return exp.Ordered(this=column, desc=desc, nulls_first=first)

    def select(self, *columns: exp.Expression, table: TableProfile, alias: str | None = None
               ) -> exp.Select:
        return exp.Select(expressions=list(columns)).from_(self.src(table, alias))

    def join(self, fk: ForeignKey) -> exp.Select:
        """``FROM child AS T1 JOIN parent AS T2 ON T1.fk = T2.key`` (no columns yet)."""
        child, parent = self.profile.tables[fk.table], self.profile.tables[fk.ref_table]
        on = exp.EQ(this=self.col(fk.columns[0], "T1"), expression=self.col(fk.ref_columns[0],
                                                                            "T2"))
        return exp.Select().from_(self.src(child, "T1")).join(self.src(parent, "T2"), on=on)


# ---------------------------------------------------------------- projection


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


# ---------------------------------------------------------------- filters


def _filter_base(g: Generator, kinds: tuple[str, ...], exclude_label: bool = True
                 ) -> tuple[TableProfile, ColumnProfile, ColumnProfile] | None:
    """A table, a column to filter on (of ``kinds``) and a label column to show."""
    table = g.table(lambda t: bool(t.of_kind(*kinds)))
    if table is None:
        return None
    col = g.pick(table.of_kind(*kinds))
    labels = [c for c in table.labels() if c.name != col.name] if exclude_label else \
        table.labels()
    label = g.pick(labels) or g.label(table)
    return table, col, label


def filter_equals(g: Generator) -> Candidate | None:
    base = _filter_base(g, ("text", "number"))
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
    base = _filter_base(g, ("number",))
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
                     *(("Which {t} sell for {m} {v}?",) if _PRICE.search(col.name) else ()),
                     t=plural(words(table.name)), c=g.name_of(col), m=more, v=say(value))
        return Candidate("filter", "filter_compare", tree, q, ("where",))
    q = g.phrase("Which {t} have a {c} {m} {v}? Show their {l} and {c}.",
                 "List the {l} and {c} of {t} whose {c} is {m} {v}.",
                 "Show the {l} and {c} of every {s} with a {c} {m} {v}.", t=plural(words(
                     table.name)), s=singular(words(table.name)), c=g.name_of(col), m=more,
                 v=say(value), l=words(label.name))
    return Candidate("filter", "filter_compare", tree, q, ("where",))


def filter_like(g: Generator) -> Candidate | None:
    base = _filter_base(g, ("text",))
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
    base = _filter_base(g, ("number", "date"))
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


# ---------------------------------------------------------------- aggregation


def count_all(g: Generator) -> Candidate | None:
    table = g.table()
    if table is None:
        return None
    tree = g.select(exp.Count(this=exp.Star()), table=table)
    q = g.phrase("How many {t} are there?", "Count the {t}.", "What is the number of {t}?",
                 t=plural(words(table.name)))
    return Candidate("aggregation", "count_all", tree, q)


def count_where(g: Generator) -> Candidate | None:
    base = _filter_base(g, ("text", "number"))
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


_AGGREGATES = {
    "SUM": (exp.Sum, ("What is the total {c} of all {t}?", "Sum the {c} over all {t}.")),
    "AVG": (exp.Avg, ("What is the average {c} of the {t}?", "Give the mean {c} of all {t}.")),
    "MIN": (exp.Min, ("What is the lowest {c} among the {t}?",
                      "Find the smallest {c} of any {s}.")),
    "MAX": (exp.Max, ("What is the highest {c} among the {t}?",
                      "Find the largest {c} of any {s}.")),
}


def aggregate(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(t.of_kind("number")))
    if table is None:
        return None
    col = g.pick(table.of_kind("number"))
    name = g.pick(sorted(_AGGREGATES))
    func, templates = _AGGREGATES[name]
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
    func = _AGGREGATES[name][0]
    how = {"AVG": "average", "SUM": "total", "MAX": "highest", "MIN": "lowest"}[name]
    tree = g.select(func(this=g.col(col)), table=table).where(
        exp.EQ(this=g.col(by), expression=g.lit(value)))
    q = g.phrase("What is the {h} {c} of the {t} whose {b} is {v}?",
                 "Among {t} with {b} {v}, what is the {h} {c}?", h=how, c=g.name_of(col),
                 t=plural(words(table.name)), b=words(by.name), v=say(value))
    return Candidate("aggregation", "aggregate_where", tree, q, ("where",))


# ---------------------------------------------------------------- group by / having


def _group_column(table: TableProfile) -> list[ColumnProfile]:
    # Few distinct values: a grouping a question would ask about (genre, status, language).
    return [c for c in table.of_kind("text", "number")
            if 1 < c.distinct <= max(2, table.rows // 2)]


def group_count(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(_group_column(t)))
    if table is None:
        return None
    by = g.pick(_group_column(table))
    tree = g.select(g.col(by), exp.Count(this=exp.Star()), table=table).group_by(g.col(by))
    q = g.phrase("How many {t} are there for each {b}?", "For each {b}, count the {t}.",
                 "Show every {b} and the number of {t} with it.", t=plural(words(table.name)),
                 b=words(by.name))
    return Candidate("group_by", "group_count", tree, q, ("aggregation",))


def group_average(g: Generator) -> Candidate | None:
    table = g.table(lambda t: bool(_group_column(t)) and bool(t.of_kind("number")))
    if table is None:
        return None
    by = g.pick(_group_column(table))
    col = g.pick([c for c in table.of_kind("number") if c.name != by.name])
    if col is None:
        return None
    name = g.pick(("AVG", "SUM", "MAX"))
    how = {"AVG": "average", "SUM": "total", "MAX": "highest"}[name]
    tree = g.select(g.col(by), _AGGREGATES[name][0](this=g.col(col)), table=table).group_by(
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
    table = g.table(lambda t: bool(_group_column(t)))
    if table is None:
        return None
    by = g.pick(_group_column(table))
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
    parts = _join_parts(g)
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


# ---------------------------------------------------------------- order by / limit


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
    price = ("most expensive" if desc else "cheapest") if _PRICE.search(col.name) else None
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


def _summed_children(g: Generator) -> tuple[ForeignKey, TableProfile, TableProfile,
                                            ColumnProfile] | None:
    """A foreign key whose child table has a number to add up per parent (loan items'
    copies per loan, loans' fee per member)."""
    joins = [fk for fk in g.profile.joins()
             if any(len(c.values) >= 3 for c in g.profile.tables[fk.table].of_kind("number"))]
    fk = g.pick(joins)
    if fk is None:
        return None
    child, parent = g.profile.tables[fk.table], g.profile.tables[fk.ref_table]
    return fk, child, parent, g.pick([c for c in child.of_kind("number")
                                      if len(c.values) >= 3])


def group_top_k(g: Generator) -> Candidate | None:
    """The parents with the largest sum over their children: GROUP BY, ORDER BY the sum,
    LIMIT ("the 5 members who paid the most in fees")."""
    parts = _summed_children(g)
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


def group_having_sum(g: Generator) -> Candidate | None:
    """``GROUP BY key HAVING SUM(x) > k``: "Which loans have more than 4 copies altogether?"."""
    parts = _summed_children(g)
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


# ---------------------------------------------------------------- NULL handling


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


# ---------------------------------------------------------------- dates


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
        tree = g.select(_AGGREGATES[name][0](this=g.col(number)), table=table).where(cond)
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


# ---------------------------------------------------------------- joins


def _join_parts(g: Generator) -> tuple[ForeignKey, TableProfile, TableProfile] | None:
    fk = g.pick(g.profile.joins())
    if fk is None:
        return None
    return fk, g.profile.tables[fk.table], g.profile.tables[fk.ref_table]


def join_filter(g: Generator) -> Candidate | None:
    parts = _join_parts(g)
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


def _full_name(g: Generator, table: TableProfile, alias: str | None = None
               ) -> tuple[list[exp.Expression], str] | None:
    """Conditions naming one row of a person table by its first and last name ("Odile
    Quill": ``first_name = 'Odile' AND last_name = 'Quill'``), with the name as said; None
    when the table's identity is not such a pair."""
    pair = table.name_pair()
    row = g.pick(table.full_names)
    if pair is None or row is None:
        return None
    first, last = pair
    return ([exp.EQ(this=g.col(first, alias), expression=g.lit(row[0])),
             exp.EQ(this=g.col(last, alias), expression=g.lit(row[1]))], f"{row[0]} {row[1]}")


def filter_full_name(g: Generator) -> Candidate | None:
    """A person's other columns by their full name: "Odile Quill's email address"."""
    table = g.table(lambda t: bool(t.full_names))
    if table is None:
        return None
    named = _full_name(g, table)
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


def join_full_name(g: Generator) -> Candidate | None:
    """A person's child rows by the person's full name: "the titles and genres of the books
    of Odile Quill" (child JOIN person WHERE first AND last name)."""
    joins = [fk for fk in g.profile.joins() if g.profile.tables[fk.ref_table].full_names]
    fk = g.pick(joins)
    if fk is None:
        return None
    child, parent = g.profile.tables[fk.table], g.profile.tables[fk.ref_table]
    named = _full_name(g, parent, "T2")
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
    parts = _summed_children(g)
    if parts is None:
        return None
    fk, child, parent, col = parts
    names = parent.identity()
    if len(names) != 1 or names[0].kind != "text" or not names[0].values:
        return None
    value = g.pick(names[0].values)
    name = g.pick(("SUM", "SUM", "AVG", "COUNT"))
    total = exp.Count(this=exp.Star()) if name == "COUNT" else \
        _AGGREGATES[name][0](this=g.col(col, "T1"))
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


def join_parent_by_child(g: Generator) -> Candidate | None:
    """Parents that have a child with some value: "the members with an overdue loan"
    (DISTINCT parent names through the join, the child filtered)."""
    parts = _join_parts(g)
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
    parts = _join_parts(g)
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
    parts = _join_parts(g)
    if parts is None:
        return None
    fk, child, parent = parts
    by = g.pick(_group_column(parent) or parent.labels())
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


# ---------------------------------------------------------------- nested queries


def nested_in(g: Generator) -> Candidate | None:
    parts = _join_parts(g)
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
    parts = _join_parts(g)
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
    inner = g.select(_AGGREGATES[name][0](this=g.col(col)), table=table)
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


# ---------------------------------------------------------------- set operations


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
    label = g.pick(table.labels() + _group_column(table))
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


def filter_in(g: Generator) -> Candidate | None:
    """``col IN (a, b)``: either of two real values."""
    base = _filter_base(g, ("text", "number"))
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
                     *(("Which {b} {t} sell for {m} {x}?",) if _PRICE.search(number_col.name)
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


# A share of the questions whose answer is the rows' name columns ("Which members ...?"
# showing first and last name) ask for the names in words, as people often do: "Show the
# names of the members who ...", "Which members ...? Give their names."
NAMES_SHARE = 0.4
_ASK_NAMES = (  # (question start, its rewrite); {t}: the table in words, plural
    (r"^(List|Show) the (?P<k>(?:\w+ ){{0,2}}?){t}\b", r"\1 the names of the \g<k>{t}"),
    (r"^(List|Show) (?P<k>(?:\w+ ){{0,2}}?){t}\b", r"\1 the names of \g<k>{t}"),
)


def name_the_rows(g: Generator, candidate: Candidate) -> Candidate:
    """``candidate`` with its question asking for the rows' names in a share of questions
    (NAMES_SHARE) where its query shows exactly the name columns of its table
    (:meth:`TableProfile.identity`: first and last name, a name, a title); else as it is."""
    tree = candidate.tree
    source = tree.find(exp.From) if isinstance(tree, exp.Select) else None
    table = g.profile.tables.get(source.this.name) if source is not None and isinstance(
        source.this, exp.Table) else None
    if table is None or not all(isinstance(e, exp.Column) for e in tree.expressions):
        return candidate
    names = [c.name for c in table.identity()]
    if [e.name for e in tree.expressions] != names or not all(
            re.search(r"(?i)name|title", n) for n in names) or g.rng.random() >= NAMES_SHARE:
        return candidate
    rows = plural(words(table.name))
    for pattern, rewrite in _ASK_NAMES:
        question, done = re.subn(pattern.format(t=re.escape(rows)), rewrite.format(t=rows),
                                 candidate.question, count=1)
        if done:
            return dataclasses.replace(candidate, question=question)
    if candidate.question.startswith("Which ") and candidate.question.endswith("?"):
        ending = g.pick((" Give their names.", " Show their names.", " List their names."))
        return dataclasses.replace(candidate, question=candidate.question + ending)
    return candidate


RULES: dict[str, tuple[Callable[[Generator], Candidate | None], ...]] = {
    "projection": (projection_one, projection_two, projection_distinct),
    "filter": (filter_equals, filter_compare, filter_like, filter_between, filter_in,
               filter_and, filter_full_name, filter_by_owner),
    "join": (join_filter, join_pairs, join_count, join_for_key, join_full_name, join_total_for,
             join_through, join_parent_by_child),
    "aggregation": (count_all, count_where, aggregate, aggregate_where),
    "group_by": (group_count, group_average, group_having, group_having_sum,
                 group_having_children),
    "order_limit": (top_k, sorted_list, group_top_k),
    "null": (null_rows, null_count),
    "date": (date_year, date_after, date_extreme),
    "nested": (nested_in, nested_not_in, nested_scalar),
    "set_operation": (set_operation,),
}
