"""Ingest of large CSV inputs: wall time and peak memory against the file's size (issue 13).

Usage: python bench/ingest.py [--sizes 100000 1000000] [--repeats 3] [--big-repeats 1]
                              [--keep DIR]

Generates CSVs of question, query, context (varied questions and SQL over a small shop
schema, with a few % bad rows: empty questions, SQL that does not parse, duplicates) in a
temporary folder, then, for each size:
  (a) the full ingest service, `python -m querycraft service=ingest data.path=...`, in its
      own subprocess: wall time and peak RSS (ru_maxrss of the child);
  (b) reading only, in its own subprocess each, interleaved: the previous reader
      (read_text + splitlines + csv.DictReader, the file held twice) vs pandas chunked
      reading (ingest's reader, `read_csv(chunksize=ingest.CHUNK_ROWS)`): wall time, peak RSS.
Each measurement runs --repeats times (--big-repeats for sizes of 1,000,000 rows and more,
which take minutes each); medians count (a 2-core machine's timings wander). Prints a
markdown table: file size, times, peak RSS, peak RSS / file size, and pandas/baseline ratios.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONTEXT = ("CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, first_name TEXT, "
           "last_name TEXT, city TEXT); CREATE TABLE product (product_id INTEGER PRIMARY KEY, "
           "name TEXT, price REAL, category TEXT); CREATE TABLE orders (order_id INTEGER "
           "PRIMARY KEY, customer_id INTEGER, product_id INTEGER, quantity INTEGER, "
           "order_date TEXT);")
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Dublin"]
CATEGORIES = ["books", "toys", "garden", "kitchen", "music", "sports", "tools"]


def _pair(rng: random.Random, i: int) -> tuple[str, str]:
    """A (question, SQL) pair; i keeps questions apart so only planted duplicates repeat."""
    city, cat = rng.choice(CITIES), rng.choice(CATEGORIES)
    n, price = rng.randint(1, 50), rng.randint(5, 500)
    kind = rng.randrange(6)
    if kind == 0:
        return (f"How many customers live in {city}? (#{i})",
                f"SELECT COUNT(*) FROM customer WHERE city = '{city}'")
    if kind == 1:
        return (f"List the names of {cat} products under {price} dollars (#{i}).",
                f"SELECT name FROM product WHERE category = '{cat}' AND price < {price} "
                f"ORDER BY name")
    if kind == 2:
        return (f"Which {n} customers ordered the most {cat}? (#{i})",
                "SELECT c.first_name, c.last_name, SUM(o.quantity) AS total FROM customer AS c "
                "JOIN orders AS o ON o.customer_id = c.customer_id JOIN product AS p ON "
                f"p.product_id = o.product_id WHERE p.category = '{cat}' GROUP BY "
                f"c.customer_id ORDER BY total DESC LIMIT {n}")
    if kind == 3:
        return (f"What is the average price of {cat}, by city of the buyer? (#{i})",
                "SELECT c.city, AVG(p.price) FROM orders AS o JOIN customer AS c ON "
                "c.customer_id = o.customer_id JOIN product AS p ON p.product_id = "
                f"o.product_id WHERE p.category = '{cat}' GROUP BY c.city")
    if kind == 4:
        return (f"Show orders of more than {n} items placed in 2024 (#{i}).",
                f"SELECT order_id, quantity FROM orders WHERE quantity > {n} AND order_date "
                "LIKE '2024-%'")
    return (f"Which customers from {city} never ordered? (#{i})",
            f"SELECT first_name FROM customer WHERE city = '{city}' AND customer_id NOT IN "
            "(SELECT customer_id FROM orders)")


def make_csv(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """Write the CSV; returns how many bad rows of each kind it planted (~1 % each)."""
    rng = random.Random(seed)
    planted = {"empty question": 0, "does not parse": 0, "duplicate": 0}
    recent: list[tuple[str, str]] = []
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "query", "context"])
        for i in range(rows):
            roll = rng.random()
            question, sql = _pair(rng, i)
            if roll < 0.01:
                question, planted["empty question"] = "", planted["empty question"] + 1
            elif roll < 0.02:
                sql, planted["does not parse"] = "SELEC name FROM WHERE", \
                    planted["does not parse"] + 1
            elif roll < 0.03 and recent:
                question, sql = rng.choice(recent)
                planted["duplicate"] += 1
            else:
                recent = [*recent[-99:], (question, sql)]
            writer.writerow([question, sql, CONTEXT])
    return planted


READ_OLD = """
import csv, sys, time
from pathlib import Path
t = time.perf_counter()
text = Path(sys.argv[1]).read_text(encoding="utf-8-sig")
n = sum(1 for _ in csv.DictReader(text.splitlines(keepends=True), strict=True))
print(n, time.perf_counter() - t)
"""
READ_PANDAS = """
import sys, time
import pandas as pd
from querycraft.services import ingest
t = time.perf_counter()
n = 0
for chunk in pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         chunksize=ingest.CHUNK_ROWS):
    n += sum(1 for _ in chunk.itertuples(index=False, name=None))
print(n, time.perf_counter() - t)
"""


def _child(args: list[str]) -> tuple[float, float, str]:
    """Run args in a fresh process (via a wrapper that reports the child's own peak RSS):
    wall seconds, peak RSS in MiB, stdout."""
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stderr.write(p.stderr[-3000:])\n"
               "print(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else '')\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(p.returncode)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{args[:4]} failed:\n{done.stderr}")
    out, rss_kib = done.stdout.strip().splitlines()[-2:]
    return wall, int(rss_kib) / 1024, out


def _ingest(path: Path, work: Path, index: int) -> tuple[float, float]:
    out = work / f"out-{path.stem}-{index}"
    wall, rss, _ = _child([sys.executable, "-m", "querycraft", "service=ingest",
                           f"data.path={path}", "data.format=csv", "data.database=null",
                           f"paths.output_dir={out}"])
    return wall, rss


def _read(script: str, path: Path) -> tuple[float, float, int]:
    _, rss, out = _child([sys.executable, "-c", script, str(path)])
    rows, seconds = out.split()
    return float(seconds), rss, int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1,
                        help="repeats for sizes of 1,000,000 rows and more")
    parser.add_argument("--keep", type=Path, help="write the CSVs and runs here (kept)")
    args = parser.parse_args()
    med = statistics.median
    # Peak RSS of a bare interpreter, and of one that imported pandas and ingest: the floor
    # each reader's growth is measured from.
    bare_rss = _read("print(0, 0.0)", Path("-"))[1]
    pandas_rss = _read("import pandas\nimport querycraft.services.ingest\nprint(0, 0.0)",
                       Path("-"))[1]
    print(f"peak RSS: bare python {bare_rss:.0f} MiB, with pandas {pandas_rss:.0f} MiB",
          file=sys.stderr)
    table = ["| rows | file MiB | ingest s | ingest peak RSS MiB | ingest RSS / file | "
             "read: old s | read: pandas s | read: old RSS MiB | read: pandas RSS MiB | "
             "RSS pandas/old | old RSS growth / file | pandas RSS growth / file | repeats |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="qc-bench-ingest-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            path = work / f"bench-{size}.csv"
            planted = make_csv(path, size)
            mib = path.stat().st_size / 2**20
            print(f"{size} rows: {mib:.1f} MiB, planted {planted}", file=sys.stderr)
            repeats = args.big_repeats if size >= 1_000_000 else args.repeats
            ingest_runs, old, new = [], [], []
            for r in range(repeats):  # interleaved: old read, pandas read, full ingest
                old.append(_read(READ_OLD, path))
                new.append(_read(READ_PANDAS, path))
                ingest_runs.append(_ingest(path, work, r))
                print(f"  repeat {r + 1}: old {old[-1][:2]}, pandas {new[-1][:2]}, "
                      f"ingest {ingest_runs[-1]}", file=sys.stderr)
                assert old[-1][2] == new[-1][2] == size, (old[-1], new[-1])
            i_s, i_rss = med(x[0] for x in ingest_runs), med(x[1] for x in ingest_runs)
            o_s, o_rss = med(x[0] for x in old), med(x[1] for x in old)
            n_s, n_rss = med(x[0] for x in new), med(x[1] for x in new)
            table.append(
                f"| {size:,} | {mib:.1f} | {i_s:.1f} | {i_rss:.0f} | {i_rss / mib:.2f} | "
                f"{o_s:.2f} | {n_s:.2f} | {o_rss:.0f} | {n_rss:.0f} | {n_rss / o_rss:.2f} | "
                f"{(o_rss - bare_rss) / mib:.2f} | {(n_rss - pandas_rss) / mib:.2f} | "
                f"{repeats} |")
            for child in work.glob(f"out-{path.stem}-*"):
                subprocess.run(["rm", "-rf", str(child)], check=False)
    from querycraft.services.ingest import CHUNK_ROWS

    print(f"\nPeak RSS floors: bare python {bare_rss:.0f} MiB (old reader's growth is from "
          f"it), python + pandas + ingest {pandas_rss:.0f} MiB (pandas reader's growth); "
          f"{CHUNK_ROWS:,} rows per chunk; medians of the repeats.\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
