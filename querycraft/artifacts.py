"""The typed contract between stages: what each kind of run hands the next.

One frozen dataclass per run kind (ingest, finetune, predictions from infer or correct,
evaluation), each with ``write(run_)``, which records it in the run's manifest through
``Run.record``, and ``read(run_dir)``, which reads it back from a finished run of that kind
or says in one paragraph why it cannot. Services read earlier runs only through these
classes, never a manifest key by name (``tests/test_artifacts.py`` checks this from the
code). A fact belongs to the stage that produced it; a later stage that needs it follows
the chain (infer: finetune run -> its ingest run -> the database) instead of having every
stage in between relay it.

The manifest keys keep their historical names (``dataset_dir`` for a finetune run's ingest
run, ``target_dialect`` for a correct run's SQL dialect), so older runs stay readable.
Files a run keeps in its own folder (the dataset, the prompt template, the predictions,
the items) are found there, not at the path once recorded: a moved output folder still
reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from querycraft.errors import QueryCraftError
from querycraft.prompts import SAVED_TEMPLATE_FILE
from querycraft.runs import Run, iter_runs, read_manifest

if TYPE_CHECKING:
    from querycraft.backends import ModelSource

DATASET_DIR = "dataset"
PREDICTIONS_FILE = "predictions.jsonl"
SUMMARY_FILE = "summary.json"
ITEMS_FILE = "items.jsonl"


def _finished_manifest(run_dir: Path, services: tuple[str, ...], what: str) -> dict[str, Any]:
    """The manifest of ``run_dir``, checked to be a finished run of one of ``services``."""
    info = read_manifest(run_dir)
    service = info.get("service")
    if service not in services:
        raise QueryCraftError(
            f"{run_dir} was made by service={service}, not {what}; point the setting at the "
            f"folder of a finished {' or '.join(services)} run (python -m querycraft "
            f"service={services[0]} makes one).")
    if info.get("status") != "completed":
        raise QueryCraftError(
            f"{run_dir} is a {service} run that did not finish (status {info.get('status')}); "
            f"run that stage again, or point the setting at a finished run.")
    return info


def _required(info: dict[str, Any], key: str, run_dir: Path, rerun: str) -> Any:
    value = info.get(key)
    if value is None:
        raise QueryCraftError(
            f"{run_dir} is a {info.get('service')} run whose manifest has no '{key}': it was "
            f"made by an older QueryCraft or its run.json was edited. {rerun}")
    return value


def _optional_path(value: Any) -> Path | None:
    # Older infer runs wrote the string "None" where there was no dataset.
    return Path(value) if value not in (None, "", "None") else None


def _sqlite_database(database: str | None, kind: str) -> str | None:
    """A recorded database that can stand in for ``db.path``: a SQLite file or folder. A
    server run records a password-free description instead, which is no such fallback."""
    return database if kind == "sqlite" else None


@dataclass(frozen=True)
class IngestArtifact:
    """An ingest run: the dataset it prepared (or the table it loaded) and its database."""

    # <run>/dataset holding train.jsonl and eval.jsonl; None for a table-loading run.
    dataset: Path | None
    # The dialect the gold SQL is written in (data.dialect); None in runs older than it.
    dialect: str | None = None
    # The SQLite file or folder, or a server's password-free description; None: no database.
    database: str | None = None
    database_kind: str = "sqlite"
    # Rows per split and dropped rows.
    counts: Mapping[str, int] | None = None
    # ingest.load.csv: what was loaded into which table.
    loaded: Mapping[str, Any] | None = None
    # How each row's schema context was built (querycraft.contexts.ContextSettings as a
    # dict), so that a question asked later gets the same; None in runs older than it.
    context: Mapping[str, Any] | None = None

    SERVICES: ClassVar[tuple[str, ...]] = ("ingest",)

    def write(self, run_: Run) -> None:
        facts: dict[str, Any] = {"database": self.database,
                                 "database_kind": self.database_kind}
        if self.dataset is not None:
            facts.update(dataset=str(self.dataset), dialect=self.dialect,
                         counts=dict(self.counts or {}))
        if self.context is not None:
            facts["context"] = dict(self.context)
        if self.loaded is not None:
            facts["loaded"] = dict(self.loaded)
        run_.record(**facts)

    @classmethod
    def read(cls, run_dir: str | Path) -> IngestArtifact:
        run_dir = Path(run_dir)
        info = _finished_manifest(run_dir, cls.SERVICES, "an ingest run")
        dataset = run_dir / DATASET_DIR
        return cls(dataset=dataset if dataset.is_dir() else None,
                   dialect=info.get("dialect"), database=info.get("database"),
                   database_kind=info.get("database_kind") or "sqlite",
                   counts=info.get("counts"), loaded=info.get("loaded"),
                   context=info.get("context"))

    def split_file(self, split: str) -> Path:
        """The JSONL file of one split (``train`` or ``eval``)."""
        if self.dataset is None:
            raise QueryCraftError(
                "This ingest run loaded a table into a database and made no dataset; point "
                "the setting at a run of python -m querycraft service=ingest on your examples.")
        path = self.dataset / f"{split}.jsonl"
        if not path.is_file():
            raise QueryCraftError(f"The ingest run's dataset has no {split} split ({path} is "
                                  f"missing); run python -m querycraft service=ingest again.")
        return path

    def sqlite_database(self) -> str | None:
        return _sqlite_database(self.database, self.database_kind)


@dataclass(frozen=True)
class FinetuneArtifact:
    """A finetune run: the model it made and how to prompt it."""

    base_model: str
    adapter: Path
    # The ingest run it trained on (manifest key ``dataset_dir``).
    ingest_run: Path
    # The dialect's name as the prompt said it, and the template trained with.
    prompt_dialect: str
    prompt_template: Path
    merged_model: str | None = None
    model_name: str | None = None
    peft: Mapping[str, Any] | None = None
    quantization: Mapping[str, Any] | None = None

    SERVICES: ClassVar[tuple[str, ...]] = ("finetune",)
    RERUN: ClassVar[str] = "Fine-tune again (python -m querycraft service=finetune) to use it."

    def write(self, run_: Run) -> None:
        run_.record(base_model=self.base_model, adapter=str(self.adapter),
                    merged_model=self.merged_model, dataset_dir=str(self.ingest_run),
                    prompt_dialect=self.prompt_dialect,
                    prompt_template=str(self.prompt_template), model_name=self.model_name,
                    peft=dict(self.peft) if self.peft is not None else None,
                    quantization=(dict(self.quantization) if self.quantization is not None
                                  else None))

    @classmethod
    def read(cls, run_dir: str | Path) -> FinetuneArtifact:
        run_dir = Path(run_dir)
        info = _finished_manifest(run_dir, cls.SERVICES, "a finetune run")
        template = run_dir / SAVED_TEMPLATE_FILE
        if not template.is_file():
            raise QueryCraftError(f"{run_dir} is a finetune run without its prompt template "
                                  f"({SAVED_TEMPLATE_FILE}). {cls.RERUN}")
        return cls(base_model=_required(info, "base_model", run_dir, cls.RERUN),
                   adapter=Path(_required(info, "adapter", run_dir, cls.RERUN)),
                   ingest_run=Path(_required(info, "dataset_dir", run_dir, cls.RERUN)),
                   prompt_dialect=_required(info, "prompt_dialect", run_dir, cls.RERUN),
                   prompt_template=template, merged_model=info.get("merged_model"),
                   model_name=info.get("model_name"), peft=info.get("peft"),
                   quantization=info.get("quantization"))

    def ingest(self) -> IngestArtifact:
        """The ingest run it trained on."""
        return IngestArtifact.read(self.ingest_run)

    def model_source(self, use_adapter: bool = True, use_merged: bool = False) -> ModelSource:
        """What a backend loads for this run: the base with the adapter (stored as it trained,
        quantized or not), the merged model, or the base alone (``use_adapter=False``)."""
        from querycraft.backends import ModelSource

        if use_merged and not self.merged_model:
            raise QueryCraftError(f"{self.adapter.parent} has no merged model; fine-tune with "
                                  f"train.merge_adapter=true, or use the adapter.")
        if use_merged:
            return ModelSource(base=self.base_model, merged=self.merged_model)
        if not use_adapter:
            return ModelSource(base=self.base_model)
        return ModelSource(base=self.base_model, adapter=str(self.adapter),
                           quantization=(dict(self.quantization)
                                         if self.quantization is not None else None),
                           lora_rank=(self.peft or {}).get("r"))


# What a correct run adds about its corrections, kept as top-level manifest keys.
CORRECTION_KEYS = ("changed", "valid", "validated", "unresolved", "fired", "read_dialect",
                   "self_correction")


@dataclass(frozen=True)
class PredictionsArtifact:
    """An infer or correct run: generated SQL, the model that wrote it and what it is about."""

    predictions: Path
    count: int | None = None
    # The model: None for one a server named (infer.backend=openai).
    base_model: str | None = None
    adapter: str | None = None
    merged_model: str | None = None
    backend: str | None = None
    # The ingest run whose questions were asked (manifest key ``dataset_dir``); None for
    # question=...
    dataset_run: Path | None = None
    database: str | None = None
    database_kind: str = "sqlite"
    # infer: what decided the output (a run with the same one is reused).
    fingerprint: Mapping[str, Any] | None = None
    # correct: the infer run it corrected, the dialect it wrote (``target_dialect``) and
    # what the rules did (CORRECTION_KEYS).
    source: Path | None = None
    dialect: str | None = None
    correction: Mapping[str, Any] | None = None

    SERVICES: ClassVar[tuple[str, ...]] = ("infer", "correct")

    def write(self, run_: Run) -> None:
        run_.record(predictions=str(self.predictions), count=self.count,
                    base_model=self.base_model, adapter=self.adapter,
                    merged_model=self.merged_model, backend=self.backend,
                    dataset_dir=str(self.dataset_run) if self.dataset_run else None,
                    database=self.database, database_kind=self.database_kind,
                    **({"fingerprint": dict(self.fingerprint)} if self.fingerprint else {}),
                    **({"source": str(self.source)} if self.source else {}),
                    **({"target_dialect": self.dialect} if self.dialect else {}),
                    **dict(self.correction or {}))

    @classmethod
    def read(cls, run_dir: str | Path) -> PredictionsArtifact:
        run_dir = Path(run_dir)
        info = _finished_manifest(run_dir, cls.SERVICES, "an infer or correct run")
        predictions = run_dir / PREDICTIONS_FILE
        if not predictions.is_file():
            raise QueryCraftError(
                f"{run_dir} is a finished {info['service']} run without its {PREDICTIONS_FILE}; "
                f"run python -m querycraft service={info['service']} again.")
        correction = {k: info[k] for k in CORRECTION_KEYS if k in info}
        return cls(predictions=predictions, count=info.get("count"),
                   base_model=info.get("base_model"), adapter=info.get("adapter"),
                   merged_model=info.get("merged_model"), backend=info.get("backend"),
                   dataset_run=_optional_path(info.get("dataset_dir")),
                   database=info.get("database"),
                   database_kind=info.get("database_kind") or "sqlite",
                   fingerprint=info.get("fingerprint"),
                   source=_optional_path(info.get("source")),
                   dialect=info.get("target_dialect"), correction=correction or None)

    def sqlite_database(self) -> str | None:
        return _sqlite_database(self.database, self.database_kind)

    def ingest(self) -> IngestArtifact | None:
        """The ingest run whose questions these answer; None when none is recorded or its
        folder is gone."""
        if self.dataset_run is None or not self.dataset_run.is_dir():
            return None
        return IngestArtifact.read(self.dataset_run)

    def finetune(self) -> FinetuneArtifact | None:
        """The finetune run whose adapter (or base model) wrote these predictions, when the
        model lives in one: a hub model or a base alone has none."""
        model = self.adapter or self.base_model
        if not model:
            return None
        try:
            return FinetuneArtifact.read(Path(model).parent)
        except QueryCraftError:
            return None


# The rates every scored column has (EvaluationSummary.columns), in the order tables show them.
COLUMN_METRICS = ("execution_accuracy", "exact_match", "exact_set_match", "token_match",
                  "valid_sql_rate")


@dataclass(frozen=True)
class EvaluationSummary:
    """What an evaluate run measured (``summary.json``): the headline column's rates, error
    and relation counts and breakdowns; every scored column's rates; and what was scored.

    A summary written by an older QueryCraft, or edited by hand, may lack fields: they read as
    None (or empty), and keys this version does not know are kept in ``extra``.
    """

    # Items scored (their gold SQL ran) and items left out because their gold SQL failed.
    items: int | None = None
    gold_failed: int = 0
    execution_accuracy: float | None = None
    exact_match: float | None = None
    # None when no item could be parsed for Spider's exact-set match.
    exact_set_match: float | None = None
    token_match: float | None = None
    valid_sql_rate: float | None = None
    errors: Mapping[str, int] = field(default_factory=dict)
    # How a valid but wrong result relates to the gold result (subset, superset...).
    relations: Mapping[str, int] = field(default_factory=dict)
    # name -> {"count", "execution_accuracy", "exact_match"}
    by_difficulty: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    by_feature: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The headline column ("sql" or "corrected") and every scored column's COLUMN_METRICS.
    column: str | None = None
    columns: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    predictions: str | None = None
    model: str | None = None
    preset: str | None = None
    adapter: str | None = None
    peft: Mapping[str, Any] | None = None
    dataset: str | None = None
    database: str | None = None
    distinct: bool | None = None
    workers: int | None = None
    seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def column_scores(self, column: str) -> Mapping[str, float | None]:
        """One scored column's rates; the headline's own when ``columns`` lacks it (older
        summaries scored one column)."""
        if column in self.columns:
            return self.columns[column]
        if column == (self.column or "sql"):
            return {m: getattr(self, m) for m in COLUMN_METRICS}
        return {}

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key in ("errors", "relations", "by_difficulty", "by_feature", "columns"):
            data[key] = {k: dict(v) if isinstance(v, Mapping) else v
                         for k, v in data[key].items()}
        if data["peft"] is not None:
            data["peft"] = dict(data["peft"])
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationSummary:
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


@dataclass(frozen=True)
class EvaluationArtifact:
    """An evaluate run: the summary (``summary.json``) and the scored items."""

    summary: EvaluationSummary
    # items.jsonl; None in a run folder that lost it.
    items: Path | None = None
    # When it finished (else started), as recorded.
    finished: str | None = None

    SERVICES: ClassVar[tuple[str, ...]] = ("evaluate",)

    def write(self, run_: Run) -> None:
        data = self.summary.as_dict()
        if run_.is_main:
            run_.path(SUMMARY_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")
        run_.record(summary=data)

    @classmethod
    def read(cls, run_dir: str | Path) -> EvaluationArtifact:
        run_dir = Path(run_dir)
        info = _finished_manifest(run_dir, cls.SERVICES, "an evaluate run")
        path = run_dir / SUMMARY_FILE
        # summary.json first: it is the file a user reads and may have fixed by hand.
        summary = (json.loads(path.read_text(encoding="utf-8")) if path.is_file()
                   else _required(info, "summary", run_dir,
                                  "Evaluate again (python -m querycraft service=evaluate)."))
        if not isinstance(summary, Mapping):
            raise QueryCraftError(f"{path} is not a JSON object; evaluate again (python -m "
                                  f"querycraft service=evaluate).")
        items = run_dir / ITEMS_FILE
        return cls(summary=EvaluationSummary.from_dict(summary),
                   items=items if items.is_file() else None,
                   finished=info.get("finished") or info.get("started"))


Artifact = TypeVar("Artifact", IngestArtifact, FinetuneArtifact, PredictionsArtifact,
                    EvaluationArtifact)


def finished_runs(output_dir: str | Path, kind: type[Artifact], service: str | None = None,
                  *, skip_unreadable: bool = False) -> Iterator[tuple[Path, Artifact]]:
    """Every finished run of ``kind`` under ``output_dir`` (sorted folders), read.

    Args:
        service: only runs of this service (``infer`` of the two predictions services).
        skip_unreadable: leave out a run the artifact cannot be read from, instead of raising.
    """
    for service_name in (service,) if service else kind.SERVICES:
        for folder, info in iter_runs(output_dir, service_name):
            if info.get("status") != "completed":
                continue
            try:
                yield folder, kind.read(folder)
            except QueryCraftError:
                if not skip_unreadable:
                    raise
