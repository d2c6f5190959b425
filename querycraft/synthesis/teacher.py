"""Teachers for ``service=synthesize``: a model that writes questions (and, teacher-first,
whole question/SQL pairs) from the database's schema.

Two kinds, one interface (:class:`Teacher.complete`: prompts in, texts and token counts out):

* ``openai``: any OpenAI-compatible server (a hosted large model behind such an endpoint,
  vLLM, Ollama, llama.cpp's server, or QueryCraft's own ``service=serve``), through the chat
  API (the prompt as one user message) or the completions API (the prompt as is); requests
  run ``teacher.concurrency`` at a time;
* ``local``: a model loaded here with transformers (the ``model`` group's base, a GGUF preset
  included, or a finetune run's model), prompts generated in batches of
  ``teacher.batch_size``; the chat API applies the tokenizer's chat template when it has one.

The prompts are text files in ``prompts/`` (``teacher.question_prompt``, ``sql_prompt``,
``pairs_prompt``) with ``{field}`` slots; this module fills them and reads the answers
(:func:`first_line_question`, :func:`parse_pairs`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig
from sqlglot import exp

from querycraft.errors import QueryCraftError

log = logging.getLogger("querycraft")

TEACHER_KINDS = ("none", "openai", "local")
TEACHER_APIS = ("chat", "completions")
AGREEMENT = ("required", "preferred", "off")
# Slots each prompt file must have (the others it may use: KNOWN_SLOTS).
PROMPT_SLOTS = {"question_prompt": ("sql",), "sql_prompt": ("question",),
                "pairs_prompt": ("count",)}
KNOWN_SLOTS = ("dialect", "schema", "sql", "question", "style", "style_hint", "count",
               "focus", "examples")


@dataclass
class TeacherConfig:
    # none: questions from built-in templates | openai: an OpenAI-compatible server
    # (synthesize.teacher.base_url) | local: a model loaded here (the model group's base, or
    # synthesize.teacher.finetune_dir).
    kind: str = "none"
    # openai: the server's /v1 address, e.g. http://127.0.0.1:11434/v1 (Ollama),
    # http://127.0.0.1:8080/v1 (llama.cpp), or QueryCraft's service=serve.
    base_url: str = "http://127.0.0.1:8000/v1"
    # openai: the served model's name (null: the first one the server lists).
    model: str | None = None
    # chat (the prompt as one user message; hosted and instruct models) | completions (the
    # prompt as is; QueryCraft's serve, base models).
    api: str = "chat"
    # Name of the environment variable holding the API key (never the key itself).
    api_key_env: str | None = None
    timeout_s: float = 120.0
    # openai: requests in flight at once.
    concurrency: int = 4
    # local: prompts per generate call.
    batch_size: int = 8
    # local: a finetune run whose model (base + adapter) teaches; null: the model group's base.
    finetune_dir: str | None = None
    # Question styles and how each is asked for; every query gets one candidate per style.
    styles: dict[str, str] = field(default_factory=lambda: {
        "formal": "a complete, formal sentence, as in a written request to an analyst",
        "colloquial": "casual, the way a colleague asks in a chat message",
        "terse": "as short as possible, a few words, like a search-box query",
    })
    # How the question is chosen among the styles' candidates. The teacher writes SQL back
    # from each candidate (sql_prompt); a candidate agrees when that SQL returns the same
    # result as the query. required: keep the pair only with an agreeing question;
    # preferred: an agreeing one if any, else the first style's; off: no back-translation.
    agreement: str = "required"
    max_new_tokens: int = 96
    sql_max_new_tokens: int = 256
    pairs_max_new_tokens: int = 1024
    # 0: greedy (the same answers on a rerun, so a resumed run matches an uninterrupted one).
    temperature: float = 0.0
    question_prompt: str = "synthesize/question.txt"
    sql_prompt: str = "synthesize/sql.txt"
    pairs_prompt: str = "synthesize/pairs.txt"
    # Sample values per column shown in the schema the teacher reads.
    sample_values: int = 3
    # teacher_first: pairs asked for per request, and requests at most (null: 4 x as many as
    # the pairs asked for need).
    pairs_per_request: int = 5
    max_requests: int | None = None


def check_teacher(t: DictConfig, mode: str, prompts_dir: str | Path) -> list[str]:
    """The synthesize.teacher.* settings (prompt files included)."""
    problems = []
    if t.kind not in TEACHER_KINDS:
        problems.append(f"synthesize.teacher.kind '{t.kind}' is not one of "
                        f"{', '.join(TEACHER_KINDS)}")
    if t.api not in TEACHER_APIS:
        problems.append(f"synthesize.teacher.api '{t.api}' is not one of "
                        f"{', '.join(TEACHER_APIS)}")
    if t.agreement not in AGREEMENT:
        problems.append(f"synthesize.teacher.agreement '{t.agreement}' is not one of "
                        f"{', '.join(AGREEMENT)}")
    if not t.styles:
        problems.append("synthesize.teacher.styles must name at least one style")
    for name in ("concurrency", "batch_size", "max_new_tokens", "sql_max_new_tokens",
                 "pairs_max_new_tokens", "pairs_per_request"):
        if t[name] < 1:
            problems.append(f"synthesize.teacher.{name} must be at least 1, got {t[name]}")
    if t.max_requests is not None and t.max_requests < 1:
        problems.append("synthesize.teacher.max_requests must be at least 1, or null")
    if t.temperature < 0:
        problems.append("synthesize.teacher.temperature must be 0 (greedy) or more")
    if mode == "teacher_first" and t.kind == "none":
        problems.append("synthesize.mode=teacher_first needs a teacher: set "
                        "synthesize.teacher.kind=openai (with synthesize.teacher.base_url) or "
                        "local")
    if t.kind != "none":
        wanted = (["pairs_prompt"] if mode == "teacher_first"
                  else ["question_prompt"] + (["sql_prompt"] if t.agreement != "off" else []))
        for key in wanted:
            try:
                read_prompt(t[key], prompts_dir, key)
            except QueryCraftError as err:
                problems.append(str(err))
    return problems


# ---------------------------------------------------------------- prompts


def read_prompt(name_or_path: str, prompts_dir: str | Path, key: str) -> str:
    """A prompt file's text: a path, or a name in ``prompts/``; its required slots checked."""
    path = Path(name_or_path)
    if not path.is_file():
        path = Path(prompts_dir) / name_or_path
    if not path.is_file():
        raise QueryCraftError(f"synthesize.teacher.{key}: no prompt file '{name_or_path}' (as "
                              f"a path or in {prompts_dir}); copy prompts/synthesize/*.txt and "
                              "point the setting at your copy.")
    text = path.read_text(encoding="utf-8")
    missing = [s for s in PROMPT_SLOTS[key] if "{" + s + "}" not in text]
    if missing:
        raise QueryCraftError(f"synthesize.teacher.{key} ({path}) lacks the slot(s) "
                              f"{', '.join('{' + s + '}' for s in missing)}; the slots a "
                              f"synthesize prompt may use: "
                              f"{', '.join('{' + s + '}' for s in KNOWN_SLOTS)}.")
    return text


def fill(template: str, **values: Any) -> str:
    """``{slot}`` replaced for the known slots only: other braces (JSON in an example) stay."""
    return re.sub(r"\{(\w+)\}",
                  lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0),
                  template)


_LEAD_IN = re.compile(r"^\s*(?:[-*\d.)\s]*)?(?:\*\*)?(?:question|q|answer)\s*[:：]\s*(?:\*\*)?",
                      re.IGNORECASE)


def first_line_question(text: str) -> str:
    """The question in a teacher's answer: its first line that ends with a question mark,
    else its first line that is not a lead-in ("Here is the question:"), without a
    "Question:" label, quotes or list markers."""
    lines = [" ".join(_LEAD_IN.sub("", line).strip().strip("\"'`*").split())
             for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    asked = [line for line in lines if line.endswith("?")]
    if asked:
        return asked[0]
    stated = [line for line in lines if not line.endswith(":")]
    return stated[0] if stated else ""


_LABEL_END = r"(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*"  # "Question:", "**Question:**", "**SQL**:"
_QUESTION_LABEL = r"(?:[-*]|\d+[.)])?\s*(?:\*\*)?question" + _LABEL_END
_PAIR = re.compile(r"(?:^|\n)\s*" + _QUESTION_LABEL + r"(?P<question>.+?)\s*\n\s*(?:\*\*)?"
                   r"(?:sql|query)" + _LABEL_END + r"(?P<sql>.+?)(?=\n\s*" + _QUESTION_LABEL
                   + r"|\n\s*\n|\Z)", re.IGNORECASE | re.DOTALL)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """The ``Question: ... / SQL: ...`` pairs in a teacher's answer (the SQL may span lines
    and sit in a code fence), in order."""
    pairs = []
    for match in _PAIR.finditer(text):
        question = first_line_question(match.group("question"))
        sql = match.group("sql").strip()
        sql = re.sub(r"^```[a-zA-Z]*\s*|\s*```\s*$", "", sql).strip().rstrip(";").strip()
        if question and sql:
            pairs.append((question, sql))
    return pairs


# What a teacher-first request asks the teacher to focus on, per feature.
FOCUS = {
    "projection": "listing columns of one table",
    "filter": "rows filtered on real values of a column",
    "join": "questions that join two tables along a foreign key",
    "aggregation": "counts, sums, averages, minimums and maximums",
    "group_by": "results per group (GROUP BY), some with HAVING",
    "order_limit": "the top or bottom few rows (ORDER BY ... LIMIT)",
    "null": "missing values (IS NULL / IS NOT NULL)",
    "date": "dates: a year, before or after a day, earliest or latest",
    "nested": "nested queries (IN, NOT IN, comparison with a subquery)",
    "set_operation": "UNION, INTERSECT or EXCEPT of two queries",
}


def feature_of(tree: exp.Expression) -> tuple[str, tuple[str, ...]]:
    """A teacher-written query's feature (the one its spread is counted on, the most
    specific it has) and the others it uses."""
    from querycraft.sql_analysis import sql_features

    found = set(sql_features(tree.sql(), "sqlite"))
    if tree.find(exp.Is) is not None:
        found.add("null")
    if any(isinstance(node, exp.Literal) and node.is_string
           and re.fullmatch(r"\d{4}(-\d\d(-\d\d)?)?", node.this) for node in tree.walk()):
        found.add("date")
    order = ("set_operation", "nested", "group_by", "join", "null", "date", "order_limit",
             "aggregation", "filter")
    aliases = {"order_limit": {"order_by", "limit"}, "filter": {"where"},
               "group_by": {"group_by", "having"}}
    for feature in order:
        if found & aliases.get(feature, {feature}):
            return feature, tuple(sorted(found - {feature}))
    return "projection", tuple(sorted(found))


# ---------------------------------------------------------------- teachers


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # this request failed (the others go on)


@dataclass
class Usage:
    """What the teacher was asked for: requests, tokens, seconds (summed over a run and its
    resumptions)."""

    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: Usage | dict[str, Any]) -> None:
        values = other if isinstance(other, dict) else other.as_dict()
        for key in ("requests", "failed", "prompt_tokens", "completion_tokens", "seconds"):
            setattr(self, key, getattr(self, key) + values.get(key, 0))

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3)}


class Teacher(Protocol):
    name: str  # recorded in the CSV's teacher column

    def complete(self, prompts: list[str], max_new_tokens: int) -> tuple[list[Completion],
                                                                           Usage]: ...


class OpenAITeacher:
    """An OpenAI-compatible server: each prompt one request, ``concurrency`` at a time."""

    def __init__(self, t: DictConfig) -> None:
        from querycraft.backends import OpenAIClient

        self.settings = t
        self.client = OpenAIClient(t.base_url, timeout_s=t.timeout_s,
                                   api_key_env=t.api_key_env,
                                   setting="synthesize.teacher.base_url")
        self.model = t.model or self.client.first_model()
        self.name = f"openai:{self.model}"

    def _one(self, prompt: str, max_new_tokens: int) -> Completion:
        from querycraft.backends import ServerUnreachable

        payload: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens,
                                   "temperature": float(self.settings.temperature)}
        if self.settings.api == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
            path = "/chat/completions"
        else:
            payload["prompt"] = prompt
            path = "/completions"
        try:
            body = self.client.request(path, payload)
            choice = body["choices"][0]
            text = (choice["message"]["content"] if self.settings.api == "chat"
                    else choice["text"]) or ""
        except ServerUnreachable:
            raise  # the run stops (and can be resumed) rather than failing every item
        except QueryCraftError as err:
            return Completion("", error=str(err))
        except (KeyError, IndexError, TypeError) as err:
            return Completion("", error=f"unexpected answer from the server ({err!r})")
        usage = body.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0))

    def complete(self, prompts: list[str], max_new_tokens: int
                 ) -> tuple[list[Completion], Usage]:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency)) as pool:
            done = list(pool.map(lambda p: self._one(p, max_new_tokens), prompts))
        return done, _usage(done, time.perf_counter() - began)


class LocalTeacher:
    """A model loaded here with transformers; prompts generated ``batch_size`` at a time."""

    def __init__(self, cfg: DictConfig) -> None:
        from querycraft.backends import HFBackend

        source = teacher_source(cfg)
        self.settings = cfg.synthesize.teacher
        self.backend = HFBackend(source, cfg.model)
        self.tokenizer = self.backend.tokenizer
        self.name = f"local:{source.label}"

    def _as_prompt(self, prompt: str) -> str:
        if self.settings.api == "chat" and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False,
                add_generation_prompt=True)
        return prompt

    def complete(self, prompts: list[str], max_new_tokens: int
                 ) -> tuple[list[Completion], Usage]:
        from querycraft.generation import GenerationSettings

        began = time.perf_counter()
        t = self.settings
        settings = GenerationSettings(max_new_tokens=max_new_tokens,
                                      do_sample=t.temperature > 0,
                                      temperature=t.temperature or 1.0, batch_size=t.batch_size)
        done: list[Completion] = []
        texts = [self._as_prompt(p) for p in prompts]
        for start in range(0, len(texts), t.batch_size):
            chunk = texts[start:start + t.batch_size]
            generations = self.backend.generate_batch(chunk, settings)
            for text, generation in zip(chunk, generations, strict=True):
                done.append(Completion(generation.text,
                                       len(self.tokenizer(text)["input_ids"]),
                                       generation.tokens or 0))
        return done, _usage(done, time.perf_counter() - began)


def _usage(done: list[Completion], seconds: float) -> Usage:
    return Usage(requests=len(done), failed=sum(1 for c in done if c.error),
                 prompt_tokens=sum(c.prompt_tokens for c in done),
                 completion_tokens=sum(c.completion_tokens for c in done), seconds=seconds)


def teacher_source(cfg: DictConfig):
    """The model a local teacher loads: a finetune run's (base + adapter) or the model
    group's base."""
    from querycraft import models
    from querycraft.artifacts import FinetuneArtifact
    from querycraft.backends import ModelSource
    from querycraft.runs import resolve_run

    t = cfg.synthesize.teacher
    if t.finetune_dir:
        run_dir = resolve_run(t.finetune_dir, cfg.paths.output_dir, "finetune",
                              "synthesize.teacher.finetune_dir")
        return FinetuneArtifact.read(run_dir).model_source()
    if cfg.model.builder is not None:
        raise QueryCraftError(f"The '{cfg.model.name}' preset has no weights until a finetune "
                              "run builds them: set synthesize.teacher.finetune_dir to a "
                              "finetune run, or choose a model preset with real weights "
                              "(model=smollm2-135m, a hub id or a folder).")
    return ModelSource(base=models.resolve_base(cfg.model, cfg.paths.cache_dir))


def make_teacher(cfg: DictConfig) -> Teacher:
    """The teacher ``synthesize.teacher.kind`` names (not ``none``)."""
    kind = cfg.synthesize.teacher.kind
    if kind == "openai":
        return OpenAITeacher(cfg.synthesize.teacher)
    if kind == "local":
        return LocalTeacher(cfg)
    raise QueryCraftError(f"synthesize.teacher.kind={kind} has no teacher to make")


def default_max_requests(quota: int, per_request: int) -> int:
    return 4 * math.ceil(quota / per_request)
