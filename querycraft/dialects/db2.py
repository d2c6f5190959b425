"""An IBM Db2 (LUW and z/OS) dialect for sqlglot.

The rules target the SQL that text-to-SQL models produce for SQLite, PostgreSQL, MySQL or T-SQL
and rewrite it into what the Db2 SQL Reference documents. No Db2 server is available here, so
the output is checked against documented syntax (tests/test_db2_dialect.py), not against a live
Db2.

Choices worth knowing:

* Row limits become ``OFFSET m ROWS FETCH FIRST n ROWS ONLY``, never ``LIMIT``, which Db2 only
  accepts in some compatibility modes. FETCH FIRST is in every Db2; the offset-clause needs Db2
  11.1 for LUW or Db2 12 for z/OS.
* ``TRUE``/``FALSE`` become ``1``/``0`` and ``BOOLEAN`` becomes ``SMALLINT``: Db2 for LUW before
  11.1 has no BOOLEAN type, and a 0/1 SMALLINT flag is the usual Db2 idiom that later versions
  still read. Where a literal stands alone as a search condition (``WHERE TRUE``) it becomes
  ``1 = 1`` / ``1 = 0``; ``x IS TRUE`` becomes ``x = 1``.
* Db2 has no INTERVAL type: ``d + INTERVAL '7' DAY`` and MySQL ``DATE_ADD(d, INTERVAL 7 DAY)``
  become the labeled duration ``d + 7 DAYS``, which the Db2 parser also reads back.
* Unquoted identifiers fold to upper case in Db2, so a name is quoted only when it has to be:
  a quoted name that is already a plain upper-case word loses its quotes, and an unquoted reserved
  word is quoted in its folded (upper-case) spelling so it still names the same column.
* ``strftime('%Y', d)`` (and ``%m``, ``%d``) becomes ``YEAR(d)`` (``MONTH``, ``DAY``). These return
  integers, not text; Db2 casts a string operand implicitly when the two are compared.
* NULLs sort high in Db2 (as in Oracle), so ORDER BY keys read from SQLite or MySQL gain
  ``NULLS FIRST`` (``DESC NULLS LAST``) to keep the same row order; the Db2 11.1 order-by clause
  accepts both.
* Division keeps sqlglot's rule for SQLite sources: ``a / b`` becomes ``a / NULLIF(b, 0)``,
  because SQLite yields NULL where Db2 raises a division-by-zero error.
"""

from __future__ import annotations

import typing as t
from functools import reduce

from sqlglot import exp, generator, parser, tokens, transforms
from sqlglot.dialects.dialect import (
    Dialect,
    NormalizationStrategy,
    concat_ws_to_dpipe_sql,
    groupconcat_sql,
    no_ilike_sql,
    rename_func,
    strposition_sql,
)
from sqlglot.tokens import TokenType

# strftime codes that have a dedicated Db2 scalar function returning the same field.
_DATE_PART_FUNCS = {
    "%Y": "YEAR",
    "%m": "MONTH",
    "%d": "DAY",
    "%H": "HOUR",
    "%M": "MINUTE",
    "%S": "SECOND",
}

# Labeled-duration units (`d + 7 DAYS`); Db2 accepts the singular and the plural spelling.
_DURATION_UNITS = ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "MICROSECOND")
_DURATION_WORDS = {*_DURATION_UNITS, *(unit + "S" for unit in _DURATION_UNITS)}

# Nodes under which a bare boolean literal is a search condition, not a value.
_PREDICATE_PARENTS = (exp.Where, exp.Having, exp.Connector, exp.Not, exp.Filter)


def _unwrap_ts_or_ds(node: exp.Expr) -> exp.Expr:
    """Drop sqlglot's "string or date" casts: Db2's YEAR/MONTH/DAY accept either already."""
    while isinstance(node, (exp.TsOrDsToDate, exp.TsOrDsToTimestamp)):
        node = node.this
    return node


def _date_part_sql(name: str):
    def _sql(self: Db2.Generator, expression: exp.Func) -> str:
        return self.func(name, _unwrap_ts_or_ds(expression.this))

    return _sql


def _duration(expression: exp.Expr) -> exp.Interval:
    """The interval of MySQL's DATE_ADD(d, INTERVAL n unit), as a Db2 labeled duration."""
    unit = expression.args.get("unit") or exp.var("DAY")
    return exp.Interval(this=expression.expression.copy(), unit=unit.copy())


def _is_now(node: exp.Expr | None) -> bool:
    return isinstance(node, exp.Literal) and node.is_string and node.name.lower() == "now"


class Db2(Dialect):
    # Unquoted names are stored upper case (Db2 SQL Reference, "Identifiers").
    NORMALIZATION_STRATEGY = NormalizationStrategy.UPPERCASE
    # "Null values are higher than all other values" (order-by-clause).
    NULL_ORDERING = "nulls_are_large"
    # INTEGER / INTEGER is integer division in Db2, as in SQLite.
    TYPED_DIVISION = True

    # VARCHAR_FORMAT / TIMESTAMP_FORMAT template elements.
    TIME_MAPPING: t.ClassVar[dict[str, str]] = {
        "YYYY": "%Y",
        "YY": "%y",
        "MM": "%m",
        "DD": "%d",
        "DDD": "%j",
        "HH24": "%H",
        "HH12": "%I",
        "MI": "%M",
        "SS": "%S",
        "FF6": "%f",
        "MON": "%b",
        "MONTH": "%B",
        "DY": "%a",
        "DAY": "%A",
    }

    class Tokenizer(tokens.Tokenizer):
        KEYWORDS: t.ClassVar[dict[str, TokenType]] = {
            **tokens.Tokenizer.KEYWORDS,
            # Db2 spells the special registers with a space; the underscore forms also work.
            "CURRENT DATE": TokenType.CURRENT_DATE,
            "CURRENT TIME": TokenType.CURRENT_TIME,
            "CURRENT TIMESTAMP": TokenType.CURRENT_TIMESTAMP,
        }

    class Parser(parser.Parser):
        def _parse_unary(self) -> exp.Expr | None:
            # A labeled duration is the operand of + or -: `CURRENT DATE - 7 DAYS`.
            after_sign = self._prev is not None and self._prev.token_type in (
                TokenType.PLUS,
                TokenType.DASH,
            )
            this = super()._parse_unary()
            token = self._curr
            if (
                after_sign
                and this is not None
                and token is not None
                and token.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
                and token.text.upper() in _DURATION_WORDS
            ):
                self._advance()
                return self.expression(exp.Interval(this=this, unit=exp.var(token.text.upper())))
            return this

    class Generator(generator.Generator):
        LIMIT_FETCH = "FETCH"

        # Words that cannot stand as an unquoted column or table name in a query.
        RESERVED_KEYWORDS: t.ClassVar[set[str]] = {
            "all", "and", "as", "between", "by", "case", "check", "column", "constraint",
            "create", "cross", "current", "default", "distinct", "else", "end", "except",
            "exists", "fetch", "for", "from", "full", "grant", "group", "having", "in",
            "inner", "intersect", "into", "is", "join", "left", "like", "not", "null", "of",
            "offset", "on", "or", "order", "outer", "right", "select", "set", "table", "then",
            "to", "union", "unique", "user", "using", "values", "when", "where", "with",
        }  # fmt: skip

        TYPE_MAPPING: t.ClassVar[dict[exp.DType, str]] = {
            **generator.Generator.TYPE_MAPPING,
            exp.DType.BOOLEAN: "SMALLINT",  # no BOOLEAN before Db2 11.1
            exp.DType.TINYINT: "SMALLINT",
            exp.DType.INT: "INTEGER",
            exp.DType.DATETIME: "TIMESTAMP",
            exp.DType.TEXT: "VARCHAR",  # given a length in datatype_sql
        }

        TRANSFORMS: t.ClassVar[dict[type[exp.Expr], t.Callable[..., str]]] = {
            **generator.Generator.TRANSFORMS,
            # Db2 has no QUALIFY and no DISTINCT ON; rewrite them as subqueries.
            exp.Select: transforms.preprocess(
                [transforms.eliminate_distinct_on, transforms.eliminate_qualify]
            ),
            exp.ConcatWs: concat_ws_to_dpipe_sql,
            exp.CurrentDate: lambda *_: "CURRENT DATE",
            exp.CurrentTime: lambda *_: "CURRENT TIME",
            exp.CurrentTimestamp: lambda *_: "CURRENT TIMESTAMP",
            exp.DateAdd: lambda self, e: self.sql(exp.Add(this=e.this, expression=_duration(e))),
            exp.DateSub: lambda self, e: self.sql(exp.Sub(this=e.this, expression=_duration(e))),
            exp.Day: _date_part_sql("DAY"),
            exp.GroupConcat: lambda self, e: groupconcat_sql(self, e, func_name="LISTAGG"),
            exp.ILike: no_ilike_sql,  # Db2 has no ILIKE
            exp.Mod: rename_func("MOD"),  # '%' is not an arithmetic operator in Db2
            exp.Month: _date_part_sql("MONTH"),
            exp.StrPosition: lambda self, e: strposition_sql(
                self, e, func_name="LOCATE", supports_position=True
            ),
            exp.StrToDate: lambda self, e: self.func(
                "DATE", self.func("TIMESTAMP_FORMAT", e.this, self.format_time(e))
            ),
            exp.StrToTime: lambda self, e: self.func(
                "TIMESTAMP_FORMAT", e.this, self.format_time(e)
            ),
            exp.Substring: rename_func("SUBSTR"),  # Db2 SUBSTRING wants a string unit
            exp.Year: _date_part_sql("YEAR"),
        }

        def offset_sql(self, expression: exp.Offset) -> str:
            return f"{super().offset_sql(expression)} ROWS"

        def query_modifiers(self, expression: exp.Expr, *sqls: str) -> str:
            limit = expression.args.get("limit")
            options = limit.args.get("limit_options") if limit else None
            if options and options.args.get("percent"):  # T-SQL TOP n PERCENT
                self.unsupported("Db2 cannot FETCH FIRST a percentage of rows")
            return super().query_modifiers(expression, *sqls)

        def concat_sql(self, expression: exp.Concat) -> str:
            # Db2's CONCAT takes exactly two arguments; || takes any number.
            args = [
                exp.paren(arg, copy=False) if isinstance(arg, exp.Binary) else arg
                for arg in self.convert_concat_args(expression)
            ]
            return self.sql(reduce(lambda x, y: exp.DPipe(this=x, expression=y), args))

        def boolean_sql(self, expression: exp.Boolean) -> str:
            parent, key = expression.parent, expression.arg_key
            if (
                isinstance(parent, _PREDICATE_PARENTS)
                or (key == "this" and isinstance(parent, exp.If))  # CASE WHEN TRUE
                or (key == "on" and isinstance(parent, exp.Join))  # JOIN ... ON TRUE
            ):
                return "1 = 1" if expression.this else "1 = 0"
            return "1" if expression.this else "0"

        def is_sql(self, expression: exp.Is) -> str:
            # x IS TRUE has no Db2 spelling before 11.1; compare with the 0/1 flag instead.
            value = expression.expression
            if not isinstance(value, exp.Boolean):
                return super().is_sql(expression)
            flag = exp.Literal.number(1 if value.this else 0)
            cond: exp.Expr = exp.EQ(this=expression.this, expression=flag)
            if expression.args.get("negate"):
                cond = exp.not_(cond)
            return self.sql(cond)

        def date_sql(self, expression: exp.Date) -> str:
            if _is_now(expression.this) and not expression.expressions:
                return "CURRENT DATE"  # SQLite date('now')
            return self.function_fallback_sql(expression)

        def anonymous_sql(self, expression: exp.Anonymous) -> str:
            # MySQL NOW(), SQLite datetime('now') / time('now'): Db2's CURRENT special registers.
            name = expression.name.upper()
            args = expression.expressions
            if name == "NOW" and not args:
                return "CURRENT TIMESTAMP"
            if name in ("DATETIME", "TIME") and len(args) == 1 and _is_now(args[0]):
                return "CURRENT TIMESTAMP" if name == "DATETIME" else "CURRENT TIME"
            return super().anonymous_sql(expression)

        def timetostr_sql(self, expression: exp.TimeToStr) -> str:
            fmt = expression.args.get("format")
            part = _DATE_PART_FUNCS.get(fmt.name) if fmt is not None and fmt.is_string else None
            if part:
                return self.func(part, _unwrap_ts_or_ds(expression.this))
            return self.func("VARCHAR_FORMAT", expression.this, self.format_time(expression))

        def interval_sql(self, expression: exp.Interval) -> str:
            # Db2 has no INTERVAL type; date arithmetic uses labeled durations (`n DAYS`).
            unit = expression.text("unit").upper()
            unit = self.TIME_PART_SINGULARS.get(unit, unit)
            value = expression.this
            digits = value.name.lstrip("-").replace(".", "", 1) if value is not None else ""
            if value is not None and value.is_string and digits.isdigit():
                value = exp.Literal.number(value.name)  # INTERVAL '3' DAY -> 3 DAYS
            if unit == "WEEK" and value is not None:
                value, unit = exp.Mul(this=value.copy(), expression=exp.Literal.number(7)), "DAY"
            if unit not in _DURATION_UNITS or value is None:
                self.unsupported(f"Db2 has no labeled duration for INTERVAL {self.sql(value)}")
                return super().interval_sql(expression)
            if not isinstance(value, (exp.Literal, exp.Column, exp.Paren, exp.Func)):
                value = exp.paren(value)
            return f"{self.sql(value)} {unit}S"

        def datatype_sql(self, expression: exp.DataType) -> str:
            # Db2 has no TEXT and requires a length on VARCHAR; use the largest VARCHAR.
            is_string = expression.this in (exp.DType.TEXT, exp.DType.VARCHAR)
            if is_string and not expression.expressions:
                return "VARCHAR(32672)"
            return super().datatype_sql(expression)

        def identifier_sql(self, expression: exp.Identifier) -> str:
            text = expression.name
            plain = bool(exp.SAFE_IDENTIFIER_RE.match(text))
            reserved = text.lower() in self.RESERVED_KEYWORDS
            if expression.quoted:
                if plain and text == text.upper() and not reserved:
                    return text  # "NAME" and NAME are the same identifier in Db2
                return super().identifier_sql(expression)
            if reserved or not plain:
                # Quote the folded spelling, so "ORDER" still names the column ORDER.
                return super().identifier_sql(exp.Identifier(this=text.upper(), quoted=True))
            return super().identifier_sql(expression)
