"""Training throughput and peak memory: QueryCraft-style padding vs this project's default.

Usage:
    python bench/finetune.py [--epochs 1] [--rows N]
    python bench/finetune.py --gpu-7b        # on a GPU: Mistral-7B shape, LoRA and QLoRA

CPU mode (the acceptance figure): one ingest of the sample data, then the finetune service,
each configuration in its own process on the same tiny model (built once, same seed) and
the same training examples:
  (a) baseline, as IBM QueryCraft trains: every example padded to 512 tokens, loss on the
      whole sequence (`collator=default collator.pad_to_length=512`). QueryCraft also put
      loss on the padding (labels = input_ids); that costs the same compute, since the
      logits of all 512 positions are computed either way, so it is left out here;
  (b) this project's default: completion-only loss, each batch padded to its longest
      example, batches grouped by length;
  (c) the default with packing (examples laid end to end, no padding at all).
Throughput is trained (non-padding) tokens per second of training time, as the Trainer
measures it; peak memory is the process's peak resident set size (CPU). The ratio to (a) is
printed per configuration.

GPU mode builds a Mistral-7B-shaped model with random weights (throughput needs no real
weights), then times LoRA (bf16 base) and QLoRA (nf4 base) training steps at sequence
lengths 512 and 2048 on random token ids: tokens per second and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGURATIONS = {
    "a: QueryCraft-style (pad to 512, labels = input_ids)":
        ["collator=default", "collator.pad_to_length=512"],
    "b: QueryCraft default (completion-only, dynamic padding, length-grouped)": [],
    "c: default + packing": ["collator.packing=true"],
}


def _querycraft(args: list[str], env: dict[str, str]) -> tuple[int, float]:
    """Run ``python -m querycraft args``; return (exit code, peak RSS in MiB of that process)."""
    process = subprocess.Popen([sys.executable, "-m", "querycraft", *args], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(stderr[-3000:], file=sys.stderr)
    return code, usage.ru_maxrss / 1024  # Linux reports KiB


def cpu_benchmark(epochs: float, rows: int | None) -> int:
    work = Path(tempfile.mkdtemp(prefix="qc-bench-finetune-"))
    output = work / "output"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    common = [f"paths.output_dir={output}", "train.report_to=[]",
              "train.validation_fraction=0", f"train.epochs={epochs}",
              # No checkpoint inside the timed loop: the same for every configuration.
              "train.save_steps=1000000"]
    ingest_dir = output / "ingest"
    code, _ = _querycraft(["service=ingest", f"hydra.run.dir={ingest_dir}", *common,
                           *([f"ingest.max_rows={rows}"] if rows else [])], env)
    if code:
        return code
    results = []
    for name, overrides in CONFIGURATIONS.items():
        run_dir = output / "finetune" / str(len(results))
        code, peak_mib = _querycraft(["service=finetune", f"hydra.run.dir={run_dir}",
                                      f"train.dataset_dir={ingest_dir}", *common,
                                      *overrides], env)
        if code:
            return code
        metrics = json.loads((run_dir / "metrics.json").read_text())
        tokens = metrics["input_tokens_per_epoch"] * metrics["epochs"]
        results.append({"configuration": name, "seconds": metrics["seconds"],
                        "tokens_per_s": tokens / metrics["seconds"],
                        "peak_rss_mib": peak_mib, "final_loss": metrics["train_loss"],
                        "examples": metrics["train_examples"], "steps": metrics["steps"]})
        print(f"{name}: {results[-1]['tokens_per_s']:.0f} tokens/s, "
              f"{peak_mib:.0f} MiB peak", flush=True)
    baseline = results[0]
    print(f"\n{results[0]['examples']} training examples, {epochs} epoch(s), "
          f"tiny preset model; {os.cpu_count()} CPU cores")
    print(f"{'configuration':75} {'tokens/s':>9} {'ratio':>6} {'peak MiB':>9} {'seconds':>8}")
    for r in results:
        print(f"{r['configuration']:75} {r['tokens_per_s']:9.0f} "
              f"{r['tokens_per_s'] / baseline['tokens_per_s']:5.2f}x "
              f"{r['peak_rss_mib']:9.0f} {r['seconds']:8.1f}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults in {work / 'results.json'}")
    shutil.rmtree(output, ignore_errors=True)
    return 0


def gpu_benchmark(steps: int) -> int:
    """LoRA / QLoRA training steps on a Mistral-7B-shaped model with random weights."""
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoModelForCausalLM

    from querycraft import models

    if not torch.cuda.is_available():
        print("--gpu-7b needs a CUDA GPU", file=sys.stderr)
        return 2
    config = AutoConfig.for_model("mistral", vocab_size=32000, hidden_size=4096,
                                  intermediate_size=14336, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=8,
                                  max_position_embeddings=32768, tie_word_embeddings=False)
    folder = Path(tempfile.mkdtemp(prefix="qc-mistral7b-shape-"))
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    model_cfg = OmegaConf.create({"name": "mistral-7b-shape", "dtype": "bfloat16",
                                  "trust_remote_code": False, "modules_to_save": None,
                                  "target_modules": {"all_linear": [
                                      "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                      "up_proj", "down_proj"]}})
    rows = []
    for method, bits in (("lora", None), ("qlora", 4)):
        for seq in (512, 2048):
            torch.cuda.reset_peak_memory_stats()
            peft_cfg = OmegaConf.create({
                "r": 16, "alpha": 32, "dropout": 0.05, "bias": "none", "use_dora": False,
                "targets": "all_linear", "target_modules": None, "modules_to_save": None,
                "quantization": {"bits": bits, "quant_type": "nf4", "double_quant": True,
                                 "compute_dtype": "auto"}})
            model = models.load_model(str(folder), model_cfg, peft_cfg.quantization)
            if bits is None:
                model = model.cuda()
            model.config.use_cache = False
            model = models.attach_lora(model, peft_cfg, model_cfg, gradient_checkpointing=True)
            model.gradient_checkpointing_enable({"use_reentrant": False})
            optimizer = torch.optim.AdamW(
                [p for p in model.parameters() if p.requires_grad], lr=2e-4)
            ids = torch.randint(0, 32000, (1, seq), device="cuda")
            for step in range(steps + 2):  # two warm-up steps
                if step == 2:
                    torch.cuda.synchronize()
                    began = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - began
            rows.append((method, seq, steps * seq / seconds,
                         torch.cuda.max_memory_allocated() / 2**30))
            print(f"{method:6} seq {seq:5}: {rows[-1][2]:8.0f} tokens/s, "
                  f"peak {rows[-1][3]:.1f} GiB", flush=True)
            del model, optimizer
            torch.cuda.empty_cache()
    print(f"\n{torch.cuda.get_device_name()} ({time.strftime('%Y-%m-%d')}), micro batch 1, "
          f"gradient checkpointing, LoRA r 16 on all linear layers, {steps} timed steps")
    for method, seq, tps, gib in rows:
        print(f"| {method} | {seq} | {tps:.0f} | {gib:.1f} |")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=None, help="use only this many examples")
    parser.add_argument("--gpu-7b", action="store_true",
                        help="time LoRA/QLoRA on a Mistral-7B-shaped model (needs a GPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per GPU setting")
    args = parser.parse_args()
    if args.gpu_7b:
        return gpu_benchmark(args.steps)
    return cpu_benchmark(args.epochs, args.rows)


if __name__ == "__main__":
    sys.exit(main())
