"""Ingest: read examples (CSV, Excel, Parquet, JSON, Spider), validate them, split
train/eval, report.

Rows that fail a check are left out and listed (file, row, reason) in ``dropped.csv``; the
run stops only when no row survives. With a database, the schema context is read from it
(the "context retriever") and every gold query is executed read-only to prove it runs.

Tabular inputs are read with pandas (Parquet with pyarrow, batch by batch), a chunk of
:data:`CHUNK_ROWS` rows at a time: the file is never held in memory whole, only the kept
examples are. Their row numbers (in ``dropped.csv``) count the header as row 1, so the
first data row is row 2: a spreadsheet's row number (in a CSV with a cell spanning several
lines, rows are counted, not lines). JSON rows are numbered from 1.
"""

from __future__ import annotations

import ast
import codecs
import csv
import functools
import json
import logging
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from querycraft import db as dbmod
from querycraft.artifacts import DATASET_DIR, IngestArtifact
from querycraft.contexts import (
    VALUES_DIR,
    ContextSettings,
    SchemaContexts,
    database_target,
)
from querycraft.engines.base import QueryError
from querycraft.errors import QueryCraftError
from querycraft.inputs import data_problems, folder_not_file, path_exists
from querycraft.prompts import load_template
from querycraft.runs import start_run, write_jsonl
from querycraft.splits import SPLIT_KINDS, Overlap, overlap, split_examples
from querycraft.sql import parses
from querycraft.targets import target_from_config
from querycraft.values import ValueIndexConfig

log = logging.getLogger("querycraft")

# Schema contexts kept in memory (one per database, or per question and database).


@dataclass
class LoadConfig:
    """service=ingest with a table: load a CSV into a database table (the db group's)."""

    csv: str | None = None  # when set, ingest loads this file instead of preparing a dataset
    table: str | None = None  # default: the CSV's file name without extension
    # fail: refuse an existing table | append: add rows (same columns) | replace
    if_exists: str = "fail"
    batch_rows: int = 1000
    db_id: str | None = None  # fills "{db_id}" in the db settings / a Spider-layout folder


@dataclass
class IngestConfig:
    # The share held out for evaluation; 1.0: every example (a file of test questions, to
    # score any finetune run on: infer.dataset_dir=<this run>).
    eval_fraction: float = 0.1
    # How the evaluation share is drawn (querycraft/splits.py): "query" (default: every
    # question of one gold query on the same side: new queries), "skeleton" (new query
    # shapes), "database" (whole databases: new databases), "db_id" (each database's
    # questions at random) or "random". The last two put reworded training queries in the
    # evaluation; the report says how many.
    split_by: str = "query"
    # Keep only this many rows (after validation), for quick trials.
    max_rows: int | None = None
    validate_execution: bool = True
    deduplicate: bool = True
    # Schema context read from the database: all tables, or only those a question needs.
    context_tables: str = "all"
    # A context cell holding a Python list of strings ("['CREATE TABLE ...', ...]", IBM
    # QueryCraft's own output): "unwrap" joins the strings with newlines (and warns),
    # "refuse" drops the row.
    list_context: str = "unwrap"
    # Value-aware context: an index of the database's text values, matched against each
    # question into the {values} placeholder (see querycraft/values.py).
    value_index: ValueIndexConfig = field(default_factory=ValueIndexConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    # Token lengths in the report are measured against this.
    max_seq_length: int = "${train.max_seq_length}"  # type: ignore[assignment]


SETTINGS = IngestConfig


def check(cfg: DictConfig) -> list[str]:
    """The ingest.* settings; with service=ingest, the file it reads."""
    settings, problems = cfg.ingest, []
    if not 0.0 < settings.eval_fraction <= 1.0:
        problems.append(f"ingest.eval_fraction must be above 0 and at most 1 (1: every example "
                        f"is for evaluation), got {settings.eval_fraction}")
    if settings.split_by not in SPLIT_KINDS:
        problems.append(f"ingest.split_by must be one of {', '.join(SPLIT_KINDS)}, got "
                        f"'{settings.split_by}'")
    if settings.context_tables not in ("all", "question"):
        problems.append(f"ingest.context_tables must be 'all' or 'question', got "
                        f"'{settings.context_tables}'")
    if settings.list_context not in LIST_CONTEXT_MODES:
        problems.append(f"ingest.list_context must be 'unwrap' or 'refuse', got "
                        f"'{settings.list_context}'")
    load = settings.load
    if load.if_exists not in ("fail", "append", "replace"):
        problems.append(f"ingest.load.if_exists must be fail, append or replace, got "
                        f"'{load.if_exists}'")
    if load.batch_rows < 1:
        problems.append("ingest.load.batch_rows must be at least 1")
    if cfg.service.name == "ingest":
        if load.csv:
            if not path_exists(load.csv):
                problems.append(f"ingest.load.csv '{load.csv}' does not exist")
            elif Path(load.csv).is_dir():
                problems.append(folder_not_file("ingest.load.csv", load.csv))
        else:
            problems += data_problems(cfg)
    return problems


FIELDS = ("question", "query", "context", "db_id")
LIST_CONTEXT_MODES = ("unwrap", "refuse")


@dataclass
class Example:
    source_row: int  # tabular files: the row, header = row 1; JSON: the item, from 1
    question: str
    query: str
    context: str
    db_id: str


@dataclass
class Dropped:
    source_row: int
    reason: str


# ---------------------------------------------------------------- reading the input file


# Rows a tabular reader holds at a time (tests make it small to cross chunk boundaries).
CHUNK_ROWS = 50_000


def _not_utf8(path: Path, err: UnicodeDecodeError, offset: int) -> QueryCraftError:
    return QueryCraftError(
        f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
        f"{offset} cannot be decoded). Save the file as UTF-8 (in Excel: Save As, "
        f"'CSV UTF-8'; or `iconv -f latin1 -t utf-8 in.csv > out.csv`) and ingest again."
    )


def _empty(path: Path) -> QueryCraftError:
    return QueryCraftError(f"{path} is empty. Put your examples in it (a header row "
                           f"question,query,context then one row per example).")


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel's UTF-8 files start with a BOM
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err, err.start) from err
    if not text.strip():
        raise _empty(path)
    return text


def _first_bad_byte(path: Path) -> tuple[UnicodeDecodeError, int] | None:
    """The first byte that is not UTF-8, and its offset in the file (read in blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                # err.start counts from the bytes the decoder held back plus this block.
                held = len(err.object) - len(block)
                return err, offset - held + err.start
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            return err, offset - len(err.object) + err.start
    return None


def _mapping(cfg: DictConfig) -> dict[str, str]:
    return {name: cfg.data.columns[name] for name in FIELDS}


def _check_columns(present: list[str], cfg: DictConfig, path: Path, has_database: bool) -> None:
    mapping = _mapping(cfg)
    required = ["question", "query"] + ([] if has_database else ["context"])
    missing = [f"'{mapping[f]}'" for f in required if mapping[f] not in present]
    if missing:
        hint = ("" if has_database else " Without a context column, set data.database to a "
                "database and the schema is read from it.")
        raise QueryCraftError(
            f"{path} lacks the column(s) {', '.join(missing)}. Its columns are: "
            f"{', '.join(present) or 'none'}. Rename them, or map yours with e.g. "
            f"data.columns.query=sql.{hint}"
        )


def _records(frames: Iterable[Any], cfg: DictConfig) -> Iterator[tuple[int, dict]]:
    """(row number, {column: text}) from DataFrames of str cells; header = row 1."""
    wanted = set(_mapping(cfg).values())
    number = 1
    for frame in frames:
        frame = frame.rename(columns=lambda c: str(c).strip())
        frame = frame[[c for c in frame.columns if c in wanted]].fillna("")
        columns = list(frame.columns)
        for values in frame.itertuples(index=False, name=None):
            number += 1
            yield number, dict(zip(columns, values, strict=True))


def _read_csv(path: Path, cfg: DictConfig, has_database: bool) -> Iterator[tuple[int, dict]]:
    # Kept apart from loading's CSV reader. Chunked: a chunk of rows in memory, never the file.
    import pandas as pd

    options = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
    try:
        try:
            header = [str(c).strip() for c in pd.read_csv(path, nrows=0, **options).columns]
        except pd.errors.EmptyDataError as err:
            raise _empty(path) from err
        _check_columns(header, cfg, path, has_database)
        yield from _records(pd.read_csv(path, chunksize=CHUNK_ROWS, **options), cfg)
    except UnicodeDecodeError as err:
        found = _first_bad_byte(path)  # pandas' offset counts from its buffer, not the file
        raise _not_utf8(path, *(found or (err, err.start))) from err
    except pd.errors.ParserError as err:
        detail = str(err).replace("Error tokenizing data. C error: ", "").strip()
        raise QueryCraftError(
            f"{path} is not a well-formed CSV: {detail}. Quote fields that contain commas or "
            f"line breaks with double quotes (and make every row have as many fields as the "
            f"header), then ingest again."
        ) from err


def _read_excel(path: Path, cfg: DictConfig, has_database: bool) -> Iterator[tuple[int, dict]]:
    # openpyxl reads a workbook whole; the sheet is turned into records frame by frame.
    import pandas as pd

    try:
        frame = pd.read_excel(path, sheet_name=0, dtype=str, keep_default_na=False)
    except Exception as err:  # BadZipFile, ValueError, KeyError...: not a workbook
        raise QueryCraftError(
            f"{path} cannot be read as an Excel workbook (.xlsx): {err}. Save it from Excel as "
            f"'Excel Workbook (.xlsx)', or as 'CSV UTF-8' with data.format=csv."
        ) from err
    if len(frame.columns) == 0:
        raise _empty(path)
    _check_columns([str(c).strip() for c in frame.columns], cfg, path, has_database)
    yield from _records((frame.iloc[i:i + CHUNK_ROWS] for i in range(0, len(frame), CHUNK_ROWS)),
                        cfg)


def _read_parquet(path: Path, cfg: DictConfig, has_database: bool
                  ) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise QueryCraftError(f"{path} cannot be read as a Parquet file: {err}.") from err
    names = [str(n).strip() for n in parquet.schema_arrow.names]
    if not names:
        raise _empty(path)
    _check_columns(names, cfg, path, has_database)
    wanted = set(_mapping(cfg).values())
    columns = [n for n in parquet.schema_arrow.names if str(n).strip() in wanted]
    batches = parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns)
    yield from _records((_as_text(b.to_pandas()) for b in batches), cfg)


def _as_text(frame: Any) -> Any:
    """Every cell as text, missing ones (None, NaN) as ''."""
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _read_json(path: Path, cfg: DictConfig, has_database: bool) -> Iterator[tuple[int, dict]]:
    text = _read_text(path)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise QueryCraftError(f"{path} is not valid JSON (line {err.lineno}, column "
                              f"{err.colno}: {err.msg}).") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise QueryCraftError(f"{path} must hold a JSON list of objects, one per example.")
    if not items:
        raise QueryCraftError(f"{path} holds an empty list: there are no examples to ingest.")
    _check_columns(sorted({k for item in items for k in item}), cfg, path, has_database)
    for number, item in enumerate(items, start=1):
        yield number, {k: "" if v is None else str(v) for k, v in item.items()}


READERS = {"csv": _read_csv, "excel": _read_excel, "parquet": _read_parquet,
           "json": _read_json, "spider": _read_json}


# ---------------------------------------------------------------- databases and context


def ingest_contexts(cfg: DictConfig) -> SchemaContexts:
    """The context reader for this ingest: ``data.database`` (SQLite: a file or a
    Spider-layout folder) or the ``db`` group's server, with this run's context settings."""
    return SchemaContexts(database_target(cfg.db, cfg.data.database), context_settings(cfg),
                          float(cfg.db.timeout_s))


def context_settings(cfg: DictConfig) -> ContextSettings:
    """This ingest's context settings, as the run records them."""
    return ContextSettings.from_dict({
        "tables": cfg.ingest.context_tables, "sample_values": cfg.db.sample_values,
        "value_index": OmegaConf.to_container(cfg.ingest.value_index)})


# ---------------------------------------------------------------- validation and split


@dataclass
class _Checks:
    """The settings each row is checked against, read from the config once (not per row)."""

    mapping: dict[str, str]
    dialect: str
    validate_execution: bool
    list_context: str = "unwrap"
    # The rows whose list context was unwrapped (their count and the first few, for the report).
    unwrapped: int = 0
    unwrapped_rows: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, cfg: DictConfig) -> _Checks:
        return cls(_mapping(cfg), cfg.data.dialect, bool(cfg.ingest.validate_execution),
                   str(cfg.ingest.list_context))


# A list of string literals, nothing else: "['...', \"...\"]" (prefixes r, u, b excluded).
_LIST_OF_STRINGS = re.compile(r"""\[\s*(?:'|"|\])""")


@functools.lru_cache(maxsize=1024)
def unwrap_list_context(text: str) -> str | None:
    """The strings of a context cell that is a Python list of strings (``str(list)``, as IBM
    QueryCraft writes its context column), joined with newlines; None for any other text.

    Parsed with :func:`ast.literal_eval` (literals only, never code), and only when the cell
    starts like a list of string literals and ends with ``]``. Cached: rows about one
    database repeat one context.
    """
    stripped = text.strip()
    if not (stripped.endswith("]") and _LIST_OF_STRINGS.match(stripped)):
        return None
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return "\n".join(v.strip() for v in value if v.strip())


# Parse results of recent gold queries: datasets repeat SQL across paraphrased questions.
PARSE_CACHE_SIZE = 1 << 16


def _validate(number: int, record: dict[str, str], checks: _Checks, databases: SchemaContexts,
              parse: Any = parses) -> Example | Dropped:
    value = {f: (record.get(checks.mapping[f]) or "").strip() for f in FIELDS}
    if not value["question"]:
        return Dropped(number, "empty question")
    if not value["query"]:
        return Dropped(number, "empty query")
    problem = parse(value["query"], checks.dialect)
    if problem:
        return Dropped(number, f"gold SQL does not parse: {problem}")
    db_id = value["db_id"] or (databases.default_db_id() if databases.available else "")
    context = value["context"]
    if context.startswith("["):
        unwrapped = unwrap_list_context(context)
        if unwrapped is not None:
            if checks.list_context == "refuse":
                return Dropped(number, "context is a Python list: the cell holds "
                               "['...', ...] (IBM QueryCraft's format), not schema text; write "
                               "the statements as plain text, or set ingest.list_context=unwrap")
            checks.unwrapped += 1
            if len(checks.unwrapped_rows) < 5:
                checks.unwrapped_rows.append(number)
            context = unwrapped
    if databases.available:
        try:
            if not context:
                context = databases.schema(db_id, value["question"])
            if checks.validate_execution:
                databases.run(db_id, value["query"])
        except QueryError as err:
            return Dropped(number, f"gold SQL fails on database '{db_id}': {err.message}")
        except QueryCraftError as err:
            return Dropped(number, f"database for db_id '{db_id}': {err}")
    if not context:
        return Dropped(number, "no schema context (empty context column and no database)")
    # Interned: rows about one database share one context string, not a copy per row.
    return Example(number, value["question"], value["query"], sys.intern(context),
                   sys.intern(db_id))


def _dedupe_key(example: Example) -> tuple[str, str]:
    return (" ".join(example.question.lower().split()), example.db_id or example.context)


def _same_query(sql: str) -> str:
    """A query with its layout (spacing, line breaks, a final semicolon) left out: two gold
    queries that differ only there are the same query."""
    return " ".join(sql.strip().rstrip(";").split())


def drop_kind(reason: str) -> str:
    """The kind of a drop reason, as counted in the report: its text before any colon, with
    "of row N" left out ("duplicate", "conflicting duplicate")."""
    return re.sub(r" of row \d+$", "", reason.split(":")[0])


# ---------------------------------------------------------------- token-length report


def _length_tokenizer(cfg: DictConfig, train_texts: list[str]) -> tuple[Any, str]:
    """The tokenizer to measure lengths with, and how it was obtained."""
    from querycraft import models

    if cfg.model.builder == "tiny":
        folder = tempfile.mkdtemp(prefix="qc-tok-")
        tok = models.train_tokenizer(train_texts, cfg.model.tiny.vocab_size, Path(folder))
        return tok, "the tiny preset's tokenizer, trained on the training split"
    try:
        base = models.resolve_base(cfg.model, cfg.paths.cache_dir)
        return models.load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code), \
            f"the tokenizer of {cfg.model.gguf_file or base}"
    except QueryCraftError:
        return None, "an estimate of 4 characters per token (the model's tokenizer is not at hand)"


def _percentiles(values: list[int]) -> dict[str, int]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5), "p90": pick(0.9), "p95": pick(0.95), "p99": pick(0.99),
            "max": ordered[-1]}


# The token-length report measures at most this many training texts (a seeded sample):
# tokenizing a million texts would cost more than the rest of ingest.
TOKEN_SAMPLE = 20_000


def token_length_report(cfg: DictConfig, train: list[Example]) -> dict[str, Any]:
    """Token-length percentiles of the training texts; over :data:`TOKEN_SAMPLE` of them,
    of a seeded sample (``sampled`` says how many, of ``of``)."""
    from querycraft.data import encode_example
    from querycraft.prompts import render_training_text

    template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    measured = train
    if len(train) > TOKEN_SAMPLE:
        picked = sorted(random.Random(f"{cfg.seed}:token-lengths").sample(range(len(train)),
                                                                          TOKEN_SAMPLE))
        measured = [train[i] for i in picked]
    rows = [e.__dict__ for e in measured]
    texts = [render_training_text(template, question=r["question"], context=r["context"],
                                  dialect=cfg.prompt.dialect_name, query=r["query"])
             for r in rows]
    tokenizer, how = _length_tokenizer(cfg, texts)
    if tokenizer is None:
        lengths = [len(t) // 4 + 1 for t in texts]
    else:
        lengths = [len(encode_example(r, template, cfg.prompt.dialect_name, tokenizer)
                       ["input_ids"]) for r in rows]
    limit = cfg.ingest.max_seq_length
    return {"measured_with": how, "max_seq_length": limit, **_percentiles(lengths),
            "over_max_seq_length": sum(n > limit for n in lengths),
            "sampled": len(measured), "of": len(train)}


# ---------------------------------------------------------------- the service


def read_examples(cfg: DictConfig, stats: dict[str, Any] | None = None
                  ) -> tuple[list[Example], list[Dropped]]:
    """Read, validate and deduplicate the configured input.

    Args:
        stats: filled with what the report tells besides the rows
            (``list_context_unwrapped``: the rows whose list context was unwrapped).
    """
    path = Path(cfg.data.path)
    if not path.exists():
        raise QueryCraftError(f"data.path {path} does not exist. Put your file in input/ and "
                              f"set data.path to it.")
    if path.is_dir():
        raise QueryCraftError(folder_not_file("data.path", str(path)) + ", then ingest "
                              "again.")
    databases = ingest_contexts(cfg)
    examples: list[Example] = []
    dropped: list[Dropped] = []
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    checks, deduplicate = _Checks.of(cfg), bool(cfg.ingest.deduplicate)
    parse = functools.lru_cache(maxsize=PARSE_CACHE_SIZE)(parses)
    try:
        records = READERS[cfg.data.format](path, cfg, databases.available)
        for number, record in records:
            outcome = _validate(number, record, checks, databases, parse)
            if isinstance(outcome, Dropped):
                dropped.append(outcome)
                continue
            key = _dedupe_key(outcome)
            if deduplicate and key in seen:
                # The first row is kept; a later one with another query is reported apart:
                # one of the two answers is wrong, and only the user can say which.
                first, query = seen[key]
                dropped.append(Dropped(number, f"duplicate of row {first}"
                                       if _same_query(outcome.query) == query else
                                       f"conflicting duplicate of row {first}: a different "
                                       f"query"))
                continue
            if deduplicate:
                seen[key] = (number, _same_query(outcome.query))
            examples.append(outcome)
    finally:
        databases.close()
    if checks.unwrapped:
        rows = ", ".join(map(str, checks.unwrapped_rows)) + \
            (", ..." if checks.unwrapped > len(checks.unwrapped_rows) else "")
        log.warning(
            "ingest: the context of %d row(s) of %s (rows %s) was a Python list of "
            "strings (IBM QueryCraft's format); each was unwrapped into its statements, one "
            "per line. Set ingest.list_context=refuse to drop such rows instead.",
            checks.unwrapped, path, rows)
    if stats is not None:
        stats["list_context_unwrapped"] = checks.unwrapped
    if not examples:
        reasons = "; ".join(f"row {d.source_row}: {d.reason}" for d in dropped[:5])
        raise QueryCraftError(
            f"No usable example in {path}: all {len(dropped)} row(s) failed validation "
            f"(first: {reasons}). Fix the rows, or check data.columns and data.database."
        )
    return examples, dropped


def _write_report(run_dir: Path, report: dict[str, Any], dropped: list[Dropped]) -> None:
    (run_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    with (run_dir / "dropped.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "row", "reason"])
        writer.writerows([report["source"], d.source_row, d.reason] for d in dropped)
    lengths = report["token_lengths"]
    shared = report["overlap"]
    lines = [
        f"# Ingest report: {report['source']}",
        "",
        f"- rows read: {report['rows_read']}",
        f"- kept: {report['kept']} (train {report['train']}, eval {report['eval']})",
        f"- dropped: {report['dropped']} (see dropped.csv)",
        f"- split: ingest.split_by={report['split_by']}; evaluation items whose gold SQL is a "
        f"training query: {shared['same_query']} of {shared['eval_items']} "
        f"({shared['same_query_share']:.0%}); whose query shape is a training shape: "
        f"{shared['same_skeleton']} ({shared['same_skeleton_share']:.0%})",
        *([f"- context given as a Python list, unwrapped: {report['list_context_unwrapped']} "
           f"row(s) (ingest.list_context=refuse drops them instead)"]
          if report.get("list_context_unwrapped") else []),
        f"- token lengths ({lengths['measured_with']}): p50 {lengths['p50']}, "
        f"p90 {lengths['p90']}, p99 {lengths['p99']}, max {lengths['max']}; "
        f"{lengths['over_max_seq_length']} over max_seq_length {lengths['max_seq_length']}"
        + (f" (token lengths from a sample of {lengths['sampled']} of {lengths['of']} training "
           f"texts)" if lengths.get("sampled", 0) < lengths.get("of", 0) else ""),
    ]
    warning = Overlap(shared["eval_items"], shared["same_query"],
                      shared["same_skeleton"]).warning()
    if warning:
        lines += ["", f"**Warning:** {warning}."]
    if report["drop_reasons"]:
        lines += ["", "| reason | rows |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in report["drop_reasons"].items()]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_table(cfg: DictConfig) -> Path:
    """Load ``ingest.load.csv`` into a table of the ``db`` group's database.

    The one place QueryCraft writes to a database, through its own engine; generated SQL
    never runs there. The run's manifest records what was loaded (never the password).

    Returns:
        The run folder.
    """
    from querycraft.loading import load_csv_table

    load = cfg.ingest.load
    csv_path = Path(load.csv)
    table = load.table or csv_path.stem
    if csv_path.is_dir():
        raise QueryCraftError(folder_not_file("ingest.load.csv", load.csv) + ", then load "
                              "again.")
    with start_run(cfg, "ingest") as run_:
        target = target_from_config(cfg.db)
        db_id = load.db_id or ""
        engine = dbmod.writable_engine(target, db_id)
        try:
            report = load_csv_table(engine, csv_path, table, schema=target.schema_for(db_id),
                                    if_exists=load.if_exists, batch_rows=load.batch_rows)
        finally:
            engine.dispose()
        where = target.describe(db_id or None) if target.is_server else \
            engine.url.database
        IngestArtifact(dataset=None, database=where, database_kind=target.kind,
                       loaded={"csv": str(csv_path.resolve()), "table": report.table,
                               "rows": report.rows, "created": report.created,
                               "replaced": report.replaced,
                               "columns": {c.name: c.kind for c in report.columns}}
                       ).write(run_)
        log.info("ingest: loaded %d rows of %s into table %s of %s", report.rows, csv_path,
                 report.table, where)
    return run_.dir



def _question_values(cfg: DictConfig, folder: Path, examples: list[Example],
                     stats: dict[str, Any]) -> dict[int, str]:
    """With ``ingest.value_index.enabled``: each example's ``{values}`` text (keyed by ``id``),
    from one value index per database, built here and kept in the run's values/."""
    if not cfg.ingest.value_index.enabled:
        return {}
    databases = ingest_contexts(cfg)
    if not databases.available:
        raise QueryCraftError("ingest.value_index.enabled=true reads the text values of the "
                              "database, but there is none: set data.database (SQLite) or use "
                              "a server (db=postgres ...), or turn ingest.value_index off.")
    databases.values_dir = folder
    began = time.perf_counter()
    try:
        found = {id(e): databases.values(e.db_id or databases.default_db_id(), e.question)
                 for e in tqdm(examples, desc="matching values", unit="q")}
    finally:
        databases.close()
    stats["values"] = {"databases": len(list(folder.glob("*.json"))),
                       "questions_with_values": sum(bool(v) for v in found.values()),
                       "seconds": round(time.perf_counter() - began, 2)}
    return found


def run(cfg: DictConfig) -> Path:
    """Ingest ``cfg.data`` into ``<run_dir>/dataset/{train,eval}.jsonl`` plus a report; or,
    with ``ingest.load.csv``, load that CSV into a database table (:func:`load_table`).

    Returns:
        The run folder.
    """
    if cfg.ingest.load.csv:
        return load_table(cfg)
    with start_run(cfg, "ingest") as run_:
        stats: dict[str, Any] = {}
        examples, dropped = read_examples(cfg, stats)
        if cfg.ingest.max_rows:
            examples = examples[: cfg.ingest.max_rows]
        train, evaluation = split_examples(examples, cfg.ingest.eval_fraction, cfg.seed,
                                           by=cfg.ingest.split_by, dialect=cfg.data.dialect)
        shared = overlap(train, evaluation, cfg.data.dialect)
        dataset_dir = run_.path(DATASET_DIR)
        dataset_dir.mkdir()
        values = _question_values(cfg, run_.path(VALUES_DIR), examples, stats)
        for name, part in (("train", train), ("eval", evaluation)):
            # A generator: the rows are written one by one, not built as a second list.
            write_jsonl(dataset_dir / f"{name}.jsonl",
                        ({"id": f"{name}-{i:05d}", **e.__dict__,  # type: ignore[arg-type]
                          **({"values": values[id(e)]} if values else {})}
                         for i, e in enumerate(part)))
        reasons: dict[str, int] = {}
        for d in dropped:
            kind = drop_kind(d.reason)
            reasons[kind] = reasons.get(kind, 0) + 1
        report = {
            "source": str(cfg.data.path),
            "rows_read": len(examples) + len(dropped),
            "kept": len(examples), "train": len(train), "eval": len(evaluation),
            "dropped": len(dropped), "drop_reasons": reasons,
            "list_context_unwrapped": stats.get("list_context_unwrapped", 0),
            **({"values": stats["values"]} if "values" in stats else {}),
            "split_by": cfg.ingest.split_by,
            "overlap": shared.as_dict(),
            "token_lengths": token_length_report(cfg, train or evaluation),
        }
        _write_report(run_.dir, report, dropped)
        if cfg.db.kind == "sqlite":
            database = str(Path(cfg.data.database).resolve()) if cfg.data.database else None
        else:
            database = target_from_config(cfg.db).describe()
        IngestArtifact(dataset=dataset_dir, dialect=cfg.data.dialect, database=database,
                       database_kind=cfg.db.kind,
                       counts={"train": len(train), "eval": len(evaluation),
                               "dropped": len(dropped)},
                       context=context_settings(cfg).as_dict()).write(run_)
        for d in dropped[:20]:
            log.warning("dropped %s row %d: %s", cfg.data.path, d.source_row, d.reason)
        if len(dropped) > 20:
            log.warning("... and %d more dropped rows, listed in %s", len(dropped) - 20,
                        run_.path("dropped.csv"))
        if shared.warning():
            log.warning("ingest: %s.", shared.warning())
        log.info("ingest: kept %d of %d rows (train %d, eval %d); report in %s",
                 len(examples), report["rows_read"], len(train), len(evaluation),
                 run_.path("report.md"))
    return run_.dir
