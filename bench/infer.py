"""Inference throughput: QueryCraft-style serial generation vs this project's default.

Usage: python bench/infer.py [--epochs 8] [--finetune-dir output/finetune/<run>]

Fine-tunes the tiny preset on the sample data (or uses the finetune run given), then, in one
process on the same model and the same held-out questions:
  (a) baseline, as IBM QueryCraft generates: one prompt at a time, max_new_tokens 400, no
      stop string (the end-of-sequence token still ends a sequence, as in transformers);
  (b) this project's default (`infer.*` of the composed config: batches of
      infer.batch_size, length-sorted, the preset's max_new_tokens, the template's stop).
Each configuration runs --repeats times (interleaved); the median time counts, since a
2-core machine's timings wander by +-15 %. Reports questions per second, the ratio (b)/(a),
and how many extracted SQL strings agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _config(output: Path, name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from querycraft.config import CONFIG_DIR, register_configs

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=[f"paths.output_dir={output}",
                                            f"paths.run_dir={output / name}", *overrides])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=8.0)
    parser.add_argument("--finetune-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from querycraft.backends import HFBackend
    from querycraft.cli import run
    from querycraft.data import prompt_for
    from querycraft.generation import GenerationSettings, generate
    from querycraft.runs import read_jsonl
    from querycraft.services.infer import resolve_request
    from querycraft.sql import extract_sql

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    output = Path(tempfile.mkdtemp(prefix="qc-bench-infer-"))
    finetune_dir = args.finetune_dir
    if finetune_dir is None:
        ingest_dir = run(_config(output, "ingest", ["service=ingest"]))
        began = time.perf_counter()
        finetune_dir = run(_config(output, "finetune", [
            "service=finetune", f"train.dataset_dir={ingest_dir}", f"train.epochs={args.epochs}",
            "train.report_to=[]"]))
        print(f"fine-tuned the tiny preset for {args.epochs} epochs in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    cfg = _config(output, "infer", ["service=infer", f"infer.finetune_dir={finetune_dir}"])
    request = resolve_request(cfg)
    rows = read_jsonl(request.dataset_dir / "dataset" / "eval.jsonl")
    prompts = [prompt_for(r, request.template, request.dialect) for r in rows]
    backend = HFBackend(request.source, cfg.model)

    configurations = {
        "a: QueryCraft-style serial (batch 1, max_new_tokens 400, no stop string)":
            GenerationSettings(max_new_tokens=400, stop_string=None, batch_size=1),
        "b: QueryCraft default": GenerationSettings.from_config(
            cfg.infer, request.template.stop_string),
    }
    # Warm up (first-call allocations) so neither configuration pays for them.
    generate(backend.model, backend.tokenizer, prompts[:4],
             GenerationSettings(max_new_tokens=8, batch_size=4), progress=False)
    times: dict[str, list[float]] = {name: [] for name in configurations}
    outputs_of = {}
    for _ in range(args.repeats):
        for name, settings in configurations.items():
            began = time.perf_counter()
            outputs_of[name] = generate(backend.model, backend.tokenizer, prompts, settings,
                                        progress=False)
            times[name].append(time.perf_counter() - began)
    results = {}
    for name, outputs in outputs_of.items():
        seconds = statistics.median(times[name])
        tokens = sum(len(backend.tokenizer(o.text, add_special_tokens=False)["input_ids"])
                     for o in outputs)
        results[name] = (len(prompts) / seconds, seconds, [extract_sql(o.text) for o in
                                                           outputs], tokens / len(prompts))
        print(f"{name}: {results[name][0]:.2f} questions/s (runs: "
              f"{', '.join(f'{t:.2f}' for t in times[name])} s)", flush=True)

    (base_qps, *_, base_sql, _), (_, _, sql, _) = results.values()
    same = sum(a == b for a, b in zip(base_sql, sql, strict=True))
    default = configurations["b: QueryCraft default"]
    print(f"\n{len(prompts)} held-out questions, tiny preset ({finetune_dir}); "
          f"{os.cpu_count()} CPU cores; default = batch {default.batch_size}, "
          f"max_new_tokens {default.max_new_tokens}, stop {default.stop_string!r}")
    print(f"{'configuration':75} {'q/s':>7} {'ratio':>6} {'seconds':>8} {'tokens/q':>8}")
    for name, (q, s, _, t) in results.items():
        print(f"{name:75} {q:7.2f} {q / base_qps:5.2f}x {s:8.1f} {t:8.1f}")
    print(f"identical extracted SQL: {same} of {len(prompts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
