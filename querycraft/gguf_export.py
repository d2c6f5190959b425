"""Writing a Hugging Face model as a GGUF file that llama.cpp, Ollama and transformers read.

A converter of our own on the ``gguf`` package (its ``GGUFWriter``, ``TensorNameMap`` and
``quants``), not llama.cpp's ``convert_hf_to_gguf.py``: that script is not published as a
package (it lives in the llama.cpp repository and moves with it), and the families our
presets fine-tune on the CPU are few. Supported: the architectures llama.cpp runs as
``llama`` (Llama, Mistral, SmolLM, the tiny preset) and ``qwen2`` (Qwen2 / Qwen2.5, whose
attention has biases). Others are refused with the formats that remain (the merged HF model).

What is written, as llama.cpp's converter writes it:

* the hyperparameters (``llama.block_count``, ``.embedding_length``, heads, RoPE base and
  dimension, RMS-norm epsilon, context length);
* every tensor under llama.cpp's name; for ``llama`` the query and key projections' rows
  reordered to llama.cpp's rotary layout (transformers undoes it when it reads the file);
  1-D tensors (norms, biases) in float32; the others in the chosen type: ``f16``, ``bf16``,
  or ``q8_0`` (blocks of 32 with a scale; a tensor whose rows do not split into blocks
  stays f16);
* the tokenizer inside: a byte-level BPE (``tokenizer.ggml.model = gpt2``: tokens, merges,
  token types) or a SentencePiece-style one (``llama``: tokens, scores), the special token
  ids, whether a BOS is added, and the chat template.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from querycraft.errors import QueryCraftError

log = logging.getLogger("querycraft")

OUT_TYPES = ("f16", "bf16", "q8_0")
# model_type in config.json -> the GGUF architecture llama.cpp runs it as.
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
QK8_0 = 32  # values per Q8_0 block


def supported(model_type: str) -> bool:
    return model_type in ARCHITECTURES


def _types(out_type: str):
    from gguf import GGMLQuantizationType, LlamaFileType

    return {"f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
            "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
            "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0)}[out_type]


def _tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """The model's tensors as float32 arrays, shard by shard."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
             if index.is_file() else ["model.safetensors"])
    for name in files:
        path = model_dir / name
        if not path.is_file():
            raise QueryCraftError(f"{model_dir} has no {name}: GGUF export reads a model "
                                  "saved in safetensors (save_pretrained's default).")
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                yield key, handle.get_tensor(key).float().numpy()


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary halves -> llama.cpp's interleaved pairs (rows of q_proj / k_proj)."""
    rows = weights.shape[0]
    return (weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(data: np.ndarray, name: str, out_type: str):
    """(array to write, its GGML type) for one tensor."""
    from gguf import GGMLQuantizationType, quants

    if data.ndim <= 1 or name.endswith(".bias"):
        return data.astype(np.float32), GGMLQuantizationType.F32
    qtype, _ = _types(out_type)
    if out_type == "q8_0" and data.shape[-1] % QK8_0:
        qtype = GGMLQuantizationType.F16  # rows that do not split into blocks
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16), qtype
    return quants.quantize(data, qtype), qtype


def _tokenizer_fields(model_dir: Path) -> dict[str, Any]:
    """What the GGUF file holds of the tokenizer, read from tokenizer.json and its config."""
    from gguf import TokenType
    from transformers import AutoTokenizer

    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise QueryCraftError(f"{model_dir} has no tokenizer.json: GGUF export needs a fast "
                              "tokenizer saved with the model.")
    spec = json.loads(tok_file.read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = spec["model"]
    vocab: dict[str, int] = dict(model["vocab"]) if isinstance(model.get("vocab"), dict) else {}
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    for content, token in added.items():
        vocab[content] = token["id"]
    size = max(len(tokenizer), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        special = added.get(text, {}).get("special", False)
        types[index] = int(TokenType.CONTROL if special else
                           TokenType.USER_DEFINED if text in added else TokenType.NORMAL)
    fields: dict[str, Any] = {"tokens": tokens, "types": types}
    if model["type"] == "BPE":
        fields["model"] = "gpt2"
        fields["merges"] = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    else:
        raise QueryCraftError(f"The tokenizer of {model_dir} is a {model['type']} model; GGUF "
                              "export writes byte-level BPE tokenizers (Llama 3, Qwen2, "
                              "SmolLM, the tiny preset). Export the merged model instead.")
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
           "unk": tokenizer.unk_token_id, "pad": tokenizer.pad_token_id}
    fields["ids"] = {k: v for k, v in ids.items() if v is not None}
    probe = tokenizer("a")["input_ids"]
    fields["add_bos"] = bool(probe) and probe[0] == tokenizer.bos_token_id \
        and tokenizer.bos_token_id is not None
    fields["chat_template"] = getattr(tokenizer, "chat_template", None)
    return fields


def write_gguf(model_dir: str | Path, out_path: str | Path, out_type: str, *, name: str,
               tokenizer_pre: str = "default") -> dict[str, Any]:
    """Write the HF model in ``model_dir`` as one GGUF file of ``out_type``.

    Args:
        tokenizer_pre: llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``); the base
            model's own when it came from a GGUF file (its cache records it).

    Returns:
        Facts for the export report: path, bytes, tensor counts by type.

    Raises:
        QueryCraftError: an architecture, tokenizer or type this converter does not write.
    """
    from gguf import MODEL_ARCH, GGUFWriter, TensorNameMap

    if out_type not in OUT_TYPES:
        raise QueryCraftError(f"GGUF type '{out_type}' is not one of {', '.join(OUT_TYPES)}; "
                              "K-quants (q4_k_m, q5_k_m) come from llama-quantize.")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "")
    if model_type not in ARCHITECTURES:
        raise QueryCraftError(
            f"GGUF export writes {', '.join(sorted(ARCHITECTURES))} models; this one is "
            f"'{model_type}'. The merged model (HF format) is exported all the same; "
            "llama.cpp's convert_hf_to_gguf.py converts it to GGUF.")
    # transformers 5 keeps RoPE settings in rope_parameters; older configs in rope_theta and
    # rope_scaling.
    rope = {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type not in ("default", "linear"):
        raise QueryCraftError(f"The model's RoPE scaling ({rope}) is not written by this "
                              "converter; export the merged model instead.")
    rope_theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)
    arch = ARCHITECTURES[model_type]
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    names = TensorNameMap(MODEL_ARCH.LLAMA if arch == "llama" else MODEL_ARCH.QWEN2, layers)
    _, file_type = _types(out_type)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    writer = GGUFWriter(str(partial), arch)
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(int(file_type))
    if rope_type == "linear":
        from gguf import RopeScalingType

        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))

    tok = _tokenizer_fields(model_dir)
    writer.add_tokenizer_model(tok["model"])
    writer.add_tokenizer_pre(tokenizer_pre)
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    writer.add_token_merges(tok["merges"])
    for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        if key in tok["ids"]:
            add(int(tok["ids"][key]))
    writer.add_add_bos_token(tok["add_bos"])
    if tok["chat_template"]:
        writer.add_chat_template(tok["chat_template"])

    counts: dict[str, int] = {}
    tied = bool(config.get("tie_word_embeddings"))
    for hf_name, data in _tensors(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise QueryCraftError(f"The tensor {hf_name} has no llama.cpp name for a {arch} "
                                  "model; this converter cannot write this model.")
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif arch == "llama" and hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        encoded, qtype = _encode(data, gguf_name, out_type)
        writer.add_tensor(gguf_name, encoded, raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out_path)  # a failed export leaves no file that looks complete
    return {"path": str(out_path), "type": out_type, "bytes": out_path.stat().st_size,
            "tensors": counts}
