"""Export: a finetune run's model as files that run outside QueryCraft.

``python -m querycraft service=export`` takes a finetune run (``export.finetune_dir``; null:
the newest completed one) and writes, in its run folder:

* ``merged_model/``: base + adapter folded into one Hugging Face model (the merge code
  finetune's ``train.merge_adapter`` uses). A QLoRA adapter is merged into the base loaded
  in full precision, never into 4-bit weights (which would round the merge);
* ``<name>-<type>.gguf`` for each GGUF type in ``export.formats`` (``f16``, ``bf16``,
  ``q8_0``: :mod:`querycraft.gguf_export`, no compiler needed; ``q4_k_m``, ``q5_k_m``...:
  llama.cpp's ``llama-quantize`` from the f16 file, when it is on PATH);
* ``Modelfile`` for Ollama, its TEMPLATE the run's own prompt template (the schema as the
  system message, the question as the prompt) and its stop string, greedy;
* ``README.md`` with the commands for Ollama, llama.cpp and vLLM, and ``export.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from querycraft import models
from querycraft.artifacts import FinetuneArtifact
from querycraft.errors import QueryCraftError
from querycraft.gguf_export import OUT_TYPES, write_gguf
from querycraft.prompts import PromptTemplate, parse_template
from querycraft.runs import resolve_run, start_run

log = logging.getLogger("querycraft")

# llama-quantize's K-quant types (and their file names, lower-case).
K_QUANTS = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m",
            "q6_k")
FORMATS = ("merged", *OUT_TYPES, *K_QUANTS)
# Placeholders of the Ollama TEMPLATE (Go template syntax).
OLLAMA_SYSTEM, OLLAMA_PROMPT = "{{ .System }}", "{{ .Prompt }}"


@dataclass
class ExportConfig:
    # A finetune run folder; null: the newest completed finetune run under output/.
    finetune_dir: str | None = None
    # What to write: merged (the HF model; always written, the GGUF files are made from it),
    # f16, bf16, q8_0 (GGUF, written here), q4_k_m, q5_k_m... (GGUF via llama-quantize).
    formats: list[str] = field(default_factory=lambda: ["merged", "f16", "q8_0"])
    # The model's name in the files and in Ollama; null: querycraft-<finetune run folder>.
    name: str | None = None
    # Write an Ollama Modelfile (and point it at this GGUF type; null: the smallest written).
    ollama: bool = True
    ollama_format: str | None = None
    # Tokens the Modelfile lets the model write (num_predict).
    max_new_tokens: int = 256
    # llama.cpp's quantizer (a name on PATH or a path), for the K-quant formats.
    llama_quantize: str = "llama-quantize"


SETTINGS = ExportConfig


def check(cfg: DictConfig) -> list[str]:
    """The export.* settings."""
    e, problems = cfg.export, []
    unknown = [f for f in e.formats if str(f).lower() not in FORMATS]
    if unknown:
        problems.append(f"export.formats names unknown format(s) {', '.join(map(str, unknown))}"
                        f"; the formats are {', '.join(FORMATS)}")
    if e.ollama_format is not None and str(e.ollama_format).lower() not in FORMATS[1:]:
        problems.append(f"export.ollama_format must be a GGUF format ({', '.join(FORMATS[1:])}"
                        f") or null, got '{e.ollama_format}'")
    if e.max_new_tokens < 1:
        problems.append("export.max_new_tokens must be at least 1")
    if e.name is not None and not str(e.name).replace("-", "").replace("_", "").replace(
            ".", "").isalnum():
        problems.append(f"export.name '{e.name}' may hold letters, digits, '-', '_' and '.' "
                        "only (it names files and the Ollama model)")
    return problems


# ---------------------------------------------------------------- Ollama


def _go_literal(text: str) -> str:
    """Text for a Go template: a literal ``{{`` or ``}}`` written as a template action."""
    return text.replace("{{", "\x00").replace("}}", "\x01").replace(
        "\x00", '{{ "{{" }}').replace("\x01", '{{ "}}" }}')


def ollama_template(template: PromptTemplate, dialect: str, db_id: str = "") -> str:
    """The prompt template as an Ollama TEMPLATE: the schema is the system message, the
    question the prompt; rendered with them it is the training prompt, character for
    character."""
    marks = {"context": "\x02", "question": "\x03"}
    # {values} (ingest.value_index) are matched per question by QueryCraft; a Modelfile
    # cannot, so the section stays empty there (ask and serve fill it).
    text = template.prefix.format(context=marks["context"], question=marks["question"],
                                  dialect=dialect, db_id=db_id, values="", previous_sql="",
                                  error="")
    return _go_literal(text).replace(marks["context"], OLLAMA_SYSTEM).replace(
        marks["question"], OLLAMA_PROMPT)


def modelfile(gguf_name: str, template: PromptTemplate, dialect: str, db_id: str,
              max_new_tokens: int) -> str:
    if "{values}" in template.prefix:
        log.warning("export: the prompt template has {values}; the Ollama Modelfile leaves "
                    "that section empty (the values are matched per question by QueryCraft: "
                    "use service=serve or ask for value-aware prompts)")
    if '"""' in template.prefix:
        raise QueryCraftError('The prompt template holds """, which ends an Ollama TEMPLATE; '
                              "change the template or write the Modelfile by hand.")
    lines = [f"FROM ./{gguf_name}", "",
             f'TEMPLATE """{ollama_template(template, dialect, db_id)}"""', "",
             "PARAMETER temperature 0", f"PARAMETER num_predict {max_new_tokens}"]
    if template.stop_string:
        lines.append(f"PARAMETER stop {json.dumps(template.stop_string)}")
    return "\n".join(lines) + "\n"


def _readme(name: str, files: dict[str, Any], ollama: str | None, dialect: str) -> str:
    ggufs = [f for f in files.values() if f.get("gguf")]
    first = ggufs[0]["file"] if ggufs else "<a .gguf file>"
    lines = [f"# {name}", "",
             "Exported by `python -m querycraft service=export`. Files:", ""]
    lines += [f"- `{f['file']}`: {f['format']}, {f['bytes'] / 2**20:.1f} MiB"
              for f in files.values() if f.get("bytes")]
    lines += ["", "The model writes SQL for a prompt built from the schema (CREATE TABLE "
              f"statements) and a question, in {dialect}; it was trained on exactly that "
              "prompt.", ""]
    if ollama:
        lines += ["## Ollama", "", "```bash", f"ollama create {name} -f Modelfile",
                  "# the schema as the system message, the question as the prompt:",
                  f"curl http://127.0.0.1:11434/api/generate -d '{{\"model\": \"{name}\", "
                  "\"system\": \"CREATE TABLE ...\", \"prompt\": \"How many orders shipped?\", "
                  "\"stream\": false}'", "```", ""]
    lines += ["## llama.cpp", "", "```bash",
              f"llama-server -m {first} --port 8080      # OpenAI-compatible, /v1",
              "python -m querycraft service=infer infer.backend=openai \\",
              "    infer.server.base_url=http://127.0.0.1:8080/v1 infer.finetune_dir=<the "
              "finetune run>", "```", "",
              "`infer.backend=openai` sends the training prompt as is (the completions API), "
              "so llama.cpp's server and vLLM answer exactly as the model was trained.", "",
              "## vLLM", "", "```bash",
              "vllm serve merged_model --port 8000", "python -m querycraft service=infer "
              "infer.backend=openai infer.server.base_url=http://127.0.0.1:8000/v1 \\",
              "    infer.finetune_dir=<the finetune run>", "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- entry


def _tokenizer_pre(base_model: str, merged: str | Path) -> str:
    """llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``): the base's own when it came
    from a GGUF file (the cache folder records its source); "gpt-2" for a tokenizer that
    splits text exactly as GPT-2 does (byte-level with its regex, nothing else: the tiny
    preset's), since llama.cpp's "default" cuts numbers into groups of three and would make
    other tokens of "2021" than the tokenizer trained on; else "default"."""
    from querycraft import gguf

    source = Path(base_model) / gguf.SOURCE_FILE
    try:
        path = Path(json.loads(source.read_text())["gguf_file"])
        from gguf import GGUFReader

        field_ = GGUFReader(path).fields.get("tokenizer.ggml.pre")
        return str(field_.contents()) if field_ is not None else "default"
    except (OSError, ValueError, KeyError):
        pass
    try:
        pre = json.loads((Path(merged) / "tokenizer.json").read_text()).get("pre_tokenizer")
    except (OSError, ValueError):
        return "default"
    gpt2 = isinstance(pre, dict) and pre.get("type") == "ByteLevel" \
        and pre.get("use_regex", True) and not pre.get("add_prefix_space", False)
    return "gpt-2" if gpt2 else "default"


def _single_db_id(finetune: FinetuneArtifact) -> str:
    """The db_id all training rows share (for a template that names it), else ""."""
    try:
        ingest = finetune.ingest()
        rows = (ingest.split_file("train").read_text(encoding="utf-8").splitlines()
                if ingest.dataset is not None else [])
    except (QueryCraftError, OSError):
        return ""
    ids = {json.loads(r).get("db_id", "") for r in rows[:10_000] if r.strip()}
    return ids.pop() if len(ids) == 1 else ""


def run(cfg: DictConfig) -> Path:
    """Export the finetune run's model.

    Returns:
        The run folder.

    Raises:
        QueryCraftError: no finetune run, or the model cannot be merged.
    """
    settings = cfg.export
    finetune_dir = resolve_run(settings.finetune_dir, cfg.paths.output_dir, "finetune",
                               "export.finetune_dir")
    finetune = FinetuneArtifact.read(finetune_dir)
    template = parse_template(finetune.prompt_template.read_text(encoding="utf-8"),
                              name=str(finetune.prompt_template))
    saved = OmegaConf.load(finetune_dir / "config.yaml") \
        if (finetune_dir / "config.yaml").is_file() else cfg
    name = settings.name or f"querycraft-{finetune_dir.name}"
    wanted = [str(f).lower() for f in settings.formats]
    with start_run(cfg, "export") as run_:
        files: dict[str, dict[str, Any]] = {}
        seconds: dict[str, float] = {}
        began = time.perf_counter()
        merged = run_.path("merged_model")
        if finetune.quantization is not None:
            log.info("export: the adapter was trained on a %s-bit base; it is merged into the "
                     "base loaded in full precision (%s)", finetune.quantization.get("bits"),
                     saved.model.dtype)
        models.merge_adapter(finetune.base_model, finetune.adapter, saved.model, merged)
        seconds["merged"] = round(time.perf_counter() - began, 2)
        files["merged"] = {"file": "merged_model", "format": "merged (HF safetensors)",
                           "bytes": sum(p.stat().st_size for p in merged.rglob("*")
                                        if p.is_file())}
        gguf_types = [f for f in wanted if f in OUT_TYPES]
        k_quants = [f for f in wanted if f in K_QUANTS]
        quantizer = shutil.which(settings.llama_quantize) if k_quants else None
        if k_quants and quantizer is None:
            log.warning("export: %s need llama.cpp's llama-quantize (export.llama_quantize="
                        "%s), which is not on PATH; skipped. Formats available without it: "
                        "merged, %s.", ", ".join(k_quants), settings.llama_quantize,
                        ", ".join(OUT_TYPES))
            files.update({k: {"format": k, "skipped": f"{settings.llama_quantize} is not on "
                              f"PATH; available: merged, {', '.join(OUT_TYPES)}"}
                          for k in k_quants})
            k_quants = []
        if k_quants and "f16" not in gguf_types:
            gguf_types.append("f16")  # llama-quantize starts from it
        pre = _tokenizer_pre(finetune.base_model, merged)
        for out_type in tqdm(gguf_types, desc="GGUF", unit="file"):
            began = time.perf_counter()
            fact = write_gguf(merged, run_.path(f"{name}-{out_type}.gguf"), out_type,
                              name=name, tokenizer_pre=pre)
            seconds[out_type] = round(time.perf_counter() - began, 2)
            files[out_type] = {"file": Path(fact["path"]).name, "format": f"GGUF {out_type}",
                               "bytes": fact["bytes"], "tensors": fact["tensors"],
                               "gguf": True}
        for k_quant in k_quants:
            began = time.perf_counter()
            target = run_.path(f"{name}-{k_quant}.gguf")
            done = subprocess.run([quantizer, str(run_.path(f"{name}-f16.gguf")), str(target),
                                   k_quant.upper()], capture_output=True, text=True)
            if done.returncode:
                files[k_quant] = {"format": k_quant, "failed": done.stderr[-500:]}
                log.warning("export: llama-quantize %s failed: %s", k_quant, done.stderr[-300:])
                continue
            seconds[k_quant] = round(time.perf_counter() - began, 2)
            files[k_quant] = {"file": target.name, "format": f"GGUF {k_quant}",
                              "bytes": target.stat().st_size, "gguf": True}
        ollama_file = None
        written = [f for f in (*OUT_TYPES, *K_QUANTS) if files.get(f, {}).get("gguf")]
        if settings.ollama and written:
            choice = str(settings.ollama_format).lower() if settings.ollama_format else min(
                written, key=lambda f: files[f]["bytes"])
            if choice not in written:
                raise QueryCraftError(f"export.ollama_format={choice} was not written; add it "
                                      f"to export.formats (written: {', '.join(written)}).")
            run_.path("Modelfile").write_text(
                modelfile(files[choice]["file"], template, finetune.prompt_dialect,
                          _single_db_id(finetune), settings.max_new_tokens),
                encoding="utf-8")
            ollama_file = files[choice]["file"]
        elif settings.ollama:
            log.warning("export: no GGUF file was written, so no Ollama Modelfile; add f16 or "
                        "q8_0 to export.formats")
        run_.path("README.md").write_text(_readme(name, files, ollama_file,
                                                  finetune.prompt_dialect), encoding="utf-8")
        report = {"finetune_run": str(finetune_dir), "name": name,
                  "base_model": finetune.base_model, "adapter": str(finetune.adapter),
                  "quantized_base": finetune.quantization is not None, "files": files,
                  "seconds": seconds, "modelfile_uses": ollama_file,
                  "prompt_dialect": finetune.prompt_dialect}
        run_.path("export.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        run_.record(finetune_run=str(finetune_dir), name=name, files=files, seconds=seconds)
        for fact in files.values():
            if fact.get("bytes"):
                log.info("export: %s (%.1f MiB)", run_.path(fact["file"]),
                         fact["bytes"] / 2**20)
    return run_.dir
