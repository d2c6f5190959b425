"""Where a real model's training step spends its time on a CPU: full vs selected logits,
float32 vs bfloat16 autocast, LoRA targets, micro-batch size.

Usage:
    python bench/train_step.py [--model smollm2-135m] [--repeats 3] [--examples 64]

One process, one model (SmolLM2-135M-Instruct from its GGUF file, converted once into the
cache), the sample's training examples rendered with the preset's template and encoded by
the finetune service's own code, batches cut from length-sorted examples. Each configuration
runs the same optimizer steps (forward, backward, AdamW) over the same batches; configurations are
interleaved (a, b, c, a, b, c, ...) and the median of the repeats is reported as input tokens
per second, with the ratio to the baseline (float32, logits for every position: what
transformers' causal-LM loss computes). Peak memory is not separable per configuration in
one process; bench/finetune.py measures it per run.

Configurations:
  fp32 full      float32, logits for every position (baseline)
  bf16 full      bfloat16 autocast, every position
  fp32 selected  float32, logits only where labels are (QueryCraft's finetune loss)
  bf16 selected  bfloat16 autocast + selected logits (QueryCraft's default on CPUs with
                 bf16 instructions)
  bf16 selected, attention only   LoRA on q/k/v/o only
  bf16 selected, micro-batch 4    the same examples in batches of 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=64)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from querycraft import models
    from querycraft.data import Collator, encode_example
    from querycraft.prompts import load_template
    from querycraft.services.finetune import resolve_precision, selected_logits_loss
    from querycraft.services.ingest import read_examples
    from tests.conftest import make_config

    cfg = make_config(Path("/tmp/qc-bench-train-step"), [f"model={args.model}"])
    base = models.resolve_base(cfg.model, cfg.paths.cache_dir)
    tokenizer = models.load_tokenizer(base)
    template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    examples, _ = read_examples(cfg)
    encoded = sorted((encode_example(e.__dict__, template, cfg.prompt.dialect_name, tokenizer)
                      for e in examples[: args.examples]), key=lambda e: len(e["input_ids"]))
    collate = Collator(pad_token_id=tokenizer.pad_token_id)
    batches = {size: [collate(encoded[i: i + size]) for i in range(0, len(encoded), size)]
               for size in (4, 8)}
    tokens = sum(len(e["input_ids"]) for e in encoded)
    all_linear = list(cfg.model.target_modules["all_linear"])
    attention = list(cfg.model.target_modules["attention"])

    def full_loss(model, batch):
        return model(**batch).loss

    def selected_loss(model, batch):
        total, count = selected_logits_loss(model, batch)
        return total / count

    configurations = {
        "fp32 full (baseline)": (full_loss, False, all_linear, 8),
        "bf16 full": (full_loss, True, all_linear, 8),
        "fp32 selected": (selected_loss, False, all_linear, 8),
        "bf16 selected (default)": (selected_loss, True, all_linear, 8),
        "bf16 selected, attention only": (selected_loss, True, attention, 8),
        "bf16 selected, micro-batch 4": (selected_loss, True, all_linear, 4),
    }
    built = {}
    for _, _, targets, _ in configurations.values():
        key = tuple(targets)
        if key not in built:
            torch.manual_seed(0)
            model = get_peft_model(
                AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                LoraConfig(r=cfg.peft.r, lora_alpha=cfg.peft.alpha, lora_dropout=cfg.peft.dropout,
                           target_modules=targets, task_type="CAUSAL_LM"))
            built[key] = model
    seconds: dict[str, list[float]] = {name: [] for name in configurations}
    print(f"model {args.model}, {len(encoded)} examples, {tokens} input tokens per pass, "
          f"{torch.get_num_threads()} threads, train.precision auto -> "
          f"{resolve_precision('auto')}", flush=True)
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        for name, (loss_fn, bf16, targets, size) in configurations.items():
            model = built[tuple(targets)]
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad], lr=1e-5)
            began = time.perf_counter()
            for batch in batches[size]:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            if repeat:
                seconds[name].append(time.perf_counter() - began)
    baseline = statistics.median(seconds["fp32 full (baseline)"])
    print("| configuration | tokens/s (median) | vs baseline |\n|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {tokens / median:.0f} | {baseline / median:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
