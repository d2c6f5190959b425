"""What reading generated SQL as the server reads it costs (issue 30), per statement.

Usage: python bench/server_reading.py [--spider ../shared/spider-dev] [--repeats 5]

For the Spider dev gold queries, times per statement, interleaved, in the same run:

* baseline: the allow-list as it was before issue 30, the steps that remain (the shared
  statement allow-list :func:`querycraft.sql.is_read_only_statement`, then the function and
  system-table checks on the parsed tree);
* reader: the new step alone (:func:`querycraft.engines.syntax.read_statement` under every
  setting the engine's server may have, and sqlglot's tokenizer as the second opinion);
* full: :func:`querycraft.engines.base.allowed_statement` as every service runs it now;

for the SQLite, PostgreSQL and MySQL engines (reading only: no server is needed), and, for
scale, running the same queries on their SQLite databases through the layer
(``SqliteDatabase.execute``). Prints medians over the repeats and the ratio full / baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from querycraft import db as dbmod  # noqa: E402
from querycraft.engines import get_engine  # noqa: E402
from querycraft.engines.base import (  # noqa: E402
    QueryError,
    allowed_statement,
    function_problem,
    relation_problem,
)
from querycraft.engines.syntax import parser_disagreement, read_statement  # noqa: E402
from querycraft.sql import is_read_only_statement, parse_shared  # noqa: E402
from querycraft.targets import DatabaseTarget  # noqa: E402


def baseline(sql: str, engine) -> None:
    ok, _ = is_read_only_statement(sql, engine.dialect)
    if ok:
        tree = parse_shared(sql, engine.dialect)[0]
        function_problem(tree, engine) or relation_problem(tree, engine)


def reader(sql: str, engine) -> None:
    with contextlib.suppress(ValueError):
        parser_disagreement(read_statement(sql, engine.syntax), engine.dialect)


def full(sql: str, engine) -> None:
    with contextlib.suppress(QueryError):
        allowed_statement(sql, engine)


def timed(step, queries: list[str], engine) -> float:
    start = time.perf_counter()
    for sql in queries:
        step(sql, engine)
    return (time.perf_counter() - start) / len(queries) * 1e6  # microseconds a statement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "spider-dev")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    items = json.loads((args.spider / "dev.json").read_text())
    queries = [item["query"] for item in items]
    print(f"{len(queries)} Spider dev gold queries, {args.repeats} interleaved repeats")

    databases = dbmod.Databases(DatabaseTarget("sqlite",
                                                     location=str(args.spider / "database")))
    runs = [(item["db_id"], item["query"]) for item in items]

    def execute_all() -> float:
        start = time.perf_counter()
        for db_id, sql in runs:
            with contextlib.suppress(QueryError):
                databases.get(db_id).execute(sql, timeout_s=10)
        return (time.perf_counter() - start) / len(runs) * 1e6

    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for kind in ("sqlite", "postgres", "mysql"):
            engine = get_engine(kind)
            for name, step in (("baseline", baseline), ("reader", reader), ("full", full)):
                results.setdefault(f"{kind} {name}", []).append(timed(step, queries, engine))
        results.setdefault("sqlite execute (context)", []).append(execute_all())
    databases.close()

    print(f"{'step':32} {'median us/statement':>20} {'min':>8} {'max':>8}")
    for name, values in results.items():
        print(f"{name:32} {statistics.median(values):20.1f} {min(values):8.1f} "
              f"{max(values):8.1f}")
    for kind in ("sqlite", "postgres", "mysql"):
        ratio = (statistics.median(results[f"{kind} full"])
                 / statistics.median(results[f"{kind} baseline"]))
        print(f"{kind}: full allow-list / baseline = {ratio:.2f}x")


if __name__ == "__main__":
    main()
