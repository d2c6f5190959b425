"""Functions whose cost is their argument, bounded before the query runs.

``repeat('x', 1e9)``, ``lpad(name, 1e9)`` or SQLite's ``printf('%.*c', 999999999, 'x')`` ask
the database for a value as large as a number in the query. The byte bounds on results stop
such a value only once it exists (and SQLite's ``printf`` with a ``%c`` precision spends
seconds appending into a buffer that already refused to grow: its progress handler is not
called inside one function call). So each engine lists, as data (``Engine.size_rules``), the
allowed functions that build a value from a size argument, and the allow-list refuses a call
whose size is not a number written in the query or is over ``db.max_value_bytes``, before the
statement reaches the database.

Three shapes cover them: :class:`Repeats` (``repeat(text, count)``, ``space(count)``,
``zeroblob(count)``), :class:`Pads` (``lpad``/``rpad(text, length[, fill])``) and
:class:`Formats` (``printf``/``format`` with widths and precisions, SQLite's and PostgreSQL's).
Sizes that depend on the data (``repeat(name, 3)``, ``string_agg``) are left to the engines'
own limits and the layer's value bound (docs/DATABASES.md, "Bounded values").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

__all__ = ["Formats", "Pads", "Repeats", "SizeRule", "call_arguments", "constant_number",
           "constant_text"]


def call_arguments(node: exp.Func) -> list[exp.Expression]:
    """A call's arguments in the order they are written."""
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    found: list[exp.Expression] = []
    for key in node.arg_types:
        value = node.args.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, exp.Expression):
                found.append(item)
    return found


def constant_number(node: exp.Expression | None) -> float | None:
    """The value of a number written in the query (``5``, ``-5``, ``(5)``, ``CAST(5 AS INT)``,
    ``'5'``), or None when it is computed."""
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    if isinstance(node, exp.Neg):
        inner = constant_number(node.this)
        return -inner if inner is not None else None
    if isinstance(node, exp.Literal):
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def constant_text(node: exp.Expression | None) -> str | None:
    """The text of a string literal written in the query, or None."""
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    return None


class SizeRule:
    """How a function's result size follows from its arguments."""

    def problem(self, name: str, args: list[exp.Expression], cap: int) -> str | None:
        """Why the call ``name(args)`` could build a value over ``cap`` bytes, or None."""
        raise NotImplementedError


def _over(name: str, size: float, cap: int) -> str:
    return (f"{name}() would build a value of {size:,.0f} bytes, over the limit of {cap:,} "
            "(db.max_value_bytes); ask for less, or raise db.max_value_bytes")


def _not_constant(name: str, what: str) -> str:
    return (f"{name}()'s {what} is computed, so the size of its result is not known before the "
            f"query runs; write the {what} as a number (at most db.max_value_bytes)")


@dataclass(frozen=True)
class Repeats(SizeRule):
    """``count`` copies of a text: ``repeat(text, count)``; without ``text`` (None) one byte
    per count (``space(n)``, ``zeroblob(n)``)."""

    count: int
    text: int | None = None

    def problem(self, name: str, args: list[exp.Expression], cap: int) -> str | None:
        if len(args) <= self.count:
            return None  # the database reports the missing argument
        count = constant_number(args[self.count])
        if count is None:
            return _not_constant(name, "count")
        unit = 1
        if self.text is not None and len(args) > self.text:
            text = constant_text(args[self.text])
            unit = max(1, len(text.encode("utf-8"))) if text is not None else 1
        return _over(name, count * unit, cap) if count * unit > cap else None


@dataclass(frozen=True)
class Pads(SizeRule):
    """A text padded (or cut) to ``length`` characters: ``lpad(text, length[, fill])``; at most
    four bytes a character."""

    length: int
    fill: int | None = None

    def problem(self, name: str, args: list[exp.Expression], cap: int) -> str | None:
        if len(args) <= self.length:
            return None
        length = constant_number(args[self.length])
        if length is None:
            return _not_constant(name, "length")
        width = 1
        if self.fill is not None and len(args) > self.fill:
            fill = constant_text(args[self.fill])
            width = max((len(ch.encode("utf-8")) for ch in fill), default=1) if fill else 4
        return _over(name, length * width, cap) if length * width > cap else None


# One conversion of a printf-style format: flags, width, precision, type (SQLite's printf and
# PostgreSQL's format(); PostgreSQL also has a position, "%2$s", and "*n$" widths).
_CONVERSION = re.compile(
    r"%(?P<position>\d+\$)?(?P<flags>[-+ 0#,!]*)(?P<width>\*(?:\d+\$)?|\d+)?"
    r"(?:\.(?P<precision>\*|\d+))?(?P<type>.)?", re.DOTALL)


@dataclass(frozen=True)
class Formats(SizeRule):
    """A printf-style format string at ``format_at``: every width and precision must be a number
    in the format (or a number argument, for ``*``), and together at most the cap. SQLite's
    ``%c`` with a precision loops once per unit of it, so the total counts for time too."""

    format_at: int = 0

    def problem(self, name: str, args: list[exp.Expression], cap: int) -> str | None:
        if len(args) <= self.format_at:
            return None
        text = constant_text(args[self.format_at])
        if text is None:
            return (f"{name}()'s format is computed, so the size of its result is not known "
                    "before the query runs; write the format as a string literal")
        next_arg = self.format_at + 1
        total = 0.0
        for conversion in _CONVERSION.finditer(text):
            if conversion.group("type") == "%":
                continue
            for part in ("width", "precision"):
                spec = conversion.group(part)
                if spec is None:
                    continue
                if spec.startswith("*"):
                    if "$" in spec:
                        return _not_constant(name, "width")
                    value = constant_number(args[next_arg]) if next_arg < len(args) else None
                    next_arg += 1
                    if value is None:
                        return _not_constant(name, f"{part} (a '*' in its format)")
                    total += abs(value)
                else:
                    total += int(spec)
            if conversion.group("type") is not None:
                next_arg += 1
        return _over(name, total, cap) if total > cap else None
