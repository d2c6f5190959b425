"""Correct: clean generated SQL into a runnable statement, next to the raw columns.

Reads an infer run's ``predictions.jsonl`` (never writes to it) and writes a new run folder
whose ``predictions.jsonl`` has every input column plus:

* ``corrected``: the query after the rules of :mod:`querycraft.correction`;
* ``rules_fired``: the rules that changed it, comma-separated;
* ``unresolved``: what no rule could fix (a list of sentences);
* ``valid``: whether SQLite accepts the corrected query (compiled with ``EXPLAIN``, not run;
  null when not checked) and ``validation_error``: its message otherwise;
* ``correction_error``: empty, or why this row could not be corrected ("too_large: ...",
  "too_complex: ...", "budget: ...", "crashed: ..."); the row then keeps the model's
  extracted SQL unchanged and the run goes on.

Generated SQL is hostile input: text over ``db.max_sql_bytes`` is not parsed, each row has a
wall-clock budget (``correct.item_budget_s``), and any error in one row is that row's.

The schema for the identifier rule comes from the row's ``context`` (the CREATE TABLE text
the model saw), else from the dataset row with the same id in the infer run's dataset, else
from the database itself.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft.artifacts import PREDICTIONS_FILE, IngestArtifact, PredictionsArtifact
from querycraft.correction import RULES, Correction, correct_sql, dialect_known
from querycraft.db import Databases
from querycraft.ddl import schema_from_ddl
from querycraft.engines.base import TooLarge
from querycraft.engines.sqlite import check_sql_size
from querycraft.errors import QueryCraftError
from querycraft.prompts import load_template
from querycraft.runs import read_jsonl, resolve_run, start_run, write_jsonl
from querycraft.sql import BudgetExceeded, time_budget
from querycraft.targets import target_from_config

__all__ = ["run"]

log = logging.getLogger("querycraft")


@dataclass
class CorrectConfig:
    # An infer run folder; null: the newest completed infer run under output/.
    predictions_dir: str | None = None
    # The model's SQL is read in data.dialect (the gold SQL it was trained on) and written in
    # this dialect: by default the target database's (db.kind's engine), so corrected SQL
    # runs there and is validated there. Set it to write for another database.
    target_dialect: str = "${qc_engine:${db.kind},dialect}"
    # The correction rules, each on or off (docs/CORRECT.md), in the order they run: every
    # rule of querycraft/correction/rules RULES, on.
    rules: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(RULES, True))
    # Check each corrected query against the database (EXPLAIN: compiled, not run).
    validate: bool = True
    # fix_identifiers: the most edits between a wrong name and the one it is replaced by
    # (also at most one edit per 4 characters of the name, and never on ties).
    max_edit_distance: int = 2
    # Ask the model again, at most this many times, for a query the database still refuses:
    # the prompt (prompts/<self_correct_template>.txt) shows the refused query and the error.
    # 0: off. Uses the model of the infer run, with infer.* generation settings.
    self_correct_rounds: int = 0
    self_correct_template: str = "self_correct"
    # Wall-clock seconds one row's correction and validation may take; past it the row
    # keeps its extracted SQL and says why in correction_error.
    item_budget_s: float = 30.0


SETTINGS = CorrectConfig


def check(cfg: DictConfig) -> list[str]:
    """With service=correct: the rules, dialects and self-correction settings."""
    if cfg.service.name != "correct":
        return []
    settings, problems = cfg.correct, []
    unknown_rules = sorted(set(settings.rules) - set(RULES))
    if unknown_rules:
        problems.append(f"correct.rules has unknown rule(s) {', '.join(unknown_rules)}; "
                        f"the rules are {', '.join(RULES)}")
    for key, value in (("data.dialect", cfg.data.dialect),
                       ("correct.target_dialect", settings.target_dialect)):
        if not dialect_known(value):
            problems.append(f"{key} '{value}' is not a sqlglot dialect")
    if settings.max_edit_distance < 0:
        problems.append("correct.max_edit_distance must be 0 or more")
    if not settings.item_budget_s > 0:
        problems.append(f"correct.item_budget_s must be positive seconds, got "
                        f"{settings.item_budget_s}")
    if settings.self_correct_rounds < 0:
        problems.append("correct.self_correct_rounds must be 0 or more")
    if settings.self_correct_rounds:
        try:
            load_template(settings.self_correct_template, cfg.paths.prompts_dir)
        except QueryCraftError as err:
            problems.append(str(err))
    return problems



class _Schemas:
    """The schema of each prediction row, read once per context text or database."""

    def __init__(self, ingest: IngestArtifact | None, databases: Databases | None,
                 dialect: str) -> None:
        self.dialect = dialect
        self.databases = databases
        self.contexts: dict[str, str] = {}
        if ingest is not None and ingest.dataset is not None:
            for split in ("train", "eval"):
                path = ingest.dataset / f"{split}.jsonl"
                if path.is_file():
                    for row in read_jsonl(path):
                        if row.get("context"):
                            self.contexts[str(row["id"])] = row["context"]
        self._by_context: dict[str, dict[str, list[str]]] = {}
        self._by_db: dict[str, dict[str, list[str]] | None] = {}

    def for_row(self, row: dict[str, Any]) -> dict[str, list[str]] | None:
        context = row.get("context") or self.contexts.get(str(row.get("id")))
        if context:
            if context not in self._by_context:
                self._by_context[context] = schema_from_ddl(context, self.dialect)
            if self._by_context[context]:
                return self._by_context[context]
        return self._from_database(str(row.get("db_id") or ""))

    def _from_database(self, db_id: str) -> dict[str, list[str]] | None:
        if self.databases is None:
            return None
        if db_id not in self._by_db:
            try:
                self._by_db[db_id] = self.databases.get(db_id).columns_by_table() or None
            except QueryCraftError as err:
                log.warning("correct: no schema for database %r: %s", db_id, err)
                self._by_db[db_id] = None
        return self._by_db[db_id]


def _validator(databases: Databases | None, target: str):
    """``row, sql -> (valid, error)``: the database's verdict (the query compiled, not run),
    or (None, "") when not checkable (no database, or SQL written for another dialect)."""
    failed: set[str] = set()

    def check(row: dict[str, Any], sql: str) -> tuple[bool | None, str]:
        db_id = str(row.get("db_id") or "")
        if databases is None or target != databases.target.dialect or db_id in failed:
            return None, ""
        try:
            database = databases.get(db_id)
        except QueryCraftError as err:
            log.warning("correct: cannot validate against database %r: %s", db_id, err)
            failed.add(db_id)
            return None, ""
        error = database.check(sql)
        return error is None, error or ""

    return check


def _guarded_correction(text: str, fallback: str, *, budget_s: float, max_sql_bytes: int,
                        check, row: dict[str, Any], **options: Any
                        ) -> tuple[Correction, bool | None, str, str]:
    """``correct_sql`` and validation for one row, isolated: (correction, valid,
    validation_error, correction_error). Text over ``max_sql_bytes`` is not parsed, the
    row has ``budget_s`` seconds, and any failure leaves ``fallback`` (the extracted SQL)
    unchanged with the reason in correction_error."""
    try:
        check_sql_size(text, max_sql_bytes)
        too_large = None
    except TooLarge as err:
        too_large = err
    if too_large is not None:
        why = f"too_large: {too_large.message}"
    else:
        try:
            with time_budget(budget_s):
                fixed = correct_sql(text, **options)
                valid, error = check(row, fixed.sql)
            return fixed, valid, error, ""
        except QueryCraftError:
            raise
        except BudgetExceeded:
            why = (f"budget: correcting this row took longer than {budget_s:g} s "
                   "(correct.item_budget_s)")
        except RecursionError:
            why = "too_complex: the SQL is nested too deeply to analyse"
        except Exception as err:  # one row's failure must not end the run
            why = f"crashed: {type(err).__name__}: {str(err)[:1000]}"
    log.warning("correct: row %s left uncorrected (%s)", row.get("id"), why[:200])
    return Correction(sql=fallback, fired=[], unresolved=[why]), None, "", why


def _self_correct(cfg: DictConfig, predictions: PredictionsArtifact, out: list[dict[str, Any]],
                  schemas: _Schemas, check, rules: dict[str, bool]) -> dict[str, int]:
    """Ask the infer run's model again for each query SQLite still refuses, with the error.

    At most ``correct.self_correct_rounds`` rounds; a new answer goes through the same rules
    and validation, and replaces the corrected query only once SQLite accepts it. The model
    is asked through the backend ``infer.backend`` names, as infer would: loaded here from
    the infer run's model (hf, vllm), or the server of ``infer.server`` (openai).
    """
    from querycraft.backends import ModelSource, make_backend
    from querycraft.generation import GenerationSettings
    from querycraft.prompts import render_prompt
    from querycraft.sql import extract_sql

    settings = cfg.correct
    failing = [r for r in out if r["valid"] is False]
    stats = {"rounds": settings.self_correct_rounds, "asked": 0, "fixed": 0}
    for row in out:
        row["self_correct_attempts"] = 0
    if not failing:
        return stats
    source = (ModelSource(base=predictions.base_model, adapter=predictions.adapter,
                          merged=predictions.merged_model)
              if predictions.base_model else None)
    if source is None and cfg.infer.backend != "openai":
        raise QueryCraftError(
            "correct.self_correct_rounds needs the model that wrote the SQL, but the infer "
            "run names none (it asked a server). Ask that server again (infer.backend=openai "
            "and its infer.server.* settings), or set correct.self_correct_rounds=0.")
    template = load_template(settings.self_correct_template, cfg.paths.prompts_dir)
    backend = make_backend(cfg, source)
    generation = GenerationSettings.from_config(cfg.infer, template.stop_string)
    target = settings.target_dialect
    last_attempt = {id(r): r["corrected"] for r in failing}  # what the next prompt shows
    for _ in range(settings.self_correct_rounds):
        if not failing:
            break
        prompts = [render_prompt(
            template, question=r["question"],
            context=r.get("context") or schemas.contexts.get(str(r.get("id")), ""),
            dialect=cfg.prompt.dialect_name, db_id=str(r.get("db_id") or ""),
            previous_sql=last_attempt[id(r)], error=r["validation_error"]) for r in failing]
        still = []
        for indices, generations in backend.generate_batches(prompts, generation):
            for i, generated in zip(indices, generations, strict=True):
                row = failing[i]
                row["self_correct_attempts"] += 1
                stats["asked"] += 1
                fixed, valid, error, _ = _guarded_correction(
                    extract_sql(generated.text), row["corrected"], budget_s=settings.item_budget_s,
                    max_sql_bytes=cfg.db.max_sql_bytes, check=check, row=row,
                    schema=schemas.for_row(row), read_dialect=cfg.data.dialect,
                    write_dialect=target, rules=rules,
                    max_edit_distance=settings.max_edit_distance)
                if valid:
                    stats["fixed"] += 1
                    row.update(corrected=fixed.sql, valid=True, validation_error="",
                               rules_fired=",".join(filter(None, [row["rules_fired"],
                                                                  "self_correct"])))
                else:
                    row["validation_error"] = error or row["validation_error"]
                    last_attempt[id(row)] = fixed.sql
                    still.append(row)
        failing = still
    log.info("correct: asked the model %d time(s) again; %d more queries accepted",
             stats["asked"], stats["fixed"])
    return stats


def run(cfg: DictConfig) -> Path:
    """Add the corrected query (and what the rules did) to an infer run's predictions.

    Returns:
        The run folder, holding its own ``predictions.jsonl``.
    """
    settings = cfg.correct
    read_dialect, target = cfg.data.dialect, settings.target_dialect
    rules = {name: bool(on) for name, on in OmegaConf.to_container(settings.rules).items()}
    with start_run(cfg, "correct") as run_:
        source = resolve_run(settings.predictions_dir, cfg.paths.output_dir, "infer",
                             "correct.predictions_dir")
        given = PredictionsArtifact.read(source)
        rows = read_jsonl(given.predictions)
        db_target = target_from_config(cfg.db, given.sqlite_database())
        usable = db_target.is_server or (db_target.location is not None
                                         and Path(db_target.location).exists())
        databases = Databases(db_target) if usable else None
        schemas = _Schemas(given.ingest(), databases, read_dialect)
        check = _validator(databases if settings.validate else None, target)
        fired_counts: Counter[str] = Counter()
        out = []
        try:
            for row in rows:
                text = row.get("raw_output") or row.get("sql") or ""
                fixed, valid, error, failure = _guarded_correction(
                    text, row.get("sql") or "", budget_s=settings.item_budget_s,
                    max_sql_bytes=cfg.db.max_sql_bytes, check=check, row=row,
                    schema=schemas.for_row(row), read_dialect=read_dialect,
                    write_dialect=target, rules=rules,
                    max_edit_distance=settings.max_edit_distance)
                fired_counts.update(fixed.fired)
                out.append({**row, "corrected": fixed.sql, "rules_fired": ",".join(fixed.fired),
                            "unresolved": fixed.unresolved, "valid": valid,
                            "validation_error": error, "correction_error": failure})
            self_correction = (_self_correct(cfg, given, out, schemas, check, rules)
                               if settings.self_correct_rounds else None)
        finally:
            if databases is not None:
                databases.close()
        path = run_.path(PREDICTIONS_FILE)
        write_jsonl(path, out)
        changed = sum(bool(r["rules_fired"]) for r in out)
        checked = [r["valid"] for r in out if r["valid"] is not None]
        # The model and dataset pass on: evaluate reads them from the run it scores.
        PredictionsArtifact(
            predictions=path, count=len(out), base_model=given.base_model,
            adapter=given.adapter, merged_model=given.merged_model, backend=given.backend,
            dataset_run=given.dataset_run,
            database=db_target.describe() if usable else None, database_kind=db_target.kind,
            source=source, dialect=target,
            correction={"changed": changed, "valid": sum(checked) if checked else None,
                        "validated": len(checked),
                        "unresolved": sum(bool(r["unresolved"]) for r in out),
                        "fired": dict(fired_counts), "read_dialect": read_dialect,
                        "self_correction": self_correction}).write(run_)
        log.info("correct: %d of %d queries changed (%s); %s", changed, len(out),
                 ", ".join(f"{k} {v}" for k, v in fired_counts.most_common()) or "no rule fired",
                 path)
        if checked:
            log.info("correct: %d of %d corrected queries accepted by %s", sum(checked),
                     len(checked), db_target.describe())
    return run_.dir
