"""Synthesized training data vs hand-written, measured on the hand-written eval questions.

Usage:
    python bench/synthesize.py                      # SmolLM2-135M-Instruct, the sample shop
    python bench/synthesize.py --model tiny         # plumbing only (random weights)
    python bench/synthesize.py --pairs 1200 --synthesized-epochs 1 --max-per-template 8
    python bench/synthesize.py -- train.learning_rate=5e-4   # overrides for every stage
    python bench/synthesize.py --seeds 1 2 3        # repeats: mean and min-max
    python bench/synthesize.py --dataset spider --seeds 1 2 3 --eval-limit 80 -- train.epochs=1

For the bundled sample database (input/sample/shop.sqlite) it runs, each stage its own
process as the CLI runs it, in one work folder:

1. ``service=ingest data=sample``: the hand-written questions, split into train and eval as
   the sample's preset splits them (by skeleton: evaluation shapes never trained on); the
   eval split is the yardstick for every condition;
2. ``service=synthesize`` (no teacher): ``--pairs`` question/SQL pairs from the database alone
   (default: as many as the hand-written training split has), ingested with
   ``data=csv_db``: each pair's context is the whole schema read from the database, as the
   sample's rows and ``service=ask`` have it (``--context schema``, the default). No
   hand-written example is used. ``--context query_tables`` writes the tables each query uses
   instead (the sample's convention before its rebuild); ``--context none`` lets ingest read
   the tables the question names (``ingest.context_tables=question``). No pair gives an
   evaluation query or its shape away (``synthesize.exclude`` = the hand-written ingest run;
   ``--no-exclude`` for the earlier, unfiltered runs);
3. ``service=finetune`` twice, same preset and settings: on the synthesized pairs, and on the
   hand-written training split;
4. infer, correct and evaluate on the hand-written eval split for: zero-shot (the base model),
   synthesized-only, hand-written.

``--dataset spider`` does the same on the Spider dev databases (../shared/spider-dev): the
hand-written questions are Spider's, split by query (``ingest.split_by=query``, 30 % for
evaluation: new queries about databases trained on, as ``real_model.py``'s spider-query);
the synthesizer writes its pairs from every database of the folder (``db.path`` = the
folder), none equal to an evaluation query or sharing its shape (skeleton), which is stricter
than the hand-written split (its training holds other queries of the evaluation's shapes).
Contexts are the tables each question names (``ingest.context_tables=question``, like every
Spider condition), so ``--context`` is ``none`` there. No rule is derived from Spider's
questions: the rules read the database alone. ``--eval-limit N`` scores every condition on the
same N evaluation questions spread over the databases (``infer.limit_by=spread``).

It also times ``service=synthesize synthesize.count=1000`` (generation seconds, from the
run's report). Prints a Markdown table and writes <work>/results.json. ``--seeds`` repeats
everything per seed (``seed=<n>``: the hand-written split, the pairs and the training) in
<work>/seed<n>/ and adds mean and min-max. The issue's goal: synthesized-only reaches at
least 70 % of the hand-written-trained execution accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_model import ROOT, SPIDER, querycraft, summary_of

SAMPLE_DB = ROOT / "input" / "sample" / "shop.sqlite"
# Per dataset: the database(s) the synthesizer reads, the hand-written ingest's overrides, and
# overrides for every stage.
DATASETS = {
    "sample": {"database": SAMPLE_DB, "hand_written": ["data=sample"], "every_stage": []},
    "spider": {
        "database": SPIDER / "database",
        "hand_written": ["data=spider", f"data.path={SPIDER / 'dev.json'}",
                         f"data.database={SPIDER / 'database'}", "ingest.eval_fraction=0.3",
                         "ingest.split_by=query"],
        # As real_model.py's Spider conditions: the tables a question needs, room for the
        # longest prompt, micro-batches of 2 for its activation memory.
        "every_stage": ["ingest.context_tables=question", "train.max_seq_length=1024",
                        "train.micro_batch_size=2"]},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="sample",
                        help="the bundled shop (default) or the Spider dev databases")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="score every condition on the same N evaluation questions, "
                             "spread over the split (a reduced budget; say so beside a figure)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="synthesized pairs (default: the hand-written training count)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--skip-hand-written", action="store_true",
                        help="do not fine-tune on the hand-written split (zero-shot and "
                             "synthesized-only only; compare with an earlier measurement)")
    parser.add_argument("--context", choices=("schema", "query_tables", "none"),
                        default=None,
                        help="synthesize.context for the training pairs (see above; default: "
                             "schema for the sample, none for Spider)")
    parser.add_argument("--synthesized-epochs", type=int, default=None,
                        help="train.epochs for the synthesized-only fine-tune alone (default: "
                             "the preset's, as for the hand-written one); synthesized pairs "
                             "are cheap, so e.g. 3x the pairs for 1 epoch costs the same "
                             "steps as the hand-written split for 3")
    parser.add_argument("--max-per-template", type=int, default=None,
                        help="synthesize.max_per_template for the training pairs")
    parser.add_argument("--no-exclude", action="store_true",
                        help="let synthesized pairs repeat evaluation queries and shapes (the "
                             "runs before issue 31)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="one run per seed (split, pairs, training); adds mean and min-max")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, after --")
    args = parser.parse_args()
    if args.context is None:
        args.context = "schema" if args.dataset == "sample" else "none"
    if args.dataset == "spider" and args.context != "none":
        parser.error("--dataset spider compares with Spider's questions, whose context is the "
                     "tables each question names: leave --context unset (none)")
    if args.dataset == "spider" and not SPIDER.is_dir():
        parser.error(f"--dataset spider needs the Spider dev set at {SPIDER}")
    work = args.work or Path(tempfile.mkdtemp(prefix="qc-bench-synth-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)
    if not args.seeds:
        run_once(args, work, None)
        return 0
    runs = {seed: run_once(args, work / f"seed{seed}", seed) for seed in args.seeds}
    (work / "results.json").write_text(json.dumps(runs, indent=2))
    print(f"\n{len(runs)} run(s) (seeds {', '.join(map(str, runs))}): EX raw, mean (min-max); "
          "corrected beside it\n")
    print("| condition | EX raw | EX corrected |\n|---|---|---|")
    for condition in next(iter(runs.values()))["results"]:
        raw = [r["results"][condition]["execution_accuracy"] for r in runs.values()]
        fixed = [r["results"][condition]["execution_accuracy_corrected"] or 0.0
                 for r in runs.values()]
        print(f"| {condition} | {_spread(raw)} | {_spread(fixed)} |")
    ratios = [r["ratio_synthesized_to_hand_written"] for r in runs.values()]
    if all(ratio is not None for ratio in ratios):
        print(f"\nsynthesized-only / hand-written EX: {_spread(ratios)} (goal: at least 0.70)")
    return 0


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def run_once(args: argparse.Namespace, work: Path, seed: int | None) -> dict:
    """One measurement in ``work``; its summary (also written to <work>/results.json)."""
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    dataset = DATASETS[args.dataset]
    database = dataset["database"]
    common = [f"model={args.model}", f"paths.output_dir={work}", "train.report_to=[]",
              *([f"seed={seed}"] if seed is not None else []), *dataset["every_stage"],
              *args.overrides]
    subset = ([f"infer.limit={args.eval_limit}", "infer.limit_by=spread"]
              if args.eval_limit else [])
    seconds: dict[str, float] = {}

    def stage(name: str, service: str, *overrides: str) -> Path:
        folder = work / name
        manifest = folder / "run.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("status") == "completed":
            print(f"  {name}: reused from {folder}", flush=True)  # a rerun in the same --work
            return folder
        seconds[name] = round(querycraft([f"service={service}", f"hydra.run.dir={folder}",
                                          *common, *overrides], env, work / f"{name}.log"), 1)
        print(f"  {name}: {seconds[name]:.0f} s", flush=True)
        return folder

    timing = stage("synthesize-1000", "synthesize", "synthesize.count=1000",
                   f"db.path={database}")
    generation_1000 = json.loads((timing / "report.json").read_text())["generation_seconds"]

    hand = stage("ingest-hand-written", "ingest", *dataset["hand_written"])
    hand_train = json.loads((hand / "report.json").read_text())["train"]
    pairs = args.pairs or hand_train
    # The evaluation's queries and their shapes are never written for training.
    context = "none" if args.context == "schema" else args.context
    synth = stage("synthesize", "synthesize", f"synthesize.count={pairs}",
                  f"db.path={database}", f"synthesize.context={context}",
                  *([] if args.no_exclude else [f"synthesize.exclude={hand}"]),
                  *([f"synthesize.max_per_template={args.max_per_template}"]
                    if args.max_per_template else []))
    synth_report = json.loads((synth / "report.json").read_text())
    synth_ingest = stage("ingest-synthesized", "ingest", "data=csv_db",
                         f"data.path={synth / 'pairs.csv'}", f"data.database={database}",
                         "ingest.context_tables="
                         + ("question" if args.context == "none" else "all"),
                         "ingest.eval_fraction=0.05")
    # (ingest.context_tables only matters for rows without a context: schema and none)

    finetuned = {"synthesized-only": stage(
        "finetune-synthesized", "finetune", f"train.dataset_dir={synth_ingest}",
        *([f"train.epochs={args.synthesized_epochs}"] if args.synthesized_epochs else []))}
    if not args.skip_hand_written:
        finetuned["hand-written"] = stage("finetune-hand-written", "finetune",
                                          f"train.dataset_dir={hand}")
    # Zero-shot: the base model without an adapter (any finetune run names the base).
    conditions = {"zero-shot": (finetuned["synthesized-only"], "false"),
                  **{c: (f, "true") for c, f in finetuned.items()}}
    results = {}
    for condition, (finetune, use_adapter) in conditions.items():
        infer = stage(f"infer-{condition}", "infer", f"infer.finetune_dir={finetune}",
                      f"infer.use_adapter={use_adapter}", f"infer.dataset_dir={hand}",
                      *subset)
        correct = stage(f"correct-{condition}", "correct", f"correct.predictions_dir={infer}")
        evaluate = stage(f"evaluate-{condition}", "evaluate",
                         f"evaluate.predictions_dir={correct}")
        results[condition] = summary_of(evaluate)
        if condition != "zero-shot":
            metrics = json.loads((finetune / "metrics.json").read_text())
            results[condition]["train_examples"] = metrics["train_examples"]
            results[condition]["train_seconds"] = metrics["seconds"]
    hand_ex = results.get("hand-written", {}).get("execution_accuracy")
    synth_ex = results["synthesized-only"]["execution_accuracy"]
    summary = {"model": args.model, "dataset": args.dataset, "seed": seed,
               "eval_limit": args.eval_limit, "pairs": pairs, "context": args.context,
               "synthesized_epochs": args.synthesized_epochs,
               "max_per_template": args.max_per_template,
               "hand_written_train": hand_train,
               "synthesized_kept": synth_report["kept"],
               "synthesized_by_feature": synth_report["by_feature"],
               "generation_seconds_1000": generation_1000, "results": results,
               "ratio_synthesized_to_hand_written": (synth_ex / hand_ex) if hand_ex else None,
               "seconds": seconds, "overrides": args.overrides}
    (work / "results.json").write_text(json.dumps(summary, indent=2))

    print(f"\n1,000 pairs without a teacher: {generation_1000:.1f} s of generation\n")
    print("| model | condition | train examples | EX raw | EX corrected | valid SQL | "
          "exact-set | items |\n|---|---|---|---|---|---|---|---|")
    for condition, r in results.items():
        print(f"| {args.model} | {condition} | {r.get('train_examples', 0)} | "
              f"{r['execution_accuracy']:.3f} | {r['execution_accuracy_corrected']:.3f} | "
              f"{r['valid_sql']:.2f} | {r['exact_set_match']:.3f} | {r['items']} |")
    ratio = summary["ratio_synthesized_to_hand_written"]
    print(f"\nsynthesized-only / hand-written EX: "
          f"{'n/a (no hand-written run, or its EX is 0)' if ratio is None else f'{ratio:.2f}'} "
          "(goal: at least 0.70)")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
