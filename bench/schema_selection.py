"""Table selection for a question (``querycraft.schema.relevant_tables``) on Spider dev.

Usage: python bench/schema_selection.py [--spider ../shared/spider-dev] [--show-misses N]

For each question of ``dev.json`` it picks tables with :func:`relevant_tables` and compares
them with the tables the gold query reads (sqlglot, SQLite dialect). Reports, overall and per
database: recall (share of questions whose gold tables are all picked), the average share
of the database's tables kept, and the share of questions for which every table was kept.
Without ``--spider`` it uses ../shared/spider-dev when present, else the test fixtures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import sqlalchemy
import sqlglot
from sqlglot import exp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from querycraft.schema import readonly_sqlite_engine, relevant_tables  # noqa: E402


def gold_tables(sql: str, names: list[str]) -> set[str]:
    """The database's tables the query reads (names as the database spells them)."""
    by_lower = {n.lower(): n for n in names}
    found = {t.name.lower() for t in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)}
    return {by_lower[t] for t in found if t in by_lower}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ROOT.parent / "shared" / "spider-dev"
    if not (default / "dev.json").is_file():
        default = ROOT / "tests" / "fixtures" / "spider"
    parser.add_argument("--spider", type=Path, default=default)
    parser.add_argument("--show-misses", type=int, default=0, metavar="N")
    args = parser.parse_args()

    questions = json.loads((args.spider / "dev.json").read_text())
    inspectors: dict[str, sqlalchemy.Inspector] = {}
    names: dict[str, list[str]] = {}
    per_db: dict[str, list[tuple[bool, float, bool]]] = defaultdict(list)
    misses = []
    for item in questions:
        db = item["db_id"]
        if db not in inspectors:
            engine = readonly_sqlite_engine(args.spider / "database" / db / f"{db}.sqlite")
            inspectors[db] = sqlalchemy.inspect(engine)
            names[db] = inspectors[db].get_table_names()
        picked = set(relevant_tables(inspectors[db], item["question"]))
        gold = gold_tables(item["query"], names[db])
        hit = gold <= picked
        per_db[db].append((hit, len(picked) / len(names[db]), len(picked) == len(names[db])))
        if not hit:
            misses.append((db, item["question"], sorted(gold - picked), sorted(picked)))

    def line(label: str, rows: list[tuple[bool, float, bool]], tables: str) -> str:
        n = len(rows)
        recall = sum(r[0] for r in rows) / n
        kept = sum(r[1] for r in rows) / n
        every = sum(r[2] for r in rows) / n
        return f"{label:32} {n:5} {tables:>6} {recall:7.3f} {kept:7.3f} {every:7.3f}"

    print(f"{'database':32} {'qs':>5} {'tables':>6} {'recall':>7} {'kept':>7} {'all':>7}")
    for db in sorted(per_db):
        print(line(db, per_db[db], str(len(names[db]))))
    every_row = [r for rows in per_db.values() for r in rows]
    print(line("ALL", every_row, ""))
    macro = [sum(r[0] for r in rows) / len(rows) for rows in per_db.values()]
    print(f"recall averaged over databases: {sum(macro) / len(macro):.3f}")
    for db, question, missed, picked in misses[: args.show_misses]:
        print(f"MISS {db}: {question!r} missing {missed}, picked {picked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
