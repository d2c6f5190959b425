"""Finetune: train a LoRA-family adapter on an ingest run's training split.

The recipe, top to bottom: read the dataset and hold out a validation share; prepare the base
model (build it for the tiny preset); tokenize with the shared prompt template, leaving out
(never cutting) examples longer than ``train.max_seq_length``; load the base, quantized for
QLoRA / 8-bit LoRA; attach the adapter; train with the Hugging Face Trainer (validation loss,
checkpoints, early stopping, TensorBoard); save the best adapter, tokenizer, template,
metrics and loss curve; optionally merge. A killed run continues from its last checkpoint
when started again in the same folder (or with ``resume=true``). Under
``accelerate launch`` it trains data-parallel, one process per device.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft import models
from querycraft.artifacts import FinetuneArtifact, IngestArtifact
from querycraft.data import (
    IGNORE_INDEX,
    load_rows,
    make_collator,
    prompt_for,
    tokenized_dataset,
)
from querycraft.errors import QueryCraftError
from querycraft.prompts import SAVED_TEMPLATE_FILE, PromptTemplate, load_template
from querycraft.runs import Run, resolve_run, start_run

log = logging.getLogger("querycraft")


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


# The settings are train.* (the key they always had), not finetune.*.
SETTINGS = TrainConfig
SETTINGS_KEY = "train"

REPORTERS = ("tensorboard", "wandb", "mlflow")
PRECISIONS = ("auto", "bf16", "fp16", "no")


def check(cfg: DictConfig) -> list[str]:
    """The train.* settings."""
    train, problems = cfg.train, []
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
    return problems


CHECKPOINTS_DIR = "checkpoints"
TOO_LONG_REPORT = "too_long.csv"
LOSS_CURVE = "loss_curve.png"


@dataclass
class EncodedSplit:
    """Token ids of one split (an Arrow dataset), and the examples left out for length."""

    examples: Any  # datasets.Dataset: id, input_ids, prompt_length, length, ...
    too_long: list[tuple[str, int]]  # (id, tokens)

    def input_tokens(self) -> int:
        """Real (non-padding) tokens over one pass."""
        return sum(self.examples["length"]) if len(self.examples) else 0

    def trained_tokens(self, loss_on_prompt: bool) -> int:
        """Tokens carrying loss over one pass (the first is never predicted)."""
        if not len(self.examples):
            return 0
        skipped = (len(self.examples) if loss_on_prompt
                   else sum(self.examples["prompt_length"]))
        return self.input_tokens() - skipped


def split_validation(rows: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """Hold out ``fraction`` of the training rows (at least one) for validation loss.

    ``rows`` is a list or a ``datasets.Dataset``; the parts are of the same kind.
    """
    if fraction <= 0 or len(rows) < 2:
        return rows, rows[:0] if isinstance(rows, list) else rows.select([])
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = min(len(rows) - 1, max(1, round(fraction * len(rows))))
    if isinstance(rows, list):
        return [rows[i] for i in order[n_val:]], [rows[i] for i in order[:n_val]]
    return rows.select(order[n_val:]), rows.select(order[:n_val])


def _prepare_base_model(cfg: DictConfig, train_rows: Any, template: PromptTemplate,
                        run_: Run) -> str:
    """The base model's hub id or folder; the tiny preset is built into the run folder."""
    if cfg.model.builder != "tiny":
        return models.resolve_base(cfg.model, cfg.paths.cache_dir)
    folder = run_.path("base_model")
    if (folder / "config.json").is_file():  # resumed run, or built by rank 0
        return str(folder)
    # The tokenizer learns from whole training texts; the weights stay random.
    prompts = [prompt_for(r, template, cfg.prompt.dialect_name) for r in train_rows]
    texts = [p + r["query"] for p, r in zip(prompts, train_rows, strict=True)]
    models.build_tiny_model(cfg.model, texts, folder, seed=cfg.seed)
    return str(folder)


def encode_split(rows: Any, template: PromptTemplate, cfg: DictConfig,
                 tokenizer: Any) -> EncodedSplit:
    """Tokenize rows (a ``datasets.Dataset``, cached on disk); an example longer than
    max_seq_length is left out, never truncated."""
    encoded = tokenized_dataset(rows, template, cfg.prompt.dialect_name, tokenizer)
    if not len(encoded):
        return EncodedSplit(encoded, [])
    limit = cfg.train.max_seq_length
    lengths = encoded["length"]
    too_long = [(id_, n) for id_, n in zip(encoded["id"], lengths, strict=True) if n > limit]
    if too_long:
        encoded = encoded.select([i for i, n in enumerate(lengths) if n <= limit])
    return EncodedSplit(encoded, too_long)


def _report_too_long(splits: dict[str, EncodedSplit], cfg: DictConfig, run_: Run) -> None:
    """Write too_long.csv; stop if the config says so, or if nothing is left to train on."""
    rows = [(name, id_, n) for name, split in splits.items() for id_, n in split.too_long]
    if not rows:
        return
    if run_.is_main:
        with run_.path(TOO_LONG_REPORT).open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["split", "id", "tokens", "max_seq_length"])
            writer.writerows((s, i, n, cfg.train.max_seq_length) for s, i, n in rows)
    longest = max(n for _, _, n in rows)
    advice = (f"raise train.max_seq_length (the longest is {longest} tokens) or shorten the "
              f"schema context")
    if cfg.train.on_too_long == "error":
        raise QueryCraftError(
            f"{len(rows)} example(s) are longer than train.max_seq_length="
            f"{cfg.train.max_seq_length} tokens (listed in {run_.path(TOO_LONG_REPORT)}). "
            f"Training on cut-off SQL would teach broken queries, so QueryCraft never "
            f"truncates: {advice}, or set train.on_too_long=skip to train without them."
        )
    if not len(splits["train"].examples):
        raise QueryCraftError(f"Every training example is longer than train.max_seq_length="
                              f"{cfg.train.max_seq_length} tokens: {advice}.")
    log.warning("left out %d example(s) longer than train.max_seq_length=%d (never cut: "
                "half a query would teach broken SQL); listed in %s. To keep them, %s.",
                len(rows), cfg.train.max_seq_length, run_.path(TOO_LONG_REPORT), advice)


def resolve_precision(name: str) -> str:
    """ "auto": bf16 on GPUs that have it (else fp16), and on CPUs with bfloat16 instructions
    (AVX512-BF16 / AMX), where autocast doubles training speed; full precision elsewhere."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"


def optimizer_arguments(train: DictConfig) -> dict[str, Any]:
    """The schedule, optimizer and precision settings of `train`, as TrainingArguments fields.

    One mapping, shared with bench/finetune.py, so that a comparison against another trainer
    (TRL's SFTConfig is a TrainingArguments) uses exactly the same settings.
    """
    precision = resolve_precision(train.precision)
    return {"max_steps": train.max_steps, "learning_rate": train.learning_rate,
            "lr_scheduler_type": train.lr_scheduler, "warmup_steps": train.warmup_steps,
            "weight_decay": train.weight_decay, "adam_beta1": train.adam_beta1,
            "adam_beta2": train.adam_beta2, "max_grad_norm": train.max_grad_norm,
            "bf16": precision == "bf16", "fp16": precision == "fp16"}


def label_logits_mask(labels: Any) -> Any:
    """Positions whose next token carries loss: the only logits the loss needs.

    Position t predicts token t+1, so the mask is ``labels[:, 1:] != IGNORE_INDEX`` shifted
    left by one (the last position predicts nothing).
    """
    import torch

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


def selected_logits_loss(model: Any, inputs: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over the labelled tokens, and their count.

    The model projects only the positions that carry loss onto the vocabulary
    (``logits_to_keep`` as a boolean mask): with completion-only loss that is the SQL, a
    fraction of the sequence, and for a 49k-token vocabulary the full logits were the largest
    tensor of the step in time and memory.
    """
    import torch

    labels = inputs["labels"]
    mask = label_logits_mask(labels)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**forward, logits_to_keep=mask).logits
    logits = logits.reshape(-1, logits.shape[-1])
    targets = labels[:, 1:][mask[:, :-1]]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, int(targets.numel())


def logits_mask_supported() -> bool:
    """Whether this transformers takes ``logits_to_keep`` as a boolean mask: the argument is
    in every 5.x, masks only since ``slice_logits_to_keep`` (5.2x; 5.17 takes int or 1-D)."""
    from transformers import modeling_utils

    return hasattr(modeling_utils, "slice_logits_to_keep")


def _accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    from peft import PeftModel

    if not logits_mask_supported():
        return False  # the Trainer's own loss: full logits, same value
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def _reporters(cfg: DictConfig) -> list[str]:
    """Integrations the Trainer reports to (TensorBoard is wired in by this module)."""
    others = [r for r in cfg.train.report_to if r != "tensorboard"]
    for name in cfg.train.report_to:
        module = "tensorboard" if name == "tensorboard" else name
        if importlib.util.find_spec(module) is None:
            raise QueryCraftError(f"train.report_to includes {name} but the {module} package "
                                  f"is not installed: pip install {module}, or remove it from "
                                  f"train.report_to.")
    return others


def gradient_accumulation_steps(train_cfg: DictConfig, world_size: int) -> int:
    """global batch = micro batch x processes x accumulation steps."""
    per_step = train_cfg.micro_batch_size * world_size
    if train_cfg.global_batch_size % per_step:
        raise QueryCraftError(
            f"train.global_batch_size ({train_cfg.global_batch_size}) must be a multiple of "
            f"train.micro_batch_size ({train_cfg.micro_batch_size}) x {world_size} "
            f"process(es) = {per_step}; change one of them."
        )
    return train_cfg.global_batch_size // per_step


def checkpointing_arguments(arguments_class: type, enabled: bool) -> dict[str, Any]:
    """Activation checkpointing under the name this transformers knows: newer 5.x releases
    call it ``activation_checkpointing`` (the old name a deprecated alias), earlier 5.x only
    ``gradient_checkpointing``."""
    known = {known_field.name for known_field in fields(arguments_class)}
    name = ("activation_checkpointing" if "activation_checkpointing" in known
            else "gradient_checkpointing")
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


def _training_arguments(cfg: DictConfig, run_: Run, has_validation: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    train = cfg.train
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    # Either interval alone sets both; neither: once per epoch.
    eval_steps = train.eval_steps or train.save_steps
    save_steps = train.save_steps or eval_steps
    interval = "steps" if eval_steps else "epoch"
    if has_validation and eval_steps and save_steps % eval_steps:
        raise QueryCraftError(f"train.save_steps ({save_steps}) must be a multiple of "
                              f"train.eval_steps ({eval_steps}) so the best checkpoint by "
                              f"validation loss is on disk.")
    return TrainingArguments(
        output_dir=str(run_.path(CHECKPOINTS_DIR)),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(train, world_size),
        num_train_epochs=train.epochs,
        **checkpointing_arguments(TrainingArguments, train.gradient_checkpointing),
        logging_steps=train.logging_steps,
        logging_first_step=True,
        eval_strategy=interval if has_validation else "no",
        eval_steps=eval_steps,
        save_strategy=interval,
        save_steps=save_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=has_validation,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False,
        report_to=_reporters(cfg),
        disable_tqdm=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        prediction_loss_only=True,  # validation needs the loss only, never the logits
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        # LoRA leaves most of the model frozen; DDP must not wait for their gradients.
        ddp_find_unused_parameters=False,
        **optimizer_arguments(train),
    )


def _progress_to_log() -> Any:
    """The Trainer's progress bar, with its ``{'loss': ...}`` lines sent to the log.

    The stock ProgressCallback writes them with ``tqdm.write`` to stdout, which the CLI keeps
    for results only (a pipeline's stdout held ~60 of them before its table).
    """
    from transformers.trainer_callback import ProgressCallback

    class ProgressToLog(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            shown = {k: v for k, v in logs.items() if k != "total_flos"}
            log.info("step %d: %s", state.global_step, ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in shown.items()))

    return ProgressToLog()


def _callbacks(cfg: DictConfig, run_: Run) -> list[Any]:
    from transformers import EarlyStoppingCallback
    from transformers.integrations import TensorBoardCallback

    callbacks: list[Any] = []
    if "tensorboard" in cfg.train.report_to and run_.is_main:
        from torch.utils.tensorboard import SummaryWriter

        callbacks.append(TensorBoardCallback(
            tb_writer=SummaryWriter(log_dir=str(run_.path("tensorboard")))))
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(
            early_stopping_patience=cfg.train.early_stopping_patience,
            early_stopping_threshold=cfg.train.early_stopping_threshold))
    return callbacks


def step_sorted_order(lengths: list[int], step_size: int, seed: int) -> list[int]:
    """Example indices for one epoch: a seeded shuffle, cut into optimizer steps, each step's
    examples longest first.

    Which examples share an optimizer step stays random, as in plain shuffling, so the
    gradients are the same as with a random order; only the micro-batches inside a step are
    cut from similar lengths, which keeps padding small. (Grouping lengths across the whole
    epoch, as transformers' length-grouped sampler does, pads less but puts similar examples
    in the same steps, and measurably slowed learning: docs/BENCHMARKS.md.)
    """
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    return [index
            for start in range(0, len(order), step_size)
            for index in sorted(order[start:start + step_size], key=lambda i: -lengths[i])]


def _trainer_class() -> type:
    """The Trainer, with step-sorted batches in an order fixed by (seed, epoch).

    The order is drawn from (seed, epoch) rather than the global random state, which a
    resumed run restores to the checkpoint's moment, not the epoch's start: so a run resumed
    mid-epoch sees the same batches as the uninterrupted run.
    """
    from torch.utils.data import Sampler
    from transformers import Trainer

    class StepSortedSampler(Sampler[int]):
        def __init__(self, lengths: list[int], step_size: int, seed: int) -> None:
            self.lengths, self.step_size, self.seed = lengths, step_size, seed
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:  # called by accelerate each epoch
            self.epoch = epoch

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self) -> Any:
            return iter(step_sorted_order(self.lengths, self.step_size, self.seed + self.epoch))

    class QueryCraftTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if not _accepts_logits_to_keep(self.accelerator.unwrap_model(model)):
                self.loss_is_scaled_for_ga = None
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, count = selected_logits_loss(model, inputs)
            if return_outputs:  # validation loss (prediction_loss_only): a plain mean
                loss = loss / max(count, 1)
                return loss, {"loss": loss}
            if num_items_in_batch is None:
                self.loss_is_scaled_for_ga = False
                return loss / max(count, 1)
            # Normalised over the whole accumulated batch (on every process), as transformers'
            # own causal-LM loss does, so gradient accumulation changes nothing.
            self.loss_is_scaled_for_ga = True
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
            return loss

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            # One optimizer step takes this many examples across all processes.
            step_size = (self.args.train_batch_size * self.args.gradient_accumulation_steps
                         * self.args.world_size)
            lengths = (dataset["length"] if "length" in getattr(dataset, "column_names", ())
                       else [len(example["input_ids"]) for example in dataset])
            return StepSortedSampler(
                list(lengths), step_size,
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    return QueryCraftTrainer


def last_complete_checkpoint(checkpoints_dir: Path) -> str | None:
    """The newest checkpoint that was saved in full.

    The Trainer writes trainer_state.json last, so a checkpoint cut off by a kill while it
    was being written lacks it and is passed over for the one before.
    """
    if not checkpoints_dir.is_dir():
        return None
    steps = []
    for folder in checkpoints_dir.glob("checkpoint-*"):
        step = folder.name.removeprefix("checkpoint-")
        if step.isdigit() and (folder / "trainer_state.json").is_file():
            steps.append((int(step), folder))
    return str(max(steps)[1]) if steps else None


def plot_loss_curve(history: list[dict[str, Any]], path: Path) -> tuple[int, float] | None:
    """Training and validation loss against optimizer step, as a PNG: a log-scale loss axis
    (the early drop would flatten the rest on a linear one) and a mark at the best
    checkpoint, the step with the lowest validation loss (the adapter kept when validating).

    Returns:
        The best checkpoint's (step, validation loss), or None without validation.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    best = min(val, key=lambda sv: (sv[1], sv[0])) if val else None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
    if best is not None:
        ax.axvline(best[0], color="tab:green", linestyle="--", linewidth=1)
        ax.plot([best[0]], [best[1]], marker="*", markersize=14, color="tab:green",
                linestyle="none", label=f"best checkpoint (step {best[0]}, {best[1]:.3g})")
    if all(loss > 0 for _, loss in train + val) and (train or val):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (log scale)" if ax.get_yscale() == "log"
                  else "cross-entropy loss")
    ax.set_title("QueryCraft finetune")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return best


def run(cfg: DictConfig) -> Path:
    """Fine-tune ``cfg.model`` with ``cfg.peft`` on the ingest run named by ``train.dataset_dir``.

    Returns:
        The run folder, holding ``adapter/``, ``metrics.json`` and ``loss_curve.png``.
    """
    import torch

    with start_run(cfg, "finetune", resumable=True) as run_:
        ingest_dir = resolve_run(cfg.train.dataset_dir, cfg.paths.output_dir, "ingest",
                                 "train.dataset_dir")
        ingest = IngestArtifact.read(ingest_dir)
        if (ingest.counts or {}).get("train", 1) == 0:
            raise QueryCraftError(
                f"The ingest run {ingest_dir} holds evaluation examples only "
                "(ingest.eval_fraction=1.0), nothing to train on. Fine-tune on another ingest "
                "run (train.dataset_dir=...), then score that model on this one with "
                f"python -m querycraft service=infer infer.dataset_dir={ingest_dir}.")
        # Arrow files under paths.cache_dir: memory-mapped, and tokenized once per
        # (rows, template, tokenizer), so a second run on the same data skips tokenizing.
        train_rows, val_rows = split_validation(
            load_rows(ingest.split_file("train"), Path(cfg.paths.cache_dir) / "datasets"),
            cfg.train.validation_fraction, cfg.seed)
        template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
        if run_.is_main:
            run_.path(SAVED_TEMPLATE_FILE).write_text(template.text, encoding="utf-8")

        args = _training_arguments(cfg, run_, has_validation=len(val_rows) > 0)
        with args.main_process_first(desc="preparing the base model"):
            base = _prepare_base_model(cfg, train_rows, template, run_)
        tokenizer = models.load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
        with args.main_process_first(desc="tokenizing"):  # rank 0 fills the cache
            splits = {"train": encode_split(train_rows, template, cfg, tokenizer),
                      "validation": encode_split(val_rows, template, cfg, tokenizer)}
        _report_too_long(splits, cfg, run_)
        has_validation = len(splits["validation"].examples) > 0
        if not has_validation and len(val_rows):
            raise QueryCraftError("Every validation example is too long; raise "
                                  "train.max_seq_length or set train.validation_fraction=0.")

        model = models.load_model(base, cfg.model, cfg.peft.quantization)
        model.config.use_cache = False  # training never reuses keys and values
        model = models.attach_lora(model, cfg.peft, cfg.model,
                                   gradient_checkpointing=cfg.train.gradient_checkpointing)
        trainable, total = models.count_parameters(model)
        log.info("%s r=%d on %s: %s trainable of %s parameters (%.2f%%); %d training, %d "
                 "validation examples; %d process(es), gradient accumulation %d",
                 cfg.peft.method, cfg.peft.r,
                 ", ".join(models.lora_target_modules(cfg.peft, cfg.model)),
                 f"{trainable:,}", f"{total:,}", 100 * trainable / total,
                 len(splits["train"].examples), len(splits["validation"].examples),
                 args.world_size, args.gradient_accumulation_steps)

        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=splits["train"].examples,
            eval_dataset=splits["validation"].examples if has_validation else None,
            data_collator=make_collator(cfg.collator, tokenizer, cfg.train.max_seq_length),
            processing_class=tokenizer,
            callbacks=_callbacks(cfg, run_),
        )
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_progress_to_log())
        checkpoint = (last_complete_checkpoint(run_.path(CHECKPOINTS_DIR)) if run_.resumed
                      else None)
        if run_.resumed:
            log.info("resuming from %s", checkpoint or "the start (no checkpoint was saved)")
        result = trainer.train(resume_from_checkpoint=checkpoint)
        final_eval = trainer.evaluate() if has_validation else {}

        adapter_dir = run_.path("adapter")
        trainer.save_model(str(adapter_dir))  # the best checkpoint's weights, when validating
        if not run_.is_main:
            return run_.dir
        tokenizer.save_pretrained(adapter_dir)
        history = trainer.state.log_history
        loss_on_prompt = cfg.collator.name != "completion_only"
        tokens_per_epoch = splits["train"].trained_tokens(loss_on_prompt)
        metrics = {
            "train_loss": result.training_loss,
            "first_logged_loss": next((h["loss"] for h in history if "loss" in h), None),
            "final_validation_loss": final_eval.get("eval_loss"),
            "validation_perplexity": (math.exp(final_eval["eval_loss"])
                                      if "eval_loss" in final_eval else None),
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_validation_loss": trainer.state.best_metric,
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "resumed_from": checkpoint,
            "train_examples": len(splits["train"].examples),
            "validation_examples": len(splits["validation"].examples),
            "too_long_examples": sum(len(s.too_long) for s in splits.values()),
            "input_tokens_per_epoch": splits["train"].input_tokens(),
            "trained_tokens_per_epoch": tokens_per_epoch,
            "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated() / 2**30
                                    if torch.cuda.is_available() else None),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "processes": args.world_size,
            "seconds": result.metrics.get("train_runtime"),
            "log_history": history,
        }
        run_.path("metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        plot_loss_curve(history, run_.path(LOSS_CURVE))
        merged = None
        if cfg.train.merge_adapter:
            merged = str(models.merge_adapter(base, adapter_dir, cfg.model,
                                              run_.path("merged_model")))
        # The database stays with the ingest run: a later stage finds it through ingest_run.
        FinetuneArtifact(base_model=base, adapter=adapter_dir, ingest_run=ingest_dir,
                         prompt_dialect=cfg.prompt.dialect_name,
                         prompt_template=run_.path(SAVED_TEMPLATE_FILE), merged_model=merged,
                         model_name=cfg.model.name,
                         peft={"method": cfg.peft.method, "r": cfg.peft.r,
                               "alpha": cfg.peft.alpha, "use_dora": cfg.peft.use_dora},
                         quantization=OmegaConf.to_container(cfg.peft.quantization)
                         ).write(run_)
        log.info("finetune: %d steps, train loss %.3f, validation loss %s; adapter in %s",
                 metrics["steps"], metrics["train_loss"],
                 f"{final_eval['eval_loss']:.3f}" if final_eval else "n/a", adapter_dir)
    return run_.dir

