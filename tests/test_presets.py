"""Every model preset in conf/model/: it composes, its prompt template works, and its LoRA
target sets name real modules of its architecture.

Presets are discovered by glob, so a new YAML file is tested without touching this file. The
architectures are built small from their transformers config (no download): module names
depend on the architecture, not on the size.
"""

from __future__ import annotations

import re

import pytest
from omegaconf import DictConfig

from querycraft.errors import QueryCraftError
from querycraft.models import attach_lora, small_model_config
from querycraft.prompts import load_template, render_prompt
from tests.conftest import PROJECT_ROOT, make_config

# `local` names no model of its own (name_or_path is whatever folder the user gives), so
# there is no architecture or hub id to check.
PRESETS = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "model").glob("*.yaml")
                 if p.stem != "local")
BUILT_LOCALLY = {"tiny"}  # presets built from a config rather than downloaded
REQUIRED_SETS = ("attention", "all_linear")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # organisation/model
QUESTION = "How many singers are older than 30?"
CONTEXT = "CREATE TABLE singer (singer_id INT, name TEXT, age INT);"


def compose(name: str, tmp_path) -> DictConfig:
    return make_config(tmp_path, [f"model={name}"])


def build_small(architecture: str):
    """A one-layer model of ``architecture`` with random weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = small_model_config(architecture, vocab_size=128, hidden_size=64,
                                intermediate_size=128, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def leaf(module_name: str) -> str:
    return module_name.rsplit(".", 1)[-1]


def linear_leaf_names(model) -> set[str]:
    """Leaf names of the nn.Linear modules inside the decoder layers (lm_head is outside)."""
    from torch import nn

    return {leaf(name) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and ".layers." in name}


def test_presets_are_found():
    assert {"tiny", "mistral-7b"} <= set(PRESETS)
    assert "local" not in PRESETS


@pytest.mark.parametrize("name", PRESETS, ids=PRESETS)
def test_preset_composes_with_hub_id_template_and_target_sets(name, tmp_path):
    model = compose(name, tmp_path).model
    assert model.name == name  # the file name is the preset name users type

    if name in BUILT_LOCALLY:
        assert model.builder and model.name_or_path is None
    elif model.gguf_file:  # a GGUF file shipped in a Python package: pkg:<package>/<file>
        assert model.builder is None and model.name_or_path is None
        assert re.fullmatch(r"pkg:\w+/[\w.\-]+\.gguf", model.gguf_file), model.gguf_file
    else:
        assert model.builder is None
        assert model.name_or_path and HUB_ID.match(model.name_or_path), model.name_or_path
    assert model.dtype in {"auto", "float32", "bfloat16", "float16"}

    prompts_dir = PROJECT_ROOT / "prompts"
    assert (prompts_dir / f"{model.prompt_template}.txt").is_file()
    template = load_template(model.prompt_template, prompts_dir)
    prompt = render_prompt(template, question=QUESTION, context=CONTEXT, dialect="SQLite",
                           db_id="concert")
    assert QUESTION in prompt and CONTEXT in prompt and "SQLite" in prompt
    assert "{" not in prompt.replace(CONTEXT, "")  # every placeholder was filled
    # The tokenizer adds its own BOS token; a second one in the text would double it.
    assert not template.text.lstrip().startswith(("<s>", "<bos>", "<|begin_of_text|>"))

    sets = model.target_modules
    for required in REQUIRED_SETS:
        assert required in sets, f"{name} lacks the target set '{required}'"
    for set_name, modules in sets.items():
        assert modules, f"{name}: target set '{set_name}' is empty"
        assert len(set(modules)) == len(modules), f"{name}: '{set_name}' repeats a module"
        assert "lm_head" not in modules, f"{name}: '{set_name}' targets lm_head"
    assert set(sets["attention"]) < set(sets["all_linear"])


@pytest.mark.parametrize("name", PRESETS, ids=PRESETS)
def test_target_sets_name_modules_of_the_architecture(name, tmp_path):
    from torch import nn

    model_cfg = compose(name, tmp_path).model
    model = build_small(model_cfg.architecture)
    assert model.config.model_type == model_cfg.architecture
    modules = {leaf(n): m for n, m in model.named_modules() if n}

    for set_name, targets in model_cfg.target_modules.items():
        for target in targets:
            assert target in set(modules), (f"{name}: '{target}' of set '{set_name}' is not "
                                            f"a module of {model_cfg.architecture}")
            assert isinstance(modules[target], nn.Linear), f"{name}: '{target}' is not linear"
    decoder_linears = linear_leaf_names(model)
    assert decoder_linears, "no linear layer found inside the decoder layers"
    assert set(model_cfg.target_modules["all_linear"]) == decoder_linears, (
        f"{name}: all_linear must list exactly the decoder's linear layers "
        f"{sorted(decoder_linears)}")


@pytest.mark.parametrize("name", PRESETS, ids=PRESETS)
def test_lora_attaches_to_every_module_of_each_set_and_only_adapters_train(name, tmp_path):
    cfg = compose(name, tmp_path)
    saved = {*(cfg.model.modules_to_save or []), *(cfg.peft.modules_to_save or [])}
    for set_name in cfg.model.target_modules:
        peft_cfg = cfg.peft.copy()
        peft_cfg.targets = set_name
        peft_cfg.target_modules = None
        peft_cfg.r = 4
        targets = set(cfg.model.target_modules[set_name])
        base = build_small(cfg.model.architecture)
        expected = sorted(n for n, _ in base.named_modules() if leaf(n) in targets)
        assert expected

        model = attach_lora(base, peft_cfg, cfg.model)
        named = dict(model.named_modules())
        with_lora = sorted(n[: -len(".lora_A")] for n in named if n.endswith(".lora_A"))
        assert {leaf(n) for n in with_lora} == targets, f"{name}/{set_name}"
        assert len(with_lora) == len(expected), f"{name}/{set_name}: {with_lora}"
        for module_name in with_lora:
            assert "default" in named[module_name].lora_A

        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
        for param_name in trainable:
            assert "lora_" in param_name or ".modules_to_save." in param_name, (
                f"{name}/{set_name}: {param_name} trains but is not part of the adapter")
        for module in saved:
            assert any(f"{module}.modules_to_save." in n for n in trainable), (
                f"{name}/{set_name}: modules_to_save '{module}' is not trained")
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert any(".base_layer." in n for n in frozen)  # the base weights stay frozen


@pytest.mark.parametrize("name", PRESETS, ids=PRESETS)
def test_wrong_module_name_is_a_clear_error(name, tmp_path):
    cfg = compose(name, tmp_path)
    peft_cfg = cfg.peft.copy()
    peft_cfg.target_modules = [*cfg.model.target_modules["attention"], "qkv_projection"]
    with pytest.raises(QueryCraftError, match="qkv_projection"):
        attach_lora(build_small(cfg.model.architecture), peft_cfg, cfg.model)
