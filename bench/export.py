"""Export time, file sizes and round-trip agreement of the GGUF files.

Usage:
    python bench/export.py --finetune-dir output/finetune/<run>          # any finetune run
    python bench/export.py --finetune-dir <run> --questions 48 --formats merged f16 bf16 q8_0

Runs ``service=export`` on the finetune run (its own process, as the CLI runs it), then
loads the merged model and each GGUF file with transformers (``gguf_file``) and generates
greedy SQL for the first ``--questions`` questions of the eval split the run trained
beside: the share of questions whose SQL is identical to the merged model's. Prints a
Markdown table and writes <work>/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_model import querycraft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finetune-dir", type=Path, required=True)
    parser.add_argument("--formats", nargs="+", default=["merged", "f16", "bf16", "q8_0"])
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="qc-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    saved = json.loads((args.finetune_dir / "run.json").read_text())
    model = (saved.get("model_name") or "").split("/")[-1] or "model"
    export_dir = work / "export"
    wall = querycraft(["service=export", f"hydra.run.dir={export_dir}",
                       f"paths.output_dir={work}", f"export.finetune_dir={args.finetune_dir}",
                       f"export.formats=[{','.join(args.formats)}]", "export.name=bench"],
                      env, work / "export.log")
    report = json.loads((export_dir / "export.json").read_text())

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from querycraft.artifacts import FinetuneArtifact
    from querycraft.data import prompt_for
    from querycraft.generation import GenerationSettings, generate
    from querycraft.prompts import parse_template
    from querycraft.runs import read_jsonl
    from querycraft.sql import extract_sql

    finetune = FinetuneArtifact.read(args.finetune_dir)
    template = parse_template(finetune.prompt_template.read_text(encoding="utf-8"))
    rows = read_jsonl(finetune.ingest().split_file("eval"))[: args.questions]
    prompts = [prompt_for(r, template, finetune.prompt_dialect) for r in rows]
    settings = GenerationSettings(max_new_tokens=160, stop_string=template.stop_string,
                                  batch_size=16)

    def greedy(folder: Path, gguf_file: str | None = None) -> tuple[list[str], float, float]:
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        began = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        loaded = AutoModelForCausalLM.from_pretrained(folder, **extra)
        load_s = time.perf_counter() - began
        began = time.perf_counter()
        sql = [extract_sql(g.text) for g in generate(loaded, tokenizer, prompts, settings)]
        return sql, load_s, time.perf_counter() - began

    merged, load_s, gen_s = greedy(export_dir / "merged_model")
    table = [{"format": "merged", "mib": report["files"]["merged"]["bytes"] / 2**20,
              "export_s": report["seconds"]["merged"], "load_s": load_s, "generate_s": gen_s,
              "identical": 1.0}]
    for fmt in args.formats:
        if fmt == "merged" or not report["files"].get(fmt, {}).get("gguf"):
            continue
        fact = report["files"][fmt]
        sql, load_s, gen_s = greedy(export_dir, fact["file"])
        table.append({"format": fmt, "mib": fact["bytes"] / 2**20,
                      "export_s": report["seconds"][fmt], "load_s": load_s,
                      "generate_s": gen_s,
                      "identical": sum(a == b for a, b in zip(merged, sql, strict=True))
                      / len(rows)})
    results = {"model": model, "finetune_dir": str(args.finetune_dir), "questions": len(rows),
               "export_command_s": wall, "rows": table}
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{model}: export command {wall:.1f} s, {len(rows)} questions\n")
    print("| format | MiB | export s | load s | generate s | SQL identical to merged |\n"
          "|---|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['format']} | {r['mib']:.1f} | {r['export_s']:.1f} | {r['load_s']:.1f} | "
              f"{r['generate_s']:.1f} | {r['identical']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
