"""Batched generation with a Hugging Face model (shared by every stage that asks a model for
SQL): left padding, prompts sorted by length, stopping as soon as a whole batch is done."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from querycraft.errors import QueryCraftError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("querycraft")


@dataclass
class Generation:
    text: str  # the model's raw output, prompt excluded, cut at the stop string
    seconds: float  # the batch's wall time divided by its size
    # Tokens generated (stop string and end-of-sequence included), when the backend knows.
    tokens: int | None = None
    # With GenerationSettings.samples > 1: every sampled text (``text`` is the first).
    samples: list[str] | None = None


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode; the same for every backend."""

    max_new_tokens: int = 256
    # Text that ends the answer (the template's end marker); EOS always ends it too.
    stop_string: str | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    # Texts sampled per prompt (needs do_sample); each Generation then carries them all.
    samples: int = 1

    @classmethod
    def from_config(cls, infer_cfg, stop_string: str | None) -> GenerationSettings:
        return cls(max_new_tokens=infer_cfg.max_new_tokens, stop_string=stop_string,
                   do_sample=infer_cfg.do_sample, temperature=infer_cfg.temperature,
                   top_p=infer_cfg.top_p, batch_size=infer_cfg.batch_size)


def cut_at_stop(text: str, stop_string: str | None) -> str:
    """The output up to the stop string (generation may run a few tokens past it)."""
    if stop_string and stop_string in text:
        return text[: text.index(stop_string)]
    return text


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


# Called with (row in the batch, new text) as a streamed generation grows.
OnText = Callable[[int, str], None]


class RowStreamer:
    """A transformers streamer for a whole batch: each row's new text goes to ``on_text``
    as it is generated (transformers' own streamers take one sequence only).

    What a row is sent is always a prefix of its final text (see :meth:`finish`): text that
    may still become part of the stop string, trailing whitespace and half a character are
    held back until the next token settles them.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, rows: int, stop_string: str | None,
                 on_text: OnText) -> None:
        self.tokenizer, self.stop_string, self.on_text = tokenizer, stop_string, on_text
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [""] * rows
        self.stopped = [False] * rows
        self._prompt_seen = False
        self._holdback = max(len(stop_string or "") - 1, 0)
        self._ends = set(_as_list(tokenizer.eos_token_id)) | set(_as_list(tokenizer.pad_token_id))

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first call hands over the prompts
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.stopped[row]:
                continue
            if token in self._ends:
                self.stopped[row] = True
                continue
            self.ids[row].append(token)
            text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
            if self.stop_string and self.stop_string in text:
                self.stopped[row] = True
                self._send(row, cut_at_stop(text, self.stop_string))
                continue
            settled = text[: len(text) - self._holdback] if self._holdback else text
            self._send(row, settled.rstrip().rstrip("\ufffd"))

    def end(self) -> None:
        """transformers calls this when generation ends; :meth:`finish` sends the rest."""

    def _send(self, row: int, text: str) -> None:
        if len(text) > len(self.sent[row]) and text.startswith(self.sent[row]):
            self.on_text(row, text[len(self.sent[row]):])
            self.sent[row] = text

    def finish(self, texts: list[str]) -> None:
        """Send each row what its final text adds to what was sent."""
        for row, text in enumerate(texts):
            if text.startswith(self.sent[row]):
                self._send(row, text)
            else:  # never seen: decoding a longer sequence changed earlier characters
                log.warning("streamed text of row %d diverged from the final text", row)


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   prompts: list[str], settings: GenerationSettings,
                   on_text: OnText | None = None) -> list[Generation]:
    """One ``generate`` call for all ``prompts`` together (left-padded), optionally streaming
    each row's text to ``on_text``; the server's dynamic batches are these."""
    import torch

    tokenizer.padding_side = "left"
    began = time.perf_counter()
    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    sampling = ({"do_sample": True, "temperature": settings.temperature,
                 "top_p": settings.top_p} if settings.do_sample else {"do_sample": False})
    stop = ({"stop_strings": [settings.stop_string], "tokenizer": tokenizer}
            if settings.stop_string else {})
    streamer = (RowStreamer(tokenizer, len(prompts), settings.stop_string, on_text)
                if on_text is not None else None)
    n = settings.samples
    if n > 1 and (not settings.do_sample or streamer is not None):
        raise ValueError("several samples per prompt need do_sample and no streaming")
    with torch.inference_mode():
        output = model.generate(
            **encoded, max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            streamer=streamer, **sampling, **stop,
            **({"num_return_sequences": n} if n > 1 else {}),
        )
    new_tokens = output[:, encoded["input_ids"].shape[1]:]
    texts = [cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), settings.stop_string)
             for ids in new_tokens]
    if streamer is not None:
        streamer.finish(texts)
    pad = tokenizer.pad_token_id
    counts = [int((ids != pad).sum()) if pad is not None else len(ids) for ids in new_tokens]
    seconds = (time.perf_counter() - began) / max(len(prompts), 1)
    if n > 1:  # a prompt's samples are consecutive rows of the output
        return [Generation(texts[i * n], seconds, sum(counts[i * n:(i + 1) * n]),
                           samples=texts[i * n:(i + 1) * n]) for i in range(len(prompts))]
    return [Generation(text, seconds, count) for text, count in zip(texts, counts, strict=True)]


def sequence_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
                      texts: list[str]) -> list[float]:
    """The model's log-likelihood of each text as the continuation of ``prompt`` (summed over
    the text's tokens): one forward pass over the batch, right-padded."""
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    rows = [prompt_ids + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows],
                        device=model.device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(
        -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    start = len(prompt_ids) - 1  # position predicting the text's first token
    return [float(logprobs[i, start:len(r) - 1].sum()) for i, r in enumerate(rows)]


def generate_batches(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                     prompts: list[str], settings: GenerationSettings, *,
                     progress: bool = True) -> Iterator[tuple[list[int], list[Generation]]]:
    """Yield ``(indices into prompts, generations)`` one finished batch at a time.

    Prompts are sorted by length so each batch pads little; padding is on the left so every
    prompt ends right where generation starts. A batch stops as soon as every sequence has
    produced end-of-sequence or the stop string. On a GPU out-of-memory error the batch size
    is halved and the batch retried (and stays halved for the rest of the run).

    Raises:
        QueryCraftError: if even one prompt at a time runs out of memory.
    """
    import torch

    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    model.eval()
    batch_size = settings.batch_size
    bar = tqdm(total=len(prompts), desc="generating", unit="q", disable=not progress)
    start = 0
    while start < len(order):
        batch = order[start: start + batch_size]
        try:
            generations = generate_batch(model, tokenizer, [prompts[i] for i in batch],
                                         settings)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not _is_out_of_memory(err):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if batch_size == 1:
                raise QueryCraftError(
                    f"Out of memory generating even one prompt at a time ({lengths[batch[0]]} "
                    f"prompt tokens + infer.max_new_tokens={settings.max_new_tokens}). Lower "
                    f"infer.max_new_tokens, use a quantized base (peft=qlora) or a larger GPU."
                ) from err
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory with batch size %d: retrying with %d", len(batch),
                        batch_size)
            continue
        yield batch, generations
        bar.update(len(batch))
        start += len(batch)
    bar.close()


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             settings: GenerationSettings, *, progress: bool = True) -> list[Generation]:
    """Completions for ``prompts``, in their order (see ``generate_batches``)."""
    results: list[Generation | None] = [None] * len(prompts)
    for indices, generations in generate_batches(model, tokenizer, prompts, settings,
                                                 progress=progress):
        for i, generation in zip(indices, generations, strict=True):
            results[i] = generation
    return [r for r in results if r is not None]
