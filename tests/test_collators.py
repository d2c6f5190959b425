"""Which tokens carry loss, position by position, for each collator in conf/collator/."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from querycraft.config import CONFIG_DIR, CollatorConfig
from querycraft.data import IGNORE_INDEX, Collator, encode_example, make_collator
from querycraft.models import small_model_config, train_tokenizer
from querycraft.prompts import load_template
from tests.conftest import make_config

PAD, EOS = 0, 2
X = IGNORE_INDEX
# Two examples: prompt ids then SQL ids then end-of-sequence.
SHORT = {"input_ids": [1, 11, 12, 21, 22, EOS], "prompt_length": 3}
LONG = {"input_ids": [1, 11, 12, 13, 14, 21, 22, 23, EOS], "prompt_length": 5}


def collator(name: str, max_seq_length: int = 12, pad: int = PAD, **overrides) -> Collator:
    """The collator conf/collator/<name>.yaml configures, with ``overrides`` on top."""
    cfg = OmegaConf.merge(OmegaConf.structured(CollatorConfig),
                          OmegaConf.load(CONFIG_DIR / "collator" / f"{name}.yaml"), overrides)
    tokenizer = type("Tokenizer", (), {"pad_token_id": pad})()
    return make_collator(cfg, tokenizer, max_seq_length)


def test_completion_only_masks_the_prompt_and_keeps_sql_and_eos():
    batch = collator("completion_only")([SHORT, LONG])
    assert batch["input_ids"].tolist() == [[1, 11, 12, 21, 22, EOS, PAD, PAD, PAD],
                                           [1, 11, 12, 13, 14, 21, 22, 23, EOS]]
    assert batch["labels"].tolist() == [[X, X, X, 21, 22, EOS, X, X, X],
                                        [X, X, X, X, X, 21, 22, 23, EOS]]
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0] * 3, [1] * 9]


def test_language_modeling_trains_on_prompt_too_but_never_on_padding():
    batch = collator("language_modeling")([SHORT, LONG])
    assert batch["labels"].tolist() == [[1, 11, 12, 21, 22, EOS, X, X, X],
                                        [1, 11, 12, 13, 14, 21, 22, 23, EOS]]


def test_seq2seq_pads_to_a_multiple_of_eight_with_ignored_labels():
    batch = collator("seq2seq")([SHORT, LONG])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["labels"].tolist() == [[1, 11, 12, 21, 22, EOS] + [X] * 10,
                                        [1, 11, 12, 13, 14, 21, 22, 23, EOS] + [X] * 7]


def test_default_pads_every_example_to_the_fixed_length():
    batch = collator("default", max_seq_length=12)([SHORT])
    assert batch["input_ids"].tolist() == [[1, 11, 12, 21, 22, EOS] + [PAD] * 6]
    assert batch["labels"].tolist() == [[1, 11, 12, 21, 22, EOS] + [X] * 6]
    with pytest.raises(ValueError, match="exceeds the fixed length"):
        collator("default", max_seq_length=8)([LONG])


def test_default_fixed_length_can_be_set_apart_from_max_seq_length():
    batch = collator("default", max_seq_length=12, pad_to_length=10)([SHORT])
    assert batch["input_ids"].shape == (1, 10)


@pytest.mark.parametrize("name", ["completion_only", "language_modeling", "seq2seq", "default"])
def test_eos_keeps_its_loss_when_the_model_pads_with_it(name):
    # Models without a pad token pad with EOS; the EOS that ends the SQL must still be learned.
    batch = collator(name, pad=EOS)([SHORT, LONG])
    row = batch["labels"][0].tolist()
    assert row[5] == EOS
    assert set(row[6:]) == {X}
    assert batch["input_ids"][0, 6:].eq(EOS).all()


def test_packing_lays_examples_end_to_end_with_restarting_positions():
    batch = collator("completion_only", packing=True)([SHORT, LONG])
    assert batch["input_ids"].tolist() == [SHORT["input_ids"] + LONG["input_ids"]]
    assert batch["position_ids"].tolist() == [list(range(6)) + list(range(9))]
    assert batch["labels"].tolist() == [[X, X, X, 21, 22, EOS, X, X, X, X, X, 21, 22, 23, EOS]]
    assert "attention_mask" not in batch
    assert batch["use_cache"] is False  # a KV cache would switch off the packed mask
    lm = collator("language_modeling", packing=True)([SHORT, LONG])
    # The first token of each example is never a target (it would be predicted across).
    assert lm["labels"].tolist() == [[X, 11, 12, 21, 22, EOS, X, 11, 12, 13, 14, 21, 22, 23,
                                      EOS]]


def test_packed_loss_equals_padded_loss_so_examples_do_not_attend_across():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = small_model_config("llama", vocab_size=32, hidden_size=32, intermediate_size=64,
                                num_layers=2, num_heads=2)
    model = AutoModelForCausalLM.from_config(config).eval()
    features = [SHORT, LONG, SHORT]
    padded = collator("completion_only")(features)
    packed = collator("completion_only", packing=True)(features)
    with torch.no_grad():
        padded_loss = model(**padded).loss
        packed_loss = model(**packed).loss
        # Without restarting positions the second example would see the first: the loss moves.
        leaky = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
        # With a KV cache transformers ignores the packed layout: the loss moves too.
        cached_loss = model(**dict(packed, use_cache=True)).loss
        leaky_loss = model(**leaky).loss
    assert packed_loss.item() == pytest.approx(padded_loss.item(), abs=1e-5)
    assert abs(leaky_loss.item() - padded_loss.item()) > 1e-3
    assert abs(cached_loss.item() - padded_loss.item()) > 1e-3


def test_real_tokenizer_boundary_puts_loss_exactly_on_sql_and_eos(tmp_path):
    template = load_template("default", make_config(tmp_path).paths.prompts_dir)
    row = {"question": "How many singers are there?", "query": "SELECT count(*) FROM singer",
           "context": "CREATE TABLE singer (id INT)"}
    tokenizer = train_tokenizer([row["question"] + row["query"] + row["context"]] * 3, 300,
                                tmp_path / "tok")
    example = encode_example(row, template, "SQLite", tokenizer)
    batch = collator("completion_only")([example])
    carried = [t for t in batch["labels"][0].tolist() if t != X]
    assert tokenizer.decode(carried[:-1]) == row["query"]
    assert carried[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("name,packing", [("completion_only", False), ("completion_only", True),
                                          ("language_modeling", False), ("default", False)])
def test_loss_from_labelled_positions_only_equals_the_full_loss(name, packing):
    """Finetune projects only the positions that carry loss onto the vocabulary; the loss and
    its gradients must be what the model computes from every position's logits."""
    from transformers import AutoModelForCausalLM

    from querycraft.services.finetune import label_logits_mask, selected_logits_loss

    torch.manual_seed(0)
    config = small_model_config("llama", vocab_size=32, hidden_size=32, intermediate_size=64,
                                num_layers=2, num_heads=2)
    model = AutoModelForCausalLM.from_config(config)
    batch = collator(name, packing=packing)([SHORT, LONG, SHORT])
    full = model(**batch).loss
    full.backward()
    full_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total, count = selected_logits_loss(model, batch)
    (total / count).backward()
    assert count == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert (total / count).item() == pytest.approx(full.item(), abs=1e-5)
    for expected, param in zip(full_grads, model.parameters(), strict=True):
        torch.testing.assert_close(param.grad, expected, atol=1e-6, rtol=1e-4)
    # Only the labelled positions are projected: never the padding, nor a masked prompt.
    kept = int(label_logits_mask(batch["labels"]).sum())
    assert kept == count < batch["input_ids"].numel()
