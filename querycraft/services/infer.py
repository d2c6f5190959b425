"""Infer: generate SQL for a dataset split with a fine-tuned (or base) model.

The prompt template is the one saved with the finetune run, not the one in the current
config, so inference always asks in exactly the words the model was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from querycraft import models
from querycraft.data import prompt_for
from querycraft.generation import generate
from querycraft.prompts import (
    SAVED_TEMPLATE_FILE,
    PromptTemplate,
    load_template,
    parse_template,
)
from querycraft.runs import read_jsonl, read_manifest, resolve_run, start_run, write_jsonl
from querycraft.sql import extract_sql

log = logging.getLogger("querycraft")


@dataclass
class ModelSource:
    """What to load and how to prompt it."""

    base: str
    adapter: str | None
    template: PromptTemplate
    dialect: str
    dataset_dir: Path | None
    database: str | None
    # How the base was stored while the adapter trained (peft.quantization); loaded alike.
    quantization: dict | None = None


def _model_source(cfg: DictConfig) -> ModelSource:
    if cfg.infer.finetune_dir is None and not cfg.infer.use_adapter \
            and cfg.model.builder is None:
        # A hub or local model used as is: prompt with the configured template.
        return ModelSource(base=cfg.model.name_or_path, adapter=None,
                           template=load_template(cfg.prompt.template, cfg.paths.prompts_dir),
                           dialect=cfg.prompt.dialect_name, dataset_dir=None, database=None)
    finetune_dir = resolve_run(cfg.infer.finetune_dir, cfg.paths.output_dir, "finetune",
                               "infer.finetune_dir")
    info = read_manifest(finetune_dir)
    template_text = (finetune_dir / SAVED_TEMPLATE_FILE).read_text(encoding="utf-8")
    return ModelSource(
        base=info["base_model"],
        adapter=info["adapter"] if cfg.infer.use_adapter else None,
        template=parse_template(template_text, name=str(finetune_dir / SAVED_TEMPLATE_FILE)),
        dialect=info["prompt_dialect"],
        dataset_dir=Path(info["dataset_dir"]),
        database=info.get("database"),
        quantization=info.get("quantization"),
    )


def _load(source: ModelSource, cfg: DictConfig):
    tokenizer = models.load_tokenizer(source.adapter or source.base,
                                      trust_remote_code=cfg.model.trust_remote_code)
    quantization = OmegaConf.create(source.quantization) if source.quantization else None
    model = models.load_model(source.base, cfg.model, quantization)
    if source.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter)
    return model, tokenizer


def run(cfg: DictConfig) -> Path:
    """Write ``predictions.jsonl``: one row per question with raw output and extracted SQL.

    Returns:
        The run folder.
    """
    with start_run(cfg, "infer") as run_:
        source = _model_source(cfg)
        dataset_dir = (resolve_run(cfg.infer.dataset_dir, cfg.paths.output_dir, "ingest",
                                   "infer.dataset_dir")
                       if cfg.infer.dataset_dir or source.dataset_dir is None
                       else source.dataset_dir)
        rows = read_jsonl(dataset_dir / "dataset" / f"{cfg.infer.split}.jsonl")
        if cfg.infer.limit:
            rows = rows[: cfg.infer.limit]
        model, tokenizer = _load(source, cfg)
        prompts = [prompt_for(r, source.template, source.dialect) for r in rows]
        outputs = generate(model, tokenizer, prompts, batch_size=cfg.infer.batch_size,
                           max_new_tokens=cfg.infer.max_new_tokens,
                           stop_string=source.template.stop_string)
        predictions = [
            {"id": r["id"], "db_id": r.get("db_id", ""), "question": r["question"],
             "query": r["query"], "raw_output": out.text, "sql": extract_sql(out.text),
             "seconds": round(out.seconds, 4), "model": source.base, "adapter": source.adapter}
            for r, out in zip(rows, outputs, strict=True)
        ]
        write_jsonl(run_.path("predictions.jsonl"), predictions)
        database = source.database or read_manifest(dataset_dir).get("database")
        run_._write(predictions=str(run_.path("predictions.jsonl")), count=len(predictions),
                    base_model=source.base, adapter=source.adapter,
                    dataset_dir=str(dataset_dir), database=database)
        log.info("infer: %d predictions in %s", len(predictions), run_.path("predictions.jsonl"))
    return run_.dir
