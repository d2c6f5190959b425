"""Serve: the fine-tuned model and the database over HTTP, for applications and people.

``python -m querycraft service=serve`` starts a server (FastAPI on uvicorn) on
http://127.0.0.1:8000 with:

- ``POST /v1/ask`` ``{question, db_id?}``: the whole of ``service=ask`` (the training prompt,
  correction, a read-only run, the answer in words or "I don't know" with the reason);
- ``POST /v1/sql`` ``{sql, db_id?}``: SQL as given (the web page's edited query), checked and
  run read-only like the model's;
- ``GET /v1/databases``; OpenAI-compatible ``GET /v1/models``, ``POST /v1/completions`` (raw
  prompts, as ``infer.backend=openai`` sends them) and ``POST /v1/chat/completions`` (the last
  user message is the question, put to the model in its training prompt), both streaming;
- ``/``: the web page (querycraft/web/, no build step, nothing from the network);
  ``/openapi.json``: the API's schema.

Generation goes through one :class:`querycraft.batching.DynamicBatcher`: requests that arrive
together share a generate call. When the environment variable ``serve.api_key_env`` names is
set, every ``/v1`` request must carry that key (``Authorization: Bearer <key>``). Every error
is a JSON body ``{"error": {"message", "type", "code"}}`` with a 4xx (the request's fault) or
5xx status; a failing request never stops the server.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations (Request,
# imported inside create_app so that discovering services does not import FastAPI).
import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from querycraft.errors import QueryCraftError

log = logging.getLogger("querycraft")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# A db_id names a database (a Spider folder, a server database): never a path.
_DB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    # The environment variable that holds the API key. When it is set, /v1 requests must send
    # "Authorization: Bearer <key>"; when it is not, the server needs no key (and then only
    # listens on a loopback address unless serve.allow_public_without_key=true).
    api_key_env: str = "QUERYCRAFT_API_KEY"
    allow_public_without_key: bool = False
    # The model id /v1/models lists and requests name; null: querycraft-<finetune run folder>.
    model_name: str | None = None
    # Dynamic batching: at most this many requests share one generate call (1: one at a
    # time), gathered for at most batch_wait_ms once the first one waits.
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    # Requests allowed to wait for the model; more are answered 503 (try again).
    max_pending: int = 256
    # Bounds on what a client may send and ask for.
    max_body_bytes: int = 65536
    max_question_chars: int = 2000
    max_prompts: int = 16
    max_tokens: int = 512
    # Seconds a request may wait for its generation before a 504.
    request_timeout_s: float = 300.0


SETTINGS = ServeConfig


def check(cfg: DictConfig) -> list[str]:
    """The serve.* settings."""
    serve, problems = cfg.serve, []
    if not 0 < serve.port < 65536:
        problems.append(f"serve.port must be between 1 and 65535, got {serve.port}")
    if serve.max_batch_size < 1 or serve.max_pending < 1 or serve.max_prompts < 1:
        problems.append("serve.max_batch_size, serve.max_pending and serve.max_prompts must be "
                        "at least 1")
    if serve.batch_wait_ms < 0 or serve.request_timeout_s <= 0:
        problems.append("serve.batch_wait_ms must be at least 0 and serve.request_timeout_s "
                        "more than 0")
    if serve.max_body_bytes < 1024 or serve.max_question_chars < 1 or serve.max_tokens < 1:
        problems.append("serve.max_body_bytes must be at least 1024, serve.max_question_chars "
                        "and serve.max_tokens at least 1")
    return problems


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiError(Exception):
    """A request the server refuses: its HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str, code: str = "invalid_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


def error_body(message: str, code: str, status: int) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "code": code}}


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before any of it is
    parsed (by its Content-Length, or by counting a chunked body as it arrives)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, send: Callable) -> None:
        body = json.dumps(error_body(f"The request body is over {self.max_bytes} bytes "
                                     f"(serve.max_body_bytes); send a shorter one.",
                                     "body_too_large", 413)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    """ASGI middleware: every response may load scripts, styles and data from this server
    only (the page needs nothing else), and is never sniffed as another content type."""

    HEADERS = ((b"content-security-policy",
                b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
               (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"))

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Server:
    """What the HTTP endpoints share: the asker (model, prompts, databases), the batcher and
    a lock that lets one thread at a time use the database connections."""

    def __init__(self, cfg: DictConfig, asker: Any = None, backend: Any = None) -> None:
        from querycraft.asking import Asker
        from querycraft.batching import DynamicBatcher

        self.cfg, self.settings = cfg, cfg.serve
        self.asker = asker if asker is not None else Asker(cfg, backend=backend)
        self.model_id = self.settings.model_name or f"querycraft-{self.asker.finetune_dir.name}"
        self.api_key = os.environ.get(self.settings.api_key_env) \
            if self.settings.api_key_env else None
        self.db_lock = threading.Lock()
        self.batcher = DynamicBatcher(self.asker.backend(),
                                      max_batch_size=self.settings.max_batch_size,
                                      max_wait_s=self.settings.batch_wait_ms / 1000,
                                      max_pending=self.settings.max_pending)
        self.started = time.time()

    def close(self) -> None:
        self.batcher.close()
        self.asker.close()

    # ------------------------------------------------------------------ checks

    def authorize(self, header: str | None) -> None:
        if not self.api_key:
            return
        token = (header or "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, f"This server needs an API key: send the header "
                                f"'Authorization: Bearer <key>' with the key in the server's "
                                f"{self.settings.api_key_env} environment variable.",
                           "invalid_api_key", {"WWW-Authenticate": "Bearer"})

    def known_db_ids(self) -> list[str]:
        """The databases a request may name (empty when any server database may be)."""
        databases = self.asker.databases
        if not databases.per_db_id:
            return [self.asker.db_id]
        from querycraft.engines.sqlite import sqlite_db_ids

        location = databases.target.location
        return sqlite_db_ids(location) if location and Path(location).is_dir() else []

    def db_id(self, requested: str | None) -> str | None:
        """The db_id a request names, checked; None: the default database."""
        if requested is None or requested == "" or requested == self.asker.db_id:
            return None
        known = self.known_db_ids()
        if not _DB_ID.match(requested) or (known and requested not in known) \
                or (not known and not self.asker.databases.per_db_id):
            listed = ", ".join(known[:50]) + (" ..." if len(known) > 50 else "")
            default = self.asker.db_id or "the configured database"
            raise ApiError(404, f"Unknown db_id {requested[:80]!r}: this server answers about "
                                f"{listed or default}; leave db_id out for the default "
                                f"({default}).", "unknown_db_id")
        return requested

    def question(self, text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "The request needs a question: a non-empty string, e.g. "
                                '{"question": "How many customers are there?"}.',
                           "missing_question")
        if len(text) > self.settings.max_question_chars:
            raise ApiError(400, f"The question is {len(text)} characters; at most "
                                f"{self.settings.max_question_chars} are accepted "
                                f"(serve.max_question_chars).", "question_too_long")
        return text.strip()

    # ------------------------------------------------------------------ work

    def in_lock(self, work: Callable[[], Any]) -> Any:
        with self.db_lock:
            return work()

    def prompt(self, question: str, db_id: str | None) -> str:
        try:
            return self.in_lock(lambda: self.asker.prompt(question, db_id))
        except QueryCraftError as err:
            raise ApiError(404, f"The database {db_id!r} cannot be read: {err}",
                           "unknown_db_id") from err

    async def generate(self, prompt: str, settings: Any,
                       on_delta: Callable[[str], None] | None = None,
                       announced: dict | None = None) -> Any:
        """The generation for ``prompt`` through the batcher (``announced``: the slot of
        ``batcher.expecting()`` taken while the prompt was being built)."""
        from querycraft.batching import Overloaded

        try:
            future = self.batcher.submit(prompt, settings, on_delta, announced)
        except Overloaded as err:
            raise ApiError(503, str(err), "overloaded", {"Retry-After": "1"}) from err
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future),
                                          self.settings.request_timeout_s)
        except asyncio.TimeoutError as err:
            future.cancel()
            raise ApiError(504, f"No answer from the model within "
                                f"{self.settings.request_timeout_s} s "
                                f"(serve.request_timeout_s); try again when fewer requests "
                                f"wait.", "timeout") from err

    def settings_for(self, body: dict[str, Any], default_stop: str | None) -> Any:
        """Decoding settings from an OpenAI request's fields (greedy unless a temperature
        above 0 is asked for)."""
        from querycraft.generation import GenerationSettings

        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") \
            or self.asker.settings.max_new_tokens
        temperature = body.get("temperature") or 0.0
        top_p = body.get("top_p")
        for name, value in (("max_tokens", max_tokens), ("temperature", temperature),
                            ("top_p", 1.0 if top_p is None else top_p)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ApiError(400, f"{name} must be a number of at least 0, got {value!r}.",
                               "invalid_value")
        if int(max_tokens) > self.settings.max_tokens:
            raise ApiError(400, f"max_tokens={max_tokens} is over this server's limit of "
                                f"{self.settings.max_tokens} (serve.max_tokens).",
                           "max_tokens_too_large")
        if (body.get("n") or 1) != 1:
            raise ApiError(400, "n must be 1: this server returns one choice per prompt.",
                           "invalid_value")
        stops = body.get("stop")
        stops = [stops] if isinstance(stops, str) else list(stops or [])
        if not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ApiError(400, "stop must be a string or a list of at most 4 non-empty "
                                "strings.", "invalid_value")
        return GenerationSettings(
            max_new_tokens=max(1, int(max_tokens)),
            stop_string=stops[0] if stops else default_stop,
            do_sample=temperature > 0, temperature=float(temperature) or 1.0,
            top_p=float(1.0 if top_p is None else top_p) or 1.0, batch_size=1), stops[1:]

    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self.batcher.backend, "tokenizer", None)
        return len(tokenizer(text)["input_ids"]) if tokenizer is not None else 0


def _cut_at_any(text: str, stops: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stops if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _finish_reason(generation: Any, settings: Any, stopped: bool) -> str:
    tokens = generation.tokens
    if not stopped and tokens is not None and tokens >= settings.max_new_tokens:
        return "length"
    return "stop"


def create_app(cfg: DictConfig, server: Server | None = None):
    """The FastAPI application (``server``: an already loaded :class:`Server`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    server = server or Server(cfg)
    # No /docs: FastAPI's documentation pages load their scripts from a CDN (the server must
    # work offline); /openapi.json describes the API.
    app = FastAPI(title="QueryCraft", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.code, err.status), err.status,
                            headers=err.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, err: HTTPException) -> JSONResponse:
        message = {404: "No such endpoint: GET /openapi.json lists the API.",
                   405: "This endpoint does not take that method: see GET /openapi.json."
                   }.get(err.status_code, str(err.detail))
        return JSONResponse(error_body(message, "not_found" if err.status_code == 404
                                       else "invalid_request", err.status_code),
                            err.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(f"The request is not valid: {str(err)[:300]}",
                                       "invalid_request", 400), 400)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("serve: a request failed")
        return JSONResponse(error_body(f"The server failed on this request ({type(err).__name__}"
                                       f": {str(err)[:200]}); it goes on serving others.",
                                       "internal_error", 500), 500)

    async def body_of(request: Request) -> dict[str, Any]:
        server.authorize(request.headers.get("authorization"))
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError(400, f"The request body is not valid JSON ({err}); send a JSON "
                                f"object with Content-Type: application/json.",
                           "malformed_json") from err
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object, e.g. "
                                '{"question": "How many customers are there?"}.',
                           "malformed_json")
        return body

    def check_model(body: dict[str, Any]) -> None:
        model = body.get("model")
        if model not in (None, server.model_id):
            raise ApiError(404, f"The model {str(model)[:80]!r} is not served here; this "
                                f"server serves {server.model_id!r} (GET /v1/models).",
                           "model_not_found")

    # ------------------------------------------------------------------ the page

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    if WEB_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.model_id, "pending": server.batcher.pending(),
                "batching": server.batcher.stats.as_json(),
                "max_batch_size": server.batcher.max_batch_size,
                "api_key_required": bool(server.api_key)}

    # ------------------------------------------------------------------ QueryCraft's API

    @app.get("/v1/databases")
    async def databases(request: Request) -> dict[str, Any]:
        server.authorize(request.headers.get("authorization"))
        return {"default": server.asker.db_id, "db_ids": server.known_db_ids(),
                "engine": server.asker.database.dialect}

    @app.post("/v1/ask")
    async def ask(request: Request) -> dict[str, Any]:
        began = time.perf_counter()
        body = await body_of(request)
        question = server.question(body.get("question"))
        db_id = server.db_id(body.get("db_id"))
        # Announced while its prompt is built, so a batch forming meanwhile waits for it.
        with server.batcher.expecting() as slot:
            prompt = await run_in_threadpool(server.prompt, question, db_id)
            generated = time.perf_counter()
            generation = await server.generate(prompt, server.asker.generation_settings(),
                                               announced=slot)
        generate_s = time.perf_counter() - generated
        answer = await run_in_threadpool(
            server.in_lock, lambda: server.asker.answer_text(question, generation.text, db_id))
        answer.timings = {"generate_s": round(generate_s, 4), **answer.timings,
                          "total_s": round(time.perf_counter() - began, 4)}
        return {**answer.as_json(), "db_id": db_id or server.asker.db_id}

    @app.post("/v1/sql")
    async def sql(request: Request) -> dict[str, Any]:
        from querycraft.engines.sqlite import check_sql_size

        began = time.perf_counter()
        body = await body_of(request)
        text = body.get("sql")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, 'The request needs the SQL to run: {"sql": "SELECT ..."}.',
                           "missing_sql")
        try:
            check_sql_size(text, cfg.db.max_sql_bytes)
        except QueryCraftError as err:
            raise ApiError(400, str(err), "sql_too_long") from err
        db_id = server.db_id(body.get("db_id"))
        question = body.get("question") if isinstance(body.get("question"), str) else ""
        answer = await run_in_threadpool(
            server.in_lock, lambda: server.asker.run_sql(text.strip(), db_id))
        answer.question = question[: server.settings.max_question_chars]
        answer.timings["total_s"] = round(time.perf_counter() - began, 4)
        return {**answer.as_json(), "db_id": db_id or server.asker.db_id}

    # ------------------------------------------------------------------ OpenAI's API

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        server.authorize(request.headers.get("authorization"))
        return {"object": "list", "data": [{
            "id": server.model_id, "object": "model", "created": int(server.started),
            "owned_by": "querycraft", "root": server.asker.finetune.base_model}]}

    def sse(payload: dict[str, Any] | str) -> bytes:
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        return f"data: {text}\n\n".encode()

    async def stream(prompt: str, settings: Any, stops: list[str],
                     chunk: Callable[[str, str | None], dict[str, Any]]
                     ) -> AsyncIterator[bytes]:
        """Server-sent events: each piece of text as it is generated, then the finish."""
        loop, pieces = asyncio.get_running_loop(), asyncio.Queue()

        def on_delta(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        task = asyncio.ensure_future(server.generate(prompt, settings, on_delta))
        sent, cut = "", False
        first = chunk("", None)
        yield sse(first)
        while not (task.done() and pieces.empty()):
            getter = asyncio.ensure_future(pieces.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                continue
            if cut:
                continue
            whole, cut = _cut_at_any(sent + getter.result(), stops)
            if len(whole) > len(sent):
                yield sse(chunk(whole[len(sent):], None))
                sent = whole
        try:
            generation = task.result()
        except ApiError as err:
            yield sse(error_body(err.message, err.code, err.status))
            yield sse("[DONE]")
            return
        yield sse(chunk("", _finish_reason(generation, settings, cut)))
        yield sse("[DONE]")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await body_of(request)
        check_model(body)
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not isinstance(prompts, list) or not prompts \
                or not all(isinstance(p, str) and p for p in prompts):
            raise ApiError(400, "prompt must be a non-empty string or a list of them (token "
                                "arrays are not accepted).", "invalid_prompt")
        if len(prompts) > server.settings.max_prompts:
            raise ApiError(400, f"{len(prompts)} prompts in one request; at most "
                                f"{server.settings.max_prompts} (serve.max_prompts).",
                           "too_many_prompts")
        settings, stops = server.settings_for(body, server.asker.template.stop_string)
        stops = [s for s in [settings.stop_string, *stops] if s]
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        if body.get("stream"):
            if len(prompts) != 1:
                raise ApiError(400, "stream=true takes one prompt.", "invalid_prompt")

            def chunk(text: str, finish: str | None) -> dict[str, Any]:
                return {"id": ident, "object": "text_completion", "created": created,
                        "model": server.model_id, "choices": [{
                            "index": 0, "text": text, "logprobs": None,
                            "finish_reason": finish}]}

            return StreamingResponse(stream(prompts[0], settings, stops, chunk),
                                     media_type="text/event-stream")
        generations = await asyncio.gather(*(server.generate(p, settings) for p in prompts))
        choices, completion_tokens = [], 0
        for index, generation in enumerate(generations):
            text, cut = _cut_at_any(generation.text, stops)
            completion_tokens += generation.tokens or 0
            choices.append({"index": index, "text": text, "logprobs": None,
                            "finish_reason": _finish_reason(generation, settings, cut)})
        prompt_tokens = sum(server.count_tokens(p) for p in prompts)
        return {"id": ident, "object": "text_completion", "created": created,
                "model": server.model_id, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await body_of(request)
        check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages \
                or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "messages must be a non-empty list of {role, content} "
                                "objects.", "invalid_messages")
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise ApiError(400, "messages holds no user message: the last user message is the "
                                "question.", "missing_question")
        content = users[-1].get("content")
        if isinstance(content, list):  # content parts: the text ones
            content = "\n".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and p.get("type") == "text")
        question = server.question(content)
        db_id = server.db_id(body.get("db_id"))
        settings, stops = server.settings_for(body, server.asker.template.stop_string)
        stops = [s for s in [settings.stop_string, *stops] if s]
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        with server.batcher.expecting() as slot:
            prompt = await run_in_threadpool(server.prompt, question, db_id)
            if not body.get("stream"):
                generation = await server.generate(prompt, settings, announced=slot)

        if body.get("stream"):
            def chunk(text: str, finish: str | None) -> dict[str, Any]:
                delta = {"role": "assistant", "content": ""} if not text and finish is None \
                    else ({"content": text} if text else {})
                return {"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": server.model_id, "choices": [{
                            "index": 0, "delta": delta, "logprobs": None,
                            "finish_reason": finish}]}

            return StreamingResponse(stream(prompt, settings, stops, chunk),
                                     media_type="text/event-stream")
        text, cut = _cut_at_any(generation.text, stops)
        prompt_tokens, completion_tokens = server.count_tokens(prompt), generation.tokens or 0
        return {"id": ident, "object": "chat.completion", "created": created,
                "model": server.model_id, "choices": [{
                    "index": 0, "message": {"role": "assistant", "content": text},
                    "logprobs": None, "finish_reason": _finish_reason(generation, settings,
                                                                      cut)}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    return SecurityHeaders(BodyLimit(app, server.settings.max_body_bytes))


def run(cfg: DictConfig) -> None:
    """Load the finetune run's model once and serve until interrupted (Ctrl+C)."""
    import uvicorn

    settings = cfg.serve
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if not is_loopback(settings.host) and not key and not settings.allow_public_without_key:
        raise QueryCraftError(
            f"serve.host={settings.host} would let anyone on the network ask your database "
            f"questions without a key. Set an API key in the environment variable "
            f"{settings.api_key_env} (clients then send 'Authorization: Bearer <key>'), or "
            f"keep the default serve.host=127.0.0.1, or set "
            f"serve.allow_public_without_key=true if the network is yours alone.")
    server = Server(cfg)
    app = create_app(cfg, server)
    address = f"http://{settings.host}:{settings.port}/"
    log.info("serve: %s (%s) at %s, API key %s; Ctrl+C stops", server.model_id,
             server.asker.finetune_dir, address,
             f"required ({settings.api_key_env})" if key else "not required")
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    access_log=False)
    finally:
        server.close()
