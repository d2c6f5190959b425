"""Generation backends for the infer service: transformers, vLLM, or an OpenAI-compatible
server. All take the same prompts and ``GenerationSettings`` and yield finished batches as
``(indices into prompts, generations)``, so the infer service can write each batch at once
(and a restarted run skips what is written).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from querycraft import models
from querycraft.errors import QueryCraftError
from querycraft.generation import (
    Generation,
    GenerationSettings,
    OnText,
    cut_at_stop,
    generate_batch,
    generate_batches,
    sequence_logprobs,
)

log = logging.getLogger("querycraft")

Batches = Iterator[tuple[list[int], list[Generation]]]


class Backend(Protocol):
    """What callers use of a backend: infer and self-correction take batches of generations,
    the server's dynamic batcher one batch at a time (streamed where the backend can), and
    execution-guided voting breaks ties by likelihood where the backend can score texts
    (``scores_texts``).

    ``generate_batches`` may yield batches in any order (a server backend yields whichever
    request finishes first); their indices say which prompts they answer, and together they
    answer every prompt once. :class:`BatchBackend` gives the other two from it.
    """

    scores_texts: bool

    def generate_batches(self, prompts: list[str], settings: GenerationSettings
                         ) -> Batches: ...

    def generate_batch(self, prompts: list[str], settings: GenerationSettings,
                       on_text: OnText | None = None) -> list[Generation]: ...

    def logprobs(self, prompt: str, texts: list[str]) -> list[float]: ...


class BatchBackend:
    """A backend that only generates in batches: one batch is those batches collected (no
    streaming: ``on_text`` is not called, the whole text comes at the end), and it cannot
    score texts."""

    scores_texts = False

    def generate_batches(self, prompts: list[str], settings: GenerationSettings
                         ) -> Batches:
        raise NotImplementedError

    def generate_batch(self, prompts: list[str], settings: GenerationSettings,
                       on_text: OnText | None = None) -> list[Generation]:
        found: list[Generation | None] = [None] * len(prompts)
        for indices, generations in self.generate_batches(
                prompts, replace(settings, batch_size=max(1, len(prompts)))):
            for i, generation in zip(indices, generations, strict=True):
                found[i] = generation
        missing = [i for i, g in enumerate(found) if g is None]
        if missing:
            raise QueryCraftError(f"the backend answered {len(prompts) - len(missing)} of "
                                  f"{len(prompts)} prompts")
        return [g for g in found if g is not None]

    def logprobs(self, prompt: str, texts: list[str]) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} cannot score texts "
                                  "(scores_texts is False)")


@dataclass
class ModelSource:
    """What to load: a base model, optionally an adapter or a merged model."""

    base: str
    adapter: str | None = None
    merged: str | None = None
    # How the base was stored while the adapter trained (peft.quantization); loaded alike.
    quantization: dict | None = None
    # LoRA rank of the adapter (vLLM needs the maximum up front).
    lora_rank: int | None = None

    @property
    def label(self) -> str:
        return self.merged or (f"{self.base} + {self.adapter}" if self.adapter else self.base)


class HFBackend:
    """transformers ``generate``: batched, left-padded, length-sorted (see generation.py)."""

    scores_texts = True

    def __init__(self, source: ModelSource, model_cfg: DictConfig) -> None:
        weights = source.merged or source.base
        self.tokenizer = models.load_tokenizer(
            source.merged or source.adapter or source.base,
            trust_remote_code=model_cfg.trust_remote_code)
        quantization = (OmegaConf.create(source.quantization)
                        if source.quantization and not source.merged else None)
        model = models.load_model(weights, model_cfg, quantization)
        if source.adapter and not source.merged:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source.adapter)
            if quantization is None:
                # Folding the adapter into the weights (in memory only) makes every decoding
                # step cheaper: no separate low-rank matmuls. A quantized base keeps it apart.
                model = model.merge_and_unload()
        if quantization is None:
            import torch

            if torch.cuda.is_available():
                model = model.to("cuda")
        self.model = model

    def generate_batches(self, prompts: list[str], settings: GenerationSettings) -> Batches:
        return generate_batches(self.model, self.tokenizer, prompts, settings)

    def generate_batch(self, prompts: list[str], settings: GenerationSettings,
                       on_text: OnText | None = None) -> list[Generation]:
        """All ``prompts`` in one generate call, streaming each row's text to ``on_text``
        (the server's dynamic batches)."""
        return generate_batch(self.model, self.tokenizer, prompts, settings, on_text)

    def logprobs(self, prompt: str, texts: list[str]) -> list[float]:
        """The model's log-likelihood of each text after ``prompt`` (voting's tie-break)."""
        return sequence_logprobs(self.model, self.tokenizer, prompt, texts)


class VLLMBackend(BatchBackend):
    """vLLM offline engine; the LoRA adapter is applied through vLLM's LoRA support."""

    def __init__(self, source: ModelSource, model_cfg: DictConfig, seed: int) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise QueryCraftError(
                "infer.backend=vllm needs vLLM on a machine with a supported GPU: pip install "
                "-e '.[vllm]'. Or use infer.backend=hf (works everywhere)."
            ) from err
        lora = bool(source.adapter and not source.merged)
        adapter_config = (_adapter_config(source.adapter)
                          if source.adapter and not source.merged else {})
        if adapter_config.get("modules_to_save"):
            raise QueryCraftError(
                f"The adapter in {source.adapter} also trains whole modules (modules_to_save, "
                f"e.g. embeddings of a new vocabulary), which vLLM's LoRA cannot apply. Merge "
                f"it (train.merge_adapter=true, then infer.use_merged=true) or use "
                f"infer.backend=hf."
            )
        self.source = source
        # vLLM needs the largest LoRA rank up front; self-correction knows only the adapter
        # folder (an infer run records no rank), whose config says it.
        rank = source.lora_rank or adapter_config.get("r") or 8
        self.llm = LLM(model=source.merged or source.base, dtype=model_cfg.dtype, seed=seed,
                       trust_remote_code=model_cfg.trust_remote_code, enable_lora=lora,
                       **({"max_lora_rank": max(8, rank)} if lora else {}))

    def generate_batches(self, prompts: list[str], settings: GenerationSettings) -> Batches:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        params = SamplingParams(
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            max_tokens=settings.max_new_tokens,
            stop=[settings.stop_string] if settings.stop_string else None,
            n=settings.samples,
        )
        lora = (LoRARequest("querycraft-adapter", 1, self.source.adapter)
                if self.source.adapter and not self.source.merged else None)
        # vLLM schedules its own batches; chunks only bound how much is lost to a crash.
        chunk = max(settings.batch_size, 64)
        for start in range(0, len(prompts), chunk):
            indices = list(range(start, min(start + chunk, len(prompts))))
            began = time.perf_counter()
            outputs = self.llm.generate([prompts[i] for i in indices], params,
                                        lora_request=lora, use_tqdm=True)
            seconds = (time.perf_counter() - began) / len(indices)
            generations = []
            for o in outputs:
                texts = [cut_at_stop(c.text, settings.stop_string) for c in o.outputs]
                generations.append(Generation(texts[0], seconds, samples=texts
                                              if settings.samples > 1 else None))
            yield indices, generations


def _adapter_config(adapter_dir: str) -> dict[str, Any]:
    path = os.path.join(adapter_dir, "adapter_config.json")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class ServerUnreachable(QueryCraftError):
    """No answer at all from the server (as opposed to an HTTP error answer): callers that
    survive one failed request still stop on this."""


class OpenAIClient:
    """JSON requests to an OpenAI-compatible server's ``/v1`` address (shared by
    ``infer.backend=openai`` and synthesize's teacher).

    A server that cannot be reached raises :class:`ServerUnreachable`; an HTTP error answer
    a :class:`QueryCraftError`.
    """

    def __init__(self, base_url: str, *, timeout_s: float, api_key_env: str | None,
                 setting: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_s
        self.setting = setting  # the config key that sets base_url, for error messages
        self.api_key = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise QueryCraftError(f"The api_key_env setting names {api_key_env}, but "
                                      "that environment variable is not set.")

    def request(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            body = err.read().decode(errors="replace")[:300]
            raise QueryCraftError(f"The server at {self.base_url} answered {path} with HTTP "
                                  f"{err.code}: {body}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise ServerUnreachable(
                f"Could not reach an OpenAI-compatible server at {self.base_url} ({err}). "
                f"Start it (e.g. `vllm serve <model>`, `llama-server -m model.gguf` or "
                f"`python -m querycraft service=serve`) or set {self.setting} to where it "
                "listens."
            ) from err

    def first_model(self) -> str:
        models_ = self.request("/models").get("data", [])
        if not models_:
            raise QueryCraftError(f"The server at {self.base_url} lists no models; name one "
                                  f"in the model setting beside {self.setting}.")
        return models_[0]["id"]


class OpenAIBackend(BatchBackend):
    """Any server with the OpenAI completions API: vLLM, llama.cpp server, Ollama, TGI...

    Sends raw prompts (the completions endpoint, not chat), so the server sees exactly the
    training prompt; greedy unless sampling is configured; the template's stop string.
    """

    def __init__(self, server_cfg: DictConfig) -> None:
        self.client = OpenAIClient(server_cfg.base_url, timeout_s=server_cfg.timeout_s,
                                   api_key_env=server_cfg.api_key_env,
                                   setting="infer.server.base_url")
        self.base_url = self.client.base_url
        self.concurrency = max(1, server_cfg.concurrency)
        self.model = server_cfg.model or self.client.first_model()
        extra = server_cfg.get("extra_body")  # a DictConfig: plain values for json.dumps
        self.extra_body = OmegaConf.to_container(extra) if extra else {}

    def _complete(self, prompts: list[str], settings: GenerationSettings
                  ) -> tuple[list[str], float]:
        began = time.perf_counter()
        payload = {
            **self.extra_body,
            "model": self.model, "prompt": prompts, "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature if settings.do_sample else 0.0,
            "top_p": settings.top_p if settings.do_sample else 1.0,
        }
        if settings.stop_string:
            payload["stop"] = [settings.stop_string]
        n = settings.samples
        if n > 1:
            payload["n"] = n
        choices = self.client.request("/completions", payload)["choices"]
        texts = [""] * (len(prompts) * n)  # prompt i's samples at i * n ... i * n + n - 1
        for position, choice in enumerate(choices):
            index = choice.get("index", position)
            if 0 <= index < len(texts):
                texts[index] = choice["text"]
        return ([cut_at_stop(t, settings.stop_string) for t in texts],
                (time.perf_counter() - began) / len(prompts))

    def generate_batches(self, prompts: list[str], settings: GenerationSettings) -> Batches:
        chunks = [list(range(s, min(s + settings.batch_size, len(prompts))))
                  for s in range(0, len(prompts), settings.batch_size)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._complete, [prompts[i] for i in chunk], settings): chunk
                       for chunk in chunks}
            for future in as_completed(futures):
                texts, seconds = future.result()
                n = settings.samples
                if n > 1:
                    yield futures[future], [
                        Generation(texts[i * n], seconds, samples=texts[i * n:(i + 1) * n])
                        for i in range(len(texts) // n)]
                else:
                    yield futures[future], [Generation(text, seconds) for text in texts]


def make_backend(cfg: DictConfig, source: ModelSource | None) -> Backend:
    """The backend ``infer.backend`` names, ready to generate.

    Args:
        source: the model to load; None is only possible with ``openai``, whose server
            serves its own (``infer.server.*``).

    Raises:
        QueryCraftError: if a local backend has no model to load, or the backend cannot start.
    """
    name = cfg.infer.backend
    if name == "openai":
        return OpenAIBackend(cfg.infer.server)
    if source is None:
        raise QueryCraftError(f"infer.backend={name} loads the model itself, but none was "
                              f"given; use infer.backend=openai for a model on a server.")
    if name == "vllm":
        return VLLMBackend(source, cfg.model, cfg.seed)
    return HFBackend(source, cfg.model)
