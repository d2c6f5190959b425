"""Finetune service: adapters of every kind, no truncation, outputs, early stopping, merge."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from querycraft import models
from querycraft.cli import run
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from querycraft.services.finetune import (
    checkpointing_arguments,
    gradient_accumulation_steps,
    logits_mask_supported,
    split_validation,
    step_sorted_order,
)
from tests.conftest import FAST_MODEL, make_config

# Each run trains a handful of steps: these tests are about plumbing, not learning.
QUICK = [*FAST_MODEL, "train.max_steps=4", "train.logging_steps=1", "train.report_to=[]"]


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finetune") / "output"
    return run(make_config(out, ["service=ingest", "ingest.max_rows=64", *FAST_MODEL],
                           out / "ingest"))


@pytest.fixture
def finetune(tmp_path, ingest_dir):
    def _run(overrides: list[str], name: str = "finetune") -> Path:
        out = tmp_path / "output"
        return run(make_config(out, ["service=finetune", f"train.dataset_dir={ingest_dir}",
                                     *QUICK, *overrides], out / name))
    return _run


def _too_long_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "too_long.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_examples_longer_than_max_seq_length_are_reported_and_left_out(finetune, ingest_dir):
    # The median length the ingest report measured (the same tiny tokenizer, trained on the
    # same split): about half the examples are longer, whatever the sample's prompts cost.
    report = json.loads((ingest_dir / "report.json").read_text())
    limit = report["token_lengths"]["p50"]
    assert report["token_lengths"]["max"] > limit
    run_dir = finetune([f"train.max_seq_length={limit}"])
    too_long = _too_long_rows(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    total = len(read_jsonl(ingest_dir / "dataset" / "train.jsonl"))
    assert 0 < len(too_long) < total
    assert all(int(row["tokens"]) > limit for row in too_long)
    assert metrics["train_examples"] + metrics["validation_examples"] + len(too_long) == total
    assert metrics["too_long_examples"] == len(too_long)


def test_too_long_examples_stop_the_run_when_configured(finetune, tmp_path):
    with pytest.raises(QueryCraftError, match=r"longer than train.max_seq_length=150.*"
                                              r"never truncates.*on_too_long=skip"):
        finetune(["train.max_seq_length=150", "train.on_too_long=error"], name="strict")
    strict = tmp_path / "output" / "strict"
    assert _too_long_rows(strict)
    assert not (strict / "adapter").exists()
    assert read_manifest(strict)["status"] == "failed"


@pytest.mark.slow
def test_qlora_trains_the_tiny_model_on_cpu_and_the_adapter_loads_for_inference(
        finetune, tmp_path):
    from peft import PeftModel

    run_dir = finetune(["peft=qlora"])
    info = read_manifest(run_dir)
    assert info["quantization"]["bits"] == 4 and info["peft"]["method"] == "qlora"
    quant = OmegaConf.create(info["quantization"])
    cfg = make_config(tmp_path, ["peft=qlora"])
    base = models.load_model(info["base_model"], cfg.model, quant)
    model = PeftModel.from_pretrained(base, info["adapter"])
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert q_proj.base_layer.weight.quant_type == "nf4"
    tokenizer = models.load_tokenizer(info["adapter"])
    with torch.no_grad():
        out = model(**tokenizer("SELECT", return_tensors="pt"))
    assert torch.isfinite(out.logits).all()

    # And the infer service loads it the same way, by itself.
    infer_dir = run(make_config(tmp_path / "output", [
        "service=infer", f"infer.finetune_dir={run_dir}", "infer.limit=2", *FAST_MODEL],
        tmp_path / "output" / "infer"))
    assert len(read_jsonl(infer_dir / "predictions.jsonl")) == 2


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "bits", "dora"), [("lora", None, False),
                                                      ("lora-8bit", 8, False),
                                                      ("dora", None, True)])
def test_each_peft_preset_trains_and_saves_its_adapter(finetune, preset, bits, dora):
    run_dir = finetune([f"peft={preset}"])
    adapter_config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is dora
    assert adapter_config["r"] == 4
    assert read_manifest(run_dir)["quantization"]["bits"] == bits
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 4


@pytest.mark.slow
def test_peft_values_are_overridable(finetune):
    run_dir = finetune(["peft.r=6", "peft.alpha=3", "peft.dropout=0.2",
                        "peft.target_modules=[q_proj,v_proj]"])
    adapter_config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (6, 3)
    assert adapter_config["lora_dropout"] == 0.2
    assert set(adapter_config["target_modules"]) == {"q_proj", "v_proj"}


@pytest.mark.slow
def test_a_run_leaves_validation_loss_checkpoints_curves_and_a_merged_model(finetune):
    from transformers import AutoModelForCausalLM

    run_dir = finetune(["train.eval_steps=2", "train.report_to=[tensorboard]",
                        "train.merge_adapter=true"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evals = [h for h in metrics["log_history"] if "eval_loss" in h]
    # Every eval_steps during training, then once more on the saved (best) weights.
    assert [h["step"] for h in evals] == [2, 4, 4]
    assert metrics["final_validation_loss"] == pytest.approx(metrics["best_validation_loss"])
    assert metrics["best_checkpoint"].endswith(("checkpoint-2", "checkpoint-4"))
    assert (run_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "adapter" / "tokenizer.json").is_file()

    # The merged model alone gives what base + adapter gives.
    from peft import PeftModel

    info = read_manifest(run_dir)
    merged = AutoModelForCausalLM.from_pretrained(info["merged_model"]).eval()
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(info["base_model"]), info["adapter"]).eval()
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


@pytest.mark.slow
def test_early_stopping_ends_training_when_validation_loss_stalls(finetune):
    # A threshold no step can beat: every evaluation after the first counts as no progress.
    run_dir = finetune(["train.max_steps=30", "train.eval_steps=1",
                        "train.early_stopping_patience=2",
                        "train.early_stopping_threshold=100"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 3


def test_gradient_accumulation_is_derived_from_global_and_micro_batch_per_process():
    train = OmegaConf.create({"global_batch_size": 16, "micro_batch_size": 2})
    assert gradient_accumulation_steps(train, world_size=1) == 8
    assert gradient_accumulation_steps(train, world_size=2) == 4
    with pytest.raises(QueryCraftError, match=r"multiple of train\.micro_batch_size"):
        gradient_accumulation_steps(train, world_size=3)


def test_checkpointing_is_named_as_the_installed_transformers_names_it(tmp_path):
    from transformers import TrainingArguments

    arguments = checkpointing_arguments(TrainingArguments, True)
    TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **arguments)  # accepted as is

    @dataclasses.dataclass
    class EarlierTrainingArguments:  # transformers 5.0-5.1x: only the old name
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    assert checkpointing_arguments(EarlierTrainingArguments, True) == {
        "gradient_checkpointing": True, "gradient_checkpointing_kwargs": {"use_reentrant": False}}


@pytest.mark.slow
def test_without_logit_masks_the_trainer_loss_is_used_with_the_same_value(finetune, monkeypatch):
    """transformers before slice_logits_to_keep (5.17 on a GPU machine seen here) fails on a
    boolean logits_to_keep; the fallback computes the full logits and the same loss."""
    from transformers import modeling_utils

    masked = json.loads((finetune([], "masked") / "metrics.json").read_text())
    assert logits_mask_supported()
    monkeypatch.delattr(modeling_utils, "slice_logits_to_keep")
    assert not logits_mask_supported()
    full = json.loads((finetune([], "full") / "metrics.json").read_text())
    losses = [[h["loss"] for h in m["log_history"] if "loss" in h] for m in (masked, full)]
    assert len(losses[0]) == 4
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


@pytest.mark.slow
def test_batching_knobs_reach_the_trainer(finetune):
    run_dir = finetune(["train.global_batch_size=8", "train.micro_batch_size=2",
                        "train.learning_rate=1e-3", "train.warmup_steps=2",
                        "train.lr_scheduler=constant_with_warmup"])
    history = json.loads((run_dir / "metrics.json").read_text())["log_history"]
    rates = [h["learning_rate"] for h in history if "learning_rate" in h]
    assert rates[:4] == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])


@pytest.mark.slow
def test_training_losses_go_to_the_log_and_leave_stdout_to_results(finetune, capsys, caplog):
    # The Trainer's stock progress callback writes {'loss': ...} lines to stdout.
    caplog.set_level("INFO", logger="querycraft")
    finetune([])
    assert "loss" not in capsys.readouterr().out
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(steps) >= 4 and all("loss" in line for line in steps[:4])


def test_step_sorted_order_keeps_random_steps_and_sorts_inside_each():
    lengths = [(i * 37) % 101 for i in range(50)]
    order = step_sorted_order(lengths, step_size=8, seed=4)
    assert sorted(order) == list(range(50))  # every example once per epoch
    shuffled = list(range(50))
    random.Random(4).shuffle(shuffled)
    steps = [order[i:i + 8] for i in range(0, 50, 8)]
    # The same examples share a step as in a plain seeded shuffle (the gradients do not
    # change); inside a step they run longest first, so micro-batches pad little.
    assert [set(s) for s in steps] == [set(shuffled[i:i + 8]) for i in range(0, 50, 8)]
    assert all([lengths[i] for i in s] == sorted((lengths[i] for i in s), reverse=True)
               for s in steps)
    assert step_sorted_order(lengths, 8, seed=4) == order
    assert step_sorted_order(lengths, 8, seed=5) != order


def test_validation_split_is_held_out_of_training_and_reproducible():
    rows = [{"id": str(i)} for i in range(40)]
    train, val = split_validation(rows, 0.1, seed=3)
    assert len(val) == 4 and len(train) == 36
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in val})
    assert split_validation(rows, 0.1, seed=3) == (train, val)
    assert split_validation(rows, 0.0, seed=3) == (rows, [])


def test_litgpt_experiment_reproduces_the_source_recipe(tmp_path):
    cfg = make_config(tmp_path, ["experiment=litgpt_lora"])
    assert (cfg.peft.r, cfg.peft.alpha, cfg.peft.dropout) == (8, 16, 0.05)
    assert cfg.peft.quantization.bits == 4 and cfg.peft.quantization.quant_type == "nf4"
    train = cfg.train
    assert (train.global_batch_size, train.micro_batch_size, train.max_steps) == (4, 1, 1000)
    assert (train.save_steps, train.eval_steps, train.warmup_steps) == (200, 50, 100)
    assert (train.max_seq_length, train.learning_rate, train.weight_decay) == (2048, 2e-4, 0.01)
    assert train.validation_fraction == 0.1
    assert train.precision == "auto"  # bf16 where the GPU has it


def test_loss_curve_is_log_scale_and_marks_the_best_checkpoint(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from querycraft.services.finetune import plot_loss_curve

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    history = [{"step": 10, "loss": 3.0}, {"step": 10, "eval_loss": 2.0},
               {"step": 20, "loss": 0.5}, {"step": 20, "eval_loss": 0.4},
               {"step": 30, "loss": 0.1}, {"step": 30, "eval_loss": 0.6}]
    path = tmp_path / "loss_curve.png"
    assert plot_loss_curve(history, path) == (20, 0.4)
    assert path.stat().st_size > 0
    (ax,) = figures[0].axes
    assert ax.get_yscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("best checkpoint (step 20") for label in labels)
    # Without validation there is no best checkpoint to mark.
    assert plot_loss_curve([{"step": 1, "loss": 1.0}], tmp_path / "train_only.png") is None
