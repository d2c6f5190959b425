"""From dataset rows to token ids and batches, for training; shared prompt rendering.

The prompt is tokenized on its own and the target appended, so the ids a model is trained
on start with exactly the ids ``infer`` gives it when asking for SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from querycraft.prompts import PromptTemplate, render_prompt, render_target

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label value the loss skips


def prompt_for(row: dict[str, Any], template: PromptTemplate, dialect: str) -> str:
    """The prompt for a dataset row (training and inference alike)."""
    return render_prompt(template, question=row["question"], context=row.get("context", ""),
                         dialect=dialect, db_id=row.get("db_id", ""))


def encode_example(row: dict[str, Any], template: PromptTemplate, dialect: str,
                   tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Token ids of prompt + SQL + end-of-sequence, and where the SQL starts."""
    prompt_ids = tokenizer(prompt_for(row, template, dialect))["input_ids"]
    target_ids = tokenizer(render_target(template, row["query"]),
                           add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + target_ids + [tokenizer.eos_token_id],
            "prompt_length": len(prompt_ids)}


@dataclass
class Collator:
    """Pads a batch to its longest example (dynamic padding) and builds labels.

    ``completion_only``: loss on the SQL and the end-of-sequence token only.
    ``language_modeling``: loss on every real token, prompt included.
    Padding never carries loss.
    """

    pad_token_id: int
    completion_only: bool = True
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        for i, feature in enumerate(features):
            ids = torch.tensor(feature["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
            first_label = feature["prompt_length"] if self.completion_only else 0
            labels[i, first_label: len(ids)] = ids[first_label:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def make_collator(name: str, tokenizer: PreTrainedTokenizerBase,
                  pad_to_multiple_of: int | None = None) -> Collator:
    return Collator(pad_token_id=tokenizer.pad_token_id,
                    completion_only=(name == "completion_only"),
                    pad_to_multiple_of=pad_to_multiple_of)
