"""Infer: generate SQL for a dataset split (or one question) with a fine-tuned or base model.

The prompt template is the one saved with the finetune run, not the one in the current
config, so inference always asks in exactly the words the model was trained on. Rows are
written as each batch finishes: a run that is stopped and started again (same folder, or
``resume=true``) generates only the rows not yet written. A finished run with the same
inputs and settings is reused rather than redone, unless ``infer.redo=true``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft import db as dbmod
from querycraft import models
from querycraft.artifacts import (
    PREDICTIONS_FILE,
    FinetuneArtifact,
    IngestArtifact,
    PredictionsArtifact,
    finished_runs,
)
from querycraft.backends import ModelSource, make_backend
from querycraft.contexts import question_contexts
from querycraft.data import prompt_for
from querycraft.engines.sqlite import sqlite_path_for
from querycraft.errors import QueryCraftError
from querycraft.generation import Generation, GenerationSettings
from querycraft.prompts import (
    PromptTemplate,
    load_template,
    parse_template,
)
from querycraft.runs import read_jsonl, resolve_run, start_run, write_jsonl
from querycraft.sql import extract_sql
from querycraft.targets import target_from_config
from querycraft.voting import Vote, vote

log = logging.getLogger("querycraft")


@dataclass
class ServerConfig:
    """An OpenAI-compatible completions server (vLLM, llama.cpp server, Ollama...)."""

    # e.g. http://127.0.0.1:8000/v1 (vLLM), http://127.0.0.1:8080/v1 (llama.cpp),
    # http://127.0.0.1:11434/v1 (Ollama)
    base_url: str = "http://127.0.0.1:8000/v1"
    # The model name the server knows (for vLLM with LoRA: the adapter's served name).
    model: str | None = None
    # Name of the environment variable holding the API key, if the server wants one (the key
    # itself never goes in a config file).
    api_key_env: str | None = None
    timeout_s: float = 120.0
    # Requests in flight at once; each carries up to infer.batch_size prompts.
    concurrency: int = 4
    # Fields added to every completions request, for settings the OpenAI API does not name.
    # llama-cpp-python's server penalises repeated tokens by default (1.1), so its "greedy"
    # SQL is not the model's; 1.0 turns that off (llama.cpp's llama-server, vLLM and Ollama
    # ignore or already default to it). {} for a server that rejects fields it does not know.
    extra_body: dict[str, Any] = field(default_factory=lambda: {"repeat_penalty": 1.0})


@dataclass
class InferConfig:
    # A finetune run folder; null: the newest completed finetune run under output/.
    finetune_dir: str | None = None
    # False: generate with the base model alone (the "before fine-tuning" baseline).
    use_adapter: bool = True
    # Load the finetune run's merged_model/ (train.merge_adapter=true) instead of base + adapter.
    use_merged: bool = False
    # An ingest run folder; null: the dataset the finetune run trained on.
    dataset_dir: str | None = None
    split: str = "eval"
    # hf (transformers, default) | vllm (pip install -e '.[vllm]') | openai (a server).
    backend: str = "hf"
    # Prompts per batch; on a GPU an out-of-memory error halves it and retries.
    batch_size: int = 16
    max_new_tokens: int = 256
    # Greedy by default; do_sample=true uses temperature and top_p.
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    limit: int | None = None
    # Which `limit` questions: "first" in file order, or "spread": evenly spaced over the
    # split (a split grouped by database then samples every database, for a quick look).
    limit_by: str = "first"
    # Execution-guided voting: N > 1 writes N queries per question (the greedy one and N - 1
    # sampled at candidate_temperature, in batches), runs them read-only on the database and
    # keeps one from the largest group of equal results (ties: the model's likelihood).
    candidates: int = 1
    candidate_temperature: float = 0.8
    # A finished run with the same inputs and settings is reused, not redone, unless true.
    redo: bool = False
    server: ServerConfig = field(default_factory=ServerConfig)


SETTINGS = InferConfig

INFER_BACKENDS = ("hf", "vllm", "openai")


def check(cfg: DictConfig) -> list[str]:
    """The infer.* settings."""
    infer, problems = cfg.infer, []
    if infer.backend not in INFER_BACKENDS:
        problems.append(f"infer.backend '{infer.backend}' is not one of "
                        f"{', '.join(INFER_BACKENDS)}")
    if infer.batch_size < 1 or infer.max_new_tokens < 1:
        problems.append("infer.batch_size and infer.max_new_tokens must be at least 1")
    if infer.candidates < 1:
        problems.append(f"infer.candidates must be at least 1 (1: no voting), got "
                        f"{infer.candidates}")
    if not infer.candidate_temperature > 0:
        problems.append(f"infer.candidate_temperature must be above 0, got "
                        f"{infer.candidate_temperature}")
    if infer.limit is not None and infer.limit < 1:
        problems.append(f"infer.limit must be at least 1 (null: every question), got "
                        f"{infer.limit}")
    if infer.limit_by not in ("first", "spread"):
        problems.append(f"infer.limit_by must be 'first' or 'spread', got '{infer.limit_by}'")
    if infer.split not in ("train", "eval"):
        problems.append(f"infer.split must be 'train' or 'eval', got '{infer.split}'")
    return problems


@dataclass
class Request:
    """Where the model, prompt and questions come from."""

    source: ModelSource | None  # None: a server backend names its own model
    template: PromptTemplate
    dialect: str
    finetune_dir: Path | None
    dataset_dir: Path | None
    database: str | None


def resolve_request(cfg: DictConfig) -> Request:
    """What infer will use for ``cfg``: the model, the prompt template and dialect (the ones
    saved with the finetune run when there is one) and where the questions come from.

    Raises:
        QueryCraftError: if the finetune run is missing or lacks the merged model asked for.
    """
    infer = cfg.infer
    uses_run = infer.finetune_dir is not None or (
        infer.backend != "openai" and (infer.use_adapter or cfg.model.builder is not None))
    if not uses_run:
        # A hub, local or served model used as is: prompt with the configured template.
        template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
        source = (None if infer.backend == "openai"
                  else ModelSource(base=models.resolve_base(cfg.model, cfg.paths.cache_dir)))
        return Request(source, template, cfg.prompt.dialect_name, None, None, None)
    finetune_dir = resolve_run(infer.finetune_dir, cfg.paths.output_dir, "finetune",
                               "infer.finetune_dir")
    finetune = FinetuneArtifact.read(finetune_dir)
    if infer.use_merged and not finetune.merged_model:
        raise QueryCraftError(f"infer.use_merged=true but {finetune_dir} has no merged model; "
                              f"fine-tune with train.merge_adapter=true, or use the adapter.")
    template_path = finetune.prompt_template
    return Request(
        source=(finetune.model_source(use_adapter=bool(infer.use_adapter),
                                      use_merged=bool(infer.use_merged))
                if infer.backend != "openai" else None),
        template=parse_template(template_path.read_text(encoding="utf-8"),
                               name=str(template_path)),
        dialect=finetune.prompt_dialect,
        finetune_dir=finetune_dir,
        dataset_dir=finetune.ingest_run,
        # Recorded by the ingest run the model trained on, not relayed by finetune. That run
        # may be gone (cleaned up): a question with its own db.path still needs no database.
        database=(finetune.ingest().sqlite_database() if finetune.ingest_run.is_dir()
                  else None),
    )


def _fingerprint(cfg: DictConfig, request: Request, dataset_dir: Path | None) -> dict[str, Any]:
    """What decides the output: a finished run with the same fingerprint need not be redone."""
    infer = OmegaConf.to_container(cfg.infer, resolve=True)
    for key in ("redo", "finetune_dir", "dataset_dir"):
        infer.pop(key)
    infer["server"].pop("timeout_s")
    infer["server"].pop("concurrency")
    return {"infer": infer, "finetune_dir": str(request.finetune_dir),
            "dataset_dir": str(dataset_dir), "template": request.template.text,
            "model": None if request.finetune_dir else OmegaConf.to_container(cfg.model)}


def _finished_run_with(fingerprint: dict[str, Any], output_dir: str) -> Path | None:
    # A run that can no longer be read (its predictions deleted) is no candidate.
    return next((folder for folder, done in finished_runs(output_dir, PredictionsArtifact,
                                                           "infer", skip_unreadable=True)
                 if done.fingerprint == fingerprint), None)


def _read_written(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already written by an earlier attempt; a line cut off by a kill is dropped."""
    if not path.is_file():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    good_bytes = 0
    with path.open("rb") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a partial last line: everything after it is rewritten
            if not line.endswith(b"\n"):
                break
            rows[row["id"]] = row
            good_bytes += len(line)
    with path.open("r+b") as handle:
        handle.truncate(good_bytes)
    return rows


def _prediction(row: dict[str, Any], text: str, seconds: float, request: Request
                ) -> dict[str, Any]:
    source = request.source
    return {"id": row["id"], "db_id": row.get("db_id", ""), "question": row["question"],
            "query": row.get("query", ""), "raw_output": text, "sql": extract_sql(text),
            "seconds": round(seconds, 4),
            "model": (source.merged or source.base) if source else "server",
            "adapter": source.adapter if source else None}


@dataclass
class VotedGeneration(Generation):
    """The chosen candidate's text, with the greedy SQL, every candidate and the vote."""

    greedy_sql: str = ""
    vote: Vote | None = None

    def fields(self) -> dict[str, Any]:
        assert self.vote is not None
        return {"greedy_sql": self.greedy_sql, "candidates": self.vote.candidates,
                "vote": self.vote.summary()}


def _voted_batches(cfg: DictConfig, backend: Any, prompts: list[str], rows: list[dict],
                   settings: GenerationSettings, database: str | None, request: Request
                   ) -> Iterator[tuple[list[int], list[Generation]]]:
    """``infer.candidates`` queries per prompt, voted on by execution, a chunk of prompts
    at a time (greedy, then the samples, then the votes; a kill loses one chunk)."""
    target = target_from_config(cfg.db, database)
    if not target.is_server and not target.location:
        raise QueryCraftError("infer.candidates > 1 runs the candidates on the database, but "
                              "there is none: the dataset was ingested without one. Set "
                              "db.path to a SQLite file or folder, or use a server (db=...).")
    n = cfg.infer.candidates
    sampling = dataclasses.replace(settings, do_sample=True, samples=n - 1,
                                   temperature=cfg.infer.candidate_temperature,
                                   batch_size=max(1, settings.batch_size // max(1, n // 2)))
    limits = {"timeout_s": cfg.db.timeout_s, "max_rows": cfg.db.max_rows,
              "max_sql_bytes": cfg.db.max_sql_bytes, "max_value_bytes": cfg.db.max_value_bytes,
              "max_result_bytes": cfg.db.max_result_bytes}
    chunk = max(settings.batch_size, 1) * 4
    scorer = backend.logprobs if backend.scores_texts else None  # ties by likelihood
    with dbmod.Databases(target) as databases:
        for start in range(0, len(prompts), chunk):
            indices = list(range(start, min(start + chunk, len(prompts))))
            part = [prompts[i] for i in indices]
            greedy = _collect(backend.generate_batches(part, settings), len(part))
            samples = _collect(backend.generate_batches(part, sampling), len(part))
            out = []
            for k, i in enumerate(indices):
                texts = [greedy[k].text, *(samples[k].samples or [samples[k].text])]
                sqls = [extract_sql(t) for t in texts]
                database_ = databases.get(rows[i].get("db_id", ""))
                result = vote(
                    sqls, lambda sql, d=database_: d.execute(sql, **limits),
                    (lambda chosen, p=prompts[i], t=texts, s=scorer: s(p, [t[c] for c in chosen]))
                    if scorer is not None else None)
                out.append(VotedGeneration(
                    texts[result.chosen], greedy[k].seconds + samples[k].seconds,
                    greedy_sql=sqls[0], vote=result))
            yield indices, out


def _collect(batches: Any, count: int) -> list[Generation]:
    found: list[Generation | None] = [None] * count
    for indices, generations in batches:
        for i, generation in zip(indices, generations, strict=True):
            found[i] = generation
    return [g for g in found if g is not None]


def question_row(cfg: DictConfig, request: Request) -> dict[str, Any]:
    """The one question of ``question=...`` as a dataset row, its schema context built the
    way the training rows' were (:func:`querycraft.contexts.question_contexts`)."""
    database = None
    if cfg.db.kind == "sqlite":
        database = cfg.db.path or request.database
        if database is None:
            raise QueryCraftError("question=... needs a database to read the schema from: set "
                                  "db.path to a SQLite file, or use a finetune run whose "
                                  "dataset came with a database.")
        if Path(database).is_dir():
            raise QueryCraftError(f"The database {database} is a folder of several databases; "
                                  f"set db.path to the one SQLite file to ask about, e.g. "
                                  f"{sqlite_path_for(Path(database), '<db_id>')}.")
    contexts = question_contexts(cfg.db, database, request.dataset_dir)
    try:
        db_id = contexts.default_db_id()
        return {"id": "question", "question": cfg.question, "query": "",
                "context": contexts.schema(db_id, cfg.question),
                "values": contexts.values(db_id, cfg.question),
                "db_id": Path(database).stem if database else ""}
    finally:
        contexts.close()


def limited(rows: list[dict], limit: int, by: str = "first") -> list[dict]:
    """``limit`` of ``rows``: the first ones, or ("spread") evenly spaced, in file order."""
    if limit >= len(rows):
        return rows
    if by == "first":
        return rows[:limit]
    step = len(rows) / limit
    return [rows[int(k * step)] for k in range(limit)]


def run(cfg: DictConfig) -> Path:
    """Write ``predictions.jsonl``: one row per question with raw output and extracted SQL.

    With ``question=...`` answers that one question and prints the SQL.

    Returns:
        The run folder (or, when the same request already finished, that run's folder).
    """
    request = resolve_request(cfg)
    if cfg.question:
        rows = [question_row(cfg, request)]
        dataset_dir, ingest = None, None
    else:
        dataset_dir = (resolve_run(cfg.infer.dataset_dir, cfg.paths.output_dir, "ingest",
                                   "infer.dataset_dir")
                       if cfg.infer.dataset_dir or request.dataset_dir is None
                       else request.dataset_dir)
        ingest = IngestArtifact.read(dataset_dir)
        rows = read_jsonl(ingest.split_file(cfg.infer.split))
        if cfg.infer.limit:
            rows = limited(rows, cfg.infer.limit, cfg.infer.limit_by)
        fingerprint = _fingerprint(cfg, request, dataset_dir)
        done = None if cfg.infer.redo else _finished_run_with(fingerprint,
                                                              cfg.paths.output_dir)
        if done is not None and not cfg.resume:
            log.info("infer: these predictions already exist in %s (same model, data and "
                     "settings); reusing them. Set infer.redo=true to generate again.", done)
            return done

    with start_run(cfg, "infer", resumable=True) as run_:
        path = run_.path(PREDICTIONS_FILE)
        written = _read_written(path) if run_.resumed else {}
        todo = [r for r in rows if r["id"] not in written]
        if written:
            log.info("infer: %d of %d rows already written; generating the other %d",
                     len(rows) - len(todo), len(rows), len(todo))
        prompts = [prompt_for(r, request.template, request.dialect) for r in todo]
        settings = GenerationSettings.from_config(cfg.infer, request.template.stop_string)
        if todo:
            backend = make_backend(cfg, request.source)
            database = request.database or (ingest.database if ingest else None)
            with path.open("a", encoding="utf-8") as out:
                batches = (backend.generate_batches(prompts, settings)
                           if cfg.infer.candidates == 1
                           else _voted_batches(cfg, backend, prompts, todo, settings,
                                               database, request))
                for indices, generations in batches:
                    for i, generation in zip(indices, generations, strict=True):
                        row = _prediction(todo[i], generation.text, generation.seconds,
                                          request)
                        if isinstance(generation, VotedGeneration):
                            row.update(generation.fields())
                        written[row["id"]] = row
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    out.flush()
                    os.fsync(out.fileno())  # a kill loses at most the batch in flight
        # Final file: input order, each row once.
        write_jsonl(path, [written[r["id"]] for r in rows])
        database = request.database or (ingest.database if ingest else None)
        source = request.source
        PredictionsArtifact(
            predictions=path, count=len(rows), base_model=source.base if source else None,
            adapter=source.adapter if source else None,
            merged_model=source.merged if source else None, backend=cfg.infer.backend,
            dataset_run=dataset_dir, database=cfg.db.path or database,
            database_kind=(cfg.db.kind if cfg.db.path or ingest is None
                           else ingest.database_kind),
            fingerprint=None if cfg.question else fingerprint).write(run_)
        log.info("infer: %d predictions in %s", len(rows), path)
    if cfg.question:
        print(written["question"]["sql"], flush=True)  # last on stdout, after the log lines
    return run_.dir
