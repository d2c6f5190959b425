"""Typed configuration: one dataclass per config group, registered in Hydra's ConfigStore.

Every YAML file in ``conf/<group>/`` starts from its group's schema, so an unknown key or a
value of the wrong type stops composition at once (see ``querycraft.cli`` for the message
users see). The groups every stage shares are defined here; each service's own settings
(``train``, ``infer``, ...) are defined in its module and join the schema by discovery
(:func:`config_schema`, :mod:`querycraft.services`). ``check_config`` then checks what types
cannot express (files exist, fractions lie in range, template placeholders are known) before
any model is loaded: the shared checks here, each service's own in its ``check``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from querycraft.errors import QueryCraftError
from querycraft.prompts import load_template
from querycraft.services import services

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
    """Which stage runs: a module of querycraft/services/ whose ``run(cfg)`` is called with the
    whole config (conf/service/<name>.yaml)."""

    name: str = MISSING


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
    # csv | excel (.xlsx, first sheet) | parquet | json | spider
    format: str = "csv"
    path: str = MISSING
    # A SQLite file, or a folder holding <db_id>/<db_id>.sqlite (Spider's layout).
    database: str | None = None
    # The dialect the gold SQL is written in (sqlglot name). The other dialect is the target
    # database's, from db.kind: prompts name it, corrected SQL is written in it, and gold SQL
    # of another dialect is fitted to it before it runs.
    dialect: str = "sqlite"
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)


@dataclass
class PromptConfig:
    """The prompt template (a text file in prompts/) shared by training and inference."""

    # By default the model preset's format (model.prompt_template).
    template: str = "${model.prompt_template}"
    # The SQL dialect's name the prompt tells the model to write: by default the target
    # database's (its engine's prompt_name: "PostgreSQL" with db=postgres).
    dialect_name: str = "${qc_engine:${db.kind},prompt_name}"


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
    # Generated SQL is hostile input: it is refused on a login that is a superuser or can
    # write (docs/DATABASES.md sets up a read-only role). true only for a throwaway server.
    allow_privileged: bool = False
    # Schemas (MySQL: databases) besides db.schema / db.database that generated SQL may name
    # before a table (other_schema.orders); any other qualifier is refused.
    allow_schemas: list[str] = field(default_factory=list)
    # Bounds on one statement beyond time and rows: its text (checked before parsing), each
    # value and the whole result, in bytes. Longer values are cut, with a marker, in outputs.
    max_sql_bytes: int = 100_000
    max_value_bytes: int = 65_536
    max_result_bytes: int = 16_777_216


@dataclass
class Config:
    """The settings every stage shares. Each service's own settings join it by discovery: see
    :func:`config_schema`."""

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


COLLATORS = ("completion_only", "language_modeling", "seq2seq", "default")
PEFT_METHODS = ("lora", "qlora", "lora-8bit", "dora")
DATA_FORMATS = ("csv", "excel", "parquet", "json", "spider")
MODEL_BUILDERS = ("tiny",)


def config_schema() -> type:
    """The whole config's schema: :class:`Config` plus one field per service with settings,
    its ``SETTINGS`` dataclass under its ``SETTINGS_KEY`` (found by discovery, so a new
    service's settings are typed like the others without being listed here).

    Raises:
        TypeError: a service's settings key is also a shared one.
    """

    shared = {f.name for f in dataclasses.fields(Config)}
    fields: list[tuple[str, type, dataclasses.Field]] = []
    for service in services().values():
        if service.settings is None:
            continue
        if service.settings_key in shared:
            raise TypeError(f"service {service.name} claims the settings key "
                            f"'{service.settings_key}', which every stage shares")
        fields.append((service.settings_key, service.settings,
                       field(default_factory=service.settings)))
    return dataclasses.make_dataclass("QueryCraftConfig", fields, bases=(Config,))


def _engine_value(kind: str, attribute: str) -> str:
    """``${qc_engine:<db.kind>,<attribute>}``: an attribute of the target database's engine
    (``dialect``, ``prompt_name``), so that settings naming a dialect follow ``db``."""
    # Local: the engines load sqlalchemy and sqlglot, which a config error need not wait for.
    from querycraft.engines import engine_kinds, get_engine

    if kind not in engine_kinds():
        return kind  # check_config reports the unknown db.kind, with the known ones
    return str(getattr(get_engine(kind), attribute))


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
    if not OmegaConf.has_resolver("qc_engine"):
        OmegaConf.register_new_resolver("qc_engine", _engine_value)
    # One schema for the whole tree: conf/config.yaml lists it first, so every group file
    # is merged onto typed dataclasses and an unknown key or a wrong type fails at once.
    # Built anew on every call: a service discovered since then brings its settings.
    ConfigStore.instance().store(name="schema", node=config_schema())


def check_config(cfg: DictConfig) -> None:
    """Check what types cannot: values in range, files present, names known.

    The shared settings are checked here, each service's own by its module's ``check``
    (every service's, as the pipeline runs them all and each reads only its own settings).
    All problems are gathered and reported in one error, before anything heavy loads.

    Raises:
        QueryCraftError: listing every problem found.
    """

    problems = shared_problems(cfg)
    for service in services().values():
        if service.check is not None:
            problems += service.check(cfg)
    if problems:
        raise QueryCraftError(
            "The configuration has problems; fix them in conf/ or on the command line: "
            + "; ".join(problems) + "."
        )


def shared_problems(cfg: DictConfig) -> list[str]:
    """What is wrong with the settings every stage shares: the service's name, the model,
    adapter, collator, data format, database and prompt template."""
    problems: list[str] = []
    if cfg.service.name not in services():
        problems.append(f"service.name '{cfg.service.name}' is not one of "
                        f"{', '.join(services())}")
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
    elif cfg.model.builder is not None and cfg.model.name != cfg.model.builder:
        # The builder makes its own model; another name would be recorded as the model trained.
        problems.append(f"model.name '{cfg.model.name}' is set with the builder preset "
                        f"model={cfg.model.builder} (model.builder={cfg.model.builder}), which "
                        f"builds its own model and would only record that name: drop "
                        f"model.name, or to fine-tune that model choose model=local "
                        f"model.name_or_path=<folder> or a hub preset (e.g. model=smollm2-135m)")
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
    problems += _db_problems(cfg)
    try:
        load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    except QueryCraftError as err:
        problems.append(str(err))
    return problems


def _db_problems(cfg: DictConfig) -> list[str]:
    # Local: the engines load sqlalchemy and sqlglot, which a config error need not wait for.
    from querycraft.engines import engine_kinds, get_engine

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
    return problems
