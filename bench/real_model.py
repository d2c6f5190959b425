"""A real pretrained model, zero-shot vs fine-tuned vs fine-tuned + correct.

Usage:
    python bench/real_model.py --models smollm2-135m --datasets sample-skeleton --seeds 1 2 3
    python bench/real_model.py --datasets spider-database --seeds 1 2 3 -- train.epochs=1
    (extra config overrides after --)

Datasets (each names its split, which decides what a figure measures; issue 31):
  sample-skeleton   the bundled shop data (input/sample/), evaluation on query shapes never
                    trained on (ingest.split_by=skeleton): the honest sample figure;
  sample-leaky      the same data split by question (ingest.split_by=random): every
                    evaluation question is a new value in a trained template. Kept, labelled,
                    so that the difference is visible; never a headline;
  spider-query      Spider dev in-domain, split by query (ingest.split_by=query, 30 %): new
                    queries about databases trained on, no paraphrase of a training query;
  spider-database   Spider dev cross-database (ingest.split_by=database, 30 % of the
                    questions in whole databases): databases never seen;
  spider-leaky      Spider dev in-domain split by question per database (split_by=db_id):
                    63 % of its evaluation queries are trained queries reworded;
  sample, spider    the old names of sample-leaky and spider-leaky.
Spider datasets use the tables each question needs as context (ingest.context_tables=
question). ``--seeds`` runs each (model, dataset) once per seed (the split's and the
training's: ``seed=<n>``) and adds a table of mean and min-max over the seeds.

Each (model, dataset) runs the stages as the CLI does, one process each, in one work folder:
ingest, finetune, then for the base model (zero-shot: infer.use_adapter=false) and for the
fine-tuned model: infer, correct, evaluate. Reported per condition: execution accuracy of the
raw and of the corrected SQL, valid-SQL rate, Spider exact-set match; and seconds per stage.
Results are printed as a Markdown table and written to <work>/results.json.

``--extra`` adds conditions on the same fine-tuned model and eval split (issue 18):
  voting-N         infer.candidates=N (execution-guided voting; N = 4, 8, ...);
  values           a second ingest with the value index (ingest.value_index.enabled=true,
                   prompt.template=values: the database's values matching each question in
                   the prompt, in training and inference), its own fine-tuning, then infer;
  values+voting-N  both.
Each reports execution accuracy and infer seconds per question (the infer stage's wall time,
model loading included, over the questions). ``--eval-limit N`` scores every condition on the
same N questions spread evenly over the eval split (infer.limit_by=spread: every database of
a split grouped by database), for runs where the whole split would take too long;
``--no-zero-shot`` leaves out the base-model condition. A stage whose run folder already holds a
completed run (a rerun with the same --work) is reused, not run again. ``--jobs N`` runs up
to N stages at once where none needs another's output (the two ingests, the two
fine-tunes, every infer, every correct/evaluate pair): for a GPU with room for several
small models; the seconds reported are then measured under that sharing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT.parent / "shared" / "spider-dev"

SPIDER_COMMON = [
    "data=spider", f"data.path={SPIDER / 'dev.json'}", f"data.database={SPIDER / 'database'}",
    "ingest.eval_fraction=0.3",
    # Only the tables a question needs (p50 244 tokens instead of 324 with the whole schema),
    # and room for the longest so that no example is left out.
    "ingest.context_tables=question", "train.max_seq_length=1024",
    # Up to 1,145 tokens: micro-batches of 2 bound the activation memory (the global batch,
    # and so the schedule, stays the preset's).
    "train.micro_batch_size=2"]
DATASETS = {
    "sample-skeleton": ["data=sample", "ingest.split_by=skeleton"],
    "sample-leaky": ["data=sample", "ingest.split_by=random"],
    "spider-query": [*SPIDER_COMMON, "ingest.split_by=query"],
    "spider-database": [*SPIDER_COMMON, "ingest.split_by=database"],
    "spider-leaky": [*SPIDER_COMMON, "ingest.split_by=db_id"],
}
DATASETS["sample"] = DATASETS["sample-leaky"]
DATASETS["spider"] = DATASETS["spider-leaky"]


# The database file of a db_id, to re-run candidates against the gold in the analysis.
def database_files(dataset: str):
    if dataset.startswith("sample"):
        return lambda db_id: ROOT / "input" / "sample" / f"{db_id}.sqlite"
    return lambda db_id: SPIDER / "database" / db_id / f"{db_id}.sqlite"
_TEXT_LITERAL = re.compile(r"'([^']+)'|\"([^\"]+)\"")


def voting_ceiling(infer_dir: Path, database_file) -> dict:
    """Why voting gains what it gains: for how many questions any candidate was right (the
    most voting could reach) and for how many no candidate ran at all."""
    from querycraft.compare import results_match
    from querycraft.db import SqliteDatabase
    from querycraft.engines.base import QueryError
    from querycraft.sql import mentions_order_by

    any_right = none_ran = 0
    for line in (infer_dir / "predictions.jsonl").open():
        row = json.loads(line)
        with SqliteDatabase(database_file(row["db_id"])) as db:
            gold = db.execute(row["query"], timeout_s=10)
            right, ran = False, False
            for candidate in row.get("candidates") or []:
                try:
                    result = db.execute(candidate["sql"], timeout_s=10)
                except QueryError:
                    continue
                ran = True
                right = right or results_match(gold, result,
                                               order_matters=mentions_order_by(row["query"]))
        any_right += right
        none_ran += not ran
    return {"any_candidate_right": any_right, "no_candidate_ran": none_ran}


def literal_questions(evaluate_dir: Path, values_eval: Path) -> dict:
    """Why value-aware context gains what it gains: how many questions need a text literal,
    for how many the value lines held it, and how many of those this condition got right."""
    lines = {json.loads(line)["id"]: json.loads(line) for line in values_eval.open()}
    need = held = right = 0
    for line in (evaluate_dir / "items.jsonl").open():
        item = json.loads(line)
        if item.get("column", "sql") != "sql":
            continue
        literals = [a or b for a, b in _TEXT_LITERAL.findall(item["query"])]
        if not literals:
            continue
        need += 1
        values = lines[item["id"]].get("values", "").lower()
        held += any(lit.lower() in values for lit in literals)
        right += bool(item["execution_match"])
    return {"literal_questions": need, "literal_in_value_lines": held,
            "right_on_literal_questions": right}


def querycraft(args: list[str], env: dict[str, str], log_file: Path) -> float:
    """Run one stage; return its wall seconds. A failing stage stops the bench with its log."""
    began = time.perf_counter()
    with log_file.open("w") as log:
        code = subprocess.call([sys.executable, "-m", "querycraft", *args], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - began
    if code:
        sys.exit(f"stage failed ({code}): {' '.join(args)}\n"
                 f"{log_file.read_text()[-3000:]}")
    return seconds


def summary_of(evaluate_dir: Path) -> dict:
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    columns = summary["columns"]
    return {"execution_accuracy": columns["sql"]["execution_accuracy"],
            "execution_accuracy_corrected": columns.get("corrected", {}).get(
                "execution_accuracy"),
            "valid_sql": columns["sql"]["valid_sql_rate"],
            "valid_sql_corrected": columns.get("corrected", {}).get("valid_sql_rate"),
            "exact_set_match": columns["sql"]["exact_set_match"],
            "items": summary["items"]}


def bench_one(model: str, dataset: str, work: Path, extra: list[str],
              env: dict[str, str], extra_conditions: list[str] = (),
              eval_limit: int | None = None, zero_shot: bool = True, jobs: int = 1,
              seed: int | None = None) -> dict:
    out = work / (f"{model}-{dataset}" + (f"-seed{seed}" if seed is not None else ""))
    common = [f"model={model}", *DATASETS[dataset], f"paths.output_dir={out}",
              "train.report_to=[]", *([f"seed={seed}"] if seed is not None else []), *extra]
    seconds: dict[str, float] = {}

    def stage(name: str, service: str, *overrides: str) -> Path:
        folder = out / name
        manifest = folder / "run.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("status") == "completed":
            print(f"  {model} {dataset} {name}: reused from {folder}", flush=True)
            return folder
        seconds[name] = round(querycraft([f"service={service}", f"hydra.run.dir={folder}",
                                          *common, *overrides], env, out / f"{name}.log"), 1)
        print(f"  {model} {dataset} {name}: {seconds[name]:.0f} s", flush=True)
        return folder

    def in_parallel(*calls):
        """Independent stages, ``jobs`` at a time (each its own process); results in order."""
        if jobs <= 1:
            return [call() for call in calls]
        with ThreadPoolExecutor(jobs) as pool:
            return [future.result() for future in [pool.submit(call) for call in calls]]

    # (condition, trained with the value index, infer overrides); in the order reported.
    conditions = [("zero-shot", False, ["infer.use_adapter=false"])] if zero_shot else []
    conditions.append(("fine-tuned", False, ["infer.use_adapter=true"]))
    for name in extra_conditions:
        values, _, voting = name.partition("voting-")
        conditions.append((name, values.startswith("values"),
                           ["infer.use_adapter=true",
                            *([f"infer.candidates={voting}"] if voting else [])]))
    with_values = any(uses_values for _, uses_values, _ in conditions)

    out.mkdir(parents=True, exist_ok=True)
    values_overrides = ("prompt.template=values",)
    ingests = in_parallel(
        lambda: stage("ingest", "ingest"),
        *([lambda: stage("ingest-values", "ingest", "ingest.value_index.enabled=true",
                         *values_overrides)] if with_values else []))
    finetunes = in_parallel(
        lambda: stage("finetune", "finetune", f"train.dataset_dir={ingests[0]}"),
        *([lambda: stage("finetune-values", "finetune", f"train.dataset_dir={ingests[1]}",
                         *values_overrides)] if with_values else []))
    finetune = finetunes[0]
    subset = [f"infer.limit={eval_limit}", "infer.limit_by=spread"] if eval_limit else []

    def infer(name: str, uses_values: bool, overrides: list[str]) -> Path:
        return stage(f"infer-{name}", "infer",
                     f"infer.finetune_dir={finetunes[1] if uses_values else finetune}",
                     *subset, *overrides)

    def score(name: str, infer_dir: Path) -> dict:
        correct = stage(f"correct-{name}", "correct", f"correct.predictions_dir={infer_dir}")
        evaluate = stage(f"evaluate-{name}", "evaluate", f"evaluate.predictions_dir={correct}")
        result = summary_of(evaluate)
        # A reused stage: the seconds its own manifest recorded (the run, without the start).
        took = seconds.get(f"infer-{name}") or json.loads(
            (infer_dir / "run.json").read_text()).get("seconds")
        if took:
            result["infer_seconds_per_question"] = round(took / max(result["items"], 1), 2)
        return result

    infers = in_parallel(*[lambda c=c: infer(*c) for c in conditions])
    scores = in_parallel(*[lambda c=c, i=i: score(c[0], i)
                           for c, i in zip(conditions, infers, strict=True)])
    results = {name: result for (name, _, _), result in zip(conditions, scores, strict=True)}
    values_eval = out / "ingest-values" / "dataset" / "eval.jsonl"
    for name, result in results.items():
        if "voting-" in name:
            result.update(voting_ceiling(out / f"infer-{name}", database_files(dataset)))
        if values_eval.is_file():
            result.update(literal_questions(out / f"evaluate-{name}", values_eval))
    metrics = json.loads((finetune / "metrics.json").read_text())
    ingest_report = json.loads((ingests[0] / "report.json").read_text())
    return {"model": model, "dataset": dataset, "seed": seed, "results": results,
            "seconds": seconds, "overlap": ingest_report.get("overlap"),
            "train_examples": metrics["train_examples"], "epochs": metrics["epochs"],
            "train_seconds": metrics["seconds"],
            "input_tokens_per_epoch": metrics["input_tokens_per_epoch"],
            "eval_items": results["fine-tuned"]["items"], "overrides": extra}


def spread(rows: list[dict]) -> str:
    """Mean and min-max over the seeds of each (model, data, condition): the headline form."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        for condition, r in row["results"].items():
            groups.setdefault((row["model"], row["dataset"], condition), []).append(r)

    def stat(values: list[float]) -> str:
        mean = sum(values) / len(values)
        return f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})"

    lines = ["| model | data | condition | runs | EX raw, mean (min-max) | EX corrected, mean "
             "(min-max) | items per run |", "|---|---|---|---|---|---|---|"]
    for (model, dataset, condition), results in groups.items():
        lines.append(f"| {model} | {dataset} | {condition} | {len(results)} | "
                     f"{stat([r['execution_accuracy'] for r in results])} | "
                     f"{stat([r['execution_accuracy_corrected'] for r in results])} | "
                     f"{', '.join(str(r['items']) for r in results)} |")
    overlaps = [(row["dataset"], row["seed"], row.get("overlap")) for row in rows
                if row.get("overlap")]
    if overlaps:
        lines += ["", "| data | seed | eval items | gold SQL in training | skeleton in training |",
                  "|---|---|---|---|---|"]
        lines += [f"| {d} | {s} | {o['eval_items']} | {o['same_query']} | {o['same_skeleton']} |"
                  for d, s, o in overlaps]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    lines = ["| model | data | seed | condition | EX raw | EX corrected | valid SQL raw / "
             "corrected | exact-set | items |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for condition, r in row["results"].items():
            lines.append(
                f"| {row['model']} | {row['dataset']} | {row.get('seed')} | {condition} | "
                f"{r['execution_accuracy']:.3f} | {r['execution_accuracy_corrected']:.3f} | "
                f"{r['valid_sql']:.2f} / {r['valid_sql_corrected']:.2f} | "
                f"{r['exact_set_match']:.3f} | {r['items']} |")
    # The analysis tables: (heading, the result keys shown), for conditions that have them.
    for headings, keys in (
            (("any candidate right", "no candidate ran", "items"),
             ("any_candidate_right", "no_candidate_ran", "items")),
            (("questions with a text literal", "literal in the value lines", "right on those"),
             ("literal_questions", "literal_in_value_lines", "right_on_literal_questions"))):
        shown = [(row, c, r) for row in rows for c, r in row["results"].items() if keys[0] in r]
        if shown:
            lines += ["", "| model | data | condition | " + " | ".join(headings) + " |",
                      "|---|---|---|" + "---|" * len(keys)]
            lines += [f"| {row['model']} | {row['dataset']} | {c} | "
                      + " | ".join(str(r[k]) for k in keys) + " |" for row, c, r in shown]
    timed = [(row, c, r) for row in rows for c, r in row["results"].items()
             if "infer_seconds_per_question" in r]
    if timed:
        lines += ["", "| model | data | condition | EX raw | EX corrected | infer s / question |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {row['model']} | {row['dataset']} | {c} | {r['execution_accuracy']:.3f} | "
                  f"{r['execution_accuracy_corrected']:.3f} | "
                  f"{r['infer_seconds_per_question']:.2f} |" for row, c, r in timed]
    lines += ["", "| model | data | " + " | ".join(
        ["ingest", "finetune", "infer zero-shot", "correct", "evaluate", "infer fine-tuned",
         "correct", "evaluate", "total"]) + " |", "|---|---|" + "---|" * 9]
    for row in rows:
        s = row["seconds"]
        order = ["ingest", "finetune", "infer-zero-shot", "correct-zero-shot",
                 "evaluate-zero-shot", "infer-fine-tuned", "correct-fine-tuned",
                 "evaluate-fine-tuned"]
        lines.append(f"| {row['model']} | {row['dataset']} | "
                     + " | ".join(f"{s[k]:.0f}" if k in s else "reused" for k in order)
                     + f" | {sum(s.values()):.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "tiny"])
    parser.add_argument("--datasets", nargs="+", default=["sample-skeleton"],
                        choices=sorted(DATASETS))
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--extra", nargs="*", default=[],
                        help="extra conditions: voting-N, values, values+voting-N")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="score every condition on N questions spread over the eval split")
    parser.add_argument("--no-zero-shot", action="store_true",
                        help="leave out the base model (zero-shot) condition")
    parser.add_argument("--jobs", type=int, default=1,
                        help="stages run at once where they do not depend on each other "
                             "(a GPU with room for several models); seconds are then "
                             "measured under that sharing")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="one run per seed (split and training); adds mean and min-max")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, after --")
    args = parser.parse_args()
    if any(d.startswith("spider") for d in args.datasets) and not SPIDER.is_dir():
        sys.exit(f"Spider dev is not at {SPIDER}; run with --datasets sample")
    work = args.work or Path(tempfile.mkdtemp(prefix="qc-bench-real-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(f"work folder: {work}", flush=True)
    rows = []
    for dataset in args.datasets:
        for model in args.models:
            for seed in args.seeds or [None]:
                rows.append(bench_one(model, dataset, work, args.overrides, env, args.extra,
                                      args.eval_limit, not args.no_zero_shot, args.jobs, seed))
                (work / "results.json").write_text(json.dumps(rows, indent=2))
    print(markdown(rows))
    if args.seeds:
        print()
        print(spread(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
