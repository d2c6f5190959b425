"""Finetune's tokenization: hand-written per-example encoding vs a cached ``datasets`` map.

Usage:
    python bench/tokenization.py [--model smollm2-135m] [--rows 433 20000] [--repeats 3]

The training rows are the sample's (433), repeated with numbered questions up to each size
in ``--rows``, written as the JSONL an ingest run writes. Three ways to get their token ids,
each with the real model's tokenizer and prompt template:

  list (baseline)   read the JSONL into dicts, ``encode_example`` row by row, ids kept as
                    Python lists: what finetune did before it used ``datasets``
  datasets, cold    ``load_rows`` + ``tokenized_dataset`` into an empty cache: JSONL to Arrow,
                    then batched tokenization written to an Arrow file
  datasets, cached  the same call again: the Arrow files are memory-mapped, nothing tokenized

Repeats are interleaved (list, cold, cached, list, ...), medians reported, with the ratio of
the baseline's time to each. Python heap held by the result after the call (tracemalloc; the
memory-mapped Arrow files are not heap) shows what a long run keeps resident.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_rows(examples: list[dict], count: int, path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            row = dict(examples[i % len(examples)])
            if i >= len(examples):  # a new question, so no two rows are identical
                row["question"] = f"{row['question']} (variant {i // len(examples)})"
            out.write(json.dumps({"id": f"train-{i:07d}", **row}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, nargs="+", default=[433, 20000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import datasets

    from querycraft import models
    from querycraft.data import encode_example, load_rows, tokenized_dataset
    from querycraft.prompts import load_template
    from querycraft.runs import read_jsonl
    from querycraft.services.ingest import read_examples
    from tests.conftest import make_config

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="qc-bench-tokenize-"))
    cfg = make_config(work / "output", [f"model={args.model}"])
    tokenizer = models.load_tokenizer(models.resolve_base(cfg.model, cfg.paths.cache_dir))
    template = load_template(cfg.prompt.template, cfg.paths.prompts_dir)
    dialect = cfg.prompt.dialect_name
    examples = [{k: v for k, v in e.__dict__.items() if k != "source_row"}
                for e in read_examples(cfg)[0]]

    def by_list(path: Path, _cache: Path) -> object:
        return [encode_example(row, template, dialect, tokenizer) for row in read_jsonl(path)]

    def by_datasets(path: Path, cache: Path) -> object:
        return tokenized_dataset(load_rows(path, cache), template, dialect, tokenizer)

    print(f"model {args.model}, template {cfg.prompt.template}, {args.repeats} repeats; "
          f"python {sys.version.split()[0]}, datasets {datasets.__version__}")
    print("\n| rows | method | seconds (median) | baseline / this | Python heap kept |")
    print("|---|---|---|---|---|")
    try:
        for count in args.rows:
            path = work / f"train-{count}.jsonl"
            write_rows(examples, count, path)
            times: dict[str, list[float]] = {"list (baseline)": [], "datasets, cold": [],
                                             "datasets, cached": []}
            heap: dict[str, int] = {}
            for repeat in range(args.repeats):
                cache = work / f"cache-{count}-{repeat}"
                for name, fn in (("list (baseline)", by_list), ("datasets, cold", by_datasets),
                                 ("datasets, cached", by_datasets)):
                    tracemalloc.start()
                    start = time.perf_counter()
                    result = fn(path, cache)
                    times[name].append(time.perf_counter() - start)
                    heap[name] = tracemalloc.get_traced_memory()[0]
                    tracemalloc.stop()
                    del result
                shutil.rmtree(cache)
            baseline = statistics.median(times["list (baseline)"])
            for name, values in times.items():
                median = statistics.median(values)
                print(f"| {count:,} | {name} | {median:.2f} | {baseline / median:.2f}x | "
                      f"{heap[name] / 2**20:.1f} MiB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
