"""Model loading, shared by every stage: one ``from_pretrained`` path for all models.

A hub id, a local folder and the offline ``tiny`` preset all end in ``load_model``: the tiny
preset is first *built* into a folder (a Llama config with random weights and a tokenizer
trained on the training split), then loaded exactly like a downloaded model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from querycraft.errors import QueryCraftError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("querycraft")

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
                  "unk_token": "<unk>"}
DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def train_tokenizer(corpus: list[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer on ``corpus`` and save it in HF format.

    Byte-level means any text can be encoded, even characters the corpus never had.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL_TOKENS)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def small_model_config(architecture: str, *, vocab_size: int, hidden_size: int,
                       intermediate_size: int, num_layers: int, num_heads: int,
                       max_position_embeddings: int = 1024, **special_token_ids: int):
    """A transformers config of ``architecture`` (its model_type) at a small size.

    Used for the offline tiny model and to check the real presets' module names without
    downloading them: the module names depend on the architecture, not the size.
    """
    from transformers import AutoConfig

    # Some families default to ids beyond a small vocabulary (Phi-3 pads with 32000).
    special = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **special_token_ids}
    return AutoConfig.for_model(
        architecture,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        # Some families (Gemma) default to a head size larger than a small model's width.
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        **special,
    )


def build_tiny_model(model_cfg: DictConfig, corpus: list[str], out_dir: Path, seed: int) -> Path:
    """Build the offline preset into ``out_dir``: config, random weights, trained tokenizer.

    Args:
        model_cfg: the ``model`` config (its ``tiny`` node gives the shape).
        corpus: training texts for the tokenizer.
        out_dir: folder to write; loadable afterwards with ``from_pretrained``.
        seed: makes weights and tokenizer reproducible.
    """
    import torch
    from transformers import AutoModelForCausalLM

    shape = model_cfg.tiny
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus, shape.vocab_size, out_dir)
    config = small_model_config(
        model_cfg.architecture,
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    log.info("built tiny %s model: %.2fM parameters, vocabulary %d, in %s",
             model_cfg.architecture, params / 1e6, len(tokenizer), out_dir)
    return out_dir


def resolve_base(model_cfg: DictConfig, cache_dir: str) -> str:
    """What ``from_pretrained`` loads for a preset that is not built: a hub id or folder, or
    the folder a GGUF file (``model.gguf_file``) was converted into (made on first use)."""
    if model_cfg.gguf_file:
        from querycraft import gguf

        return str(gguf.ensure_hf_model(model_cfg.gguf_file, cache_dir))
    return str(model_cfg.name_or_path)


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False
                   ) -> PreTrainedTokenizerBase:
    """Load a tokenizer; models without a pad token pad with their end-of-sequence token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path,
                                                  trust_remote_code=trust_remote_code)
    except OSError as err:
        raise _missing_model(name_or_path, err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def compute_dtype(name: str) -> str:
    """The dtype 4-bit layers compute in: "auto" picks what the hardware does well."""
    # Not services.finetune.resolve_precision (the Trainer's autocast mode): on a CPU with
    # bfloat16 instructions that picks bf16 autocast, while 4-bit layers compute in float32.
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def quantization_config(quant_cfg: DictConfig | None):
    """A bitsandbytes config for ``peft.quantization``, or None for a full-precision base."""
    if quant_cfg is None or quant_cfg.bits is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise QueryCraftError(
            "Quantized fine-tuning (peft=qlora or peft=lora-8bit) needs bitsandbytes: "
            "pip install -e '.[qlora]' (or pip install bitsandbytes). Or use peft=lora for "
            "a full-precision base."
        ) from err
    import torch
    from transformers import BitsAndBytesConfig

    if quant_cfg.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_cfg.quant_type,
        bnb_4bit_use_double_quant=quant_cfg.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype(quant_cfg.compute_dtype)),
    )


def load_model(name_or_path: str, model_cfg: DictConfig,
               quant_cfg: DictConfig | None = None) -> PreTrainedModel:
    """Load a causal LM with the preset's dtype, from the hub or a local folder.

    Args:
        quant_cfg: ``peft.quantization``; with ``bits`` set the frozen weights are stored in
            4 or 8 bits (QLoRA / LLM.int8()), on the GPU of this process or on the CPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": DTYPES.get(model_cfg.dtype, "auto"),
                    "trust_remote_code": model_cfg.trust_remote_code}
    quantization = quantization_config(quant_cfg)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        # Quantized weights are placed at load time: on this process's GPU, or the CPU.
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        kwargs["device_map"] = {"": local_rank if torch.cuda.is_available() else "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        raise _missing_model(name_or_path, err) from err
    return model


def _missing_model(name_or_path: str, err: Exception) -> QueryCraftError:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return QueryCraftError(
        f"Could not load model '{name_or_path}' ({first_line}). If it is a hub id, check the "
        f"spelling and that this machine can reach the hub (or download it first and set "
        f"model.name_or_path to the local folder); if it is a folder, check that it holds "
        f"config.json, the weights and the tokenizer. To try QueryCraft offline use model=tiny."
    )


def lora_target_modules(peft_cfg: DictConfig, model_cfg: DictConfig) -> list[str]:
    """The module names LoRA attaches to: an explicit list, or a named set of the preset."""
    if peft_cfg.target_modules:
        return list(peft_cfg.target_modules)
    return list(model_cfg.target_modules[peft_cfg.targets])


def attach_lora(model: PreTrainedModel, peft_cfg: DictConfig, model_cfg: DictConfig, *,
                gradient_checkpointing: bool = False) -> PreTrainedModel:
    """Wrap ``model`` with a LoRA (or DoRA) adapter; only the adapter's weights train.

    A quantized base is first prepared for training (norms in float32, input gradients on).

    Raises:
        QueryCraftError: if a target module name matches nothing in the model.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = lora_target_modules(peft_cfg, model_cfg)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    absent = [t for t in targets if t not in names]
    if absent:
        raise QueryCraftError(
            f"LoRA target module(s) {', '.join(absent)} do not exist in {model_cfg.name}. "
            f"Its linear layers include: "
            f"{', '.join(sorted(n for n in names if n.endswith('proj'))) or 'none named *proj'}. "
            f"Fix peft.target_modules or the preset's target_modules."
        )
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing)
    lora = LoraConfig(
        r=peft_cfg.r,
        lora_alpha=peft_cfg.alpha,
        lora_dropout=peft_cfg.dropout,
        bias=peft_cfg.bias,
        target_modules=targets,
        modules_to_save=sorted({*(peft_cfg.modules_to_save or []),
                                *(model_cfg.modules_to_save or [])}) or None,
        use_dora=peft_cfg.use_dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def merge_adapter(base: str, adapter_dir: Path, model_cfg: DictConfig, out_dir: Path) -> Path:
    """Fold the adapter into the base weights and save one model in HF format.

    The base is reloaded unquantized (in the preset's dtype), since weights merged into a
    4-bit base would be rounded; the result loads with from_pretrained, no peft needed.
    """
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model(base, model_cfg), str(adapter_dir))
    merged = model.merge_and_unload()
    merged.save_pretrained(out_dir)
    load_tokenizer(str(adapter_dir)).save_pretrained(out_dir)
    log.info("merged adapter into %s", out_dir)
    return out_dir


def count_parameters(model: PreTrainedModel) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
