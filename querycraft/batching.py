"""Dynamic batching: requests that arrive while the model is busy (or within a few
milliseconds of each other) share one ``generate`` call.

One worker thread owns the model. Each request is a prompt plus its decoding settings; the
worker takes the oldest waiting request, gathers up to ``max_batch_size`` more with the same
settings (waiting at most ``max_wait_s`` for them), generates them together and hands each
its own text, streamed as it grows where the backend can stream. A batch that fails is
retried one request at a time, so one bad request fails alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from querycraft.errors import QueryCraftError
from querycraft.generation import Generation, GenerationSettings

log = logging.getLogger("querycraft")

# Called with the new text of one request as it is generated.
OnDelta = Callable[[str], None]


class Overloaded(QueryCraftError):
    """More requests wait than the batcher accepts (the server answers 503)."""


@dataclass
class _Request:
    prompt: str
    settings: GenerationSettings
    on_delta: OnDelta | None
    future: Future = field(default_factory=Future)
    streamed: bool = False  # text has gone to the client: never generate it again
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the batcher did: for /health and the serving benchmark."""

    requests: int = 0
    batches: int = 0
    failed: int = 0
    sizes: Counter = field(default_factory=Counter)

    def as_json(self) -> dict:
        return {"requests": self.requests, "batches": self.batches, "failed": self.failed,
                "mean_batch_size": round(self.requests / self.batches, 3) if self.batches
                else 0.0, "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class DynamicBatcher:
    """Batches generation requests for one backend (see the module's text).

    Args:
        backend: Anything with ``generate_batches`` (querycraft.backends); one with
            ``generate_batch(prompts, settings, on_text)`` also streams.
        max_batch_size: The most requests in one generate call (1: one at a time).
        max_wait_s: How long the worker waits for more requests once it has one.
        max_pending: Requests allowed to wait; beyond that :meth:`submit` raises Overloaded.
        max_prepare_wait_s: How long a batch that is not full may wait, beyond ``max_wait_s``,
            for requests announced with :meth:`expecting` that are still being prepared.
    """

    def __init__(self, backend, *, max_batch_size: int = 8, max_wait_s: float = 0.01,
                 max_pending: int = 256, max_prepare_wait_s: float = 0.25) -> None:
        self.backend = backend
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_prepare_wait_s = max(0.0, max_prepare_wait_s)
        self._incoming = 0  # requests announced and not yet submitted
        self.max_pending = max(1, max_pending)
        self.stats = BatchStats()
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="querycraft-batcher",
                                        daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def expecting(self):
        """Announce a request that will be submitted once prepared (its prompt built): a batch
        that is not full waits for it (at most ``max_prepare_wait_s``) instead of starting
        without it. Pass what this yields to :meth:`submit` as ``announced``."""
        slot = {"open": True}
        with self._ready:
            self._incoming += 1
        try:
            yield slot
        finally:
            with self._ready:
                if slot["open"]:
                    slot["open"] = False
                    self._incoming -= 1
                    self._ready.notify()

    def submit(self, prompt: str, settings: GenerationSettings,
               on_delta: OnDelta | None = None, announced: dict | None = None) -> Future:
        """Queue one prompt; the future gives its :class:`Generation`.

        Raises:
            Overloaded: if ``max_pending`` requests already wait.
        """
        request = _Request(prompt, replace(settings, batch_size=1), on_delta)
        with self._ready:
            if self._closed:
                raise QueryCraftError("the batcher is closed")
            if len(self._queue) >= self.max_pending:
                raise Overloaded(f"{len(self._queue)} requests are already waiting; try again "
                                 f"shortly (serve.max_pending).")
            self._queue.append(request)
            if announced is not None and announced["open"]:
                announced["open"] = False
                self._incoming -= 1
            self._ready.notify()
        return request.future

    def pending(self) -> int:
        with self._ready:
            return len(self._queue)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._worker.join(timeout=5)
        while self._queue:
            self._queue.popleft().future.set_exception(QueryCraftError("the server stopped"))

    # ------------------------------------------------------------------ the worker

    def _take_batch(self) -> list[_Request] | None:
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch = [first]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                same = next((r for r in self._queue if r.settings == first.settings), None)
                if same is not None:
                    self._queue.remove(same)
                    batch.append(same)
                    continue
                now = time.perf_counter()
                left = deadline - now
                if left <= 0:
                    # Requests still being prepared: wait for them rather than start a
                    # small batch they would then wait behind (bounded).
                    prepare_left = first.queued_at + self.max_prepare_wait_s - now
                    if self._incoming <= 0 or prepare_left <= 0:
                        break
                    left = prepare_left
                self._ready.wait(left)
                if self._closed:
                    break
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            # A request whose client has gone (its future cancelled) is not generated.
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                generations = self._generate(batch)
            except Exception as err:
                if len(batch) == 1:
                    self._fail(batch[0], err)
                    continue
                log.warning("serve: a batch of %d failed (%s); retrying one at a time",
                            len(batch), err)
                for request in batch:
                    if request.streamed:
                        self._fail(request, err)
                        continue
                    try:
                        self._finish([request], self._generate([request]))
                    except Exception as one_err:
                        self._fail(request, one_err)
                continue
            self._finish(batch, generations)

    def _generate(self, batch: list[_Request]) -> list[Generation]:
        prompts, settings = [r.prompt for r in batch], batch[0].settings

        def on_text(row: int, text: str) -> None:
            callback = batch[row].on_delta
            if callback is not None:
                batch[row].streamed = True
                callback(text)

        streams = any(r.on_delta is not None for r in batch)
        generations = self.backend.generate_batch(prompts, settings,
                                                  on_text if streams else None)
        for request, generation in zip(batch, generations, strict=True):
            if request.on_delta is not None and not request.streamed and generation.text:
                request.on_delta(generation.text)  # a backend that cannot stream: one piece
        return generations

    def _finish(self, batch: list[_Request], generations: list[Generation]) -> None:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.sizes[len(batch)] += 1
        for request, generation in zip(batch, generations, strict=True):
            request.future.set_result(generation)

    def _fail(self, request: _Request, err: Exception) -> None:
        self.stats.failed += 1
        log.warning("serve: generation failed: %s", err)
        request.future.set_exception(err)
