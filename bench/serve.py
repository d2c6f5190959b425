"""Serving throughput: dynamic batching vs one request at a time, over HTTP.

Usage:
    python bench/serve.py                                  # tiny and SmolLM2, 1/8/32 clients
    python bench/serve.py --model tiny --repeats 1         # a quick check
    python bench/serve.py --model smollm2 --finetune-dir output/finetune/<run>

For each model it makes a finetune run (ingest of the bundled sample, then a short finetune:
--steps optimizer steps) unless --finetune-dir names one, and starts two
``python -m querycraft service=serve`` servers on it at once: the batched one
(serve.max_batch_size=--max-batch-size) and the baseline (serve.max_batch_size=1, one request
at a time). Only one of them works at any moment, so the idle one costs no CPU.

For each number of concurrent clients and each repeat, both servers answer the same fixed set
of --questions questions (the sample's eval split, then its train split, in file order),
batched first on even repeats and baseline first on odd ones. The clients are threads that
take the questions from one shared queue, so each question is sent exactly once per round;
each POST /v1/ask's latency, HTTP status and answer are recorded, and a round fails loudly
unless every question got exactly one 200 answer. GET /health before and after a round gives
the batches the server formed (mean batch size).

Reported per model x clients: the median over repeats of requests/s and of the p50 and p95
latency, for the batched server and the baseline; their ratio of requests/s; the mean batch
size; and how many questions got the same SQL from both servers in every repeat (greedy
decoding: batching should not change the answer). Printed as a Markdown table for
docs/BENCHMARKS.md and written, with every request, to --out (JSON).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Config overrides per model: the model, and how long its answers may be (ask.max_new_tokens;
# the tiny model rambles to the bound, SmolLM2's preset stops its SQL well within 160 tokens).
MODELS: dict[str, list[str]] = {
    "tiny": ["model=tiny"],
    "smollm2": ["model=smollm2-135m", "train.micro_batch_size=4"],
}
MAX_NEW_TOKENS = {"tiny": 64, "smollm2": 160}
DEFAULT_STEPS = {"tiny": 200, "smollm2": 20}
MODEL_NAMES = {"tiny": "tiny", "smollm2-135m": "smollm2"}  # run.json's model_name -> ours


# ---------------------------------------------------------------------------- runs


def querycraft(args: list[str], env: dict[str, str], log_file: Path) -> float:
    """Run one stage in a subprocess; return its wall seconds. A failing stage stops the bench
    with the end of its log."""
    began = time.perf_counter()
    with log_file.open("w") as log:
        code = subprocess.call([sys.executable, "-m", "querycraft", *args], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"stage failed ({code}): {' '.join(args)}\n{log_file.read_text()[-3000:]}")
    return time.perf_counter() - began


def make_finetune(model: str, work: Path, steps: int, common: list[str],
                  env: dict[str, str]) -> Path:
    """Ingest the sample and fine-tune ``model`` for ``steps`` steps; the finetune run folder."""
    out = work / model
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*MODELS[model], f"paths.output_dir={out}", "train.report_to=[]", *common]
    seconds = querycraft(["service=ingest", f"hydra.run.dir={out / 'ingest'}", *overrides],
                         env, out / "ingest.log")
    print(f"  {model}: ingest {seconds:.0f} s", flush=True)
    seconds = querycraft(["service=finetune", f"hydra.run.dir={out / 'finetune'}",
                          f"train.dataset_dir={out / 'ingest'}", f"train.max_steps={steps}",
                          *overrides], env, out / "finetune.log")
    print(f"  {model}: finetune ({steps} steps) {seconds:.0f} s", flush=True)
    return out / "finetune"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def questions_of(finetune_dir: Path, count: int) -> list[str]:
    """The first ``count`` distinct questions of the run's eval split, then of its train
    split (file order: the same set on every run of the same ingest)."""
    dataset = Path(json.loads((finetune_dir / "run.json").read_text())["dataset_dir"])
    found: list[str] = []
    for split in ("eval", "train"):
        for row in read_jsonl(dataset / "dataset" / f"{split}.jsonl"):
            if row["question"] not in found:
                found.append(row["question"])
    if len(found) < count:
        sys.exit(f"{dataset} holds {len(found)} distinct questions; --questions {count} asks "
                 f"for more")
    return found[:count]


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 900.0) -> tuple[int, dict[str, Any]]:
    """One request on a new connection: (status, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@dataclass
class Served:
    """A running ``service=serve`` subprocess."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path

    def health(self) -> dict[str, Any]:
        status, body = call(self.port, "GET", "/health", timeout=60)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET /health answered {status}: {body}")
        return body

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.process.returncode}:"
                                   f"\n{self.log.read_text()[-3000:]}")
            try:
                self.health()
                return
            except (OSError, http.client.HTTPException, RuntimeError):
                time.sleep(0.5)
        raise RuntimeError(f"{self.name} server did not answer within {timeout_s:.0f} s:\n"
                           f"{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def servers(model: str, finetune_dir: Path, work: Path, batch_sizes: dict[str, int],
            overrides: list[str], env: dict[str, str]) -> Iterator[dict[str, Served]]:
    """One server per entry of ``batch_sizes`` (name -> serve.max_batch_size), started one
    after the other (they may share a first-use model conversion), all stopped at the end."""
    running: dict[str, Served] = {}
    try:
        for name, batch_size in batch_sizes.items():
            port, folder = free_port(), work / model / f"serve-{name}"
            folder.mkdir(parents=True, exist_ok=True)
            log = folder.with_suffix(".log")
            with log.open("w") as handle:
                process = subprocess.Popen(
                    [sys.executable, "-m", "querycraft", "service=serve", *MODELS[model],
                     f"paths.output_dir={work / model}", f"hydra.run.dir={folder}",
                     f"ask.finetune_dir={finetune_dir}", f"serve.port={port}",
                     f"serve.max_batch_size={batch_size}", *overrides],
                    cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
            running[name] = Served(name, port, process, log)
            began = time.perf_counter()
            running[name].wait_ready(900)
            print(f"  {model}: {name} server (max_batch_size {batch_size}) on port {port}, "
                  f"ready in {time.perf_counter() - began:.0f} s", flush=True)
        yield running
    finally:
        for served in running.values():
            served.stop()


# ---------------------------------------------------------------------------- rounds


@dataclass
class Reply:
    index: int
    status: int  # 0: no HTTP answer (the error says why)
    latency_s: float
    sql: str | None = None
    answer_status: str | None = None
    error: str | None = None


@dataclass
class Round:
    server: str
    clients: int
    repeat: int
    seconds: float
    requests_per_s: float
    p50_s: float
    p95_s: float
    mean_batch_size: float
    batch_sizes: dict[str, int]
    replies: list[Reply] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def client(port: int, work: queue.Queue, questions: list[str], replies: list[Reply],
           lock: threading.Lock) -> None:
    """Take questions from ``work`` until it is empty; one keep-alive connection, one attempt
    per question (no retry: each is sent exactly once)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    try:
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            try:
                connection.request("POST", "/v1/ask",
                                   body=json.dumps({"question": questions[index]}),
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                body = json.loads(response.read() or b"{}")
                reply = Reply(index, response.status, time.perf_counter() - began,
                              body.get("sql"), body.get("status"),
                              None if response.status == 200 else json.dumps(body)[:300])
            except (OSError, http.client.HTTPException, ValueError) as err:
                connection.close()  # a fresh connection for the next question
                reply = Reply(index, 0, time.perf_counter() - began,
                              error=f"{type(err).__name__}: {err}")
            with lock:
                replies.append(reply)
    finally:
        connection.close()


def batching_delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[float, dict]:
    b, a = before["batching"], after["batching"]
    requests, batches = a["requests"] - b["requests"], a["batches"] - b["batches"]
    sizes = {size: count - b["batch_sizes"].get(size, 0)
             for size, count in a["batch_sizes"].items()}
    return (requests / batches if batches else 0.0,
            {size: count for size, count in sorted(sizes.items(), key=lambda kv: int(kv[0]))
             if count})


def run_round(served: Served, questions: list[str], clients: int, repeat: int) -> Round:
    """All ``questions`` once, by ``clients`` threads; fails unless each got one 200."""
    work: queue.Queue = queue.Queue()
    for index in range(len(questions)):
        work.put(index)
    replies: list[Reply] = []
    lock = threading.Lock()
    before = served.health()
    threads = [threading.Thread(target=client, args=(served.port, work, questions, replies,
                                                     lock), daemon=True)
               for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    mean_batch, sizes = batching_delta(before, served.health())

    answered = Counter(r.index for r in replies if r.status == 200)
    wrong = [i for i in range(len(questions)) if answered[i] != 1]
    if wrong or len(replies) != len(questions):
        failures = [asdict(r) for r in replies if r.status != 200][:5]
        raise RuntimeError(f"{served.name} server, {clients} clients: {len(replies)} replies "
                           f"to {len(questions)} questions; not exactly one 200 answer for "
                           f"questions {wrong[:20]}; failures: {failures}")
    latencies = [r.latency_s for r in replies]
    replies.sort(key=lambda r: r.index)
    return Round(served.name, clients, repeat, round(seconds, 3),
                 round(len(questions) / seconds, 3), round(percentile(latencies, 50), 3),
                 round(percentile(latencies, 95), 3), round(mean_batch, 2), sizes, replies)


def bench_model(model: str, finetune_dir: Path, questions: list[str], args: argparse.Namespace,
                work: Path, overrides: list[str], env: dict[str, str]) -> dict[str, Any]:
    max_new_tokens = args.max_new_tokens or MAX_NEW_TOKENS[model]
    serve_overrides = [f"ask.max_new_tokens={max_new_tokens}",
                       f"serve.batch_wait_ms={args.batch_wait_ms}",
                       f"serve.max_pending={max(256, 2 * max(args.clients))}", *overrides]
    rounds: list[Round] = []
    with servers(model, finetune_dir, work, {"batched": args.max_batch_size, "baseline": 1},
                 serve_overrides, env) as running:
        # Warm-up (first-call allocations, lazy imports): a few questions, concurrently, to
        # each server; not measured.
        for served in running.values():
            run_round(served, questions[: min(len(questions), args.max_batch_size)],
                      args.max_batch_size, -1)
        for clients in args.clients:
            for repeat in range(args.repeats):
                order = ["batched", "baseline"] if repeat % 2 == 0 else ["baseline", "batched"]
                for name in order:
                    done = run_round(running[name], questions, clients, repeat)
                    rounds.append(done)
                    print(f"  {model} {clients:>2} clients, repeat {repeat + 1}, {name:8}: "
                          f"{done.requests_per_s:6.2f} req/s, p50 {done.p50_s:6.2f} s, p95 "
                          f"{done.p95_s:6.2f} s, mean batch {done.mean_batch_size:.2f} "
                          f"{done.batch_sizes}", flush=True)
    return {"model": model, "finetune_dir": str(finetune_dir), "max_new_tokens": max_new_tokens,
            "summary": summarize(model, rounds, len(questions), args.clients),
            "rounds": [asdict(r) for r in rounds]}


# ---------------------------------------------------------------------------- reports


def summarize(model: str, rounds: list[Round], count: int, levels: list[int]
              ) -> list[dict[str, Any]]:
    rows = []
    for clients in levels:
        row: dict[str, Any] = {"model": model, "clients": clients, "questions": count}
        of = {name: [r for r in rounds if r.clients == clients and r.server == name]
              for name in ("batched", "baseline")}
        for name, done in of.items():
            row[name] = {key: statistics.median(getattr(r, key) for r in done)
                         for key in ("requests_per_s", "p50_s", "p95_s", "mean_batch_size")}
        row["ratio"] = round(row["batched"]["requests_per_s"]
                             / row["baseline"]["requests_per_s"], 2)
        # Same SQL from both servers, for every repeat of this level.
        row["identical_sql"] = sum(
            all(b.replies[i].sql == a.replies[i].sql
                for b, a in zip(of["batched"], of["baseline"], strict=True))
            for i in range(count))
        row["answer_status"] = dict(Counter(r.answer_status for r in of["batched"][0].replies))
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | clients | batched req/s | baseline req/s | ratio | batched p50 / p95 s "
             "| baseline p50 / p95 s | mean batch | identical SQL |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        b, a = row["batched"], row["baseline"]
        lines.append(f"| {row['model']} | {row['clients']} | {b['requests_per_s']:.2f} | "
                     f"{a['requests_per_s']:.2f} | {row['ratio']:.2f}x | "
                     f"{b['p50_s']:.2f} / {b['p95_s']:.2f} | {a['p50_s']:.2f} / "
                     f"{a['p95_s']:.2f} | {b['mean_batch_size']:.2f} | "
                     f"{row['identical_sql']}/{row['questions']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["tiny", "smollm2", "both"], default="both")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")],
                        default=[1, 8, 32], help="comma-separated, e.g. 1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=8,
                        help="serve.max_batch_size of the batched server")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0,
                        help="serve.batch_wait_ms of both servers")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"ask.max_new_tokens (default per model: {MAX_NEW_TOKENS})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"finetune steps when making a run (default {DEFAULT_STEPS})")
    parser.add_argument("--finetune-dir", type=Path, default=None,
                        help="reuse this finetune run (with one --model) instead of making one")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="paths.cache_dir (the converted SmolLM2 is kept there)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs and logs (default: a new temporary folder)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default: <work>/results.json)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, after --")
    args = parser.parse_args()
    models = ["tiny", "smollm2"] if args.model == "both" else [args.model]
    if args.finetune_dir is not None and len(models) != 1:
        parser.error("--finetune-dir takes one --model (tiny or smollm2)")
    if args.max_batch_size < 2 or args.questions < 1 or args.repeats < 1 \
            or min(args.clients) < 1:
        parser.error("--max-batch-size must be at least 2, --questions, --repeats and "
                     "--clients at least 1")

    work = args.work or Path(tempfile.mkdtemp(prefix="qc-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or work / "results.json"
    common = [*([f"paths.cache_dir={args.cache_dir}"] if args.cache_dir else []),
              *args.overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("QUERYCRAFT_API_KEY", None)  # the servers take requests without a key
    print(f"work folder: {work}; {os.cpu_count()} CPU cores", flush=True)

    results: dict[str, Any] = {"settings": {**{k: str(v) if isinstance(v, Path) else v
                                               for k, v in vars(args).items()},
                                            "cpu_count": os.cpu_count()}, "models": []}
    began = time.perf_counter()
    for model in models:
        finetune_dir = args.finetune_dir
        if finetune_dir is None:
            finetune_dir = make_finetune(model, work, args.steps or DEFAULT_STEPS[model],
                                         common, env)
        else:
            named = json.loads((finetune_dir / "run.json").read_text()).get("model_name")
            if MODEL_NAMES.get(named, named) != model:
                sys.exit(f"{finetune_dir} fine-tuned {named}, not {model}")
        questions = questions_of(finetune_dir.resolve(), args.questions)
        results["models"].append(bench_model(model, finetune_dir.resolve(), questions, args,
                                             work, common, env))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    rows = [row for done in results["models"] for row in done["summary"]]
    print(f"\n{args.questions} questions, batched server: serve.max_batch_size="
          f"{args.max_batch_size}, batch_wait_ms={args.batch_wait_ms}; baseline: "
          f"max_batch_size=1; ask.max_new_tokens "
          + ", ".join(f"{m['model']} {m['max_new_tokens']}" for m in results["models"])
          + f"; median of {args.repeats} repeat(s); {os.cpu_count()} CPU cores; "
          f"{time.perf_counter() - began:.0f} s in all\n")
    print(markdown(rows))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
