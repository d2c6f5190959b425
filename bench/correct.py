"""Query correction on broken Spider dev queries: executable and correct before and after.

Usage: python bench/correct.py [--spider ../shared/spider-dev] [--seed 7] [--per-kind 60]
       [--show-failures]

Breaks gold queries of the Spider dev set (../shared/spider-dev) with one fault each, with
a fixed seed, then runs :func:`querycraft.correction.correct_sql` on them with the schema
read from each database (``read_schema``). Fault kinds (up to ``--per-kind`` queries each,
drawn in a seeded random order among the queries the fault applies to):

    chatter      prose, code fences or echoed prompt markers around the SQL
    case         identifiers in another case (upper, lower or swapped)
    column       one column name misspelled (one edit: a letter dropped, added, changed or
                 two swapped), kept only when the broken query no longer runs
    table        the same for a table name
    operator     ``>=``, ``<=``, ``!=`` or ``<>`` written with a space inside
    dialect      another dialect's construct, the four in turn: ``SELECT TOP n`` or ``FETCH
                 FIRST n ROWS ONLY`` for ``LIMIT n``, ``ILIKE`` for ``LIKE``, backtick-quoted
                 identifiers
    trailing     an explanation, a stop marker or a sentence after the SQL

Misspellings only touch names of at least 4 characters and never produce another name of
the schema. For each kind it reports the share of broken queries that run before
correction, that run after, and whose result equals gold after (Spider's comparison:
``results_match``, row order only when the gold query has ORDER BY); and the same for the
unbroken gold queries, which must all come back with the gold result (exit status 1
otherwise).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlglot  # noqa: E402
from sqlglot import exp  # noqa: E402

from querycraft.compare import results_match  # noqa: E402
from querycraft.correction import correct_sql  # noqa: E402
from querycraft.db import Databases  # noqa: E402
from querycraft.ddl import schema_from_ddl  # noqa: E402
from querycraft.engines.base import QueryError, QueryResult  # noqa: E402
from querycraft.sql import has_order_by  # noqa: E402
from querycraft.targets import DatabaseTarget  # noqa: E402

# The dialect faults, in turn: T-SQL's TOP, ANSI FETCH FIRST, PostgreSQL's ILIKE, MySQL's
# backtick quotes.
DIALECT_VARIANTS = ("top", "fetch", "ilike", "backticks")
KINDS = ("chatter", "case", "column", "table", "operator", "dialect", "trailing")

CHATTER = (
    "Here is the SQL query:\n```sql\n{q};\n```\nIt answers the question using the {t} table.",
    "SQL: {q}",
    "### SQL\n{q}",
    "Sure! To answer this, we need the {t} table.\n\n{q};",
    "```\n{q}\n```",
    "<think>The question is about {t}.</think>\n{q}",
    "The query is:\n\n{q}\n\nThis returns the requested rows.",
    "Answer: {q};",
)
TRAILING = (
    "{q}\n\nThis query returns the requested rows from {t}.",
    "{q}; -- the result",
    "{q}\nExplanation: it reads the {t} table.",
    "{q} </s>",
    "{q}\n### End",
    "{q};\n\nNote that the {t} table is used.",
    "{q}; SELECT 1",
    "{q}. This gives the answer.",
)


def _spans(tree: exp.Expr, kind: type[exp.Expr]) -> list[tuple[int, int, str]]:
    """(start, end, text) of the unquoted names of ``kind`` nodes (Table or Column)."""
    found = []
    for node in tree.find_all(kind):
        ident = node.this
        if not isinstance(ident, exp.Identifier) or ident.quoted:
            continue
        meta = ident.meta or {}
        if "start" in meta:
            found.append((meta["start"], meta["end"] + 1, ident.this))
    return sorted(set(found))


def _replace(sql: str, start: int, end: int, text: str) -> str:
    return sql[:start] + text + sql[end:]


def _misspell(word: str, rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = rng.randrange(1, len(word))
    op = rng.choice(("drop", "swap", "change", "add"))
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap" and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "add":
        return word[:i] + rng.choice(letters) + word[i:]
    return word[:i] + rng.choice(letters.replace(word[i].lower(), "")) + word[i + 1 :]


def _code_positions(sql: str) -> list[tuple[int, int]]:
    """Spans of the text outside string literals."""
    spans, pos = [], 0
    for m in re.finditer(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", sql):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(sql)))
    return spans


def _sub_code(pattern: str, repl: str | Callable, sql: str, count: int = 0) -> str:
    out, last = [], 0
    for start, end in _code_positions(sql):
        out.append(sql[last:start])
        out.append(re.sub(pattern, repl, sql[start:end], count=count, flags=re.IGNORECASE))
        last = end
    out.append(sql[last:])
    return "".join(out)


class Breaker:
    """Makes one fault of a kind in a gold query; None when the fault does not apply."""

    def __init__(self, schema: dict[str, list[str]], rng: random.Random) -> None:
        self.schema = schema
        self.rng = rng
        self.names = {t.lower() for t in schema} | {c.lower() for cs in schema.values()
                                                      for c in cs}

    def break_(self, kind: str, sql: str, variant: str | None = None) -> str | None:
        try:
            tree = sqlglot.parse_one(sql, read="sqlite")
        except sqlglot.errors.SqlglotError:
            return None
        table = next((t.name for t in tree.find_all(exp.Table)), "data")
        if kind == "dialect":
            return self.dialect(sql, tree, table, variant or "backticks")
        return getattr(self, kind)(sql, tree, table)

    def chatter(self, sql: str, tree: exp.Expr, table: str) -> str:
        return self.rng.choice(CHATTER).format(q=sql, t=table)

    def trailing(self, sql: str, tree: exp.Expr, table: str) -> str:
        return self.rng.choice(TRAILING).format(q=sql, t=table)

    def case(self, sql: str, tree: exp.Expr, table: str) -> str | None:
        spans = _spans(tree, exp.Table) + _spans(tree, exp.Column)
        change = self.rng.choice((str.upper, str.lower, str.swapcase))
        out = sql
        for start, end, text in sorted(set(spans), reverse=True):
            out = _replace(out, start, end, change(text))
        return out if out != sql else None

    def _misspelled(self, sql: str, spans: list[tuple[int, int, str]]) -> str | None:
        spans = [s for s in spans if len(s[2]) >= 4 and s[2].lower() in self.names]
        if not spans:
            return None
        start, end, text = self.rng.choice(spans)
        for _ in range(10):
            wrong = _misspell(text, self.rng)
            if wrong.lower() not in self.names and wrong.lower() != text.lower() \
                    and wrong.upper() not in sqlglot.tokens.Tokenizer.KEYWORDS:
                return _replace(sql, start, end, wrong)
        return None

    def column(self, sql: str, tree: exp.Expr, table: str) -> str | None:
        return self._misspelled(sql, _spans(tree, exp.Column))

    def table(self, sql: str, tree: exp.Expr, table: str) -> str | None:
        return self._misspelled(sql, _spans(tree, exp.Table))

    def operator(self, sql: str, tree: exp.Expr, table: str) -> str | None:
        out = _sub_code(r"(>=|<=|!=|<>)", lambda m: m.group(1)[0] + " " + m.group(1)[1], sql)
        return out if out != sql else None

    def dialect(self, sql: str, tree: exp.Expr, table: str, variant: str = "backticks"
                ) -> str | None:
        limit = re.search(r"\s+LIMIT\s+(\d+)\s*$", sql, re.IGNORECASE)
        simple = isinstance(tree, exp.Select) and not tree.args.get("offset")
        if variant in ("top", "fetch"):
            if not (limit and simple) or (variant == "fetch" and not tree.args.get("order")):
                return None
            n, head = limit.group(1), sql[: limit.start()]
            if variant == "fetch":
                return f"{head} FETCH FIRST {n} ROWS ONLY"
            return re.sub(r"^(SELECT\s+(?:DISTINCT\s+)?)", rf"\g<1>TOP {n} ", head, count=1,
                          flags=re.IGNORECASE)
        if variant == "ilike":
            out = _sub_code(r"\bLIKE\b", "ILIKE", sql)
            return out if out != sql else None
        out = sql
        for start, end, text in sorted(set(_spans(tree, exp.Table) + _spans(tree, exp.Column)),
                                       reverse=True):
            out = _replace(out, start, end, f"`{text}`")
        return out if out != sql else None


def _run(databases: Databases, db_id: str, sql: str) -> QueryResult | None:
    try:
        return databases.get(db_id).execute(sql, timeout_s=30.0, max_rows=100_000)
    except QueryError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "spider-dev")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-kind", type=int, default=60)
    parser.add_argument("--show-failures", action="store_true")
    args = parser.parse_args()

    dev = json.loads((args.spider / "dev.json").read_text())
    databases = Databases(DatabaseTarget("sqlite", location=str(args.spider / "database")))
    schemas: dict[str, dict[str, list[str]]] = {}
    gold_results: dict[int, QueryResult | None] = {}

    def schema(db_id: str) -> dict[str, list[str]]:
        if db_id not in schemas:
            schemas[db_id] = schema_from_ddl(databases.get(db_id).schema_text())
        return schemas[db_id]

    def gold(i: int) -> QueryResult | None:
        if i not in gold_results:
            gold_results[i] = _run(databases, dev[i]["db_id"], dev[i]["query"])
        return gold_results[i]

    rng = random.Random(args.seed)
    cases: list[tuple[str, int, str]] = []  # kind, dev index, broken text
    quotas = [(kind, None, args.per_kind) for kind in KINDS if kind != "dialect"]
    quotas[-1:-1] = [("dialect", v, -(-args.per_kind // len(DIALECT_VARIANTS)))
                     for v in DIALECT_VARIANTS]
    for kind, variant, quota in quotas:
        order = list(range(len(dev)))
        rng.shuffle(order)
        kept = 0
        for i in order:
            if kept >= quota:
                break
            item = dev[i]
            if gold(i) is None:
                continue
            broken = Breaker(schema(item["db_id"]), rng).break_(kind, item["query"], variant)
            if broken is None or broken == item["query"]:
                continue
            if kind in ("column", "table") and _run(databases, item["db_id"], broken):
                continue  # the misspelling did not break the query: the fault does not apply
            cases.append((kind, i, broken))
            kept += 1

    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # n, before, after, equal
    failures = []
    began = time.perf_counter()

    def score(label: str, i: int, text: str) -> None:
        item = dev[i]
        fixed = correct_sql(text, schema=schema(item["db_id"]))
        before = _run(databases, item["db_id"], text) is not None
        after = _run(databases, item["db_id"], fixed.sql)
        equal = after is not None and results_match(
            gold(i), after, order_matters=has_order_by(item["query"]))
        row = stats[label]
        row[0] += 1
        row[1] += before
        row[2] += after is not None
        row[3] += equal
        if not equal:
            failures.append((label, item["query"], text, fixed))

    for kind, i, broken in cases:
        score(kind, i, broken)
    broken_seconds = time.perf_counter() - began
    for i, item in enumerate(dev):
        if gold(i) is not None:
            score("unbroken gold", i, item["query"])
    databases.close()

    print(f"Spider dev: {len(dev)} gold queries, {len(cases)} broken ones (seed {args.seed}); "
          f"correction {broken_seconds / max(len(cases), 1) * 1000:.1f} ms per query")
    print(f"| {'fault':15} | {'queries':>7} | {'runs before':>11} | {'runs after':>10} | "
          f"{'equal after':>11} |")
    print(f"|{'-' * 17}|{'-' * 9}|{'-' * 13}|{'-' * 12}|{'-' * 13}|")
    total = [0, 0, 0, 0]
    for label in (*KINDS, "all broken", "unbroken gold"):
        if label == "all broken":
            row = total
        else:
            row = stats[label]
            if label in KINDS:
                total = [a + b for a, b in zip(total, row, strict=True)]
        n = max(row[0], 1)
        print(f"| {label:15} | {row[0]:7} | {row[1] / n:11.3f} | {row[2] / n:10.3f} | "
              f"{row[3] / n:11.3f} |")
    if args.show_failures:
        for label, gold_sql, text, fixed in failures:
            print(f"\n[{label}] gold:   {gold_sql}\n  broken: {text!r}\n  fixed:  {fixed.sql}"
                  f"\n  fired: {fixed.fired} unresolved: {fixed.unresolved}")
    unbroken = stats["unbroken gold"]
    if unbroken[3] != unbroken[0]:
        print(f"FAIL: {unbroken[0] - unbroken[3]} unbroken gold queries changed result",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
