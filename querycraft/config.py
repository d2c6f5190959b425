"""Typed configuration: one dataclass per config group, registered in Hydra's ConfigStore.

Every YAML file in ``conf/<group>/`` starts from its group's schema here, so an unknown key
or a value of the wrong type stops composition at once (see ``querycraft.cli`` for the
message users see). ``check_config`` then checks what types cannot express (files exist,
fractions lie in range, template placeholders are known) before any model is loaded.
"""

from __future__ import annotations

import functools
import logging
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
    # Models converted from GGUF files (one folder per file content); safe to delete.
    cache_dir: str = "${oc.env:QC_CACHE_DIR,'~/.cache/querycraft'}"
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
    # The transformers model_type (config.json's "model_type"): llama, mistral, qwen2,
    # gemma2, granite, phi3... The tiny builder builds this architecture.
    architecture: str = "llama"
    # Hub id or local folder, loaded with from_pretrained. Null for a model built locally.
    name_or_path: str | None = None
    # A GGUF file (llama.cpp, Ollama) to start from instead: a path, or
    # pkg:<python package>/<file> for one shipped in an installed package. Converted once
    # into paths.cache_dir and loaded from there.
    gguf_file: str | None = None
    # "tiny": build a small model from ``tiny`` with a tokenizer trained on the data.
    builder: str | None = None
    # The prompt format this model was tuned with: a template name in prompts/ (plain
    # "default" for base models, the family's chat markup for instruct models).
    prompt_template: str = "default"
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
class QuantizationConfig:
    """How the frozen base weights are stored while the adapter trains (bitsandbytes)."""

    # null: full precision (plain LoRA); 4: QLoRA; 8: LLM.int8() LoRA.
    bits: int | None = None
    # 4-bit only: "nf4" (QLoRA paper) or "fp4".
    quant_type: str = "nf4"
    # 4-bit only: quantize the quantization constants too (saves ~0.4 bit per weight).
    double_quant: bool = True
    # The dtype 4-bit layers compute in; "auto": bfloat16 on GPUs that support it, else
    # float16 on GPU, float32 on CPU.
    compute_dtype: str = "auto"


@dataclass
class PeftConfig:
    """Adapter settings: LoRA, QLoRA, 8-bit LoRA or DoRA (see conf/peft/)."""

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
    # Weight-decomposed LoRA (DoRA): learns a magnitude per output too; slower, often better.
    use_dora: bool = False
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)


@dataclass
class CollatorConfig:
    """How examples become batches, and which tokens carry loss (see conf/collator/)."""

    name: str = "completion_only"
    # Pad each batch to a multiple of this (tensor cores like 8); null: to its longest example.
    pad_to_multiple_of: int | None = None
    # Pad every example to this fixed length ("default" collator only; null: max_seq_length).
    pad_to_length: int | None = None
    # Put several examples in one row, with position ids restarting per example so no
    # token attends across examples; no padding at all. Dynamic-padding collators only.
    packing: bool = False


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

    # By default the model preset's format (model.prompt_template).
    template: str = "${model.prompt_template}"
    dialect_name: str = "SQLite"


@dataclass
class DbConfig:
    """The database SQL runs on (read-only, with a timeout and a row cap): conf/db/."""

    # An engine: a module of querycraft/engines/ (sqlite, postgres, ...) and its preset
    # conf/db/<kind>.yaml.
    kind: str = "sqlite"
    # SQLite: a file, or a folder of <db_id>/<db_id>.sqlite; null: the database the dataset
    # was ingested from (recorded in the ingest run).
    path: str | None = None
    # Servers: a whole SQLAlchemy URL, or the parts below. "{db_id}" in database, schema or
    # url picks each example's database (one database or schema per Spider db_id).
    url: str | None = None
    driver: str | None = None  # SQLAlchemy drivername; default: the engine's
    host: str | None = None
    port: int | None = None
    user: str | None = None
    # Never written here or on the command line: conf/db/*.yaml read it from the environment
    # (${oc.env:QC_DB_PASSWORD,null}); it never appears in logs, reports or saved configs.
    password: str | None = None
    database: str | None = None
    schema: str | None = None  # the server's schema (PostgreSQL search_path, ...): conf/db/
    connect_timeout_s: float = 10.0
    timeout_s: float = 10.0
    max_rows: int = 10000
    # Schema context: this many example values per column (0: none).
    sample_values: int = 0


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
    eval_fraction: float = 0.1
    # "random": one split over all examples; "db_id": the same share of each database's
    # examples held out (new questions about the databases trained on).
    split_by: str = "random"
    # Keep only this many rows (after validation), for quick trials.
    max_rows: int | None = None
    validate_execution: bool = True
    deduplicate: bool = True
    # Schema context read from the database: all tables, or only those a question needs.
    context_tables: str = "all"
    load: LoadConfig = field(default_factory=LoadConfig)
    # Token lengths in the report are measured against this.
    max_seq_length: int = "${train.max_seq_length}"  # type: ignore[assignment]


@dataclass
class TrainConfig:
    # An ingest run folder; null: the newest completed ingest run under output/.
    dataset_dir: str | None = None
    # Length: epochs, unless max_steps (optimizer steps) is positive.
    epochs: float = 3.0
    max_steps: int = -1
    # Examples per optimizer step, over all processes; gradient accumulation is derived:
    # global_batch_size / (micro_batch_size * number of processes).
    global_batch_size: int = 16
    # Examples per forward pass on one device.
    micro_batch_size: int = 4
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    # Mixed precision: "auto" (bf16 on GPUs that have it, fp16 on older GPUs; bf16 autocast
    # on CPUs with bfloat16 instructions, else none), "bf16", "fp16" or "no".
    precision: str = "auto"
    gradient_checkpointing: bool = False
    # Tokens per example (prompt + SQL + end-of-sequence). A longer example is never cut.
    max_seq_length: int = 512
    # What to do with an example longer than max_seq_length: "skip" (report it in
    # too_long.csv and train without it) or "error" (stop before training).
    on_too_long: str = "skip"
    # Share of the training split held out to measure validation loss (the ingest eval
    # split stays untouched for evaluation). 0: no validation.
    validation_fraction: float = 0.05
    # Validation and checkpoint intervals in optimizer steps; null: once per epoch.
    eval_steps: int | None = None
    save_steps: int | None = None
    # Checkpoints kept on disk (the best one by validation loss is always kept).
    save_total_limit: int = 2
    # Stop when validation loss has not improved for this many evaluations; null: never.
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    logging_steps: int = 10
    # Where training curves go: any of tensorboard, wandb, mlflow (each needs its package).
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    # Also save base + adapter merged into one model (HF format) in merged_model/.
    merge_adapter: bool = False


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
    # A finished run with the same inputs and settings is reused, not redone, unless true.
    redo: bool = False
    server: ServerConfig = field(default_factory=ServerConfig)


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
    # The dialect the gold SQL is written in; when the database speaks another (Spider's
    # SQLite gold on PostgreSQL), gold queries are fitted to it by the correction engine's
    # dialect rules before they run. null: the dataset's (data.dialect at ingest), else sqlite.
    gold_dialect: str | None = None


@dataclass
class CorrectConfig:
    # An infer run folder; null: the newest completed infer run under output/.
    predictions_dir: str | None = None
    # The dialect the model was asked to write (sqlglot name).
    read_dialect: str = "${data.dialect}"
    # The dialect of the corrected query; null: the read dialect.
    target_dialect: str | None = None
    # The correction rules, each on or off (docs/CORRECT.md), in the order they run: the names
    # of querycraft/correction/rules RULES, written out so that reading the config imports no
    # sqlglot (tests/test_correction_rules.py checks they match).
    rules: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(
        ("extract_statement", "join_split_operators", "balance_quotes_and_parentheses",
         "fix_identifiers", "fix_qualifiers", "fit_dialect", "reformat"), True))
    # Check each corrected query against the SQLite database (EXPLAIN: compiled, not run).
    validate: bool = True
    # fix_identifiers: the most edits between a wrong name and the one it is replaced by
    # (also at most one edit per 4 characters of the name, and never on ties).
    max_edit_distance: int = 2
    # Ask the model again, at most this many times, for a query SQLite still refuses: the
    # prompt (prompts/<self_correct_template>.txt) shows the refused query and the error.
    # 0: off. Uses the model of the infer run, with infer.* generation settings.
    self_correct_rounds: int = 0
    self_correct_template: str = "self_correct"


@dataclass
class PipelineConfig:
    # Also score the base model before fine-tuning, for the side-by-side comparison.
    evaluate_base: bool = True
    # Run the correct stage between infer and evaluate; both the raw and the corrected SQL
    # are scored.
    correct: bool = True


@dataclass
class Config:
    seed: int = 42
    # Continue the newest unfinished run of this service (finetune: from its last checkpoint;
    # infer: generating only the rows not yet written).
    resume: bool = False
    # service=infer only: answer this one question (schema from the database) and print SQL.
    question: str | None = None
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



SERVICES = ("ingest", "finetune", "infer", "correct", "evaluate", "pipeline", "report")
COLLATORS = ("completion_only", "language_modeling", "seq2seq", "default")
PEFT_METHODS = ("lora", "qlora", "lora-8bit", "dora")
REPORTERS = ("tensorboard", "wandb", "mlflow")
PRECISIONS = ("auto", "bf16", "fp16", "no")
INFER_BACKENDS = ("hf", "vllm", "openai")
DATA_FORMATS = ("csv", "json", "spider")
MODEL_BUILDERS = ("tiny",)


def _unique_dir(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``... if it exists: a new run never reuses a folder."""
    candidate, n = path, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def _shared_by_ranks(key: str, choose) -> str:
    """``choose()`` on rank 0; in a data-parallel launch the other ranks get its answer.

    torchrun (behind ``accelerate launch``) runs a key-value store at MASTER_ADDR:MASTER_PORT
    for its workers; rank 0 publishes the run folder there, so every process writes to one
    folder even when their clocks read different seconds.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or "MASTER_ADDR" not in os.environ:
        return choose()
    from datetime import timedelta

    import torch.distributed as dist

    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=False, timeout=timedelta(minutes=5))
    store_key = f"querycraft/{key}"
    if int(os.environ.get("RANK", "0")) == 0:
        value = choose()
        store.set(store_key, value)
        return value
    return store.get(store_key).decode()


@functools.cache
def _run_dir(output_dir: str, service: str, resume: bool) -> str:
    """The folder of a new run, or with ``resume``, of the newest unfinished one.

    Cached so that every resolution within one process names the same folder.
    """
    def choose() -> str:
        if resume:
            from querycraft.runs import latest_unfinished_run  # runs imports this module

            found = latest_unfinished_run(Path(output_dir) / service, service)
            if found is not None:
                return str(found)
            logging.getLogger("querycraft").warning(
                "resume=true but no unfinished %s run under %s/%s: starting a new run",
                service, output_dir, service)
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        return _unique_dir(f"{output_dir}/{service}/{stamp}")

    return _shared_by_ranks(f"run_dir/{service}", choose)


def register_configs() -> None:
    """Register schemas and resolvers; safe to call more than once."""
    if not OmegaConf.has_resolver("qc_root"):
        OmegaConf.register_new_resolver("qc_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("qc_run_dir"):
        OmegaConf.register_new_resolver("qc_run_dir", _run_dir)
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
    if cfg.model.builder is None and not cfg.model.name_or_path and not cfg.model.gguf_file:
        problems.append("model.name_or_path is empty: set a hub id or a local folder (or "
                        "model.gguf_file to a GGUF file)")
    if cfg.model.gguf_file and (cfg.model.builder is not None or cfg.model.name_or_path):
        problems.append("model.gguf_file is set together with "
                        f"{'model.builder' if cfg.model.builder else 'model.name_or_path'}; "
                        "a model comes from one source: set the other to null")
    if cfg.model.builder is not None and cfg.model.builder not in MODEL_BUILDERS:
        problems.append(f"model.builder '{cfg.model.builder}' is not one of "
                        f"{', '.join(MODEL_BUILDERS)}")
    if cfg.peft.target_modules is None and cfg.peft.targets not in cfg.model.target_modules:
        problems.append(f"peft.targets '{cfg.peft.targets}' is not a target set of model "
                        f"'{cfg.model.name}'; choose one of "
                        f"{', '.join(cfg.model.target_modules)} or list peft.target_modules")
    if cfg.collator.packing and cfg.collator.name == "default":
        problems.append("collator.packing needs a dynamic-padding collator; the 'default' "
                        "collator pads every example to a fixed length")
    if cfg.peft.method not in PEFT_METHODS:
        problems.append(f"peft.method '{cfg.peft.method}' is not one of {', '.join(PEFT_METHODS)}")
    quant = cfg.peft.quantization
    if quant.bits not in (None, 4, 8):
        problems.append(f"peft.quantization.bits must be null, 4 or 8, got {quant.bits}")
    if quant.quant_type not in ("nf4", "fp4"):
        problems.append(f"peft.quantization.quant_type must be nf4 or fp4, got {quant.quant_type}")
    if quant.compute_dtype not in ("auto", "bfloat16", "float16", "float32"):
        problems.append(f"peft.quantization.compute_dtype must be auto, bfloat16, float16 or "
                        f"float32, got {quant.compute_dtype}")
    train = cfg.train
    if train.micro_batch_size < 1 or train.global_batch_size % train.micro_batch_size:
        problems.append(f"train.global_batch_size ({train.global_batch_size}) must be a "
                        f"multiple of train.micro_batch_size ({train.micro_batch_size})")
    if train.max_seq_length < 16:
        problems.append("train.max_seq_length must be at least 16")
    if train.on_too_long not in ("skip", "error"):
        problems.append(f"train.on_too_long must be 'skip' or 'error', got '{train.on_too_long}'")
    if not 0.0 <= train.validation_fraction < 1.0:
        problems.append(f"train.validation_fraction must be at least 0 and below 1, got "
                        f"{train.validation_fraction}")
    if train.precision not in PRECISIONS:
        problems.append(f"train.precision '{train.precision}' is not one of "
                        f"{', '.join(PRECISIONS)}")
    unknown_reporters = [r for r in train.report_to if r not in REPORTERS]
    if unknown_reporters:
        problems.append(f"train.report_to has {', '.join(unknown_reporters)}; choose from "
                        f"{', '.join(REPORTERS)} (or [] for none)")
    for key in ("eval_steps", "save_steps", "early_stopping_patience"):
        if train[key] is not None and train[key] < 1:
            problems.append(f"train.{key} must be a positive number of steps or null")
    if train.early_stopping_patience is not None and train.validation_fraction == 0:
        problems.append("train.early_stopping_patience needs validation loss: set "
                        "train.validation_fraction above 0")
    if cfg.infer.backend not in INFER_BACKENDS:
        problems.append(f"infer.backend '{cfg.infer.backend}' is not one of "
                        f"{', '.join(INFER_BACKENDS)}")
    if cfg.infer.batch_size < 1 or cfg.infer.max_new_tokens < 1:
        problems.append("infer.batch_size and infer.max_new_tokens must be at least 1")
    if cfg.evaluate.distinct not in ("keep", "strip"):
        problems.append(f"evaluate.distinct must be 'keep' or 'strip', got "
                        f"'{cfg.evaluate.distinct}'")
    if cfg.evaluate.workers is not None and cfg.evaluate.workers < 1:
        problems.append("evaluate.workers must be at least 1 (or null for one per core)")
    if cfg.infer.split not in ("train", "eval"):
        problems.append(f"infer.split must be 'train' or 'eval', got '{cfg.infer.split}'")
    if service == "correct":
        from querycraft.correction import RULES, dialect_known  # local: imports sqlglot

        unknown_rules = sorted(set(cfg.correct.rules) - set(RULES))
        if unknown_rules:
            problems.append(f"correct.rules has unknown rule(s) {', '.join(unknown_rules)}; "
                            f"the rules are {', '.join(RULES)}")
        for key in ("read_dialect", "target_dialect"):
            if cfg.correct[key] is not None and not dialect_known(cfg.correct[key]):
                problems.append(f"correct.{key} '{cfg.correct[key]}' is not a sqlglot dialect")
        if cfg.correct.max_edit_distance < 0:
            problems.append("correct.max_edit_distance must be 0 or more")
        if cfg.correct.self_correct_rounds < 0:
            problems.append("correct.self_correct_rounds must be 0 or more")
        if cfg.correct.self_correct_rounds:
            try:
                load_template(cfg.correct.self_correct_template, cfg.paths.prompts_dir)
            except QueryCraftError as err:
                problems.append(str(err))
    problems += _db_problems(cfg)
    if service == "ingest" and cfg.ingest.load.csv:
        if not _exists(cfg.ingest.load.csv):
            problems.append(f"ingest.load.csv '{cfg.ingest.load.csv}' does not exist")
    elif service in ("ingest", "pipeline"):
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


def _db_problems(cfg: DictConfig) -> list[str]:
    from querycraft.engines import engine_kinds, get_engine  # local: engines import sqlalchemy

    db, problems = cfg.db, []
    if db.kind not in engine_kinds():
        problems.append(f"db.kind '{db.kind}' is not one of {', '.join(engine_kinds())}")
    elif get_engine(db.kind).is_server and not db.url and not (db.host and db.database):
        problems.append(f"db={db.kind} needs db.host and db.database (or db.url); the password "
                        f"comes from the environment variable QC_DB_PASSWORD")
    if not db.timeout_s > 0 or not db.connect_timeout_s > 0:
        problems.append("db.timeout_s and db.connect_timeout_s must be positive seconds")
    if db.max_rows < 1:
        problems.append("db.max_rows must be at least 1")
    if db.sample_values < 0:
        problems.append("db.sample_values must be 0 or more")
    if cfg.ingest.split_by not in ("random", "db_id"):
        problems.append(f"ingest.split_by must be 'random' or 'db_id', got "
                        f"'{cfg.ingest.split_by}'")
    if cfg.ingest.context_tables not in ("all", "question"):
        problems.append(f"ingest.context_tables must be 'all' or 'question', got "
                        f"'{cfg.ingest.context_tables}'")
    load = cfg.ingest.load
    if load.if_exists not in ("fail", "append", "replace"):
        problems.append(f"ingest.load.if_exists must be fail, append or replace, got "
                        f"'{load.if_exists}'")
    if load.batch_rows < 1:
        problems.append("ingest.load.batch_rows must be at least 1")
    return problems
