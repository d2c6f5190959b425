"""Batched greedy generation with a Hugging Face model (shared by every stage that asks
a model for SQL)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generation:
    text: str  # the model's raw output, prompt excluded
    seconds: float  # the batch's wall time divided by its size


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
             batch_size: int = 16, max_new_tokens: int = 128, stop_string: str | None = None,
             progress: bool = True) -> list[Generation]:
    """Greedy completions for ``prompts``, in their order.

    Prompts are sorted by length so each batch pads little; padding is on the left so every
    prompt ends right where generation starts. A batch stops as soon as every sequence has
    produced end-of-sequence (or ``stop_string``).
    """
    import torch

    tokenizer.padding_side = "left"
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[Generation | None] = [None] * len(prompts)
    model.eval()
    stop = {"stop_strings": [stop_string], "tokenizer": tokenizer} if stop_string else {}
    bar = tqdm(total=len(prompts), desc="generating", unit="q", disable=not progress)
    for start in range(0, len(order), batch_size):
        batch = order[start: start + batch_size]
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True)
        encoded = encoded.to(model.device)
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **encoded, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                **stop,
            )
        seconds = (time.perf_counter() - began) / len(batch)
        new_tokens = output[:, encoded["input_ids"].shape[1]:]
        for i, ids in zip(batch, new_tokens, strict=True):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            if stop_string and stop_string in text:
                text = text[: text.index(stop_string)]
            results[i] = Generation(text=text, seconds=seconds)
        bar.update(len(batch))
    bar.close()
    return [r for r in results if r is not None]
