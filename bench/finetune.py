"""Training throughput and peak memory of this project's finetune default, against baselines.

Baselines: QueryCraft-style padding (CPU mode), TRL's SFTTrainer (--vs-trl, with eval loss).

Usage:
    python bench/finetune.py [--epochs 1] [--rows N]
    python bench/finetune.py --vs-trl [--model tiny|smollm2-135m|both] [--steps 12]
                             [--repeats 3] [--seed 42]   # needs trl (pip install -e '.[bench]')
    python bench/finetune.py --gpu-7b        # on a GPU: Mistral-7B shape, LoRA and QLoRA

CPU mode (the acceptance figure): one ingest of the sample data, then the finetune service,
each configuration in its own process on the same tiny model (built once, same seed) and
the same training examples:
  (a) baseline, as IBM QueryCraft trains: every example padded to 512 tokens, loss on the
      whole sequence (`collator=default collator.pad_to_length=512`). QueryCraft also put
      loss on the padding (labels = input_ids); that costs the same compute, since the
      logits of all 512 positions are computed either way, so it is left out here;
  (b) this project's default: completion-only loss, each batch padded to its longest
      example, step-sorted batches;
  (c) the default with packing (examples laid end to end, no padding at all).
Throughput is trained (non-padding) tokens per second of training time, as the Trainer
measures it; peak memory is the process's peak resident set size (CPU). The ratio to (a) is
printed per configuration.

--vs-trl mode: the baseline people would otherwise pick, TRL's SFTTrainer, on the same model,
data, steps, effective batch and hyperparameters. Per model preset: one ingest of the sample
data, then interleaved repeats (a, b, c, d, a, b, c, d...) of
  (a) QueryCraft's default: `service=finetune model=<preset> train.max_steps=<steps>`, with
      the preset's learning rate, schedule, batch, precision and LoRA settings;
  (b) SFTTrainer, prompt/completion dataset (completion-only loss), no packing;
  (c) SFTTrainer with packing=True (best-fit decreasing). To keep about as many examples
      per optimizer step, a packed row holds about one micro batch: max_length is the micro
      batch size x the mean example length (at least the longest example), one row per
      forward pass, the same gradient accumulation;
  (d) SFTTrainer with padding_free=True (each micro batch flattened into one row; TRL then
      requires max_length=None).
TRL gets the settings QueryCraft's run used, read from that run's config.yaml: the base model
(for the tiny preset, the base_model/ folder the QueryCraft run built, so weights and tokenizer
are identical; otherwise the folder QueryCraft resolves, e.g. the GGUF conversion in
paths.cache_dir), the prompt text (querycraft.prompts: prompt_for and render_target; TRL adds
the end-of-sequence token as QueryCraft does), LoRA r, alpha, dropout, targets and
modules_to_save, learning rate, scheduler, warm-up, weight decay, Adam betas, gradient
clipping, micro batch and accumulation, seed, precision (bf16 autocast where QueryCraft's
train.precision resolves to it) and gradient checkpointing (off, as in QueryCraft; TRL's
default would turn it on). Every configuration trains in its own process (peak RSS from
wait4), QueryCraft's through its CLI entry point. Measured: the Trainer's train_runtime;
trained tokens, counted the same way in every process by wrapping Trainer.training_step
(labels other than -100 after the first position: the SQL and end-of-sequence tokens of
the examples seen); their rate; peak RSS; and, since speed only counts at equal quality,
the eval loss: base model + saved adapter, mean completion-only cross-entropy per token over
the ingest eval split, one function for every configuration. Medians over the repeats; the
table gives QueryCraft's tokens/s over each configuration's.

GPU mode builds a Mistral-7B-shaped model with random weights (throughput needs no real
weights), then times LoRA (bf16 base) and QLoRA (nf4 base) training steps at sequence
lengths 512 and 2048 on random token ids: tokens per second and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONFIGURATIONS = {
    "a: QueryCraft-style (pad to 512, labels = input_ids)":
        ["collator=default", "collator.pad_to_length=512"],
    "b: QueryCraft default (completion-only, dynamic padding, step-sorted)": [],
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


# --- --vs-trl: QueryCraft's default against TRL's SFTTrainer -------------------------------

TRL_VARIANTS = {
    "trl_no_packing": "TRL SFTTrainer, no packing",
    "trl_packing": "TRL SFTTrainer, packing=True",
    "trl_padding_free": "TRL SFTTrainer, padding_free=True",
}
QUERYCRAFT_DEFAULT = "QueryCraft default"


def _worker(kind: str, spec: dict, work: Path, env: dict[str, str]
            ) -> tuple[int, float, str]:
    """Run ``bench/finetune.py --worker kind`` on ``spec``; (exit code, peak RSS MiB, stderr)."""
    spec_file = work / f"spec-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec))
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                                str(spec_file)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, stderr


def _error_line(stderr: str) -> str:
    """The exception line of a traceback (the last one), else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines
              if line.split(":", 1)[0].split(".")[-1].endswith(("Error", "Exception"))]
    return (errors or lines or ["no output"])[-1][:400]


def _count_trained_tokens() -> dict[str, int]:
    """Count, per training micro batch, the tokens that carry loss and the examples.

    Wraps ``transformers.Trainer.training_step``, which QueryCraft's trainer and TRL's
    SFTTrainer both go through, so every configuration is counted by this one function.
    A label other than -100 after the first position is a predicted token: with
    completion-only loss, the SQL and the end-of-sequence token. A row without
    attention_mask but with position_ids is packed: its examples start where the
    positions restart at 0.
    """
    from transformers import Trainer

    counts = {"trained_tokens": 0, "examples": 0, "micro_batches": 0}
    original = Trainer.training_step

    def training_step(self: Any, model: Any, inputs: dict[str, Any], *args: Any,
                      **kwargs: Any) -> Any:
        labels = inputs["labels"]
        counts["trained_tokens"] += int((labels[:, 1:] != -100).sum())
        if "attention_mask" not in inputs and "position_ids" in inputs:
            counts["examples"] += int((inputs["position_ids"] == 0).sum())
        else:
            counts["examples"] += int(labels.shape[0])
        counts["micro_batches"] += 1
        return original(self, model, inputs, *args, **kwargs)

    Trainer.training_step = training_step
    return counts


def _querycraft_worker(spec: dict) -> int:
    """``python -m querycraft <args>`` in this process, with the trained-token count."""
    counts = _count_trained_tokens()
    sys.argv = ["querycraft", *spec["args"]]
    from querycraft.cli import main

    try:
        main()
    finally:
        Path(spec["counts"]).write_text(json.dumps(counts))
    return 0


def _base_model(cfg: Any, querycraft_run: Path) -> str:
    """The base model a QueryCraft finetune run trained: the tiny preset's own build, or the
    folder QueryCraft resolves (a hub id, a local folder, a GGUF file's conversion in
    paths.cache_dir)."""
    if cfg.model.builder == "tiny":
        return str(querycraft_run / "base_model")
    from querycraft import models

    return models.resolve_base(cfg.model, cfg.paths.cache_dir)


def _encoded_rows(cfg: Any, split: str, tokenizer: Any) -> list[tuple[dict, dict]]:
    """(row, QueryCraft's encoding) for an ingest split, without examples QueryCraft leaves
    out for length."""
    from querycraft.data import encode_example
    from querycraft.prompts import load_template
    from querycraft.runs import read_jsonl

    template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    rows = read_jsonl(Path(cfg.train.dataset_dir) / "dataset" / f"{split}.jsonl")
    pairs = [(row, encode_example(row, template, cfg.prompt.dialect_name, tokenizer))
             for row in rows]
    return [(r, e) for r, e in pairs if len(e["input_ids"]) <= cfg.train.max_seq_length]


def _trl_worker(spec: dict) -> int:
    """Train one TRL configuration with the settings of a QueryCraft run; save the adapter."""
    from datasets import Dataset
    from omegaconf import OmegaConf
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from querycraft import models
    from querycraft.data import prompt_for
    from querycraft.prompts import load_template, render_target
    from querycraft.services.finetune import gradient_accumulation_steps, optimizer_arguments

    counts = _count_trained_tokens()
    querycraft_run = Path(spec["querycraft_run"])
    cfg = OmegaConf.load(querycraft_run / "config.yaml")
    train = cfg.train
    base = _base_model(cfg, querycraft_run)
    tokenizer = models.load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
    template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    encoded = _encoded_rows(cfg, "train", tokenizer)
    dataset = Dataset.from_list([
        {"prompt": prompt_for(row, template, cfg.prompt.dialect_name),
         "completion": render_target(template, row["query"])} for row, _ in encoded])

    accumulation = gradient_accumulation_steps(train, 1)
    variant = spec["variant"]
    if variant == "trl_no_packing":
        layout = {"per_device_train_batch_size": train.micro_batch_size,
                  "max_length": train.max_seq_length}
    elif variant == "trl_packing":
        lengths = [len(e["input_ids"]) for _, e in encoded]
        row_length = max(max(lengths), round(train.micro_batch_size * sum(lengths)
                                             / len(lengths)))
        layout = {"per_device_train_batch_size": 1, "packing": True, "max_length": row_length}
    elif variant == "trl_padding_free":
        # Without packing TRL does not enforce max_length and refuses one.
        layout = {"per_device_train_batch_size": train.micro_batch_size,
                  "padding_free": True, "max_length": None}
    else:
        raise ValueError(f"unknown TRL variant {variant}")
    out = Path(spec["output_dir"])
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        gradient_accumulation_steps=accumulation,
        gradient_checkpointing=train.gradient_checkpointing,
        use_cpu=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        completion_only_loss=True,
        model_init_kwargs={"dtype": cfg.model.dtype,
                           "trust_remote_code": cfg.model.trust_remote_code},
        **layout,
        **optimizer_arguments(train),
    )
    peft = cfg.peft
    lora = LoraConfig(
        r=peft.r, lora_alpha=peft.alpha, lora_dropout=peft.dropout, bias=peft.bias,
        target_modules=models.lora_target_modules(peft, cfg.model),
        modules_to_save=sorted({*(peft.modules_to_save or []),
                                *(cfg.model.modules_to_save or [])}) or None,
        use_dora=peft.use_dora, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=base, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora)
    result = trainer.train()
    trainer.save_model(str(out / "adapter"))
    (out / "metrics.json").write_text(json.dumps({
        "seconds": result.metrics["train_runtime"], "train_loss": result.training_loss,
        "steps": trainer.state.global_step, "base_model": base, "layout": {
            k: v for k, v in layout.items()}, "log_history": trainer.state.log_history,
        **counts}, indent=2))
    return 0


def _eval_worker(spec: dict) -> int:
    """Mean completion-only cross-entropy per token of base (+ adapter) on the eval split.

    The same function for every configuration: QueryCraft's encoding of each example (the
    prompt, then the SQL and end-of-sequence token), one example at a time, full precision.
    """
    import torch
    from omegaconf import OmegaConf
    from peft import PeftModel

    from querycraft import models

    cfg = OmegaConf.load(Path(spec["querycraft_run"]) / "config.yaml")
    base = _base_model(cfg, Path(spec["querycraft_run"]))
    tokenizer = models.load_tokenizer(base, trust_remote_code=cfg.model.trust_remote_code)
    model = models.load_model(base, cfg.model)
    if spec.get("adapter"):
        model = PeftModel.from_pretrained(model, spec["adapter"])
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for _, example in _encoded_rows(cfg, "eval", tokenizer):
            ids = torch.tensor([example["input_ids"]])
            start = example["prompt_length"]
            # Logits only for the positions that predict the SQL and end-of-sequence tokens.
            keep = ids.shape[1] - start + 1
            logits = model(input_ids=ids, logits_to_keep=keep).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, start:],
                                                             reduction="sum"))
            count += ids.shape[1] - start
    Path(spec["result"]).write_text(json.dumps({"eval_loss": total / count,
                                                "eval_tokens": count}))
    return 0


def _eval_loss(querycraft_run: Path, adapter: Path | None, work: Path,
               env: dict[str, str]) -> float | str:
    result = work / f"eval-{time.monotonic_ns()}.json"
    code, _, stderr = _worker("eval", {"querycraft_run": str(querycraft_run),
                                       "adapter": str(adapter) if adapter else None,
                                       "result": str(result)}, work, env)
    if code:
        return f"eval failed: {_error_line(stderr)}"
    return json.loads(result.read_text())["eval_loss"]


def _vs_trl_model(preset: str, steps: int, repeats: int, seed: int, work: Path,
                  env: dict[str, str]) -> dict | None:
    """All configurations on one model preset; None if QueryCraft itself failed."""
    output = work / preset
    ingest_dir = output / "ingest"
    code, _, stderr = _worker("querycraft", {
        "args": ["service=ingest", f"model={preset}", f"paths.output_dir={output}",
                 f"hydra.run.dir={ingest_dir}"], "counts": str(work / "ingest-counts.json")},
        work, env)
    if code:
        print(stderr[-3000:], file=sys.stderr)
        return None
    common = [f"model={preset}", f"seed={seed}", f"paths.output_dir={output}",
              f"train.max_steps={steps}", "train.report_to=[]", "train.validation_fraction=0",
              "train.save_steps=1000000", f"train.dataset_dir={ingest_dir}"]
    names = [QUERYCRAFT_DEFAULT, *TRL_VARIANTS]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    failed: dict[str, str] = {}
    first_querycraft_run: Path | None = None
    for repeat in range(repeats):
        for name in names:
            if name in failed:
                continue
            run_dir = output / f"{name.replace(' ', '_')}-{repeat}"
            if name == QUERYCRAFT_DEFAULT:
                code, peak_mib, stderr = _worker("querycraft", {
                    "args": ["service=finetune", f"hydra.run.dir={run_dir}", *common],
                    "counts": str(run_dir.with_suffix(".counts.json"))}, work, env)
                if code:
                    print(stderr[-3000:], file=sys.stderr)
                    return None
                metrics = json.loads((run_dir / "metrics.json").read_text())
                metrics.update(json.loads(run_dir.with_suffix(".counts.json").read_text()))
                first_querycraft_run = first_querycraft_run or run_dir
                adapter = run_dir / "adapter"
            else:
                code, peak_mib, stderr = _worker("trl", {
                    "querycraft_run": str(first_querycraft_run), "variant": name,
                    "output_dir": str(run_dir)}, work, env)
                if code:
                    failed[name] = _error_line(stderr)
                    print(f"  {preset} {TRL_VARIANTS[name]}: did not run: {failed[name]}",
                          flush=True)
                    (work / f"{preset}-{name}.stderr.txt").write_text(stderr)
                    continue
                metrics = json.loads((run_dir / "metrics.json").read_text())
                adapter = run_dir / "adapter"
            # Training is seeded: every repeat trains the same adapter, so one eval suffices.
            eval_loss = (_eval_loss(first_querycraft_run, adapter, work, env) if repeat == 0
                         else None)
            record = {"repeat": repeat, "seconds": metrics["seconds"],
                      "trained_tokens": metrics["trained_tokens"],
                      "examples": metrics["examples"], "steps": metrics["steps"],
                      "tokens_per_s": metrics["trained_tokens"] / metrics["seconds"],
                      "peak_rss_mib": peak_mib, "train_loss": metrics["train_loss"],
                      "eval_loss": eval_loss, "layout": metrics.get("layout")}
            runs[name].append(record)
            label = TRL_VARIANTS.get(name, name)
            print(f"  {preset} repeat {repeat + 1}/{repeats} {label}: {record['seconds']:.1f} s, "
                  f"{record['tokens_per_s']:.0f} trained tokens/s, {peak_mib:.0f} MiB, "
                  f"train loss {record['train_loss']:.4f}"
                  + (f", eval loss {eval_loss}" if eval_loss is not None else ""), flush=True)
            if repeat > 0:  # TRL and eval read the first QueryCraft run's config and base
                shutil.rmtree(run_dir, ignore_errors=True)
    base_eval = _eval_loss(first_querycraft_run, None, work, env)
    from omegaconf import OmegaConf

    batch = OmegaConf.load(first_querycraft_run / "config.yaml").train.global_batch_size
    shutil.rmtree(output, ignore_errors=True)  # run folders: base models, adapters
    return {"preset": preset, "steps": steps, "global_batch_size": batch, "repeats": repeats,
            "seed": seed, "runs": runs, "failed": failed, "base_eval_loss": base_eval}


def _median(records: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in records)


def _print_vs_trl(result: dict) -> None:
    runs, failed = result["runs"], result["failed"]
    qc = runs[QUERYCRAFT_DEFAULT]
    qc_rate = _median(qc, "tokens_per_s")
    print(f"\n{result['preset']}: {result['steps']} steps x {result['global_batch_size']} "
          f"examples, seed {result['seed']}, "
          f"medians of {result['repeats']} interleaved repeat(s); {os.cpu_count()} CPU cores; "
          f"eval loss: mean completion-only cross-entropy per token on the ingest eval split")
    header = (f"{'configuration':36} {'seconds':>8} {'tokens/s':>9} {'QC/this':>8} "
              f"{'peak MiB':>9} {'examples':>8} {'tokens':>7} {'train loss':>10} "
              f"{'eval loss':>9}")
    print(header)
    for name, records in runs.items():
        label = TRL_VARIANTS.get(name, name)
        if name in failed and not records:
            print(f"{label:36} did not run: {failed[name]}")
            continue
        rate = _median(records, "tokens_per_s")
        eval_loss = records[0]["eval_loss"]
        eval_text = f"{eval_loss:9.4f}" if isinstance(eval_loss, float) else str(eval_loss)
        print(f"{label:36} {_median(records, 'seconds'):8.1f} {rate:9.0f} "
              f"{qc_rate / rate:7.2f}x {_median(records, 'peak_rss_mib'):9.0f} "
              f"{records[0]['examples']:8d} {records[0]['trained_tokens']:7d} "
              f"{_median(records, 'train_loss'):10.4f} {eval_text}")
    base = result["base_eval_loss"]
    print(f"{'base model, untrained adapter':36} {'':>8} {'':>9} {'':>8} {'':>9} {'':>8} "
          f"{'':>7} {'':>10} " + (f"{base:9.4f}" if isinstance(base, float) else str(base)))
    trl = {n: r for n, r in runs.items() if n in TRL_VARIANTS and r}
    if trl:
        best = max(trl, key=lambda n: _median(trl[n], "tokens_per_s"))
        qc_eval, best_eval = qc[0]["eval_loss"], trl[best][0]["eval_loss"]
        quality = (f"; eval loss {qc_eval:.4f} vs {best_eval:.4f} (lower is better)"
                   if isinstance(qc_eval, float) and isinstance(best_eval, float) else "")
        print(f"QueryCraft default vs best TRL configuration ({TRL_VARIANTS[best]}): "
              f"{qc_rate / _median(trl[best], 'tokens_per_s'):.2f}x trained tokens/s{quality}")
    for name, records in runs.items():
        layout = records[0].get("layout") if records else None
        if layout:
            print(f"  {TRL_VARIANTS[name]}: {layout}")


def vs_trl_benchmark(model: str, steps: int, repeats: int, seed: int) -> int:
    try:
        import trl  # noqa: F401
    except ImportError:
        print("--vs-trl needs TRL: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    presets = ["tiny", "smollm2-135m"] if model == "both" else [model]
    work = Path(tempfile.mkdtemp(prefix="qc-bench-vs-trl-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results = []
    print(f"load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
    for preset in presets:
        result = _vs_trl_model(preset, steps, repeats, seed, work, env)
        if result is None:
            return 1
        results.append(result)
        (work / "results.json").write_text(json.dumps(results, indent=2))
    for result in results:
        _print_vs_trl(result)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (other processes on the "
          f"machine slow every configuration)")
    print(f"results in {work / 'results.json'}")
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
    parser.add_argument("--vs-trl", action="store_true",
                        help="QueryCraft's default vs TRL's SFTTrainer (no packing, packing, "
                             "padding-free)")
    parser.add_argument("--model", choices=["tiny", "smollm2-135m", "both"], default="both",
                        help="--vs-trl: model preset(s)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per configuration (--vs-trl, default 12) or "
                             "timed steps per GPU setting (--gpu-7b, default 10)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="--vs-trl: interleaved repeats; medians are reported")
    parser.add_argument("--seed", type=int, default=42, help="--vs-trl: training seed")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, spec = args.worker
        worker = {"querycraft": _querycraft_worker, "trl": _trl_worker,
                  "eval": _eval_worker}[kind]
        return worker(json.loads(Path(spec).read_text()))
    if args.vs_trl:
        return vs_trl_benchmark(args.model, args.steps or 12, args.repeats, args.seed)
    if args.gpu_7b:
        return gpu_benchmark(args.steps or 10)
    return cpu_benchmark(args.epochs, args.rows)


if __name__ == "__main__":
    sys.exit(main())
