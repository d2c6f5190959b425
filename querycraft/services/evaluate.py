"""Evaluate: score predictions by running them (execution accuracy with the semantics of
Spider's test-suite evaluator), by exact and exact-set match, and by token match; diagnose
every miss; write items, a summary and an HTML report.

Every query runs through the shared read-only execution layer, with a timeout and a row cap,
in worker processes (one per core by default), so a prediction that tries to write is
refused, one that runs forever is stopped and counted as a timeout, and the evaluation goes
on. Raw and corrected SQL are scored side by side when the predictions carry both.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm.auto import tqdm

from querycraft import db as dbmod
from querycraft.artifacts import EvaluationArtifact, PredictionsArtifact
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, resolve_run, start_run, write_jsonl
from querycraft.sql import exact_match, has_order_by, token_match_score
from querycraft.sql_analysis import (
    HARDNESS_LEVELS,
    exact_set_match,
    spider_hardness,
    sql_features,
    strip_distinct,
)

log = logging.getLogger("querycraft")


@dataclass
class EvaluateConfig:
    # An infer or correct run folder; null: the newest completed infer run under output/.
    predictions_dir: str | None = None
    # The headline column: "sql" (raw, extracted), "corrected", or "auto" (corrected when the
    # predictions have it, else sql). Both are scored side by side when both exist.
    prediction_column: str = "auto"
    # Worker processes running queries; null: one per CPU core.
    workers: int | None = None
    # DISTINCT in SELECT: "keep" (stricter: a missing or extra DISTINCT can change the
    # result) or "strip" from gold and prediction alike, as the official Spider evaluator does.
    distinct: str = "keep"
    # Also score Spider's exact-set (component) match, values ignored.
    exact_set_match: bool = True
    # Rows of each result kept in items.jsonl and the HTML report.
    preview_rows: int = 5


# No dialect setting: gold SQL of another dialect than the database's (Spider's SQLite gold on
# PostgreSQL) is fitted to it first, read in the dataset's dialect (data.dialect at ingest).
SETTINGS = EvaluateConfig


def check(cfg: DictConfig) -> list[str]:
    """The evaluate.* settings."""
    settings, problems = cfg.evaluate, []
    if settings.distinct not in ("keep", "strip"):
        problems.append(f"evaluate.distinct must be 'keep' or 'strip', got "
                        f"'{settings.distinct}'")
    if settings.workers is not None and settings.workers < 1:
        problems.append("evaluate.workers must be at least 1 (or null for one per core)")
    return problems


ITEM_COLUMNS = ["id", "db_id", "column", "question", "query", "gold_executed", "prediction",
                "execution_match", "exact_match", "exact_set_match", "token_match",
                "prediction_valid", "error_kind", "error", "relation", "difficulty", "features",
                "gold_rows", "pred_rows", "seconds"]
# An item's error_kind, when it has one: the database's kind of error, or evaluate's own.
ITEM_ERROR_KINDS: tuple[str, ...] = (*dbmod.ERROR_KINDS, "empty", "gold_failed")


@dataclass(frozen=True)
class Scoring:
    """The settings a worker needs (picklable)."""

    target: dbmod.DatabaseTarget
    timeout_s: float
    max_rows: int
    distinct: str
    exact_set: bool
    preview_rows: int


def _preview(result: dbmod.QueryResult | None, n: int) -> list[list[Any]] | None:
    if result is None:
        return None
    return [[v if isinstance(v, (int, float, str)) or v is None else repr(v) for v in row]
            for row in result.rows[:n]]


def score_execution(gold_sql: str, predicted_sql: str, database: dbmod.Database,
                    scoring: Scoring) -> dict[str, Any]:
    """Execution-based fields for one pair: match, validity, error and result relation."""
    out: dict[str, Any] = {"execution_match": False, "prediction_valid": False,
                           "error_kind": "", "error": "", "relation": "", "gold_rows": None,
                           "pred_rows": None, "gold_preview": None, "pred_preview": None}
    if scoring.distinct == "strip":
        gold_sql, predicted_sql = strip_distinct(gold_sql), strip_distinct(predicted_sql)

    def run(sql: str) -> dbmod.QueryResult:
        return database.execute(sql, timeout_s=scoring.timeout_s, max_rows=scoring.max_rows)

    try:
        gold = run(gold_sql)
    except dbmod.QueryError as err:
        # A gold query that fails cannot be scored; say so rather than count it either way.
        out.update(error_kind="gold_failed", error=err.message)
        return out
    out.update(gold_rows=len(gold.rows), gold_preview=_preview(gold, scoring.preview_rows))
    if not predicted_sql.strip():
        out.update(error_kind="empty", error="no SQL in the model's output")
        return out
    try:
        predicted = run(predicted_sql)
    except dbmod.QueryError as err:
        out.update(error_kind=err.kind, error=err.message)
        return out
    order_matters = has_order_by(gold_sql, database.dialect)
    relation = dbmod.result_relation(gold, predicted, order_matters=order_matters)
    out.update(prediction_valid=True, execution_match=relation == "same", relation=relation,
               pred_rows=len(predicted.rows),
               pred_preview=_preview(predicted, scoring.preview_rows))
    return out


def score_item(row: dict[str, Any], column: str, database: dbmod.Database, scoring: Scoring
               ) -> dict[str, Any]:
    """All metrics and diagnostics for one prediction against its gold query."""
    began = time.perf_counter()
    prediction = row.get(column) or ""
    gold = row["query"]
    item = {"id": row["id"], "db_id": row.get("db_id", ""), "column": column,
            "question": row["question"], "query": gold, "prediction": prediction,
            "exact_match": exact_match(gold, prediction),
            "exact_set_match": (exact_set_match(gold, prediction) if scoring.exact_set
                                else None),
            "token_match": round(token_match_score(gold, prediction), 4),
            "difficulty": spider_hardness(gold), "features": sql_features(gold)}
    gold_to_run = row.get("query_for_database") or gold
    if gold_to_run != gold:
        item["gold_executed"] = gold_to_run
    item.update(score_execution(gold_to_run, prediction, database, scoring))
    item["seconds"] = round(time.perf_counter() - began, 4)
    return item


def _score_chunk(rows: list[dict[str, Any]], columns: list[str], scoring: Scoring
                 ) -> list[dict[str, Any]]:
    """Worker: score rows (of one database, mostly) with its own read-only connections."""
    with dbmod.Databases(scoring.target) as databases:
        return [score_item(row, column, databases.get(row.get("db_id", "")), scoring)
                for row in rows for column in columns]


def _chunks(rows: list[dict[str, Any]], workers: int) -> list[list[dict[str, Any]]]:
    """Rows grouped by database, then cut so every worker gets several pieces of work."""
    by_db: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_db[row.get("db_id", "")].append(row)
    size = max(8, len(rows) // (workers * 4) + 1)
    return [group[i: i + size] for group in by_db.values() for i in range(0, len(group), size)]


def score_all(rows: list[dict[str, Any]], columns: list[str], scoring: Scoring,
              workers: int) -> list[dict[str, Any]]:
    """Score every row for every column; in ``workers`` processes when more than one."""
    if workers <= 1 or len(rows) < 16:
        return _score_chunk(rows, columns, scoring)
    items: list[dict[str, Any]] = []
    chunks = _chunks(rows, workers)
    with ProcessPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(rows), desc="scoring", unit="q") as bar:
        for chunk, scored in zip(chunks, pool.map(_score_chunk, chunks,
                                                  [columns] * len(chunks),
                                                  [scoring] * len(chunks)), strict=True):
            items.extend(scored)
            bar.update(len(chunk))
    order = {row["id"]: i for i, row in enumerate(rows)}
    return sorted(items, key=lambda item: (order[item["id"]], columns.index(item["column"])))


def _rate(items: list[dict[str, Any]], key: str) -> float:
    return round(sum(float(i[key]) for i in items) / len(items), 4) if items else 0.0


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline rates, error and relation counts, and breakdowns by difficulty and feature."""
    scored = [i for i in items if i["error_kind"] != "gold_failed"]
    errors: dict[str, int] = defaultdict(int)
    relations: dict[str, int] = defaultdict(int)
    for item in scored:
        if item["error_kind"]:
            errors[item["error_kind"]] += 1
        if item["relation"]:
            relations[item["relation"]] += 1

    def breakdown(groups: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        return {name: {"count": len(group), "execution_accuracy": _rate(group, "execution_match"),
                       "exact_match": _rate(group, "exact_match")}
                for name, group in groups.items() if group}

    by_difficulty = {d: [i for i in scored if i["difficulty"] == d] for d in HARDNESS_LEVELS}
    features = sorted({f for i in scored for f in i["features"]})
    by_feature = {f: [i for i in scored if f in i["features"]] for f in features}
    with_set = [i for i in scored if i["exact_set_match"] is not None]
    return {"items": len(scored), "gold_failed": len(items) - len(scored),
            "execution_accuracy": _rate(scored, "execution_match"),
            "exact_match": _rate(scored, "exact_match"),
            "exact_set_match": _rate(with_set, "exact_set_match") if with_set else None,
            "token_match": _rate(scored, "token_match"),
            "valid_sql_rate": _rate(scored, "prediction_valid"),
            "errors": dict(errors), "relations": dict(relations),
            "by_difficulty": breakdown(by_difficulty), "by_feature": breakdown(by_feature)}


def _columns(rows: list[dict[str, Any]], setting: str, source: Path) -> tuple[list[str], str]:
    """The columns to score (raw and corrected side by side) and the headline one."""
    present = [c for c in ("sql", "corrected") if rows and c in rows[0]]
    headline = ("corrected" if "corrected" in present else "sql") if setting == "auto" \
        else setting
    if rows and headline not in rows[0]:
        raise QueryCraftError(f"evaluate.prediction_column '{headline}' is not in {source}'s "
                              f"predictions; its columns are {', '.join(rows[0])}.")
    return sorted(set(present) | {headline}, key=lambda c: (c != "sql", c)), headline


def _write_items_csv(path: Path, items: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=ITEM_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for item in items:
            writer.writerow({**item, "features": ";".join(item["features"])})


def run(cfg: DictConfig) -> Path:
    """Score the predictions of the run named by ``evaluate.predictions_dir``.

    Returns:
        The run folder, holding ``items.csv``, ``items.jsonl``, ``summary.json`` and
        ``report.html``.
    """
    from querycraft.report import render_run_report

    with start_run(cfg, "evaluate") as run_:
        began = time.perf_counter()
        source = resolve_run(cfg.evaluate.predictions_dir, cfg.paths.output_dir,
                             ("infer", "correct"), "evaluate.predictions_dir")
        given = PredictionsArtifact.read(source)
        rows = read_jsonl(given.predictions)
        columns, headline = _columns(rows, cfg.evaluate.prediction_column, source)
        target = dbmod.target_from_config(cfg.db, given.sqlite_database())
        if not target.is_server and not target.location:
            raise QueryCraftError("No database to run the SQL on: the dataset was ingested "
                                  "without one. Set db.path to a SQLite file or folder, or "
                                  "use a server (db=postgres).")
        scoring = Scoring(target=target, timeout_s=cfg.db.timeout_s,
                          max_rows=cfg.db.max_rows, distinct=cfg.evaluate.distinct,
                          exact_set=cfg.evaluate.exact_set_match,
                          preview_rows=cfg.evaluate.preview_rows)
        gold_dialect = _dataset_dialect(given, cfg.data.dialect)
        if gold_dialect != target.dialect:
            rows = fit_gold_to_database(rows, target, gold_dialect)
        workers = cfg.evaluate.workers or os.cpu_count() or 1
        items = score_all(rows, columns, scoring, workers)

        per_column = {c: summarize([i for i in items if i["column"] == c]) for c in columns}
        finetune = given.finetune()
        summary = {**per_column[headline], "column": headline,
                   "columns": {c: {k: s[k] for k in ("execution_accuracy", "exact_match",
                                                     "exact_set_match", "token_match",
                                                     "valid_sql_rate")}
                               for c, s in per_column.items()},
                   "predictions": str(source), "model": given.base_model,
                   "adapter": given.adapter,
                   "peft": dict(finetune.peft) if finetune and finetune.peft else None,
                   "dataset": str(given.dataset_run) if given.dataset_run else None,
                   "database": target.describe(),
                   "distinct": cfg.evaluate.distinct, "workers": workers,
                   "seconds": round(time.perf_counter() - began, 2)}
        _write_items_csv(run_.path("items.csv"), items)
        write_jsonl(run_.path("items.jsonl"), items)
        run_.path("report.html").write_text(render_run_report(summary, items),
                                            encoding="utf-8")
        EvaluationArtifact(summary=summary).write(run_)  # summary.json and the manifest
        for column, s in per_column.items():
            log.info("evaluate (%s): execution accuracy %.3f, exact match %.3f, token match "
                     "%.3f, valid SQL %.3f over %d items", column, s["execution_accuracy"],
                     s["exact_match"], s["token_match"], s["valid_sql_rate"], s["items"])
        log.info("evaluate: report in %s", run_.path("report.html"))
    return run_.dir


def _dataset_dialect(predictions: PredictionsArtifact, default: str) -> str:
    """The dialect the dataset's gold SQL is in, as its ingest run recorded it; ``default``
    (``data.dialect``) when no ingest run says."""
    try:
        ingest = predictions.ingest()
    except QueryCraftError:  # not a finished ingest run: no say in the matter
        return default
    return (ingest.dialect if ingest else None) or default


def fit_gold_to_database(rows: list[dict[str, Any]], target: dbmod.DatabaseTarget,
                         gold_dialect: str) -> list[dict[str, Any]]:
    """Gold queries written for another dialect, rewritten for the database's (with the
    schema read from it), as ``query_for_database``; ``query`` stays as written for the
    text metrics."""
    from querycraft.correction import correct_sql

    schemas: dict[str, dict[str, list[str]]] = {}
    fitted = []
    with dbmod.Databases(target) as databases:
        for row in tqdm(rows, desc=f"fitting gold SQL to {target.dialect}", unit="q"):
            db_id = row.get("db_id", "")
            if db_id not in schemas:
                schemas[db_id] = databases.get(db_id).columns_by_table()
            sql = correct_sql(row["query"], schema=schemas[db_id], read_dialect=gold_dialect,
                              write_dialect=target.dialect).sql
            fitted.append({**row, "query_for_database": sql})
    log.info("evaluate: gold SQL (%s) fitted to %s for %s", gold_dialect, target.dialect,
             target.describe())
    return fitted

