"""Finetune: train a LoRA adapter on an ingest run's training split.

Shape of the recipe: read the dataset, prepare the base model (build it for the tiny preset),
tokenize with the shared prompt template, attach LoRA, train with the Hugging Face Trainer,
save the adapter, tokenizer, the exact template text and a metrics summary.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from querycraft import models
from querycraft.data import encode_example, make_collator, prompt_for
from querycraft.errors import QueryCraftError
from querycraft.prompts import SAVED_TEMPLATE_FILE, PromptTemplate, load_template
from querycraft.runs import Run, read_jsonl, read_manifest, resolve_run, start_run

log = logging.getLogger("querycraft")


def _prepare_base_model(cfg: DictConfig, train_rows: list[dict], template: PromptTemplate,
                        run_: Run) -> str:
    """The base model's hub id or folder; the tiny preset is built into the run folder."""
    if cfg.model.builder != "tiny":
        return str(cfg.model.name_or_path)
    # The tokenizer learns from whole training texts; the weights stay random.
    prompts = [prompt_for(r, template, cfg.prompt.dialect_name) for r in train_rows]
    texts = [p + r["query"] for p, r in zip(prompts, train_rows, strict=True)]
    folder = run_.path("base_model")
    models.build_tiny_model(cfg.model, texts, folder, seed=cfg.seed)
    return str(folder)


def _encode(rows: list[dict], template: PromptTemplate, cfg: DictConfig, tokenizer: Any,
            split: str) -> list[dict[str, Any]]:
    """Tokenize rows; an example longer than max_seq_length is left out, never truncated."""
    encoded, too_long = [], []
    for row in rows:
        example = encode_example(row, template, cfg.prompt.dialect_name, tokenizer)
        if len(example["input_ids"]) > cfg.train.max_seq_length:
            too_long.append(row["id"])
        else:
            encoded.append(example)
    if too_long:
        log.warning("%s: left out %d example(s) longer than train.max_seq_length=%d "
                    "(training on cut-off SQL would teach broken queries): %s",
                    split, len(too_long), cfg.train.max_seq_length, ", ".join(too_long[:10]))
    if split == "train" and not encoded:
        raise QueryCraftError(f"Every training example is longer than train.max_seq_length="
                              f"{cfg.train.max_seq_length} tokens; raise it.")
    return encoded


def _training_arguments(cfg: DictConfig, run_: Run, has_eval: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    train = cfg.train
    return TrainingArguments(
        output_dir=str(run_.path("checkpoints")),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=train.global_batch_size // train.micro_batch_size,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        logging_steps=train.logging_steps,
        eval_strategy="epoch" if has_eval else "no",
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def run(cfg: DictConfig) -> Path:
    """Fine-tune ``cfg.model`` with LoRA on the ingest run named by ``train.dataset_dir``.

    Returns:
        The run folder, holding ``adapter/`` and ``metrics.json``.
    """
    from transformers import Trainer

    with start_run(cfg, "finetune") as run_:
        ingest_dir = resolve_run(cfg.train.dataset_dir, cfg.paths.output_dir, "ingest",
                                 "train.dataset_dir")
        ingest_info = read_manifest(ingest_dir)
        train_rows = read_jsonl(ingest_dir / "dataset" / "train.jsonl")
        eval_rows = read_jsonl(ingest_dir / "dataset" / "eval.jsonl")
        template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
        run_.path(SAVED_TEMPLATE_FILE).write_text(template.text, encoding="utf-8")

        base = _prepare_base_model(cfg, train_rows, template, run_)
        tokenizer = models.load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
        model = models.load_model(base, cfg.model)
        train_set = _encode(train_rows, template, cfg, tokenizer, "train")
        eval_set = _encode(eval_rows, template, cfg, tokenizer, "eval")

        model = models.attach_lora(model, cfg.peft, cfg.model)
        trainable, total = models.count_parameters(model)
        log.info("LoRA r=%d on %s: %s trainable of %s parameters (%.2f%%)", cfg.peft.r,
                 ", ".join(models.lora_target_modules(cfg.peft, cfg.model)),
                 f"{trainable:,}", f"{total:,}", 100 * trainable / total)

        trainer = Trainer(
            model=model,
            args=_training_arguments(cfg, run_, has_eval=bool(eval_set)),
            train_dataset=train_set,
            eval_dataset=eval_set or None,
            data_collator=make_collator(cfg.collator.name, tokenizer,
                                        cfg.collator.pad_to_multiple_of),
        )
        result = trainer.train()
        adapter_dir = run_.path("adapter")
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)

        history = trainer.state.log_history
        eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
        metrics = {
            "train_loss": result.training_loss,
            "first_logged_loss": next((h["loss"] for h in history if "loss" in h), None),
            "final_eval_loss": eval_losses[-1] if eval_losses else None,
            "eval_perplexity": math.exp(eval_losses[-1]) if eval_losses else None,
            "steps": trainer.state.global_step,
            "train_examples": len(train_set),
            "eval_examples": len(eval_set),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "seconds": result.metrics.get("train_runtime"),
            "log_history": history,
        }
        run_.path("metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        run_._write(base_model=base, adapter=str(adapter_dir), dataset_dir=str(ingest_dir),
                    database=ingest_info.get("database"),
                    prompt_dialect=cfg.prompt.dialect_name, model_name=cfg.model.name,
                    peft={"method": cfg.peft.method, "r": cfg.peft.r, "alpha": cfg.peft.alpha})
        log.info("finetune: %d steps, train loss %.3f, eval loss %s; adapter in %s",
                 metrics["steps"], metrics["train_loss"],
                 f"{metrics['final_eval_loss']:.3f}" if eval_losses else "n/a", adapter_dir)
    return run_.dir
