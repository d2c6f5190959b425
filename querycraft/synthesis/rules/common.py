"""What the generation rules share: the :class:`Generator` (the database profile, the
seeded random source and the SQL and value helpers), the :class:`Candidate` a rule
returns, the English phrasing (plurals, values, column phrases, "name the rows"), and the
helpers several features' rules use."""

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


@dataclass
class Candidate:
    feature: str  # the rule's feature (the spread is counted on it)
    rule: str
    tree: exp.Query
    question: str
    tags: tuple[str, ...] = ()  # further features the query uses (join + aggregation ...)


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


PRICE = re.compile(r"price|cost|fee", re.IGNORECASE)


def total_of(column: ColumnProfile) -> str:
    """"total <column>" in words, without doubling a "total" the name already has."""
    name = words(column.name)
    return name if name.startswith("total") else f"total {name}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


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


# A rule: the database's generator in, a candidate (or None: nothing in the schema fits) out.
Rule = Callable[["Generator"], "Candidate | None"]


def filter_base(g: Generator, kinds: tuple[str, ...], exclude_label: bool = True
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


AGGREGATES = {
    "SUM": (exp.Sum, ("What is the total {c} of all {t}?", "Sum the {c} over all {t}.")),
    "AVG": (exp.Avg, ("What is the average {c} of the {t}?", "Give the mean {c} of all {t}.")),
    "MIN": (exp.Min, ("What is the lowest {c} among the {t}?",
                      "Find the smallest {c} of any {s}.")),
    "MAX": (exp.Max, ("What is the highest {c} among the {t}?",
                      "Find the largest {c} of any {s}.")),
}


def group_column(table: TableProfile) -> list[ColumnProfile]:
    # Few distinct values: a grouping a question would ask about (genre, status, language).
    return [c for c in table.of_kind("text", "number")
            if 1 < c.distinct <= max(2, table.rows // 2)]


def summed_children(g: Generator) -> tuple[ForeignKey, TableProfile, TableProfile,
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


def join_parts(g: Generator) -> tuple[ForeignKey, TableProfile, TableProfile] | None:
    fk = g.pick(g.profile.joins())
    if fk is None:
        return None
    return fk, g.profile.tables[fk.table], g.profile.tables[fk.ref_table]


def full_name(g: Generator, table: TableProfile, alias: str | None = None
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
