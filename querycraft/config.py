"""Typed configuration: one dataclass per config group, registered in Hydra's ConfigStore.

Every YAML file in ``conf/<group>/`` starts from its group's schema here, so an unknown key
or a value of the wrong type stops composition at once (see ``querycraft.cli`` for the
message users see). ``check_config`` then checks what types cannot express (files exist,
fractions lie in range, template placeholders are known) before any model is loaded.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from querycraft.errors import QueryCraftError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "conf"


@dataclass
class PathsConfig:
    """Where things are read from and written to; every other path derives from these."""

    root: str = "${qc_root:}"
    input_dir: str = "${paths.root}/input"
    output_dir: str = "${paths.root}/output"
    prompts_dir: str = "${paths.root}/prompts"
    # The folder of this run; Hydra creates it (see conf/config.yaml, hydra.run.dir).
    run_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class ServiceConfig:
    """Which stage runs: ``_target_`` is the entry function, called with the whole config."""

    name: str = MISSING
    _target_: str = MISSING


@dataclass
class TinyModelConfig:
    """Shape of the offline model built from a config (no download)."""

    architecture: str = "llama"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    vocab_size: int = 1024
    max_position_embeddings: int = 1024


@dataclass
class ModelConfig:
    """A model preset: where the weights come from and which modules LoRA can target."""

    name: str = MISSING
    family: str = "llama"
    # Hub id or local folder, loaded with from_pretrained. Null for a model built locally.
    name_or_path: str | None = None
    # "tiny": build a small model from ``tiny`` with a tokenizer trained on the data.
    builder: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    target_modules: dict[str, list[str]] = field(
        default_factory=lambda: {
            "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
            "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                           "down_proj"],
        }
    )
    # Modules trained in full next to any adapter on this model (added to peft's own list).
    modules_to_save: list[str] | None = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


@dataclass
class PeftConfig:
    """LoRA adapter settings."""

    method: str = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    bias: str = "none"
    # A named set from the model preset's target_modules, used unless target_modules is set.
    targets: str = "all_linear"
    target_modules: list[str] | None = None
    # Modules trained in full next to the adapter (for example embed_tokens of a new vocabulary).
    modules_to_save: list[str] | None = None


@dataclass
class CollatorConfig:
    """How examples become batches, and which tokens carry loss."""

    name: str = "completion_only"
    pad_to_multiple_of: int | None = None


@dataclass
class ColumnsConfig:
    """Names of the input columns (JSON keys) that hold each field."""

    question: str = "question"
    query: str = "query"
    context: str = "context"
    db_id: str = "db_id"


@dataclass
class DataConfig:
    """The examples to ingest, and the database they run on."""

    name: str = MISSING
    # csv | json | spider
    format: str = "csv"
    path: str = MISSING
    # A SQLite file, or a folder holding <db_id>/<db_id>.sqlite (Spider's layout).
    database: str | None = None
    # Dialect the gold SQL is written in (sqlglot name).
    dialect: str = "sqlite"
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)


@dataclass
class PromptConfig:
    """The prompt template (a text file in prompts/) shared by training and inference."""

    template: str = "default"
    dialect_name: str = "SQLite"


@dataclass
class DbConfig:
    """The database generated SQL runs on (read-only, with a timeout and a row cap)."""

    kind: str = "sqlite"
    # A SQLite file, or a folder of <db_id>/<db_id>.sqlite; null: the database the dataset
    # was ingested from (recorded in the ingest run).
    path: str | None = None
    timeout_s: float = 10.0
    max_rows: int = 10000


@dataclass
class IngestConfig:
    eval_fraction: float = 0.1
    # Keep only this many rows (after validation), for quick trials.
    max_rows: int | None = None
    validate_execution: bool = True
    deduplicate: bool = True
    # Token lengths in the report are measured against this.
    max_seq_length: int = "${train.max_seq_length}"  # type: ignore[assignment]


@dataclass
class TrainConfig:
    # An ingest run folder; null: the newest completed ingest run under output/.
    dataset_dir: str | None = None
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    micro_batch_size: int = 4
    global_batch_size: int = 16
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_seq_length: int = 512
    logging_steps: int = 10


@dataclass
class InferConfig:
    # A finetune run folder; null: the newest completed finetune run under output/.
    finetune_dir: str | None = None
    # False: generate with the base model alone (the "before fine-tuning" baseline).
    use_adapter: bool = True
    # An ingest run folder; null: the dataset the finetune run trained on.
    dataset_dir: str | None = None
    split: str = "eval"
    batch_size: int = 16
    max_new_tokens: int = 128
    limit: int | None = None


@dataclass
class EvaluateConfig:
    # An infer run folder; null: the newest completed infer run under output/.
    predictions_dir: str | None = None
    # Which column of the predictions to score: "sql" (raw, extracted) or "corrected".
    prediction_column: str = "sql"


@dataclass
class CorrectConfig:
    # An infer run folder; null: the newest completed infer run under output/.
    predictions_dir: str | None = None


@dataclass
class PipelineConfig:
    # Also score the base model before fine-tuning, for the side-by-side comparison.
    evaluate_base: bool = True


@dataclass
class Config:
    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    collator: CollatorConfig = field(default_factory=CollatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    db: DbConfig = field(default_factory=DbConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    correct: CorrectConfig = field(default_factory=CorrectConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)



SERVICES = ("ingest", "finetune", "infer", "correct", "evaluate", "pipeline")
COLLATORS = ("completion_only", "language_modeling")
DATA_FORMATS = ("csv", "json", "spider")
MODEL_BUILDERS = ("tiny",)


@functools.cache
def _unique_dir(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``... if it exists: a new run never reuses a folder.

    Cached so that every resolution within one process names the same folder.
    """
    candidate, n = path, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def register_configs() -> None:
    """Register schemas and resolvers; safe to call more than once."""
    if not OmegaConf.has_resolver("qc_root"):
        OmegaConf.register_new_resolver("qc_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("qc_unique"):
        OmegaConf.register_new_resolver("qc_unique", _unique_dir)
    if not OmegaConf.has_resolver("qc_now"):
        OmegaConf.register_new_resolver(
            "qc_now", lambda: datetime.now().strftime("%Y-%m-%d_%H-%M-%S"), use_cache=True
        )
    # One schema for the whole tree: conf/config.yaml lists it first, so every group file
    # is merged onto typed dataclasses and an unknown key or a wrong type fails at once.
    ConfigStore.instance().store(name="schema", node=Config)


def _exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


def check_config(cfg: DictConfig) -> None:
    """Check what types cannot: values in range, files present, names known.

    All problems are gathered and reported in one error, before anything heavy loads.

    Raises:
        QueryCraftError: listing every problem found.
    """
    from querycraft.prompts import load_template  # local: prompts imports this module

    problems: list[str] = []
    service = cfg.service.name
    if service not in SERVICES:
        problems.append(f"service.name '{service}' is not one of {', '.join(SERVICES)}")
    if not 0.0 < cfg.ingest.eval_fraction < 1.0:
        problems.append(f"ingest.eval_fraction must be between 0 and 1, got "
                        f"{cfg.ingest.eval_fraction}")
    if cfg.data.format not in DATA_FORMATS:
        problems.append(f"data.format '{cfg.data.format}' is not one of {', '.join(DATA_FORMATS)}")
    if cfg.collator.name not in COLLATORS:
        problems.append(f"collator.name '{cfg.collator.name}' is not one of "
                        f"{', '.join(COLLATORS)}")
    if cfg.model.builder is None and not cfg.model.name_or_path:
        problems.append("model.name_or_path is empty: set a hub id or a local folder")
    if cfg.model.builder is not None and cfg.model.builder not in MODEL_BUILDERS:
        problems.append(f"model.builder '{cfg.model.builder}' is not one of "
                        f"{', '.join(MODEL_BUILDERS)}")
    if cfg.peft.target_modules is None and cfg.peft.targets not in cfg.model.target_modules:
        problems.append(f"peft.targets '{cfg.peft.targets}' is not a target set of model "
                        f"'{cfg.model.name}'; choose one of "
                        f"{', '.join(cfg.model.target_modules)} or list peft.target_modules")
    train = cfg.train
    if train.micro_batch_size < 1 or train.global_batch_size % train.micro_batch_size:
        problems.append(f"train.global_batch_size ({train.global_batch_size}) must be a "
                        f"multiple of train.micro_batch_size ({train.micro_batch_size})")
    if train.max_seq_length < 16:
        problems.append("train.max_seq_length must be at least 16")
    if cfg.infer.split not in ("train", "eval"):
        problems.append(f"infer.split must be 'train' or 'eval', got '{cfg.infer.split}'")
    if service in ("ingest", "pipeline"):
        if not _exists(cfg.data.path):
            problems.append(f"data.path '{cfg.data.path}' does not exist: put your file in "
                            f"input/ and point data.path at it")
        if cfg.data.database is not None and not _exists(cfg.data.database):
            problems.append(f"data.database '{cfg.data.database}' does not exist")
    try:
        load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    except QueryCraftError as err:
        problems.append(str(err))
    if problems:
        raise QueryCraftError(
            "The configuration has problems; fix them in conf/ or on the command line: "
            + "; ".join(problems) + "."
        )
