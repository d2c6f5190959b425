"""Evaluate: score predictions by running them (execution accuracy with the semantics of
Spider's test-suite evaluator), by exact and exact-set match, and by token match; diagnose
every miss; write items, a summary and an HTML report.

Every query runs through the shared read-only execution layer, with a timeout, a row cap and
byte bounds (the SQL text before it is parsed, each value, the whole result), in worker
processes (one per core by default), so a prediction that tries to write is refused, one that
runs forever is stopped and counted as a timeout, and the evaluation goes on. Raw and
corrected SQL are scored side by side when the predictions carry both.

Generated SQL is hostile input, so every item is isolated: it has a wall-clock budget
(``evaluate.item_budget_s``) covering parsing, execution and scoring, and whatever goes wrong
in it (a parser's recursion, a lost connection, a worker process that dies) becomes that
item's ``error_kind`` while the run goes on, with a fresh connection where one died. Long SQL
text and values are cut, with a visible marker, in ``items.jsonl`` and the report.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import time
from collections import defaultdict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm.auto import tqdm

from querycraft import db as dbmod
from querycraft.artifacts import (
    COLUMN_METRICS,
    EvaluationArtifact,
    EvaluationSummary,
    PredictionsArtifact,
)
from querycraft.compare import ResultDigest, digest_permutations, result_relation
from querycraft.engines.base import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_SQL_BYTES,
    DEFAULT_MAX_VALUE_BYTES,
    ERROR_KINDS,
    QueryError,
    QueryResult,
    TooLarge,
)
from querycraft.engines.sqlite import check_sql_size
from querycraft.errors import QueryCraftError
from querycraft.report import cut_value
from querycraft.runs import read_jsonl, resolve_run, start_run, write_jsonl
from querycraft.sql import (
    BudgetExceeded,
    exact_match,
    has_order_by,
    join_split_operators,
    mentions_order_by,
    time_budget,
    token_match_score,
)
from querycraft.sql_analysis import (
    HARDNESS_LEVELS,
    exact_set_match,
    spider_hardness,
    sql_features,
    strip_distinct,
)
from querycraft.targets import DatabaseTarget, target_from_config

log = logging.getLogger("querycraft")


@dataclass
class EvaluateConfig:
    # An infer or correct run folder; null: the newest completed infer or correct run under
    # output/ that answered a dataset's questions (one-question runs are passed over).
    predictions_dir: str | None = None
    # The headline column: "sql" (raw, extracted), "corrected", or "auto" (corrected when the
    # predictions have it, else sql). Both are scored side by side when both exist.
    prediction_column: str = "auto"
    # Worker processes running queries; null: one per CPU core.
    workers: int | None = None
    # DISTINCT in SELECT: "keep" (stricter: a missing or extra DISTINCT can change the
    # result) or "strip" from gold and prediction alike, as the official Spider evaluator does.
    distinct: str = "keep"
    # When row order counts: "text" (the official Spider evaluator's rule: whenever the gold
    # query's text contains "order by", in a subquery or a string too) or "outer" (only when
    # the outermost query orders its rows).
    order_rule: str = "text"
    # An operator split by a space ("> =", "< =", "! ="): "join" it before running, in gold
    # and prediction alike, as the official evaluator does, or "error" (the database's
    # syntax error stands).
    split_operators: str = "join"
    # Non-integral numbers: null compares them exactly (the official evaluator); a number
    # rounds them to that many significant digits first (6: 0.1 + 0.2 equals 0.3).
    float_digits: int | None = None
    # Also score Spider's exact-set (component) match, values ignored.
    exact_set_match: bool = True
    # Rows of each result kept in items.jsonl and the HTML report.
    preview_rows: int = 5
    # Wall-clock seconds one item may take in all: parsing, running the gold query and the
    # prediction (each query also within db.timeout_s), and scoring. Past it the item is
    # recorded with error_kind "budget" and the run goes on.
    item_budget_s: float = 60.0
    # In items.jsonl and report.html, result values longer than this many characters, and
    # SQL text and error messages longer than max_text_chars, are cut with a marker.
    preview_value_chars: int = 200
    max_text_chars: int = 10_000


# No dialect setting: gold SQL of another dialect than the database's (Spider's SQLite gold on
# PostgreSQL) is fitted to it first, read in the dataset's dialect (data.dialect at ingest).
SETTINGS = EvaluateConfig
ORDER_RULES = ("text", "outer")


def check(cfg: DictConfig) -> list[str]:
    """The evaluate.* settings."""
    settings, problems = cfg.evaluate, []
    if settings.distinct not in ("keep", "strip"):
        problems.append(f"evaluate.distinct must be 'keep' or 'strip', got "
                        f"'{settings.distinct}'")
    if settings.order_rule not in ORDER_RULES:
        problems.append(f"evaluate.order_rule must be one of {', '.join(ORDER_RULES)}, got "
                        f"'{settings.order_rule}'")
    if settings.split_operators not in ("join", "error"):
        problems.append(f"evaluate.split_operators must be 'join' or 'error', got "
                        f"'{settings.split_operators}'")
    if settings.float_digits is not None and not 1 <= settings.float_digits <= 17:
        problems.append(f"evaluate.float_digits must be null (exact) or 1 to 17 significant "
                        f"digits, got {settings.float_digits}")
    if settings.workers is not None and settings.workers < 1:
        problems.append("evaluate.workers must be at least 1 (or null for one per core)")
    if not settings.item_budget_s > 0:
        problems.append(f"evaluate.item_budget_s must be positive seconds, got "
                        f"{settings.item_budget_s}")
    for key in ("preview_value_chars", "max_text_chars"):
        if settings[key] < 1:
            problems.append(f"evaluate.{key} must be at least 1, got {settings[key]}")
    return problems


ITEM_COLUMNS = ["id", "db_id", "column", "question", "query", "gold_executed", "prediction",
                "execution_match", "exact_match", "exact_set_match", "token_match",
                "prediction_valid", "error_kind", "error", "relation", "difficulty", "features",
                "gold_rows", "pred_rows", "seconds"]
# An item's error_kind, when it has one: the database's kind of error, or evaluate's own:
# too_large (SQL text, a value or the result over a db.max_*_bytes bound), too_complex (too
# deeply nested to analyse: the parser's recursion), connection_lost (the server connection
# died during the query), budget (past evaluate.item_budget_s), crashed (scoring raised, or
# the worker process scoring the item died), not_sql (the output does not begin like any SQL
# statement: a base model's prose, not a refused write).
ITEM_ERROR_KINDS: tuple[str, ...] = (*ERROR_KINDS, "empty", "not_sql", "gold_failed",
                                     "too_large",
                                     "too_complex", "connection_lost", "budget", "crashed")


@dataclass(frozen=True)
class Scoring:
    """The settings a worker needs (picklable)."""

    target: DatabaseTarget
    timeout_s: float
    max_rows: int
    distinct: str
    exact_set: bool
    preview_rows: int
    max_sql_bytes: int = DEFAULT_MAX_SQL_BYTES
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    item_budget_s: float = 60.0
    preview_value_chars: int = 200
    max_text_chars: int = 10_000
    order_rule: str = "text"
    split_operators: str = "join"
    float_digits: int | None = None


def _preview(result: QueryResult | None, n: int, chars: int = 200
             ) -> list[list[Any]] | None:
    if result is None:
        return None
    return [[cut_value(v if isinstance(v, (int, float, str)) or v is None else repr(v), chars)
             for v in row] for row in result.rows[:n]]


# The words an SQL statement of any engine begins with (after comments and an opening
# parenthesis); a prediction that begins with another word is prose, not SQL.
SQL_STATEMENT_WORDS = frozenset((
    "alter", "analyze", "attach", "begin", "call", "checkpoint", "cluster", "comment",
    "commit", "copy", "create", "deallocate", "declare", "delete", "describe", "detach",
    "do", "drop", "end", "exec", "execute", "explain", "grant", "handler", "insert", "load",
    "lock", "merge", "optimize", "pragma", "prepare", "reindex", "release", "rename",
    "replace", "reset", "revoke", "rollback", "savepoint", "select", "set", "show", "start",
    "table", "truncate", "unlock", "update", "upsert", "use", "vacuum", "values", "with"))
_FIRST_WORD = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|#[^\n]*(?:\n|\Z)|\()*"
                         r"([A-Za-z_][A-Za-z0-9_]*)?", re.DOTALL)


def not_sql(text: str) -> bool:
    """Whether ``text`` does not even begin like an SQL statement (prose, a refusal, a
    number): its first word, after comments and parentheses, is no statement keyword."""
    match = _FIRST_WORD.match(text)
    word = match.group(1) if match else None
    return word is None or word.lower() not in SQL_STATEMENT_WORDS


def _query_error_kind(err: QueryError) -> str:
    if isinstance(err, TooLarge):
        return "too_large"
    if isinstance(err, dbmod.ConnectionLost):
        return "connection_lost"
    return err.kind


def order_matters(gold_sql: str, dialect: str, rule: str = "text") -> bool:
    """Whether row order is part of the gold answer: "text", the official Spider evaluator's
    rule (``"order by" in gold.lower()``, wherever it stands), or "outer" (the outermost
    query orders its rows)."""
    if rule == "text":
        return mentions_order_by(gold_sql)
    return has_order_by(gold_sql, dialect)


def score_execution(gold_sql: str, predicted_sql: str, database: dbmod.Database,
                    scoring: Scoring, deadline: float | None = None) -> dict[str, Any]:
    """Execution-based fields for one pair: match, validity, error and result relation.

    Each query gets at most ``db.timeout_s`` and the time left before ``deadline`` (a
    ``time.monotonic()`` value: the item's budget); :class:`BudgetExceeded` when none is
    left. Results cut at ``db.max_rows`` are never compared by their first rows: when only
    one side was cut the two differ in length; when both were, both queries stream their
    whole results into digests (:func:`compare_whole`)."""
    out: dict[str, Any] = {"execution_match": False, "prediction_valid": False,
                           "error_kind": "", "error": "", "relation": "", "gold_rows": None,
                           "pred_rows": None, "gold_preview": None, "pred_preview": None}
    if scoring.distinct == "strip":
        gold_sql, predicted_sql = strip_distinct(gold_sql), strip_distinct(predicted_sql)
    if scoring.split_operators == "join":
        gold_sql, predicted_sql = join_split_operators(gold_sql), join_split_operators(
            predicted_sql)

    def run(sql: str, row_sink: Any = None) -> QueryResult:
        timeout = scoring.timeout_s
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BudgetExceeded
            timeout = min(timeout, left)
        return database.execute(sql, timeout_s=timeout, max_rows=scoring.max_rows,
                                max_sql_bytes=scoring.max_sql_bytes,
                                max_value_bytes=scoring.max_value_bytes,
                                max_result_bytes=scoring.max_result_bytes, row_sink=row_sink)

    try:
        gold = run(gold_sql)
    except dbmod.ConnectionLost as err:
        out.update(error_kind="connection_lost", error=err.message)
        return out
    except QueryError as err:
        # A gold query that fails cannot be scored; say so rather than count it either way.
        out.update(error_kind="gold_failed", error=err.message)
        return out
    chars = scoring.preview_value_chars
    out.update(gold_rows=len(gold.rows), gold_preview=_preview(gold, scoring.preview_rows, chars))
    if not predicted_sql.strip():
        out.update(error_kind="empty", error="no SQL in the model's output")
        return out
    if not_sql(predicted_sql):
        out.update(error_kind="not_sql", error="the output is not SQL: it does not begin "
                                               "with an SQL statement")
        return out
    try:
        predicted = run(predicted_sql)
    except QueryError as err:
        out.update(error_kind=_query_error_kind(err), error=err.message)
        return out
    ordered = order_matters(gold_sql, database.dialect, scoring.order_rule)
    out.update(prediction_valid=True, pred_rows=len(predicted.rows),
               pred_preview=_preview(predicted, scoring.preview_rows, chars))
    if gold.truncated and predicted.truncated:
        try:
            out.update(compare_whole(gold_sql, predicted_sql, run, ordered,
                                     scoring.float_digits))
        except QueryError as err:
            out.update(error_kind=_query_error_kind(err), error=f"while comparing the whole "
                       f"results (both longer than db.max_rows): {err.message}")
        return out
    relation = result_relation(gold, predicted, order_matters=ordered,
                                     float_digits=scoring.float_digits)
    out.update(execution_match=relation == "same", relation=relation)
    return out


def compare_whole(gold_sql: str, predicted_sql: str, run: Any, ordered: bool,
                  float_digits: int | None) -> dict[str, Any]:
    """Compare two results too long for the row cap by streaming each whole result into a
    :class:`ResultDigest` (``run(sql, row_sink)`` runs a query, feeding every row to the
    sink): row counts, then the digest with the prediction's columns as returned, then under
    each other column order its per-column digests allow. Never equal unless the whole
    results are (up to a 128-bit hash collision); when more than 120 column orders would
    have to be tried, the item is reported as too large to compare (``too_large``)."""
    gold, pred = ResultDigest(ordered, float_digits=float_digits), ResultDigest(
        ordered, float_digits=float_digits)
    run(gold_sql, gold.add)
    run(predicted_sql, pred.add)
    fields: dict[str, Any] = {"gold_rows": gold.rows, "pred_rows": pred.rows}
    if gold.width != pred.width:
        return {**fields, "relation": "different_columns"}
    if gold.rows != pred.rows:
        return {**fields, "relation": "more_rows" if pred.rows > gold.rows else "fewer_rows"}
    if gold.digests() == pred.digests():
        return {**fields, "relation": "same", "execution_match": True}
    orders = digest_permutations(gold, pred)
    if orders is None:
        return {**fields, "error_kind": "too_large",
                "error": "both results are longer than db.max_rows and too many column "
                         "orders would have to be compared; not scored as a match"}
    orders = [o for o in orders if o != tuple(range(pred.width or 0))]
    if orders:
        again = ResultDigest(ordered, orders, float_digits=float_digits)
        run(predicted_sql, again.add)
        if gold.digests()[0] in again.digests():
            return {**fields, "relation": "same", "execution_match": True}
    return {**fields, "relation": "different_values"}


def _failed(kind: str, message: str) -> dict[str, Any]:
    """The fields of an item that could not be scored: no match of any kind, and why."""
    return {"exact_match": False, "exact_set_match": False, "token_match": 0.0,
            "execution_match": False, "prediction_valid": False, "error_kind": kind,
            "error": message, "relation": "", "gold_rows": None, "pred_rows": None,
            "gold_preview": None, "pred_preview": None}


def score_item(row: dict[str, Any], column: str, database: dbmod.Database, scoring: Scoring
               ) -> dict[str, Any]:
    """All metrics and diagnostics for one prediction against its gold query.

    Never raises for what the prediction does: SQL text over ``db.max_sql_bytes`` is not
    parsed (too_large), and the parser's recursion (too_complex), a lost connection
    (connection_lost), the item's budget (budget) and any other exception (crashed) become
    the item's error. Only a :class:`QueryCraftError` (the configuration: a database that
    cannot be reached at all) propagates."""
    began = time.perf_counter()
    prediction = row.get(column) or ""
    gold = row["query"]
    text = scoring.max_text_chars
    item: dict[str, Any] = {
        "id": row["id"], "db_id": row.get("db_id", ""), "column": column,
        "question": row["question"], "query": cut_value(gold, text),
        "prediction": cut_value(prediction, text), "difficulty": None, "features": []}
    if row.get("vote") and column == "sql":
        # infer.candidates: how the prediction was chosen, for the report
        item["vote"] = {"groups": row["vote"].get("groups"), "chosen": row["vote"].get("chosen"),
                        "candidates": len(row.get("candidates") or []),
                        "fallback": row["vote"].get("fallback")}
    gold_to_run = row.get("query_for_database") or gold
    if gold_to_run != gold:
        item["gold_executed"] = cut_value(gold_to_run, text)
    try:
        check_sql_size(prediction, scoring.max_sql_bytes)
        too_large = None
    except TooLarge as err:
        too_large = err
    if too_large is not None:
        item.update(_failed("too_large", too_large.message))
        with contextlib.suppress(Exception):  # the gold query's own analysis, if it can
            item.update(difficulty=spider_hardness(gold), features=sql_features(gold))
    else:
        deadline = time.monotonic() + scoring.item_budget_s
        try:
            with time_budget(scoring.item_budget_s):
                item.update(difficulty=spider_hardness(gold), features=sql_features(gold))
                item.update(
                    exact_match=exact_match(gold, prediction),
                    exact_set_match=(exact_set_match(gold, prediction) if scoring.exact_set
                                     else None),
                    token_match=round(token_match_score(gold, prediction), 4))
                item.update(score_execution(gold_to_run, prediction, database, scoring,
                                            deadline))
        except QueryCraftError:
            raise
        except BudgetExceeded:
            item.update(_failed("budget", f"scoring this item took longer than "
                                          f"{scoring.item_budget_s:g} s "
                                          "(evaluate.item_budget_s); it was stopped"))
        except RecursionError:
            item.update(_failed("too_complex", "the SQL is nested too deeply to analyse "
                                               "(the parser ran out of recursion depth)"))
        except Exception as err:
            item.update(_failed("crashed", f"scoring this item failed: "
                                           f"{type(err).__name__}: {err}"))
    if not scoring.exact_set:
        item["exact_set_match"] = None
    item["error"] = cut_value(item["error"], text)
    item["seconds"] = round(time.perf_counter() - began, 4)
    return item


# An item whose connection may be unusable afterwards: its database is opened afresh.
_RESET_AFTER = frozenset({"connection_lost", "budget", "crashed"})

# A worker process's databases, opened on first use and kept for the worker's life.
_WORKER_DATABASES: dict[DatabaseTarget, dbmod.Databases] = {}


def _score_row(row: dict[str, Any], columns: list[str], scoring: Scoring,
               databases: dbmod.Databases | None = None) -> list[dict[str, Any]]:
    """Score one row for every column, on ``databases`` (a worker's own when None)."""
    if databases is None:
        if scoring.target not in _WORKER_DATABASES:
            _WORKER_DATABASES[scoring.target] = dbmod.Databases(scoring.target)
        databases = _WORKER_DATABASES[scoring.target]
    db_id = row.get("db_id", "")
    items = []
    for column in columns:
        item = score_item(row, column, databases.get(db_id), scoring)
        if item["error_kind"] in _RESET_AFTER:
            databases.discard(db_id)
        items.append(item)
    return items


def _crashed(row: dict[str, Any], columns: list[str], scoring: Scoring, why: str
             ) -> list[dict[str, Any]]:
    text = scoring.max_text_chars
    return [{"id": row["id"], "db_id": row.get("db_id", ""), "column": column,
             "question": row["question"], "query": cut_value(row["query"], text),
             "prediction": cut_value(row.get(column) or "", text), "difficulty": None,
             "features": [], **_failed("crashed", why), "seconds": None} for column in columns]


def _by_database(rows: list[dict[str, Any]]) -> list[int]:
    """Row indices grouped by database (a worker then mostly stays on one), in input order
    within each."""
    by_db: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_db[row.get("db_id", "")].append(i)
    return [i for group in by_db.values() for i in group]


def score_all(rows: list[dict[str, Any]], columns: list[str], scoring: Scoring,
              workers: int) -> list[dict[str, Any]]:
    """Score every row for every column; in ``workers`` processes when more than one.

    Each row is its own task. When a worker process dies, the rows it may have been
    scoring (every row not finished when the pool broke) are scored again one at a time in
    a fresh single-worker pool; a row whose worker dies again is recorded as crashed.
    Returns the items in input order (rows, then columns)."""
    if workers <= 1 or len(rows) < 16:
        with dbmod.Databases(scoring.target) as databases:
            return [item for row in rows for item in _score_row(row, columns, scoring,
                                                                 databases)]
    scored: dict[int, list[dict[str, Any]]] = {}
    with tqdm(total=len(rows), desc="scoring", unit="q") as bar:
        lost: list[int] = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures: dict[Future, int] = {
                pool.submit(_score_row, rows[i], columns, scoring): i
                for i in _by_database(rows)}
            for future, i in futures.items():
                try:
                    scored[i] = future.result()
                    bar.update(1)
                except BrokenProcessPool:
                    lost.append(i)
        if lost:
            log.warning("evaluate: a worker process died; scoring the %d rows it may have "
                        "been scoring again, one at a time", len(lost))
        pool = None
        try:
            for i in lost:
                pool = pool or ProcessPoolExecutor(max_workers=1)
                try:
                    scored[i] = pool.submit(_score_row, rows[i], columns, scoring).result()
                except BrokenProcessPool:
                    pool.shutdown(wait=False)
                    pool = None
                    scored[i] = _crashed(rows[i], columns, scoring,
                                         "the worker process scoring this item died (killed, "
                                         "out of memory or a crash in native code), twice; "
                                         "the other items were scored")
                bar.update(1)
        finally:
            if pool is not None:
                pool.shutdown()
    return [item for i in range(len(rows)) for item in scored[i]]


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
        if item["relation"] and not item["execution_match"]:  # valid but wrong SQL only
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
        source, given = predictions_run(cfg.evaluate.predictions_dir, cfg.paths.output_dir)
        rows = read_jsonl(given.predictions)
        if not rows:
            raise QueryCraftError(
                f"{source} holds no predictions ({given.predictions} is empty), so there is "
                f"nothing to evaluate; run infer again on a dataset split with questions "
                f"(infer.split, infer.limit) or set evaluate.predictions_dir to another run.")
        columns, headline = _columns(rows, cfg.evaluate.prediction_column, source)
        target = target_from_config(cfg.db, given.sqlite_database())
        if not target.is_server and not target.location:
            raise QueryCraftError("No database to run the SQL on: the dataset was ingested "
                                  "without one. Set db.path to a SQLite file or folder, or "
                                  "use a server (db=postgres).")
        settings = cfg.evaluate
        scoring = Scoring(target=target, timeout_s=cfg.db.timeout_s,
                          max_rows=cfg.db.max_rows, distinct=settings.distinct,
                          exact_set=settings.exact_set_match,
                          preview_rows=settings.preview_rows,
                          max_sql_bytes=cfg.db.max_sql_bytes,
                          max_value_bytes=cfg.db.max_value_bytes,
                          max_result_bytes=cfg.db.max_result_bytes,
                          item_budget_s=settings.item_budget_s,
                          preview_value_chars=settings.preview_value_chars,
                          max_text_chars=settings.max_text_chars,
                          order_rule=settings.order_rule,
                          split_operators=settings.split_operators,
                          float_digits=settings.float_digits)
        gold_dialect = _dataset_dialect(given, cfg.data.dialect)
        if gold_dialect != target.dialect:
            rows = fit_gold_to_database(rows, target, gold_dialect)
        workers = cfg.evaluate.workers or os.cpu_count() or 1
        items = score_all(rows, columns, scoring, workers)

        per_column = {c: summarize([i for i in items if i["column"] == c]) for c in columns}
        finetune = given.finetune()
        summary = EvaluationSummary(
            **per_column[headline], column=headline,
            columns={c: {k: s[k] for k in COLUMN_METRICS} for c, s in per_column.items()},
            predictions=str(source), model=given.base_model,
            preset=finetune.model_name if finetune else None, adapter=given.adapter,
            # The adapter's settings only when an adapter wrote the predictions (not for
            # the base model of a finetune run, infer.use_adapter=false).
            peft=(dict(finetune.peft) if finetune and finetune.peft
                  and (given.adapter or given.merged_model) else None),
            dataset=str(given.dataset_run) if given.dataset_run else None,
            database=target.describe(), distinct=cfg.evaluate.distinct, workers=workers,
            seconds=round(time.perf_counter() - began, 2))
        _write_items_csv(run_.path("items.csv"), items)
        write_jsonl(run_.path("items.jsonl"), items)
        run_.path("report.html").write_text(
            render_run_report(summary, items, run_name=run_.dir.name), encoding="utf-8")
        EvaluationArtifact(summary=summary).write(run_)  # summary.json and the manifest
        for column, s in per_column.items():
            log.info("evaluate (%s): execution accuracy %.3f, exact match %.3f, token match "
                     "%.3f, valid SQL %.3f over %d items", column, s["execution_accuracy"],
                     s["exact_match"], s["token_match"], s["valid_sql_rate"], s["items"])
        log.info("evaluate: report in %s", run_.path("report.html"))
    return run_.dir


def _one_question(rows: list[dict[str, Any]]) -> bool:
    """Predictions of ``service=infer question=...``: no gold SQL to score against."""
    return bool(rows) and all(not str(r.get("query") or "").strip() for r in rows)


def predictions_run(path: str | None, output_dir: str | Path
                    ) -> tuple[Path, PredictionsArtifact]:
    """The predictions run to score: the one ``evaluate.predictions_dir`` names or, when it
    is unset, the newest finished infer or correct run that answered a dataset's questions
    (a one-question run, ``service=infer question=...``, has no gold SQL and is passed over).

    Raises:
        QueryCraftError: the named run is not a finished predictions run, or is a
            one-question run; or no run with a dataset exists.
    """
    source = resolve_run(path, output_dir, ("infer", "correct"), "evaluate.predictions_dir",
                         accept=lambda info: bool(info.get("dataset_dir")),
                         wanted="over a dataset (one-question runs, service=infer "
                                "question=..., have no gold SQL to score)")
    given = PredictionsArtifact.read(source)
    if given.dataset_run is None and _one_question(read_jsonl(given.predictions)):
        raise QueryCraftError(
            f"evaluate.predictions_dir={source} is a one-question run (service=infer "
            f"question=...): it answers a question typed on the command line, with no "
            f"gold SQL to compare against, so it cannot be scored. Evaluate a run that "
            f"answered a dataset's questions (python -m querycraft service=infer, which "
            f"reads the newest ingest run's eval split), or leave "
            f"evaluate.predictions_dir unset to use the newest such run.")
    return source, given


def _dataset_dialect(predictions: PredictionsArtifact, default: str) -> str:
    """The dialect the dataset's gold SQL is in, as its ingest run recorded it; ``default``
    (``data.dialect``) when no ingest run says."""
    try:
        ingest = predictions.ingest()
    except QueryCraftError:  # not a finished ingest run: no say in the matter
        return default
    return (ingest.dialect if ingest else None) or default


def fit_gold_to_database(rows: list[dict[str, Any]], target: DatabaseTarget,
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

