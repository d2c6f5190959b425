"""The asker: a finetune run's model and the database, loaded once, answering questions.

Each question is put to the model in exactly the prompt it was trained with (its saved
template and dialect, and the schema context read the way its ingest run read it:
:func:`querycraft.contexts.question_contexts`). The SQL is extracted, corrected against the
database's schema, checked and run read-only (``db.timeout_s``, ``db.max_rows``, the byte
caps), and answered in one sentence; rather than a wrong or unsafe answer it says "I don't
know" and why. ``service=ask`` (the command line) and ``service=serve`` (HTTP) compose it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft.artifacts import FinetuneArtifact
from querycraft.contexts import question_contexts
from querycraft.data import prompt_for
from querycraft.db import Databases
from querycraft.engines.base import QueryError
from querycraft.errors import QueryCraftError
from querycraft.prompts import parse_template
from querycraft.runs import resolve_run
from querycraft.sql import extract_sql, is_read_only_statement, parse_statement, strip_comments
from querycraft.targets import target_from_config

log = logging.getLogger("querycraft")

# The statuses of an answer; every one but "answered" prints "I don't know".
STATUSES = ("answered", "no_sql", "refused", "invalid", "timeout", "error", "empty")
# SQL starts with a keyword (or a parenthesis); model chatter and stray fences do not parse.
_SQL_START = re.compile(r"\s*[A-Za-z(]")


@dataclass
class Answer:
    """What ``ask`` says about one question (the JSON object of ``ask.format=json``)."""

    question: str
    sql: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    answer: str = ""
    status: str = "answered"
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # Whether the database had more rows than db.max_rows (not in the JSON's required keys).
    truncated: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"question": self.question, "sql": self.sql, "columns": self.columns,
                "rows": self.rows, "answer": self.answer, "status": self.status,
                "reason": self.reason, "timings": self.timings, "truncated": self.truncated}


def _dont_know(answer: Answer, status: str, reason: str) -> Answer:
    answer.status, answer.reason = status, reason
    answer.answer = f"I don't know: {reason}."
    return answer


def expects_single_value(sql: str, dialect: str) -> bool:
    """Whether ``sql`` asks for one value: one column of aggregates without GROUP BY, or one
    column with LIMIT 1."""
    from sqlglot import exp

    tree = parse_statement(sql, dialect)
    if tree is None:
        return False
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    if select is None or len(select.expressions) != 1:
        return False
    limit = select.args.get("limit") or tree.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal) \
            and limit.expression.this == "1":
        return True
    if select.args.get("group"):
        return False
    return select.expressions[0].find(exp.AggFunc) is not None


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _cut(value: Any, chars: int) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


def sentence(rows: list[list[Any]], truncated: bool, shown: int, chars: int) -> str:
    """The one-sentence answer for a result (template-based)."""
    if len(rows) == 1 and len(rows[0]) == 1:
        return f"The answer is {_cut(rows[0][0], chars)}."
    count = f"more than {len(rows)}" if truncated else str(len(rows))
    if not rows:
        return "0 rows: no row matches."
    if len(rows) <= shown and not truncated:
        listed = "; ".join(", ".join(_cut(v, chars) for v in row) for row in rows)
        return f"{count} row{'s' if len(rows) != 1 else ''}: {listed}."
    return f"{count} rows; the first {min(shown, len(rows))} are shown."


def text_table(columns: list[str], rows: list[list[Any]], chars: int) -> str:
    """A small fixed-width table of ``rows`` (already limited to those shown)."""
    cells = [[_cut(c, chars) for c in columns]] + [[_cut(v, chars) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


class Asker:
    """A finetune run's model and the database, loaded once; :meth:`ask` per question.

    Args:
        cfg: The whole config (``ask.*``, ``db``, ``correct.rules``, ``model``, ``infer.backend``).
        backend: What generates (a :class:`querycraft.backends.Backend`); None: the one
            ``infer.backend`` names, loaded from the finetune run on the first question.
    """

    def __init__(self, cfg: DictConfig, backend: Any = None) -> None:
        self.cfg, self.settings, self._backend = cfg, cfg.ask, backend
        self.finetune_dir = resolve_run(self.settings.finetune_dir, cfg.paths.output_dir,
                                        "finetune", "ask.finetune_dir")
        self.finetune = FinetuneArtifact.read(self.finetune_dir)
        path = self.finetune.prompt_template
        self.template = parse_template(path.read_text(encoding="utf-8"), name=str(path))
        self.dialect = self.finetune.prompt_dialect
        ingest = self.finetune.ingest() if self.finetune.ingest_run.is_dir() else None
        self.read_dialect = (ingest.dialect if ingest and ingest.dialect
                             else str(cfg.data.dialect))
        # The database: the db group's when set, else the one the ingest run recorded.
        self.target = target_from_config(cfg.db, ingest.sqlite_database() if ingest else None)
        if not self.target.is_server:
            if not self.target.location:
                raise QueryCraftError("service=ask needs a database: the finetune run's "
                                      "dataset was ingested without one; set db.path to a "
                                      "SQLite file, or use a server (db=postgres).")
            if Path(self.target.location).is_dir() and not self.settings.db_id:
                raise QueryCraftError(f"The database {self.target.location} is a folder of "
                                      f"several databases; set ask.db_id to the one to ask "
                                      f"about.")
        # The schema context, read by the very call ingest made for rows without a context.
        self._contexts = question_contexts(cfg.db, self.target.location,
                                           self.finetune.ingest_run)
        self.databases = Databases(self.target)
        self.db_id = self.settings.db_id or self.databases.default_db_id()
        self.database = self.databases.get(self.db_id)
        self._schemas: dict[str, dict[str, list[str]]] = {}
        if ingest is not None and not self.settings.db_id:
            self._warn_if_trained_on_other_contexts(ingest)

    def _warn_if_trained_on_other_contexts(self, ingest: Any) -> None:
        """A warning when the training rows' context did not come from the database (the
        examples had a context column): then no prompt of ours can match training's."""
        try:
            with ingest.split_file("train").open(encoding="utf-8") as handle:
                first = json.loads(handle.readline() or "null")
        except (QueryCraftError, OSError, ValueError):
            return
        if first and first.get("context") != self._contexts.schema(self.db_id,
                                                                   first["question"]):
            log.warning("ask: the model trained on the context column of its examples, not on "
                        "the schema read from %s; the questions asked here get the schema "
                        "read from the database, which the model did not see in training.",
                        self.target.describe())

    # ------------------------------------------------------------------ the prompt

    def row(self, question: str, db_id: str | None = None) -> dict[str, Any]:
        """The question as a dataset row: the fields ``prompt_for`` reads."""
        db_id = self.db_id if db_id is None else db_id
        return {"question": question, "context": self._contexts.schema(db_id, question),
                "values": self._contexts.values(db_id, question), "db_id": db_id}

    def prompt(self, question: str, db_id: str | None = None) -> str:
        """The prompt for ``question``, exactly as training rendered its rows."""
        return prompt_for(self.row(question, db_id), self.template, self.dialect)

    def generation_settings(self, max_new_tokens: int | None = None):
        """Greedy decoding to the template's stop string (what training taught)."""
        from querycraft.generation import GenerationSettings

        return GenerationSettings(max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
                                  stop_string=self.template.stop_string, do_sample=False,
                                  batch_size=1)

    # ------------------------------------------------------------------ generation

    def backend(self) -> Any:
        if self._backend is None:
            from querycraft.backends import make_backend

            log.info("ask: loading %s with the adapter of %s", self.finetune.base_model,
                     self.finetune_dir)
            self._backend = make_backend(self.cfg, self.finetune.model_source())
        return self._backend

    def generate(self, question: str) -> tuple[str, float]:
        """The model's raw output for ``question`` (greedy) and the seconds it took."""
        settings = self.generation_settings()
        began = time.perf_counter()
        text = ""
        for _, generations in self.backend().generate_batches([self.prompt(question)],
                                                               settings):
            text = generations[0].text
        return text, time.perf_counter() - began

    def ask(self, question: str) -> Answer:
        """Answer one question: generate, then :meth:`answer_text`."""
        began = time.perf_counter()
        text, seconds = self.generate(question)
        answer = self.answer_text(question, text)
        answer.timings = {"generate_s": round(seconds, 4), **answer.timings,
                          "total_s": round(time.perf_counter() - began, 4)}
        return answer

    # ------------------------------------------------------------------ from text to answer

    def database_for(self, db_id: str | None = None):
        """The database of ``db_id`` (None: the one asked about by default).

        Raises:
            QueryCraftError: if there is no such database.
        """
        return self.database if db_id is None or db_id == self.db_id \
            else self.databases.get(db_id)

    def schema(self, db_id: str | None = None) -> dict[str, list[str]] | None:
        key = self.db_id if db_id is None else db_id
        if key not in self._schemas:
            self._schemas[key] = self.database_for(db_id).columns_by_table() or {}
        return self._schemas[key] or None

    def answer_text(self, question: str, text: str, db_id: str | None = None) -> Answer:
        """The answer to ``question`` given the model's output ``text``: the SQL extracted,
        corrected against the database's schema, checked and run read-only; "I don't know"
        (with the reason) when there is no valid SQL, it is refused, times out or fails, or
        a single value was expected and none came back."""
        from querycraft.correction import correct_sql

        answer = Answer(question=question)
        database = self.database_for(db_id)
        began = time.perf_counter()
        extracted = extract_sql(text or "")
        if not extracted.strip():
            return _dont_know(answer, "no_sql", "the model's output holds no SQL")
        rules = {k: bool(v) for k, v in OmegaConf.to_container(self.cfg.correct.rules).items()}
        try:
            fixed = correct_sql(extracted, schema=self.schema(db_id),
                                read_dialect=self.read_dialect, write_dialect=database.dialect,
                                rules=rules, max_edit_distance=self.cfg.correct.max_edit_distance)
            sql = fixed.sql.strip() or extracted
        except Exception as err:  # a correction failure keeps the extracted SQL
            log.warning("ask: correction failed (%s); checking the SQL as extracted", err)
            sql = extracted
        answer.timings["correct_s"] = round(time.perf_counter() - began, 4)
        return self.run_sql(sql, db_id, answer)

    def run_sql(self, sql: str, db_id: str | None = None, answer: Answer | None = None
                ) -> Answer:
        """Check ``sql`` and run it read-only (the SQL as given: no correction), into
        ``answer`` (a new one, without a question, when None); "I don't know" with the reason
        when it does not parse, is refused, is rejected by the database, times out or fails."""
        db = self.cfg.db
        answer = answer if answer is not None else Answer(question="")
        database = self.database_for(db_id)
        answer.sql = sql
        if not _SQL_START.match(strip_comments(sql)) \
                or parse_statement(sql, database.dialect) is None:
            return _dont_know(answer, "no_sql", "no valid SQL after correction (the model "
                                                "wrote something that does not parse as SQL)")
        read_only, why = is_read_only_statement(sql, database.dialect)
        if not read_only:
            if why.startswith("syntax error"):
                return _dont_know(answer, "no_sql", f"no valid SQL after correction ({why})")
            return _dont_know(answer, "refused", f"the query was refused ({why})")
        problem = database.check(sql, timeout_s=db.timeout_s, max_sql_bytes=db.max_sql_bytes)
        if problem:
            return _dont_know(answer, "invalid", f"the database rejects the query ({problem})")
        began = time.perf_counter()
        try:
            result = database.execute(
                sql, timeout_s=db.timeout_s, max_rows=db.max_rows,
                max_sql_bytes=db.max_sql_bytes, max_value_bytes=db.max_value_bytes,
                max_result_bytes=db.max_result_bytes)
        except QueryError as err:
            answer.timings["execute_s"] = round(time.perf_counter() - began, 4)
            if err.kind == "timeout":
                return _dont_know(answer, "timeout", f"the query timed out ({err.message})")
            if err.kind == "refused":
                return _dont_know(answer, "refused", f"the query was refused ({err.message})")
            key = self.db_id if db_id is None else db_id
            self.databases.discard(key)  # a broken connection is opened afresh
            if key == self.db_id:
                self.database = self.databases.get(key)
            return _dont_know(answer, "error", f"the query failed ({err.message})")
        answer.timings["execute_s"] = round(time.perf_counter() - began, 4)
        answer.columns = list(result.columns)
        answer.rows = [[_plain(v) for v in row] for row in result.rows]
        answer.truncated = bool(result.truncated)
        single = expects_single_value(sql, database.dialect)
        if single and (not answer.rows or all(v is None for v in answer.rows[0])):
            return _dont_know(answer, "empty", "the query found no value where one was "
                                               "expected")
        answer.answer = sentence(answer.rows, answer.truncated, self.settings.max_rows_shown,
                                 self.settings.max_value_chars)
        return answer

    # ------------------------------------------------------------------ output

    def render(self, answer: Answer) -> str:
        """The answer as ``ask.format`` prints it."""
        if self.settings.format == "json":
            return json.dumps(answer.as_json(), ensure_ascii=False, default=str)
        lines = [f"Question: {answer.question}", f"SQL: {answer.sql or '-'}"]
        if answer.columns:
            shown = answer.rows[: self.settings.max_rows_shown]
            lines.append(text_table(answer.columns, shown, self.settings.max_value_chars))
        lines.append(f"Answer: {answer.answer}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._contexts.close()
        self.databases.close()


