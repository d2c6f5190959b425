"""Infer service: the training prompt exactly, batches, resume after a kill, reuse, backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from querycraft import models
from querycraft.backends import HFBackend, ModelSource, OpenAIBackend, make_backend
from querycraft.cli import run
from querycraft.config import CONFIG_DIR, CollatorConfig
from querycraft.data import encode_example, make_collator, prompt_for
from querycraft.errors import QueryCraftError
from querycraft.generation import GenerationSettings, generate, generate_batches
from querycraft.prompts import load_template, render_training_text
from querycraft.runs import read_jsonl, read_manifest
from querycraft.services.infer import check, limited, resolve_request
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config

TEMPLATES = sorted(p.stem for p in (PROJECT_ROOT / "prompts").glob("*.txt"))
COLLATORS = sorted(p.stem for p in (CONFIG_DIR / "collator").glob("*.yaml"))
QUICK_TRAIN = [*FAST_MODEL, "train.max_steps=2", "train.report_to=[]",
               "train.max_seq_length=1024"]


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("infer") / "output"


@pytest.fixture(scope="module")
def ingest_dir(output) -> Path:
    return run(make_config(output, ["service=ingest", "ingest.max_rows=120", *FAST_MODEL],
                           output / "ingest"))


@pytest.fixture(scope="module")
def finetune_dir(output, ingest_dir) -> Path:
    return run(make_config(output, ["service=finetune", f"train.dataset_dir={ingest_dir}",
                                    *QUICK_TRAIN], output / "finetune"))


def _infer_config(output: Path, name: str, *overrides: str):
    return make_config(output, ["service=infer", *FAST_MODEL, *overrides], output / name)


# ----------------------------------------------------------- prompt == training prefix


@pytest.mark.slow
@pytest.mark.parametrize("template_name", TEMPLATES)
def test_inference_prompt_is_the_training_text_up_to_the_sql(template_name, output,
                                                             ingest_dir):
    """For every shipped template and every collator, character for character and id for id."""
    finetune_dir = run(make_config(output, [
        "service=finetune", f"train.dataset_dir={ingest_dir}", *QUICK_TRAIN,
        f"prompt.template={template_name}", "train.max_steps=1"], output / f"ft-{template_name}"))
    # What infer will prompt with: the template read back from the finetune run.
    request = resolve_request(_infer_config(output, f"unused-{template_name}",
                                            f"infer.finetune_dir={finetune_dir}"))
    training_template = load_template(template_name, PROJECT_ROOT / "prompts")
    tokenizer = models.load_tokenizer(str(finetune_dir / "adapter"))
    rows = read_jsonl(ingest_dir / "dataset" / "eval.jsonl")[:3]
    for row in rows:
        prompt = prompt_for(row, request.template, request.dialect)
        text = render_training_text(training_template, question=row["question"],
                                    context=row["context"], dialect="SQLite",
                                    db_id=row.get("db_id", ""), query=row["query"])
        assert text.startswith(prompt)
        assert text[len(prompt):].startswith(row["query"].strip())

    prompt_ids = [tokenizer(prompt_for(r, request.template, request.dialect))["input_ids"]
                  for r in rows]
    examples = [encode_example(r, training_template, "SQLite", tokenizer) for r in rows]
    for collator_name in COLLATORS:
        for packing in (False, True):
            if packing and collator_name == "default":
                continue
            cfg = OmegaConf.merge(OmegaConf.structured(CollatorConfig),
                                  OmegaConf.load(CONFIG_DIR / "collator"
                                                 / f"{collator_name}.yaml"),
                                  {"packing": packing})
            batch = make_collator(cfg, tokenizer, 1024)(examples)
            ids = batch["input_ids"].tolist()
            offset = 0
            for i, (expected, example) in enumerate(zip(prompt_ids, examples, strict=True)):
                row_ids = ids[0][offset:] if packing else ids[i]
                assert row_ids[: len(expected)] == expected, (collator_name, packing)
                offset += len(example["input_ids"])


# ------------------------------------------------------------------- the service


@pytest.mark.slow
def test_predictions_have_one_row_per_input_with_provenance(output, finetune_dir):
    infer_dir = run(_infer_config(output, "infer-basic", f"infer.finetune_dir={finetune_dir}",
                                  "infer.limit=5", "infer.batch_size=2"))
    predictions = read_jsonl(infer_dir / "predictions.jsonl")
    assert len(predictions) == 5
    info = read_manifest(finetune_dir)
    for row in predictions:
        assert set(row) >= {"id", "question", "raw_output", "sql", "seconds", "model",
                            "adapter"}
        assert row["model"] == info["base_model"] and row["adapter"] == info["adapter"]


def test_limit_takes_the_first_questions_or_spreads_them_over_the_split(tmp_path):
    rows = [{"id": str(k), "db_id": f"db{k // 10}"} for k in range(40)]  # grouped by database
    assert [r["id"] for r in limited(rows, 3)] == ["0", "1", "2"]
    spread = limited(rows, 8, "spread")
    assert [r["id"] for r in spread] == ["0", "5", "10", "15", "20", "25", "30", "35"]
    assert {r["db_id"] for r in spread} == {"db0", "db1", "db2", "db3"}
    assert limited(rows, 40, "spread") == rows and limited(rows, 99) == rows
    problems = check(make_config(tmp_path, ["infer.limit=0", "infer.limit_by=random"]))
    assert any("infer.limit must be at least 1" in p for p in problems)
    assert any("infer.limit_by must be 'first' or 'spread'" in p for p in problems)


@pytest.mark.slow
def test_a_finished_run_is_reused_unless_redo(output, finetune_dir):
    args = [f"infer.finetune_dir={finetune_dir}", "infer.limit=3", "infer.max_new_tokens=7"]
    first = run(_infer_config(output, "reuse-1", *args))
    assert run(_infer_config(output, "reuse-2", *args)) == first
    assert not (output / "reuse-2").exists()
    again = run(_infer_config(output, "reuse-3", *args, "infer.redo=true"))
    assert again == output / "reuse-3"
    changed = run(_infer_config(output, "reuse-4", *args[:-1], "infer.max_new_tokens=8"))
    assert changed == output / "reuse-4"


@pytest.mark.slow
def test_killed_inference_restarts_and_writes_every_input_exactly_once(tmp_path, finetune_dir,
                                                                       ingest_dir):
    out = tmp_path / "output"
    command = [sys.executable, "-m", "querycraft", "service=infer", f"paths.output_dir={out}",
               f"infer.finetune_dir={finetune_dir}", *FAST_MODEL, "infer.batch_size=1",
               "infer.max_new_tokens=24", "infer.split=train", "infer.limit=60"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    predictions = None
    while time.time() < deadline:
        found = list(out.glob("infer/*/predictions.jsonl"))
        if found and found[0].read_text().count("\n") >= 8:
            predictions = found[0]
            break
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.02)
    assert predictions is not None, "no rows written within 120 s"
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = [json.loads(line) for line in predictions.read_text().splitlines()
              if line.endswith("}")]
    assert 8 <= len(before) < 60

    second = subprocess.run([*command, "resume=true"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    rows = read_jsonl(predictions)
    expected = [r["id"] for r in read_jsonl(ingest_dir / "dataset" / "train.jsonl")[:60]]
    assert [r["id"] for r in rows] == expected  # every input once, in input order
    by_id = {r["id"]: r for r in rows}
    for row in before:  # rows written before the kill were kept, not generated again
        assert by_id[row["id"]] == row
    assert read_manifest(predictions.parent)["status"] == "completed"


@pytest.mark.slow
def test_single_question_prints_sql(finetune_dir, output):
    done = subprocess.run(
        [sys.executable, "-m", "querycraft", "service=infer", f"paths.output_dir={output}",
         f"infer.finetune_dir={finetune_dir}", *FAST_MODEL,
         "question=How many customers are there?"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.strip().splitlines()
    assert printed, "no SQL printed"
    (run_dir,) = [p for p in (output / "infer").glob("*") if (p / "run.json").exists()]
    (row,) = read_jsonl(run_dir / "predictions.jsonl")
    assert row["question"] == "How many customers are there?"
    assert printed[-1] == row["sql"]


# ------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def hf_backend(finetune_dir) -> HFBackend:
    info = read_manifest(finetune_dir)
    cfg = make_config(finetune_dir.parent, FAST_MODEL)
    return HFBackend(ModelSource(base=info["base_model"], adapter=info["adapter"]), cfg.model)


def test_batched_generation_equals_one_at_a_time(hf_backend, ingest_dir):
    rows = read_jsonl(ingest_dir / "dataset" / "eval.jsonl")[:6]
    template = load_template("default", PROJECT_ROOT / "prompts")
    prompts = [prompt_for(r, template, "SQLite") for r in rows]
    batched = generate(hf_backend.model, hf_backend.tokenizer, prompts,
                       GenerationSettings(max_new_tokens=12, batch_size=6), progress=False)
    serial = generate(hf_backend.model, hf_backend.tokenizer, prompts,
                      GenerationSettings(max_new_tokens=12, batch_size=1), progress=False)
    assert [g.text for g in batched] == [g.text for g in serial]


def test_stop_string_ends_the_output(hf_backend):
    settings = GenerationSettings(max_new_tokens=30, batch_size=2)
    (free,) = generate(hf_backend.model, hf_backend.tokenizer, ["SELECT"], settings,
                       progress=False)
    assert len(free.text) > 4
    stop = free.text.strip()[2:4]
    (stopped,) = generate(hf_backend.model, hf_backend.tokenizer, ["SELECT"],
                          GenerationSettings(max_new_tokens=30, stop_string=stop),
                          progress=False)
    assert stop not in stopped.text and free.text.startswith(stopped.text)


class _RunsOutOfMemoryAboveTwo:
    """The real model, with a GPU's memory limit imitated: batches above two fail."""

    def __init__(self, model):
        self.model, self.device, self.sizes = model, model.device, []

    def eval(self):
        return self

    def generate(self, **kwargs):
        self.sizes.append(len(kwargs["input_ids"]))
        if len(kwargs["input_ids"]) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return self.model.generate(**kwargs)


def test_out_of_memory_halves_the_batch_and_retries(hf_backend):
    model = _RunsOutOfMemoryAboveTwo(hf_backend.model)
    prompts = ["SELECT", "SELECT name", "SELECT count", "SELECT id", "SELECT a"]
    results = list(generate_batches(model, hf_backend.tokenizer, prompts,
                                    GenerationSettings(max_new_tokens=3, batch_size=8),
                                    progress=False))
    assert model.sizes[:3] == [5, 4, 2]  # 8 -> 4 -> 2, then it fits
    assert sorted(i for indices, _ in results for i in indices) == list(range(5))


# ------------------------------------------------------------ OpenAI-compatible server


# What a served model answers: the texts for ``prompts``, generated with ``settings``.
Answer = Callable[[list[str], GenerationSettings], list[str]]


class CompletionsServer(ThreadingHTTPServer):
    """A real OpenAI-compatible completions server (``/v1/models``, ``/v1/completions``) on a
    free local port, whose texts come from ``answer``; it keeps every request it was sent.
    tests/test_correct_self.py uses it too."""

    def __init__(self, answer: Answer):
        self.answer, self.lock, self.requests = answer, threading.Lock(), []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serving(answer: Answer) -> Iterator[CompletionsServer]:
    """A ``CompletionsServer`` answering in a background thread until the block ends."""
    server = CompletionsServer(answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def model_answers(backend: HFBackend) -> Answer:
    """The tiny model's own generations, as the server's answers."""
    def answer(prompts: list[str], settings: GenerationSettings) -> list[str]:
        return [o.text for o in generate(backend.model, backend.tokenizer, prompts, settings,
                                         progress=False)]
    return answer


class _Handler(BaseHTTPRequestHandler):
    server: CompletionsServer

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "tiny-sql", "object": "model"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(request)
        prompts = request["prompt"] if isinstance(request["prompt"], list) else [request["prompt"]]
        settings = GenerationSettings(max_new_tokens=request["max_tokens"],
                                      stop_string=(request.get("stop") or [None])[0],
                                      batch_size=len(prompts))
        with self.server.lock:  # one generation at a time, as one model on one device
            texts = self.server.answer(prompts, settings)
        self._send({"object": "text_completion", "model": request["model"], "choices": [
            {"index": i, "text": text, "finish_reason": "stop"}
            for i, text in enumerate(texts)]})


def test_openai_compatible_server_backend_gives_what_the_model_gives(hf_backend, output,
                                                                    finetune_dir):
    with serving(model_answers(hf_backend)) as server:
        served = run(_infer_config(output, "served", f"infer.finetune_dir={finetune_dir}",
                                   "infer.backend=openai", f"infer.server.base_url={server.url}",
                                   "infer.limit=6", "infer.batch_size=4",
                                   "infer.max_new_tokens=10"))
        local = run(_infer_config(output, "local", f"infer.finetune_dir={finetune_dir}",
                                  "infer.limit=6", "infer.max_new_tokens=10"))
    served_rows, local_rows = (read_jsonl(d / "predictions.jsonl") for d in (served, local))
    assert [r["raw_output"] for r in served_rows] == [r["raw_output"] for r in local_rows]
    assert server.requests[0]["model"] == "tiny-sql"  # found through /v1/models
    assert server.requests[0]["temperature"] == 0.0  # greedy
    assert sorted(len(r["prompt"]) for r in server.requests) == [2, 4]


def test_a_local_backend_without_a_model_is_a_clear_error(output):
    cfg = _infer_config(output, "unused-no-model")
    with pytest.raises(QueryCraftError, match=r"infer\.backend=hf loads the model itself"):
        make_backend(cfg, None)


def test_unreachable_server_is_a_clear_error():
    cfg = OmegaConf.create({"base_url": "http://127.0.0.1:9/v1", "model": None,
                            "api_key_env": None, "timeout_s": 2, "concurrency": 1})
    with pytest.raises(QueryCraftError, match=r"Could not reach .*infer\.server\.base_url"):
        OpenAIBackend(cfg)


def test_vllm_backend_without_vllm_says_how_to_get_it(output, finetune_dir):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(QueryCraftError, match=r"querycraft\[vllm\]|\.\[vllm\]"):
            run(_infer_config(output, "vllm-missing", f"infer.finetune_dir={finetune_dir}",
                              "infer.backend=vllm", "infer.limit=2"))
    else:
        pytest.skip("vllm is installed: see test_vllm_backend_matches_hf")


@pytest.mark.gpu
def test_vllm_backend_matches_hf(output, finetune_dir):
    pytest.importorskip("vllm")
    merged = run(make_config(output, ["service=finetune",
                                      f"train.dataset_dir={read_manifest(finetune_dir)['dataset_dir']}",
                                      *QUICK_TRAIN, "train.merge_adapter=true"],
                             output / "ft-merged"))
    args = [f"infer.finetune_dir={merged}", "infer.use_merged=true", "infer.limit=8"]
    vllm_rows = read_jsonl(run(_infer_config(output, "vllm", *args, "infer.backend=vllm"))
                           / "predictions.jsonl")
    hf_rows = read_jsonl(run(_infer_config(output, "hf", *args)) / "predictions.jsonl")
    assert [r["sql"] for r in vllm_rows] == [r["sql"] for r in hf_rows]
