"""Evaluate: score predictions by running them (execution accuracy), by exact match after
normalisation, and by token match; write per-item results and a summary.

Every query runs through the shared read-only execution layer, with a timeout and a row cap,
so a prediction that tries to write is refused and one that runs forever is stopped.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from querycraft import db as dbmod
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest, resolve_run, start_run
from querycraft.sql import exact_match, has_order_by, token_match_score

log = logging.getLogger("querycraft")

ITEM_COLUMNS = ["id", "db_id", "question", "query", "prediction", "execution_match",
                "exact_match", "token_match", "prediction_valid", "error_kind", "error"]


def score_item(row: dict[str, Any], prediction: str, connection: Any, cfg: DictConfig
               ) -> dict[str, Any]:
    """All metrics for one prediction against its gold query."""
    item = {"id": row["id"], "db_id": row.get("db_id", ""), "question": row["question"],
            "query": row["query"], "prediction": prediction,
            "exact_match": exact_match(row["query"], prediction),
            "token_match": round(token_match_score(row["query"], prediction), 4),
            "execution_match": False, "prediction_valid": False, "error_kind": "", "error": ""}
    run = lambda sql: dbmod.execute_readonly(  # noqa: E731
        connection, sql, timeout_s=cfg.db.timeout_s, max_rows=cfg.db.max_rows)
    try:
        gold = run(row["query"])
    except dbmod.QueryError as err:
        # A gold query that fails cannot be scored; say so rather than count it either way.
        item.update(error_kind="gold_failed", error=err.message)
        return item
    if not prediction.strip():
        item.update(error_kind="empty", error="no SQL in the model's output")
        return item
    try:
        predicted = run(prediction)
    except dbmod.QueryError as err:
        item.update(error_kind=err.kind, error=err.message)
        return item
    item["prediction_valid"] = True
    item["execution_match"] = dbmod.results_match(gold, predicted,
                                                  order_matters=has_order_by(row["query"]))
    return item


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [i for i in items if i["error_kind"] != "gold_failed"]
    n = len(scored)
    mean = lambda key: round(sum(float(i[key]) for i in scored) / n, 4) if n else 0.0  # noqa: E731
    errors: dict[str, int] = {}
    for item in scored:
        if item["error_kind"]:
            errors[item["error_kind"]] = errors.get(item["error_kind"], 0) + 1
    return {"items": n, "gold_failed": len(items) - n,
            "execution_accuracy": mean("execution_match"), "exact_match": mean("exact_match"),
            "token_match": mean("token_match"), "valid_sql_rate": mean("prediction_valid"),
            "errors": errors}


def run(cfg: DictConfig) -> Path:
    """Score the predictions of the run named by ``evaluate.predictions_dir``.

    Returns:
        The run folder, holding ``items.csv`` and ``summary.json``.
    """
    with start_run(cfg, "evaluate") as run_:
        source = resolve_run(cfg.evaluate.predictions_dir, cfg.paths.output_dir,
                             ("infer", "correct"), "evaluate.predictions_dir")
        info = read_manifest(source)
        rows = read_jsonl(source / "predictions.jsonl")
        column = cfg.evaluate.prediction_column
        if rows and column not in rows[0]:
            raise QueryCraftError(f"evaluate.prediction_column '{column}' is not in {source}'s "
                                  f"predictions; its columns are {', '.join(rows[0])}.")
        database = cfg.db.path or info.get("database")
        if not database:
            raise QueryCraftError("No database to run the SQL on: the dataset was ingested "
                                  "without one. Set db.path to a SQLite file or folder.")
        connections = dbmod.SqliteDatabases(database)
        try:
            items = [score_item(r, r[column] or "", connections.connection(r.get("db_id", "")), cfg)
                     for r in rows]
        finally:
            connections.close()
        with run_.path("items.csv").open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=ITEM_COLUMNS)
            writer.writeheader()
            writer.writerows(items)
        summary = {**summarize(items), "predictions": str(source), "column": column,
                   "model": info.get("base_model"), "adapter": info.get("adapter"),
                   "database": database}
        run_.path("summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        run_._write(summary=summary)
        log.info("evaluate: execution accuracy %.3f, exact match %.3f, token match %.3f, "
                 "valid SQL %.3f over %d items; details in %s", summary["execution_accuracy"],
                 summary["exact_match"], summary["token_match"], summary["valid_sql_rate"],
                 summary["items"], run_.path("items.csv"))
    return run_.dir
