"""From dataset rows to token ids and batches, for training; shared prompt rendering.

The prompt is tokenized on its own and the target appended, so the ids a model is trained
on start with exactly the ids ``infer`` gives it when asking for SQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from querycraft.prompts import PromptTemplate, render_prompt, render_target

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label value the loss skips


def prompt_for(row: dict[str, Any], template: PromptTemplate, dialect: str) -> str:
    """The prompt for a dataset row (training and inference alike)."""
    return render_prompt(template, question=row["question"], context=row.get("context", ""),
                         dialect=dialect, db_id=row.get("db_id", ""),
                         values=row.get("values", ""))


def encode_example(row: dict[str, Any], template: PromptTemplate, dialect: str,
                   tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Token ids of prompt + SQL + end-of-sequence, and where the SQL starts."""
    prompt_ids = tokenizer(prompt_for(row, template, dialect))["input_ids"]
    target_ids = tokenizer(render_target(template, row["query"]),
                           add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + target_ids + [tokenizer.eos_token_id],
            "prompt_length": len(prompt_ids)}



def encode_batch(batch: dict[str, list[Any]], template: PromptTemplate, dialect: str,
                 tokenizer: PreTrainedTokenizerBase) -> dict[str, list[Any]]:
    """:func:`encode_example` over a batch of columns (one tokenizer call per column).

    The ids are the same as example by example: nothing is padded or truncated.
    """
    rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    prompts = tokenizer([prompt_for(row, template, dialect) for row in rows])["input_ids"]
    targets = tokenizer([render_target(template, row["query"]) for row in rows],
                        add_special_tokens=False)["input_ids"]
    input_ids = [p + t + [tokenizer.eos_token_id] for p, t in zip(prompts, targets, strict=True)]
    return {"input_ids": input_ids, "prompt_length": [len(p) for p in prompts],
            "length": [len(ids) for ids in input_ids]}


def _tokenizer_key(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the token ids depend on in the tokenizer: its vocabulary, rules and special ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return f"{text}|{tokenizer.eos_token_id}|{tokenizer.bos_token_id}"


def tokenized_dataset(rows: datasets.Dataset, template: PromptTemplate, dialect: str,
                      tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
    """Token ids of ``rows`` (columns ``input_ids``, ``prompt_length``, ``length``), cached.

    The result is an Arrow file beside ``rows``' own cache, memory-mapped rather than held as
    Python lists, and reused by any later run with the same rows, template, dialect and
    tokenizer (the cache key is computed here from exactly those, so a changed template or
    tokenizer never reuses stale ids).
    """
    # The rows' identity: the Arrow files they come from (named by datasets after the source
    # file's path and modification time) and which rows, in which order, by id.
    source = [f["filename"] for f in rows.cache_files] + list(rows["id"])
    key = hashlib.sha256("\0".join([*source, template.text, dialect,
                                     _tokenizer_key(tokenizer)]).encode()).hexdigest()[:32]
    return rows.map(encode_batch, batched=True, batch_size=256,
                    fn_kwargs={"template": template, "dialect": dialect, "tokenizer": tokenizer},
                    new_fingerprint=key, desc="tokenizing")


def load_rows(path: Path, cache_dir: Path) -> datasets.Dataset:
    """A JSONL split (an ingest run's ``dataset/train.jsonl``) as an Arrow dataset."""
    import datasets

    return datasets.Dataset.from_json(str(path), cache_dir=str(cache_dir))


@dataclass
class Collator:
    """Turns encoded examples into a batch: ids, attention, labels (and positions, packed).

    Which tokens carry loss:
      * ``loss_on_prompt=False`` (completion-only): the SQL, the template's tail and the
        end-of-sequence token; the prompt is masked out.
      * ``loss_on_prompt=True``: every real token, prompt included.
    Padding never carries loss, and the end-of-sequence token always does (even when the
    model pads with the same id, a case where transformers' language-modeling collator
    would mask it and the model would never learn to stop).

    Layout:
      * dynamic padding (default): each batch padded to its longest example, optionally
        rounded up to ``pad_to_multiple_of``;
      * ``pad_to_length``: every example padded to one fixed length (slow; for reproducing
        runs of tools that did this);
      * ``packing``: the batch's examples laid end to end in one row, no padding at all;
        ``position_ids`` restart at 0 for each example, which transformers turns into a
        block-diagonal causal mask, so no token attends across examples.
    """

    pad_token_id: int
    loss_on_prompt: bool = False
    pad_to_multiple_of: int | None = None
    pad_to_length: int | None = None
    packing: bool = False

    def _labels(self, feature: dict[str, Any]) -> list[int]:
        ids = list(feature["input_ids"])
        if self.loss_on_prompt:
            return ids
        prompt_length = feature["prompt_length"]
        return [IGNORE_INDEX] * prompt_length + ids[prompt_length:]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if self.packing:
            return self._packed(features)
        return self._padded(features)

    def _padded(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_length:
            if width > self.pad_to_length:
                raise ValueError(f"an example of {width} tokens exceeds the fixed length "
                                 f"{self.pad_to_length}; over-long examples must be left "
                                 f"out before batching")
            width = self.pad_to_length
        elif self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        for i, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[i, :n] = torch.tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[i, :n] = 1
            labels[i, :n] = torch.tensor(self._labels(feature), dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def _packed(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for feature in features:
            example_labels = self._labels(feature)
            # The first token of an example is never a target: predicting it would mean
            # predicting across the boundary from the previous example's last token.
            example_labels[0] = IGNORE_INDEX
            input_ids += feature["input_ids"]
            labels += example_labels
            position_ids += range(len(feature["input_ids"]))
        # No attention_mask: from position_ids alone transformers builds a block-diagonal
        # causal mask, but only when no KV cache is in play, hence use_cache=False.
        return {"input_ids": torch.tensor([input_ids], dtype=torch.long),
                "labels": torch.tensor([labels], dtype=torch.long),
                "position_ids": torch.tensor([position_ids], dtype=torch.long),
                "use_cache": False}


def make_collator(collator_cfg: Any, tokenizer: PreTrainedTokenizerBase,
                  max_seq_length: int) -> Collator:
    """The collator named by ``collator_cfg.name`` (see conf/collator/)."""
    name = collator_cfg.name
    return Collator(
        pad_token_id=tokenizer.pad_token_id,
        loss_on_prompt=name != "completion_only",
        pad_to_multiple_of=collator_cfg.pad_to_multiple_of,
        pad_to_length=(collator_cfg.pad_to_length or max_seq_length) if name == "default"
        else None,
        packing=bool(collator_cfg.packing),
    )
