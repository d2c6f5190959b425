"""Structural analysis of SQL queries: features, Spider hardness and Spider-style exact-set match.

Execution accuracy says whether a query gives the right rows; these functions say *what kind*
of query it is and whether two queries have the same shape, so results can be broken down the
way text-to-SQL papers report them. Everything works on sqlglot's syntax tree (no database, no
schema needed) and never raises on bad SQL: unparsable input gives ``[]``, ``None``, ``False`` or
the input back.

The official Spider evaluator (taoyds/spider ``evaluation.py``) parses SQL with its own grammar
into a fixed dict (``select``/``from``/``where``/... with column ids resolved against the schema).
We rebuild the same notions from sqlglot's AST. Where the counting or comparing differs:

``spider_hardness`` (same thresholds as ``eval_hardness``; component1 = WHERE, GROUP BY, ORDER BY,
LIMIT present + one per extra FROM table + one per OR and per LIKE in ON/WHERE/HAVING;
component2 = subqueries used as condition values in ON/WHERE/HAVING + one for a set operation;
others = aggregations > 1, select items > 1, where conditions > 1, group-by items > 1):

- The official ``count_others`` has two quirks that we reproduce on purpose, because they decide
  the published buckets: its aggregation count over WHERE counts *negated* conditions (``NOT IN``,
  ``NOT LIKE``: it reads the ``not`` flag where it means the aggregate id), and over HAVING it
  counts every AND/OR connector (plus negated conditions) instead of aggregates.
- Only the first (left-most) SELECT of a set operation is counted, plus one for the set operation,
  as Spider does (it stores ``A UNION B`` as ``A`` with ``union=B``). ORDER BY/LIMIT written after
  the last part belong to the whole set operation in sqlglot, but to the last part in Spider, so
  they are not counted either.
- A subquery in FROM is one table unit and not "nested" (as in Spider), and so are the bodies of
  WITH (CTE) queries, which Spider cannot parse. Subqueries in the SELECT list, GROUP BY or
  ORDER BY, which Spider's grammar cannot parse either, count as nested here.
- Conditions are flattened through parentheses into Spider's flat list of conditions and AND/OR
  connectors (``(a OR b) AND c``: three conditions, one OR); Spider's grammar rejects them.
- A SELECT item counts as an aggregation when it is one of COUNT/SUM/AVG/MIN/MAX or an arithmetic
  expression whose left operand is (Spider keeps one aggregate id per item); in ORDER BY both
  operands of an arithmetic item count, as in Spider.

``exact_set_match`` follows the component comparison of ``eval_exact_match`` with values ignored
(no ``--plug_value``) and DISTINCT ignored (``DISABLE_DISTINCT``), with these differences:

- No schema, so no foreign-key canonicalisation (Spider maps ``T2.singer_id`` to ``singer.id`` when
  they are linked by a foreign key). Unqualified columns are resolved to the FROM table when there
  is only one, else through the optional ``schema`` argument, else left unqualified.
- All join (ON/USING) conditions are compared, each equality as an unordered pair; Spider compares
  only the first one (and, read literally, only its left column). LEFT/RIGHT/FULL joins are told
  apart from inner ones; Spider's grammar has no outer joins.
- GROUP BY is compared as a multiset (Spider's "group" score compares the list in order) and
  HAVING like WHERE: a multiset of conditions plus the set of AND/OR connectors (Spider compares
  the HAVING list in order).
- ORDER BY keeps one direction per item; Spider keeps one direction for the whole clause.
- Only literals are values: Spider also blanks a *column* on the right of a WHERE comparison.
  A double-quoted word on the right of a comparison (``name = "Bob"``, common in Spider gold SQL,
  which SQLite reads as a string when no such column exists) is taken as a value.
- DISTINCT and values are ignored in every subquery. Spider ignores DISTINCT only in the top
  query and set-operation parts (not in WHERE or FROM subqueries), and keeps the values of FROM
  subqueries.
- ``x = y`` and ``y = x`` are the same condition, and ``5 < x`` is ``x > 5``.

``strip_distinct`` removes the DISTINCT of every SELECT and, by default, the DISTINCT inside an
aggregate (``COUNT(DISTINCT x)`` becomes ``COUNT(x)``): with ``DISABLE_DISTINCT`` the official
evaluator drops the distinct flag of every column unit, aggregates included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from querycraft.sql import parse_statement_shared

__all__ = [
    "FEATURES",
    "HARDNESS_LEVELS",
    "exact_set_match",
    "spider_hardness",
    "sql_features",
    "strip_distinct",
]

FEATURES: tuple[str, ...] = (
    "join",
    "where",
    "group_by",
    "having",
    "order_by",
    "limit",
    "aggregation",
    "nested",
    "set_operation",
    "distinct",
)

HARDNESS_LEVELS: tuple[str, ...] = ("easy", "medium", "hard", "extra")

# Spider's AGG_OPS (max, min, count, sum, avg).
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
# Spider's UNIT_OPS between two column units.
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Is)
_FLIPPED = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE}
_VALUE = ("value",)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _parse(sql: str, dialect: str) -> exp.Query | None:
    """One query statement, or None: callers must degrade quietly on model output."""
    Dialect.get_or_raise(dialect)  # an unknown dialect is the caller's bug: let it raise
    if not isinstance(sql, str) or not sql.strip():
        return None
    tree = parse_statement_shared(sql, dialect)  # shared: copied before any change
    if not isinstance(tree, exp.Query):
        return None
    if any(not s.expressions for s in tree.find_all(exp.Select)):
        return None  # sqlglot accepts a bare "SELECT"
    return tree


def _unwrap(node: exp.Expression | None) -> exp.Expression | None:
    while isinstance(node, (exp.Paren, exp.Alias)) or (
        isinstance(node, exp.Subquery) and not node.args.get("alias")
    ):
        node = node.this
    return node


def _leftmost_select(node: exp.Expression) -> exp.Expression:
    while True:
        if isinstance(node, (exp.Subquery, exp.SetOperation)):
            node = node.this
        else:
            return node


def _flatten(node: exp.Expression | None, leaves: list[exp.Expression], ops: list[str]) -> None:
    """Split an AND/OR tree into its conditions and connectors, like Spider's flat list."""
    while isinstance(node, exp.Paren):
        node = node.this
    if node is None:
        return
    if isinstance(node, exp.Connector):
        ops.append("and" if isinstance(node, exp.And) else "or")
        _flatten(node.this, leaves, ops)
        _flatten(node.expression, leaves, ops)
    else:
        leaves.append(node)


def _direct_queries(node: exp.Expression) -> Iterator[exp.Expression]:
    """Queries inside ``node`` that are not inside another query below it."""
    for child in node.iter_expressions():
        if isinstance(child, exp.Query):
            yield child
        else:
            yield from _direct_queries(child)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _is_nested(select: exp.Expression) -> bool:
    parent = select.parent
    while parent is not None:
        if isinstance(parent, exp.Select):
            return True
        parent = parent.parent
    return False


def sql_features(sql: str, dialect: str = "sqlite") -> list[str]:
    """The FEATURES present anywhere in ``sql`` (subqueries included), in FEATURES order.

    Used to break accuracy down by query shape. ORDER BY inside a window or an aggregate does not
    count as "order_by"; "distinct" is SELECT DISTINCT or an aggregate's DISTINCT. Unparsable
    SQL gives [].
    """
    tree = _parse(sql, dialect)
    if tree is None:
        return []
    found: set[str] = set()
    for node in tree.walk():
        if isinstance(node, exp.Join):
            found.add("join")
        elif isinstance(node, exp.Where):
            found.add("where")
        elif isinstance(node, exp.Group):
            found.add("group_by")
        elif isinstance(node, exp.Having):
            found.add("having")
        elif isinstance(node, exp.Order) and isinstance(node.parent, exp.Query):
            found.add("order_by")
        elif isinstance(node, (exp.Limit, exp.Fetch)) and isinstance(node.parent, exp.Query):
            found.add("limit")
        elif isinstance(node, _AGGREGATES):
            found.add("aggregation")
        elif isinstance(node, exp.Distinct):
            found.add("distinct")
        if isinstance(node, exp.SetOperation):
            found.add("set_operation")
        if isinstance(node, exp.Query) and _is_nested(node):
            found.add("nested")
    return [f for f in FEATURES if f in found]


# --------------------------------------------------------------------------------------------
# Spider hardness
# --------------------------------------------------------------------------------------------


def _is_agg(node: exp.Expression | None) -> bool:
    return isinstance(_unwrap(node), _AGGREGATES)


def _negated(leaf: exp.Expression) -> bool:
    return isinstance(leaf, exp.Not)


def _is_like(leaf: exp.Expression) -> bool:
    inner = leaf.this if isinstance(leaf, exp.Not) else leaf
    while isinstance(inner, exp.Paren):
        inner = inner.this
    return isinstance(inner, (exp.Like, exp.ILike))


def _hardness_counts(tree: exp.Query) -> tuple[int, int, int]:
    """(component1, component2, others) of Spider's eval_hardness."""
    component2 = 0
    if isinstance(_unwrap(tree), exp.SetOperation):
        component2 += 1
    select = _leftmost_select(tree)
    if not isinstance(select, exp.Select):
        return 0, component2, 0

    joins = select.args.get("joins") or []
    on_leaves: list[exp.Expression] = []
    on_ops: list[str] = []
    for join in joins:
        _flatten(join.args.get("on"), on_leaves, on_ops)
    where = select.args.get("where")
    where_leaves: list[exp.Expression] = []
    where_ops: list[str] = []
    _flatten(where.this if where else None, where_leaves, where_ops)
    having = select.args.get("having")
    having_leaves: list[exp.Expression] = []
    having_ops: list[str] = []
    _flatten(having.this if having else None, having_leaves, having_ops)
    group = select.args.get("group")
    group_items = group.expressions if group else []
    order = select.args.get("order")
    order_items = [o.this for o in order.expressions] if order else []

    component1 = sum(bool(select.args.get(k)) for k in ("where", "group", "order", "limit")) + len(
        joins
    )
    all_leaves = on_leaves + where_leaves + having_leaves
    component1 += (on_ops + where_ops + having_ops).count("or")
    component1 += sum(_is_like(leaf) for leaf in all_leaves)
    component2 += sum(1 for leaf in all_leaves for _ in _direct_queries(leaf))
    # Subqueries Spider's grammar cannot parse (SELECT list, GROUP BY, ORDER BY): nested too.
    for item in [*select.expressions, *group_items, *order_items]:
        while isinstance(item, (exp.Alias, exp.Paren)):
            item = item.this
        component2 += 1 if isinstance(item, exp.Query) else sum(1 for _ in _direct_queries(item))

    aggs = 0
    for item in select.expressions:
        item = _unwrap(item)
        if _is_agg(item) or (isinstance(item, _ARITHMETIC) and _is_agg(item.this)):
            aggs += 1
    aggs += sum(_negated(leaf) for leaf in where_leaves)  # Spider's quirk, see module docstring
    aggs += sum(_is_agg(g) for g in group_items)
    for item in order_items:
        item = _unwrap(item)
        if isinstance(item, _ARITHMETIC):
            aggs += _is_agg(item.this) + _is_agg(item.expression)
        else:
            aggs += _is_agg(item)
    aggs += len(having_ops) + sum(_negated(leaf) for leaf in having_leaves)  # Spider's quirk
    others = sum(
        (aggs > 1, len(select.expressions) > 1, len(where_leaves) > 1, len(group_items) > 1)
    )
    return component1, component2, others


def spider_hardness(sql: str, dialect: str = "sqlite") -> str | None:
    """Spider's difficulty bucket ("easy", "medium", "hard", "extra") of a gold query.

    Lets results be reported per bucket as in the Spider papers. Counting rules and where they
    differ from the official evaluator: see the module docstring. None for unparsable SQL.
    """
    tree = _parse(sql, dialect)
    if tree is None:
        return None
    c1, c2, others = _hardness_counts(tree)
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


# --------------------------------------------------------------------------------------------
# Exact-set match
# --------------------------------------------------------------------------------------------


@dataclass
class _Scope:
    """Names visible in one SELECT: alias -> source key, for resolving column qualifiers."""

    parent: _Scope | None
    ctes: dict[str, Any]
    schema: Mapping[str, set[str]] | None
    aliases: dict[str, Any] = field(default_factory=dict)
    sources: list[Any] = field(default_factory=list)
    select_aliases: dict[str, Any] = field(default_factory=dict)

    def cte(self, name: str) -> Any:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None

    def qualifier(self, name: str) -> Any:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.aliases:
                return scope.aliases[name]
            scope = scope.parent
        return name

    def owner(self, column: str) -> Any:
        if self.schema is not None:
            scope: _Scope | None = self
            while scope is not None:
                owners = [
                    s
                    for s in scope.sources
                    if isinstance(s, str) and column in self.schema.get(s, ())
                ]
                if len(owners) == 1:
                    return owners[0]
                if owners:
                    return None
                scope = scope.parent
        if len(self.sources) == 1:
            return self.sources[0]
        return None


def _sort(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items, key=repr))


def _is_value(node: exp.Expression) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, (exp.Literal, exp.Boolean, exp.Placeholder, exp.Parameter))


def _quoted_word(node: exp.Expression | None) -> bool:
    return (
        isinstance(node, exp.Column)
        and not node.table
        and isinstance(node.this, exp.Identifier)
        and node.this.quoted
    )


def _quoted_values(tree: exp.Expression, columns: set[str]) -> list[exp.Expression]:
    found = []
    for node in tree.find_all(*_COMPARISONS, exp.Between, exp.In):
        keys = ("low", "high") if isinstance(node, exp.Between) else ("expression",)
        values = [node.args.get(key) for key in keys] + list(node.args.get("expressions") or [])
        found += [v for v in values if _quoted_word(v) and v.name.lower() not in columns]
    return found


def _values_from_quoted_words(tree: exp.Expression, columns: set[str]) -> exp.Expression:
    """``name = "Bob"``: SQLite reads "Bob" as a string when no such column; so do we. The
    tree is shared: changed on a copy, and only when there is something to change."""
    if not _quoted_values(tree, columns):
        return tree
    tree = tree.copy()
    for value in _quoted_values(tree, columns):
        value.replace(exp.Literal.string(value.name))
    return tree


class _Canon:
    """Turns a query into nested tuples that are equal exactly when Spider's match holds."""

    def __init__(self, schema: Mapping[str, set[str]] | None) -> None:
        self.schema = schema

    def query(self, node: exp.Expression, outer: _Scope | None) -> Any:
        while isinstance(node, exp.Subquery):
            node = node.this
        ctes: dict[str, Any] = {}
        with_ = node.args.get("with_")
        scope = _Scope(outer, ctes, self.schema)
        if with_ is not None:
            for cte in with_.expressions:
                ctes[cte.alias_or_name.lower()] = self.query(cte.this, scope)
        if isinstance(node, exp.SetOperation):
            parts: list[Any] = []
            self._set_parts(node, scope, parts)
            return ("set", tuple(parts), self._order(node, scope), self._limit(node))
        if isinstance(node, exp.Select):
            return self.select(node, scope)
        return self.expr(node, scope)

    def _set_parts(self, node: exp.Expression, scope: _Scope, parts: list[Any]) -> None:
        inner = node
        while isinstance(inner, exp.Subquery):
            inner = inner.this
        if isinstance(inner, exp.SetOperation) and (
            inner is node or not (inner.args.get("order") or inner.args.get("limit"))
        ):
            self._set_parts(inner.this, scope, parts)
            parts.append((inner.key, bool(inner.args.get("distinct"))))
            self._set_parts(inner.expression, scope, parts)
        else:
            parts.append(self.query(inner, scope))

    def select(self, select: exp.Select, scope: _Scope) -> Any:
        sources: list[Any] = []
        joins = select.args.get("joins") or []
        from_ = select.args.get("from_")
        tables = [(from_.this, "")] if from_ else []
        tables += [(j.this, (j.side or "").lower()) for j in joins]
        for i, (table, side) in enumerate(tables):
            alias = table.alias.lower() if table.alias else ""
            if isinstance(table, exp.Table) and scope.cte(table.name.lower()) is None:
                key: Any = table.name.lower()
                canon: Any = ("table", key)
            elif isinstance(table, exp.Table):
                canon = ("cte", scope.cte(table.name.lower()))
                key = ("source", i)
            else:  # a subquery or table function: not correlated with this scope
                outside = _Scope(scope.parent, scope.ctes, self.schema)
                if isinstance(table, (exp.Subquery, exp.Query)):
                    canon = self.query(table, outside)
                else:
                    canon = self.expr(table, outside)
                key = ("source", i)
            if alias:
                scope.aliases[alias] = key
            if isinstance(table, exp.Table):
                scope.aliases.setdefault(table.name.lower(), key)
            scope.sources.append(key)
            sources.append((side, canon))
        for item in select.expressions:
            if isinstance(item, exp.Alias):
                scope.select_aliases[item.alias.lower()] = item.this

        join_leaves: list[exp.Expression] = []
        join_ops: list[str] = []
        using: list[Any] = []
        for join in joins:
            _flatten(join.args.get("on"), join_leaves, join_ops)
            using += [self._identifier(u) for u in join.args.get("using") or []]
        group = select.args.get("group")
        return (
            "select",
            _sort(self.expr(e, scope) for e in select.expressions),
            _sort(sources),
            (_sort(self.expr(leaf, scope) for leaf in join_leaves), _sort(set(join_ops))),
            _sort(using),
            self._condition(select.args.get("where"), scope),
            _sort(self.expr(g, scope, aliases=True) for g in group.expressions) if group else (),
            self._condition(select.args.get("having"), scope, aliases=True),
            self._order(select, scope),
            self._limit(select),
        )

    def _condition(
        self, clause: exp.Expression | None, scope: _Scope, aliases: bool = False
    ) -> Any:
        if clause is None:
            return None
        leaves: list[exp.Expression] = []
        ops: list[str] = []
        _flatten(clause.this, leaves, ops)
        return (_sort(self.expr(leaf, scope, aliases) for leaf in leaves), _sort(set(ops)))

    def _order(self, query: exp.Expression, scope: _Scope) -> Any:
        order = query.args.get("order")
        if order is None:
            return ()
        return tuple(
            (self.expr(o.this, scope, aliases=True), bool(o.args.get("desc")))
            for o in order.expressions
        )

    @staticmethod
    def _limit(query: exp.Expression) -> tuple[bool, bool]:
        """Whether there is a LIMIT (and an OFFSET): values are ignored, as everywhere."""
        return bool(query.args.get("limit")), bool(query.args.get("offset"))

    @staticmethod
    def _identifier(node: exp.Expression) -> str:
        return node.name.lower()

    def _column(self, column: exp.Column, scope: _Scope, aliases: bool) -> Any:
        name = "*" if isinstance(column.this, exp.Star) else column.name.lower()
        if column.table:
            return ("col", scope.qualifier(column.table.lower()), name)
        if aliases and name in scope.select_aliases:
            return self.expr(scope.select_aliases[name], scope)
        return ("col", scope.owner(name), name)

    def expr(self, node: Any, scope: _Scope, aliases: bool = False) -> Any:
        if isinstance(node, list):
            return tuple(self.expr(n, scope, aliases) for n in node)
        if not isinstance(node, exp.Expression):
            return node.lower() if isinstance(node, str) else node
        if isinstance(node, (exp.Subquery, exp.Query)):
            return self.query(node, scope)
        if isinstance(node, (exp.Paren, exp.Alias)):
            return self.expr(node.this, scope, aliases)
        if _is_value(node):
            return _VALUE
        if isinstance(node, exp.Column):
            return self._column(node, scope, aliases)
        if isinstance(node, exp.Star):
            return ("col", None, "*")
        if isinstance(node, exp.Identifier):
            return node.name.lower()
        if isinstance(node, exp.Distinct) and isinstance(node.parent, exp.AggFunc):
            items = tuple(self.expr(e, scope, aliases) for e in node.expressions)
            return items[0] if len(items) == 1 else ("tuple", items)
        if (
            isinstance(node, exp.In)
            and node.expressions
            and all(_is_value(e) for e in node.expressions)
        ):
            return ("in", self.expr(node.this, scope, aliases), _VALUE)
        if (
            isinstance(node, tuple(_FLIPPED))
            and _is_value(node.this)
            and not _is_value(node.expression)
        ):
            node = _FLIPPED[type(node)](this=node.expression, expression=node.this)
        args = tuple(
            (key, self.expr(value, scope, aliases))
            for key, value in sorted(node.args.items())
            if value is not None and value is not False and value != []
        )
        if isinstance(node, (exp.EQ, exp.NEQ)):
            args = _sort(args_value for _, args_value in args)
        return (node.key, args)


def exact_set_match(
    gold: str,
    predicted: str,
    dialect: str = "sqlite",
    schema: Mapping[str, Iterable[str]] | None = None,
) -> bool:
    """Spider's exact-set match: same clauses, compared as sets where order is irrelevant.

    The string-level comparison a model is ranked by in the Spider papers, without running
    anything: values, DISTINCT, aliases and letter case are ignored. ``schema`` (table -> column
    names) resolves unqualified columns in multi-table queries. False when either side does not
    parse. Differences from the official evaluator: see the module docstring.
    """
    lowered = (
        None
        if schema is None
        else {t.lower(): {c.lower() for c in cols} for t, cols in schema.items()}
    )
    canons = []
    for sql in (gold, predicted):
        tree = _parse(sql, dialect)
        if tree is None:
            return False
        tree = _values_from_quoted_words(tree, set().union(*lowered.values()) if lowered
                                         else set())
        canons.append(_Canon(lowered).query(tree, None))
    return canons[0] == canons[1]


# --------------------------------------------------------------------------------------------
# DISTINCT
# --------------------------------------------------------------------------------------------


def strip_distinct(sql: str, dialect: str = "sqlite", *, in_aggregates: bool = True) -> str:
    """``sql`` without DISTINCT in any SELECT (and, by default, in any aggregate).

    The official Spider evaluator ignores DISTINCT by default (``DISABLE_DISTINCT``), including
    the one in ``COUNT(DISTINCT x)``; ``in_aggregates=False`` keeps aggregate DISTINCTs. Rendered
    back with sqlglot when something was removed; returned unchanged when nothing was or when
    it does not parse.
    """
    tree = _parse(sql, dialect)
    if tree is None:
        return sql
    if tree.find(exp.Distinct) is None and not any(
            s.args.get("distinct") is not None for s in tree.find_all(exp.Select)):
        return sql
    tree = tree.copy()  # the parsed tree is shared
    changed = False
    for select in list(tree.find_all(exp.Select)):
        if select.args.get("distinct") is not None:
            select.set("distinct", None)
            changed = True
    if in_aggregates:
        for distinct in list(tree.find_all(exp.Distinct)):
            if isinstance(distinct.parent, exp.AggFunc) and len(distinct.expressions) == 1:
                distinct.replace(distinct.expressions[0])
                changed = True
    return tree.sql(dialect=dialect) if changed else sql
