"""Correct: clean generated SQL into a runnable statement, next to the raw column.

This first version applies the parser-based cleaning rules (extract the statement from
chatter, keep one statement, normalise its layout with sqlglot when it parses); it writes a
new run folder and never touches its input.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlglot
from omegaconf import DictConfig

from querycraft.runs import read_jsonl, read_manifest, resolve_run, start_run, write_jsonl
from querycraft.sql import extract_sql

log = logging.getLogger("querycraft")


def correct_sql(raw: str, dialect: str = "sqlite") -> tuple[str, list[str]]:
    """The corrected statement and the names of the rules that changed it."""
    fired: list[str] = []
    sql = extract_sql(raw)
    if sql != raw.strip():
        fired.append("extract_statement")
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError:  # unparseable (or untokenizable): leave it as is
        return sql, fired
    rendered = tree.sql(dialect=dialect)
    if rendered != sql:
        fired.append("reformat")
    return rendered, fired


def run(cfg: DictConfig) -> Path:
    """Add a ``corrected`` column (and the rules that fired) to an infer run's predictions.

    Returns:
        The run folder, holding its own ``predictions.jsonl``.
    """
    with start_run(cfg, "correct") as run_:
        source = resolve_run(cfg.correct.predictions_dir, cfg.paths.output_dir, "infer",
                             "correct.predictions_dir")
        info = read_manifest(source)
        rows = read_jsonl(source / "predictions.jsonl")
        for row in rows:
            row["corrected"], fired = correct_sql(row["raw_output"], cfg.data.dialect)
            row["rules_fired"] = ",".join(fired)
        write_jsonl(run_.path("predictions.jsonl"), rows)
        changed = sum(bool(r["rules_fired"]) for r in rows)
        run_._write(source=str(source), count=len(rows), changed=changed,
                    base_model=info.get("base_model"), adapter=info.get("adapter"),
                    database=info.get("database"), dataset_dir=info.get("dataset_dir"))
        log.info("correct: %d of %d queries changed; %s", changed, len(rows),
                 run_.path("predictions.jsonl"))
    return run_.dir
