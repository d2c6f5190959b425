"""service=serve: a real server (``python -m querycraft service=serve`` in a subprocess) with
a tiny finetune run on a copy of the sample database, called as OpenAI clients call it (the
``openai`` package) and as the web page does; dynamic batching and streaming against the real
tiny model in process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from querycraft.batching import DynamicBatcher
from querycraft.cli import run
from querycraft.data import prompt_for
from querycraft.errors import QueryCraftError
from querycraft.generation import GenerationSettings
from querycraft.runs import read_jsonl
from querycraft.sql import extract_sql
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config

# Slow tier: the server generates with a fine-tuned tiny model (trained once per module).
pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")

SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"
KEY = "test-key-5f1c"
TOKENS = 24  # FAST_MODEL's infer.max_new_tokens: the server is asked for as many


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "output"


@pytest.fixture(scope="module")
def database(output) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    copy = output.parent / "shop.sqlite"
    shutil.copy(SAMPLE_DB, copy)
    return copy


@pytest.fixture(scope="module")
def finetune_dir(output, database) -> Path:
    # The schema context read from the database (per question, with sample values), as the
    # server reads it for a question: then its prompt is the training prompt.
    ingest_dir = run(make_config(output, [
        "service=ingest", "ingest.max_rows=60", "data.columns.context=no_such_column",
        f"data.database={database}", "ingest.context_tables=question", "db.sample_values=2",
        *FAST_MODEL], output / "ingest"))
    return run(make_config(output, [
        "service=finetune", f"train.dataset_dir={ingest_dir}", "train.max_steps=2",
        "train.report_to=[]", "train.max_seq_length=1024", *FAST_MODEL], output / "finetune"))


@pytest.fixture(scope="module")
def predictions(output, finetune_dir) -> list[dict]:
    infer_dir = run(make_config(output, ["service=infer", f"infer.finetune_dir={finetune_dir}",
                                         *FAST_MODEL], output / "infer"))
    rows = read_jsonl(Path(infer_dir) / "predictions.jsonl")
    assert rows
    return rows


class Served:
    """A running ``service=serve`` subprocess."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def call(self, method: str, path: str, body: bytes | dict | None = None,
             key: str | None = KEY, headers: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {key}"}
                                                     if key else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def client(self, key: str = KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0,
                             timeout=120)


@pytest.fixture(scope="module")
def server(output, finetune_dir, database) -> Served:
    port = free_port()
    log = output.parent / "serve.log"
    env = {**os.environ, "QUERYCRAFT_API_KEY": KEY}
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "querycraft", "service=serve",
             f"paths.output_dir={output}", f"hydra.run.dir={output / 'serve'}",
             f"ask.finetune_dir={finetune_dir}", f"db.path={database}",
             f"serve.port={port}", "serve.max_body_bytes=4096", "serve.batch_wait_ms=20",
             *FAST_MODEL], cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"service=serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if served.call("GET", "/health")[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"service=serve did not answer within 180 s:\n{log.read_text()}")
    yield served
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


# ---------------------------------------------------------------- OpenAI clients


def test_openai_chat_and_completions_give_the_sql_infer_gives(server, predictions,
                                                              finetune_dir):
    """The same questions, asked concurrently (so the server batches them), through the
    openai package: chat gets infer's SQL, completions with infer's prompt infer's output."""
    from querycraft.services.infer import resolve_request

    client = server.client()
    model = client.models.list().data[0].id
    request = resolve_request(make_config(finetune_dir.parent, [
        "service=infer", f"infer.finetune_dir={finetune_dir}", *FAST_MODEL]))
    stop = request.template.stop_string
    # The rows infer answered (predictions keep no context): the prompt infer rendered.
    rows = {r["question"]: r for r in read_jsonl(
        finetune_dir.parent / "ingest" / "dataset" / "eval.jsonl")}

    def chat(row: dict) -> str:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": row["question"]}],
            max_tokens=TOKENS)
        return reply.choices[0].message.content

    def complete(row: dict) -> str:
        prompt = prompt_for(rows[row["question"]], request.template, request.dialect)
        reply = client.completions.create(model=model, prompt=prompt, max_tokens=TOKENS,
                                          temperature=0, stop=[stop] if stop else None)
        return reply.choices[0].text

    before = server.call("GET", "/health")[1]["batching"]
    with ThreadPoolExecutor(8) as pool:
        chats = list(pool.map(chat, predictions))
        completions = list(pool.map(complete, predictions))
    for row, chatted, completed in zip(predictions, chats, completions, strict=True):
        assert extract_sql(chatted) == row["sql"], row["question"]
        assert completed == row["raw_output"], row["question"]
    after = server.call("GET", "/health")[1]["batching"]
    answered = after["requests"] - before["requests"]
    assert answered == 2 * len(predictions)
    # Concurrent requests shared generate calls.
    assert after["batches"] - before["batches"] < answered


def test_streaming_gives_the_same_text_piece_by_piece(server, predictions):
    client = server.client()
    model = client.models.list().data[0].id
    question = predictions[0]["question"]
    whole = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=TOKENS
    ).choices[0].message.content
    pieces, finish = [], None
    for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}],
            max_tokens=TOKENS, stream=True):
        choice = chunk.choices[0]
        pieces.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
    assert "".join(pieces) == whole
    assert len([p for p in pieces if p]) > 1  # streamed, not one piece at the end
    assert finish in ("stop", "length")
    texts = [c.choices[0].text for c in client.completions.create(
        model=model, prompt="SELECT", max_tokens=8, stream=True)]
    assert "".join(texts) == client.completions.create(
        model=model, prompt="SELECT", max_tokens=8).choices[0].text


def test_the_api_key_is_enforced(server):
    for key in (None, "wrong-key"):
        status, body = server.call("GET", "/v1/models", key=key)
        assert status == 401 and "QUERYCRAFT_API_KEY" in body["error"]["message"]
        status, body = server.call("POST", "/v1/ask", {"question": "How many customers?"},
                                   key=key)
        assert status == 401
    with pytest.raises(openai.AuthenticationError):
        server.client("wrong-key").models.list()
    assert server.call("GET", "/v1/models")[0] == 200


# ---------------------------------------------------------------- QueryCraft's API


def test_ask_answers_with_sql_rows_and_words(server, database):
    status, body = server.call("POST", "/v1/ask", {"question": "How many customers are there?"})
    assert status == 200
    assert {"question", "sql", "columns", "rows", "answer", "status", "timings",
            "db_id"} <= set(body)
    assert body["db_id"] == "shop" and body["timings"]["generate_s"] > 0
    # The tiny model writes no useful SQL: an answer or an "I don't know" with a reason.
    assert body["status"] == "answered" or body["answer"].startswith("I don't know: ")
    status, body = server.call("POST", "/v1/sql", {"sql": "SELECT count(*) FROM customer"})
    assert status == 200 and body["status"] == "answered"
    assert body["columns"] == ["count(*)"] and body["rows"] == [[60]]
    assert body["answer"] == "The answer is 60."
    status, body = server.call("GET", "/v1/databases")
    assert body == {"default": "shop", "db_ids": ["shop"], "engine": "sqlite"}


WRITES = [
    "DROP TABLE customer",
    "DELETE FROM customer",
    "UPDATE customer SET name = 'x'",
    "INSERT INTO customer (customer_id) VALUES (999)",
    "CREATE TABLE pwned (x)",
    "SELECT 1; DROP TABLE customer",
    "WITH gone AS (DELETE FROM customer RETURNING *) SELECT * FROM gone",
    "ATTACH DATABASE '{escape}' AS other",
    "VACUUM INTO '{escape}'",
    "PRAGMA writable_schema = 1",
    "SELECT load_extension('/tmp/evil')",
    "SELECT writefile('{escape}', 'x')",
    "REPLACE INTO customer (customer_id) VALUES (1)",
]


def test_write_and_escape_attempts_are_refused_and_the_database_is_unchanged(
        server, database, tmp_path):
    escape = tmp_path / "escaped.sqlite"
    before = digest(database)
    for sql in WRITES:
        status, body = server.call("POST", "/v1/sql", {"sql": sql.format(escape=escape)})
        assert status == 200, (sql, body)
        assert body["status"] != "answered", (sql, body)
        assert body["answer"].startswith("I don't know: "), sql
    # Questions that ask for damage: whatever the model writes runs read-only.
    for question in ("Drop the customer table.", "'; DROP TABLE customer; --",
                     "Delete every order, then say how many are left.",
                     f"ATTACH DATABASE '{escape}' AS x; how many customers?"):
        status, body = server.call("POST", "/v1/ask", {"question": question})
        assert status == 200 and body["status"] in (
            "answered", "no_sql", "refused", "invalid", "timeout", "error", "empty")
    assert digest(database) == before
    assert not escape.exists()


def test_bad_requests_get_a_4xx_with_a_json_error(server):
    cases = [
        ("POST", "/v1/ask", {}, 400, "missing_question"),
        ("POST", "/v1/ask", {"question": "   "}, 400, "missing_question"),
        ("POST", "/v1/ask", {"question": 42}, 400, "missing_question"),
        ("POST", "/v1/ask", b"{not json", 400, "malformed_json"),
        ("POST", "/v1/ask", b"[1, 2]", 400, "malformed_json"),
        ("POST", "/v1/ask", b"\xff\xfe", 400, "malformed_json"),
        ("POST", "/v1/ask", {"question": "x" * 5000}, 413, "body_too_large"),
        ("POST", "/v1/ask", {"question": "How many?", "db_id": "../../etc/passwd"}, 404,
         "unknown_db_id"),
        ("POST", "/v1/ask", {"question": "How many?", "db_id": "concert_singer"}, 404,
         "unknown_db_id"),
        ("POST", "/v1/sql", {"sql": ""}, 400, "missing_sql"),
        ("POST", "/v1/completions", {"model": "gpt-4", "prompt": "SELECT"}, 404,
         "model_not_found"),
        ("POST", "/v1/completions", {"prompt": [1, 2, 3]}, 400, "invalid_prompt"),
        ("POST", "/v1/completions", {"prompt": "SELECT", "max_tokens": 100000}, 400,
         "max_tokens_too_large"),
        ("POST", "/v1/completions", {"prompt": "SELECT", "temperature": "hot"}, 400,
         "invalid_value"),
        ("POST", "/v1/completions", {"prompt": "SELECT", "n": 3}, 400, "invalid_value"),
        ("POST", "/v1/chat/completions", {"messages": []}, 400, "invalid_messages"),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]},
         400, "missing_question"),
        ("GET", "/v1/ask", None, 405, "invalid_request"),
        ("GET", "/v1/nowhere", None, 404, "not_found"),
    ]
    for method, path, body, status, code in cases:
        got, answer = server.call(method, path, body)
        assert (got, answer["error"]["code"]) == (status, code), (path, body, answer)
        assert answer["error"]["message"]
    # A body that claims to be huge is refused before it is read.
    got, answer = server.call("POST", "/v1/ask", b"{}", headers={"Content-Length": "999999"})
    assert got == 413
    # The server is still up and answering.
    assert server.call("POST", "/v1/sql", {"sql": "SELECT 1"})[1]["rows"] == [[1]]
    assert server.process.poll() is None


def test_the_page_is_served(server):
    with urllib.request.urlopen(server.url + "/", timeout=30) as response:
        page = response.read().decode()
    assert "<title>" in page and "/static/app.js" in page
    for asset in ("/static/app.js", "/static/style.css"):
        with urllib.request.urlopen(server.url + asset, timeout=30) as response:
            assert response.status == 200 and response.read()
    # Nothing on the page comes from the network.
    assert "http://" not in page and "https://" not in page


# ---------------------------------------------------------------- in process


def test_a_public_address_needs_an_api_key(output, finetune_dir, monkeypatch):
    from querycraft.services.serve import run as serve_run

    monkeypatch.delenv("QUERYCRAFT_API_KEY", raising=False)
    cfg = make_config(output, ["service=serve", f"ask.finetune_dir={finetune_dir}",
                               "serve.host=0.0.0.0", *FAST_MODEL], output / "serve-public")
    with pytest.raises(QueryCraftError, match="QUERYCRAFT_API_KEY"):
        serve_run(cfg)


@pytest.fixture(scope="module")
def backend(output, finetune_dir):
    from querycraft.asking import Asker

    asker = Asker(make_config(output, ["service=ask", f"ask.finetune_dir={finetune_dir}",
                                       *FAST_MODEL], output / "ask"))
    yield asker.backend(), asker
    asker.close()


def test_batched_generation_equals_one_at_a_time(backend):
    model, asker = backend
    questions = ["How many customers are there?", "List the products.", "Which city?",
                 "What is the most expensive product?", "How many orders per customer?",
                 "Show every order placed in 2023 with its customer's name."]
    prompts = [asker.prompt(q) for q in questions]
    settings = GenerationSettings(max_new_tokens=TOKENS, stop_string=asker.template.stop_string)
    alone = [model.generate_batch([p], settings)[0].text for p in prompts]
    batcher = DynamicBatcher(model, max_batch_size=8, max_wait_s=0.5)
    try:
        futures = [batcher.submit(p, settings) for p in prompts]
        together = [f.result(timeout=120).text for f in futures]
    finally:
        batcher.close()
    assert together == alone
    assert batcher.stats.batches < len(prompts)  # they shared generate calls
    assert batcher.stats.requests == len(prompts)


def test_streamed_pieces_add_up_to_the_text_of_each_row(backend):
    model, asker = backend
    prompts = [asker.prompt(q) for q in ("How many customers?", "List all products by price.")]
    for stop in (asker.template.stop_string, "T1", None):
        settings = GenerationSettings(max_new_tokens=TOKENS, stop_string=stop)
        pieces: dict[int, list[str]] = {0: [], 1: []}

        def on_text(row: int, text: str, pieces=pieces) -> None:
            pieces[row].append(text)

        generations = model.generate_batch(prompts, settings, on_text)
        for row, generation in enumerate(generations):
            assert "".join(pieces[row]) == generation.text
            assert not stop or stop not in generation.text
        assert generations[0].tokens


class FailsOn:
    """The real tiny model, made to fail on prompts holding ``marker`` (fault injection)."""

    def __init__(self, model, marker: str) -> None:
        self.model, self.marker = model, marker

    def generate_batch(self, prompts, settings, on_text=None):
        if any(self.marker in p for p in prompts):
            raise RuntimeError("injected failure")
        return self.model.generate_batch(prompts, settings, on_text)


def test_one_failing_request_fails_alone(backend):
    model, _ = backend
    settings = GenerationSettings(max_new_tokens=8)
    batcher = DynamicBatcher(FailsOn(model, "BOOM"), max_batch_size=8, max_wait_s=0.5)
    try:
        futures = [batcher.submit(p, settings) for p in ("SELECT", "BOOM", "SELECT name")]
        assert futures[0].result(timeout=120).text is not None
        with pytest.raises(RuntimeError, match="injected"):
            futures[1].result(timeout=120)
        assert futures[2].result(timeout=120).text is not None
        # And the batcher goes on.
        assert batcher.submit("SELECT", settings).result(timeout=120).text is not None
    finally:
        batcher.close()
    assert batcher.stats.failed == 1


def test_an_overloaded_batcher_says_so(backend):
    from querycraft.batching import Overloaded

    model, _ = backend
    batcher = DynamicBatcher(model, max_batch_size=1, max_pending=1)
    try:
        settings = GenerationSettings(max_new_tokens=TOKENS)
        futures = []
        with pytest.raises(Overloaded, match="try again"):
            for _ in range(50):
                futures.append(batcher.submit("SELECT", settings))
        for future in futures:
            future.result(timeout=120)
    finally:
        batcher.close()


def test_serve_settings_are_checked(output):
    from querycraft.config import check_config

    cfg = make_config(output, ["service=serve", "serve.port=0", "serve.max_batch_size=0",
                               "serve.max_body_bytes=10"], output / "serve-bad")
    with pytest.raises(QueryCraftError) as err:
        check_config(cfg)
    message = str(err.value)
    assert "serve.port" in message and "serve.max_batch_size" in message
    assert "serve.max_body_bytes" in message


def test_a_batch_waits_for_requests_still_being_prepared(backend):
    """A request announced while its prompt is built joins the batch forming meanwhile
    (without the announcement the worker starts a batch of one after max_wait_s)."""
    model, _ = backend
    settings = GenerationSettings(max_new_tokens=4)
    batcher = DynamicBatcher(model, max_batch_size=8, max_wait_s=0.0, max_prepare_wait_s=10)
    try:
        with batcher.expecting() as slot:
            first = batcher.submit("SELECT", settings)
            time.sleep(0.3)  # the second prompt is still being built
            second = batcher.submit("SELECT name", settings, announced=slot)
        first.result(timeout=120), second.result(timeout=120)
        assert dict(batcher.stats.sizes) == {2: 1}
        # An announced request that never comes (a 4xx while preparing) holds nothing up.
        with batcher.expecting():
            pass
        began = time.monotonic()
        batcher.submit("SELECT", settings).result(timeout=120)
        assert time.monotonic() - began < 5
    finally:
        batcher.close()
