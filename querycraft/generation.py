"""Batched generation with a Hugging Face model (shared by every stage that asks a model for
SQL): left padding, prompts sorted by length, stopping as soon as a whole batch is done."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
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


def _generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    prompts: list[str], settings: GenerationSettings) -> list[str]:
    import torch

    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    sampling = ({"do_sample": True, "temperature": settings.temperature,
                 "top_p": settings.top_p} if settings.do_sample else {"do_sample": False})
    stop = ({"stop_strings": [settings.stop_string], "tokenizer": tokenizer}
            if settings.stop_string else {})
    with torch.inference_mode():
        output = model.generate(
            **encoded, max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            **sampling, **stop,
        )
    new_tokens = output[:, encoded["input_ids"].shape[1]:]
    return [cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), settings.stop_string)
            for ids in new_tokens]


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
        began = time.perf_counter()
        try:
            texts = _generate_batch(model, tokenizer, [prompts[i] for i in batch], settings)
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
        seconds = (time.perf_counter() - began) / len(batch)
        yield batch, [Generation(text=t, seconds=seconds) for t in texts]
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
