"""Execution-accuracy scoring speed on the Spider dev set: 1 worker vs all workers.

Usage: python bench/evaluate.py [--spider ../shared/spider-dev] [--repeats 3]

Scores the 972 Spider dev (gold, prediction) pairs twice: gold against gold, and gold
against a perturbed set this script makes (deterministic edits that change results: ORDER
BY direction flipped, a LIMIT added, DISTINCT added or removed, a numeric literal changed,
a column dropped). Times the execution check alone (running both queries read-only with the
timeout and row cap, comparing results Spider's way, diagnosing the relation) with 1 worker
process and with one per core, and also the full item scoring (plus exact, exact-set and
token match, difficulty and features; each query parsed once, the tree shared by the
allow-list and every analysis). The official Spider test-suite evaluator takes about 3 s on
one core for the execution check of these pairs on this kind of machine (the figure given
in ../shared/spider-dev/README.md); it is not run here. Issue 18's goal: full scoring on 1
worker no slower than the execution check alone was (2.8 s); the printed ratio compares
full scoring with this run's own execution check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def perturb(sql: str, i: int) -> str:
    """A deterministic edit that usually changes the query's result."""
    edits = [
        lambda s: re.sub(r"\bDESC\b", "ASC", s, flags=re.I) if re.search(r"\bDESC\b", s, re.I)
        else (re.sub(r"\bASC\b", "DESC", s, flags=re.I) if re.search(r"\bASC\b", s, re.I)
              else s + " LIMIT 1"),
        lambda s: re.sub(r"(?i)select\s+distinct\s+", "SELECT ", s, count=1)
        if re.search(r"(?i)select\s+distinct", s) else re.sub(r"(?i)^select\s+",
                                                              "SELECT DISTINCT ", s),
        lambda s: re.sub(r"\b(\d+)\b", lambda m: str(int(m.group(1)) + 1), s, count=1),
        lambda s: re.sub(r"(?i)^select\s+([^,]+?),\s*", "SELECT ", s, count=1),
    ]
    return edits[i % len(edits)](sql)


def _time_it(function, repeats: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - began)
    return statistics.median(times), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "spider-dev")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from querycraft.services.evaluate import Scoring, score_all

    dev = json.loads((args.spider / "dev.json").read_text())
    database = args.spider / "database"
    from querycraft.targets import DatabaseTarget

    scoring = Scoring(target=DatabaseTarget("sqlite", location=str(database)), timeout_s=30.0,
                      max_rows=100_000, distinct="keep", exact_set=True, preview_rows=5)
    sets = {
        "gold vs gold": [d["query"] for d in dev],
        "gold vs perturbed": [perturb(d["query"], i) for i, d in enumerate(dev)],
    }
    cores = os.cpu_count() or 1

    def execution_only(predictions: list[str], workers: int) -> float:
        rows = [{"id": str(i), "db_id": d["db_id"], "query": d["query"], "sql": p}
                for i, (d, p) in enumerate(zip(dev, predictions, strict=True))]
        if workers == 1:
            return execution_chunk(rows, scoring)
        from concurrent.futures import ProcessPoolExecutor

        chunks = pieces_by_database(rows, workers)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            matches = list(pool.map(execution_chunk, chunks, [scoring] * len(chunks)))
        return sum(m * len(c) for m, c in zip(matches, chunks, strict=True)) / len(rows)

    print(f"{len(dev)} Spider dev pairs, {cores} CPU cores, median of {args.repeats} runs")
    print(f"{'pairs':20} {'what':28} {'workers':>7} {'seconds':>8} {'EX':>6}")
    for name, predictions in sets.items():
        for workers in sorted({1, cores}):
            seconds, ex = _time_it(lambda p=predictions, w=workers: execution_only(p, w),
                                   args.repeats)
            print(f"{name:20} {'execution check':28} {workers:7} {seconds:8.2f} {ex:6.3f}",
                  flush=True)
        rows = [{"id": str(i), "db_id": d["db_id"], "question": d["question"],
                 "query": d["query"], "sql": p}
                for i, (d, p) in enumerate(zip(dev, predictions, strict=True))]
        for workers in sorted({1, cores}):
            seconds, items = _time_it(lambda r=rows, w=workers: score_all(r, ["sql"], scoring,
                                                                          w), 1)
            ex = sum(i["execution_match"] for i in items) / len(items)
            print(f"{name:20} {'full scoring (all metrics)':28} {workers:7} {seconds:8.2f} "
                  f"{ex:6.3f}", flush=True)
    return 0


def pieces_by_database(rows: list[dict], workers: int) -> list[list[dict]]:
    """Rows grouped by database, then cut so every worker gets several pieces (as the
    evaluate service splits its work), so a worker opens each database once per piece."""
    by_db: dict[str, list[dict]] = {}
    for row in rows:
        by_db.setdefault(row["db_id"], []).append(row)
    size = max(8, len(rows) // (workers * 4) + 1)
    return [group[i: i + size] for group in by_db.values() for i in range(0, len(group), size)]


def execution_chunk(rows: list[dict], scoring) -> float:
    """Worker: the share of rows whose execution matches (the execution check only)."""
    from querycraft import db as dbmod
    from querycraft.services.evaluate import score_execution

    with dbmod.Databases(scoring.target) as databases:
        matches = sum(score_execution(r["query"], r["sql"], databases.get(r["db_id"]),
                                      scoring)["execution_match"] for r in rows)
    return matches / len(rows)


if __name__ == "__main__":
    sys.exit(main())
