"""Synthesize: question/SQL training pairs from the database itself, checked by execution.

``python -m querycraft service=synthesize`` reads the configured database (the ``db``
group; SQLite: ``db.path``, else ``data.database``; a Spider-layout folder: every database
in it, or ``synthesize.db_ids``) through the read-only execution layer: tables, typed
columns, keys and real values. It writes SQL first, over a declared spread of features
(:data:`querycraft.synthesis.FEATURES`, weighted by ``synthesize.weights``), runs every
query read-only (``db.timeout_s``, ``db.max_rows``), keeps those whose result is non-empty
and not degenerate, deduplicates them by template and result, and writes a question for
each from built-in templates (no teacher). Every rejection is recorded with its reason.

Output in the run folder: ``pairs.csv`` (question, query, db_id, plus the provenance
columns feature, features, complexity, teacher, style, rule, rows; with
``synthesize.context=query_tables`` also a context column, the tables each query uses),
readable by ``service=ingest data=csv_db`` as is; ``rejected.csv``; ``report.md`` and
``report.json``.
See docs/SYNTHESIZE.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from sqlglot import exp
from tqdm.auto import tqdm

from querycraft.artifacts import IngestArtifact
from querycraft.compare import results_match
from querycraft.db import Database, Databases
from querycraft.dialects import transpile_one
from querycraft.engines.base import QueryError
from querycraft.engines.sqlite import sqlite_db_ids
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, resolve_run, start_run
from querycraft.splits import query_key, query_skeleton
from querycraft.sql import (
    extract_sql,
    has_order_by,
    is_read_only_statement,
    parse_statement,
    tables_in,
)
from querycraft.sql_analysis import spider_hardness
from querycraft.synthesis import (
    DEFAULT_WEIGHTS,
    FEATURES,
    RULES,
    Candidate,
    Generator,
    name_the_rows,
    read_profile,
)
from querycraft.synthesis.teacher import (
    FOCUS,
    Completion,
    Teacher,
    TeacherConfig,
    Usage,
    check_teacher,
    default_max_requests,
    feature_of,
    fill,
    first_line_question,
    make_teacher,
    parse_pairs,
    read_prompt,
)
from querycraft.targets import DatabaseTarget, target_from_config

log = logging.getLogger("querycraft")

COMPLEXITIES = ("easy", "medium", "hard")
# The CSV's columns: what ingest reads first, then the provenance.
PAIR_FIELDS = ("question", "query", "db_id", "feature", "features", "complexity", "teacher",
               "style", "agreement", "rule", "rows")
MODES = ("sql_first", "teacher_first")
CONTEXTS = ("none", "query_tables")
JOURNAL = "teacher.jsonl"
REJECT_FIELDS = ("db_id", "feature", "rule", "reason", "detail", "query", "question")
# A rule that found nothing to work with this many times in a row is given up on.
RULE_PATIENCE = 25
# A rule whose candidates were all rejected this many times in a row is rested, and a feature
# without rules left is given up on (its share goes to the others): the database has no more
# distinct queries of that kind.
REJECT_PATIENCE = 60
EXAMPLES_PER_REASON = 3
# Teacher-first: rule-written pairs the prompts take their two worked examples from.
EXAMPLE_POOL = 8


@dataclass
class SynthesizeConfig:
    # How many pairs to write in all (spread over the databases when there are several).
    count: int = 200
    # The spread: a weight per feature (0 leaves a feature out); pairs are shared out in
    # proportion. Features: projection, filter, join, aggregation, group_by, order_limit,
    # null, date, nested, set_operation.
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # Candidates tried before giving up short of count; null: 20 per pair asked for.
    max_attempts: int | None = None
    seed: int = "${seed}"  # type: ignore[assignment]
    # With a folder of databases (Spider's layout) or a server URL with {db_id}: which
    # databases; null: every database in the folder.
    db_ids: list[str] | None = None
    # The CSV's file name in the run folder.
    output: str = "pairs.csv"
    # Pairs kept per SQL template (the query with its literals replaced): variety over
    # near-copies.
    max_per_template: int = 4
    # Distinct values read per column (the first in sort order) to fill filters with.
    sample_rows: int = 1000
    # sql_first: the rules write SQL, then questions come from built-in templates or the
    # teacher | teacher_first: the teacher writes question/SQL pairs from the schema, every
    # query is run and checked.
    mode: str = "sql_first"
    # Who writes the questions (synthesize.teacher.kind: none | openai | local).
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # none: no context column, ingest reads the schema from the database (as ask and serve
    # do later) | query_tables: a context column holding the CREATE TABLE statements of the
    # tables each query uses, the convention of CSVs like the sample's and sql-create-context.
    context: str = "none"
    # What your people call columns whose names are short for it, added to the built-in
    # ones (rules.COLUMN_PHRASES): {column name: [phrases]}, e.g. {cust_tel: [phone number]}.
    # Half of the template questions about such a column use a phrase.
    column_phrases: dict[str, list[str]] = field(default_factory=dict)
    # An ingest run whose evaluation questions the pairs must not give away: a generated
    # query whose normalised SQL or skeleton (literals and aliases masked) is one of its
    # evaluation gold queries' is rejected ("an evaluation query" / "an evaluation query's
    # shape"), so that a model trained on the pairs is scored on queries it never saw.
    exclude: str | None = None


SETTINGS = SynthesizeConfig


def _database_location(cfg: DictConfig) -> str | None:
    """SQLite: ``db.path``, else ``data.database`` (None when neither is set)."""
    location = cfg.db.path or OmegaConf.select(cfg, "data.database", default=None,
                                               throw_on_missing=False)
    return str(location) if location else None


def check(cfg: DictConfig) -> list[str]:
    """The synthesize.* settings; with service=synthesize, the database it reads."""
    s, problems = cfg.synthesize, []
    if s.count < 1:
        problems.append(f"synthesize.count must be at least 1, got {s.count}")
    weights = dict(s.weights or {})
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        problems.append(f"synthesize.weights names unknown feature(s) {', '.join(unknown)}; "
                        f"the features are {', '.join(FEATURES)}")
    if any(w is None or w < 0 for w in weights.values()):
        problems.append("synthesize.weights must be 0 or more (0 leaves a feature out)")
    elif not any(w > 0 for f, w in weights.items() if f in FEATURES):
        problems.append("synthesize.weights must give at least one feature a weight above 0")
    if s.max_attempts is not None and s.max_attempts < s.count:
        problems.append(f"synthesize.max_attempts ({s.max_attempts}) must be at least "
                        f"synthesize.count ({s.count}), or null for 20 per pair")
    if s.max_per_template < 1 or s.sample_rows < 1:
        problems.append("synthesize.max_per_template and synthesize.sample_rows must be at "
                        "least 1")
    if not s.output or "/" in s.output or "\\" in s.output or not s.output.endswith(".csv"):
        problems.append(f"synthesize.output must be a file name ending in .csv (it is written "
                        f"in the run folder), got '{s.output}'")
    if s.mode not in MODES:
        problems.append(f"synthesize.mode '{s.mode}' is not one of {', '.join(MODES)}")
    if s.context not in CONTEXTS:
        problems.append(f"synthesize.context '{s.context}' is not one of {', '.join(CONTEXTS)}")
    phrases = s.column_phrases or {}
    if any(not isinstance(v, Sequence) or isinstance(v, str) or not v
           or not all(isinstance(p, str) and p.strip() for p in v) for v in phrases.values()):
        problems.append("synthesize.column_phrases maps a column name to a list of phrases, "
                        "e.g. {cust_tel: [phone number]}; every list needs at least one "
                        "non-empty phrase")
    problems += check_teacher(s.teacher, s.mode, cfg.paths.prompts_dir)
    if cfg.service.name == "synthesize" and cfg.db.kind == "sqlite":
        location = _database_location(cfg)
        if location is None:
            problems.append("service=synthesize needs a database: set db.path (or "
                            "data.database) to a SQLite file or a Spider-layout folder, or use "
                            "a server (db=postgres ...)")
        elif not Path(location).exists():
            problems.append(f"the database '{location}' (db.path, else data.database) does "
                            "not exist")
    return problems


# ---------------------------------------------------------------- which databases


def _targets(cfg: DictConfig) -> tuple[DatabaseTarget, list[str]]:
    """The target and the db_ids to synthesize for."""
    wanted = [str(d) for d in cfg.synthesize.db_ids] if cfg.synthesize.db_ids else None
    if cfg.db.kind == "sqlite":
        location = _database_location(cfg)
        if location is None or not Path(location).exists():
            raise QueryCraftError(f"No SQLite database at '{location}': set db.path (or "
                                  "data.database) to a .sqlite file or a Spider-layout folder.")
        target = DatabaseTarget("sqlite", location=location)
        path = Path(location)
        if path.is_file():
            if wanted and wanted != [path.stem]:
                raise QueryCraftError(f"synthesize.db_ids picks databases from a folder, but "
                                      f"{path} is one file; leave synthesize.db_ids unset.")
            return target, [path.stem]
        found = sqlite_db_ids(path)
        if wanted:
            missing = [d for d in wanted if d not in found]
            if missing:
                raise QueryCraftError(f"{path} has no database {', '.join(missing)} (a "
                                      f"<db_id>/<db_id>.sqlite file); it has "
                                      f"{', '.join(found[:20]) or 'none'}.")
            return target, wanted
        if not found:
            raise QueryCraftError(f"{path} is a folder without any <db_id>/<db_id>.sqlite "
                                  "database; point db.path at a .sqlite file or a Spider-layout "
                                  "folder.")
        return target, found
    target = target_from_config(cfg.db)
    if "{db_id}" in (target.url or "") or "{db_id}" in (target.schema or ""):
        if not wanted:
            raise QueryCraftError("The db settings hold {db_id}, so they name several "
                                  "databases: list the ones to use in synthesize.db_ids.")
        return target, wanted
    return target, wanted[:1] if wanted else [str(cfg.db.database or cfg.db.kind)]


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _quotas(count: int, weights: dict[str, float]) -> dict[str, int]:
    """``count`` shared out by weight, largest remainders first (feature order on ties)."""
    active = {f: float(weights.get(f, 0.0)) for f in FEATURES if weights.get(f, 0.0) > 0}
    total = sum(active.values())
    exact = {f: count * w / total for f, w in active.items()}
    quota = {f: int(v) for f, v in exact.items()}
    rest = count - sum(quota.values())
    for f in sorted(active, key=lambda f: -(exact[f] - quota[f]))[:rest]:
        quota[f] += 1
    return quota


# ---------------------------------------------------------------- checking one candidate


def _template(tree: exp.Expression, dialect: str) -> str:
    """The query with every literal replaced by ``?``: its template."""
    blank = tree.copy().transform(
        lambda n: exp.Placeholder() if isinstance(n, (exp.Literal, exp.Boolean)) else n)
    return blank.sql(dialect=dialect)


def _multiset(rows: list[tuple]) -> list[str]:
    return sorted(repr(tuple(row)) for row in rows)


def _fingerprint(rows: list[tuple]) -> str:
    return hashlib.sha1("\n".join(_multiset(rows)).encode()).hexdigest()


def _loosened(tree: exp.Expression) -> list[tuple[exp.Expression, str]]:
    """The same query without each of its conditions (or a set operation's parts), with the
    rejection reason when the result stays the same: a condition that changes nothing."""
    found: list[tuple[exp.Expression, str]] = []
    if isinstance(tree, exp.SetOperation):
        found += [(tree.this, "set operation equals one of its parts"),
                  (tree.expression, "set operation equals one of its parts")]
    elif isinstance(tree, exp.Select):
        if tree.args.get("where"):
            loose = tree.copy()
            loose.set("where", None)
            found.append((loose, "condition keeps every row"))
        if tree.args.get("having"):
            loose = tree.copy()
            loose.set("having", None)
            found.append((loose, "HAVING keeps every group"))
    return found


@dataclass
class SeenPairs:
    """What one database's generation has kept and seen."""

    queries: set[str] = field(default_factory=set)
    questions: set[str] = field(default_factory=set)
    templates: Counter = field(default_factory=Counter)
    results: set[tuple[str, str]] = field(default_factory=set)
    copied: set[str] = field(default_factory=set)  # teacher-first: the prompt's examples


@dataclass(frozen=True)
class Exclusion:
    """The evaluation queries of ``synthesize.exclude``: their normalised SQL and skeletons,
    in the gold SQL's dialect (a candidate is read in it too)."""

    queries: frozenset[str]
    skeletons: frozenset[str]
    dialect: str

    @classmethod
    def of_run(cls, run_dir: str | Path, output_dir: str) -> Exclusion:
        folder = resolve_run(run_dir, output_dir, "ingest", "synthesize.exclude")
        ingest = IngestArtifact.read(folder)
        golds = [row["query"] for row in read_jsonl(ingest.split_file("eval"))]
        dialect = ingest.dialect or "sqlite"
        return cls(frozenset(query_key(q, dialect) for q in golds),
                   frozenset(query_skeleton(q, dialect) for q in golds), dialect)

    def reason(self, sql: str, dialect: str) -> str | None:
        """Why a candidate gives an evaluation query away, or None."""
        text = sql
        if dialect != self.dialect:
            try:
                text = transpile_one(sql, dialect, self.dialect)
            except Exception:  # sqlglot cannot translate it: compared as written
                text = sql
        if query_key(text, self.dialect) in self.queries:
            return "an evaluation query"
        if query_skeleton(text, self.dialect) in self.skeletons:
            return "an evaluation query's shape"
        return None


class Checker:
    """Runs a candidate read-only and says why it is rejected (or None: it is kept)."""

    def __init__(self, database: Database, db_cfg: DictConfig, max_per_template: int,
                 exclusion: Exclusion | None = None) -> None:
        self.database, self.db, self.max_per_template = database, db_cfg, max_per_template
        self.dialect = database.dialect
        self.exclusion = exclusion

    def execute(self, sql: str) -> Any:
        return self.database.execute(sql, timeout_s=self.db.timeout_s, max_rows=self.db.max_rows,
                                     max_sql_bytes=self.db.max_sql_bytes,
                                     max_value_bytes=self.db.max_value_bytes,
                                     max_result_bytes=self.db.max_result_bytes)

    def verdict(self, cand: Candidate, sql: str, state: SeenPairs
                ) -> tuple[str | None, str, Any, str]:
        """(rejection reason or None, detail, result, template)."""
        template = _template(cand.tree, self.dialect)
        if sql in state.queries:
            return "duplicate query", "", None, template
        if state.templates[template] >= self.max_per_template:
            return "template used enough", f"max_per_template={self.max_per_template}", None, \
                template
        if " ".join(cand.question.lower().split()) in state.questions:
            return "duplicate question", "", None, template
        given_away = self.exclusion.reason(sql, self.dialect) if self.exclusion else None
        if given_away:
            return given_away, "synthesize.exclude", None, template
        try:
            result = self.execute(sql)
        except QueryError as err:
            return ("timeout" if err.kind == "timeout" else "query fails"), \
                f"{err.kind}: {err.message}", None, template
        if not result.rows:
            return "empty result", "", result, template
        if result.truncated:
            return "result over db.max_rows", f"more than {self.db.max_rows} rows", result, \
                template
        if all(v is None for row in result.rows for v in row):
            return "all NULL", "", result, template
        if len(result.rows) == 1 and cand.tree.find(exp.Count) is not None \
                and all(isinstance(v, int) and v == 0 for v in result.rows[0]):
            return "count of zero", "", result, template
        wanted = _multiset(result.rows)
        for loose, reason in _loosened(cand.tree):
            try:
                other = self.execute(loose.sql(dialect=self.dialect))
            except QueryError:
                continue  # the looser query failing says nothing against this one
            if not other.truncated and _multiset(other.rows) == wanted:
                return reason, "", result, template
        if (template, _fingerprint(result.rows)) in state.results:
            return "duplicate result of the same template", "", result, template
        return None, "", result, template


# ---------------------------------------------------------------- one database


@dataclass
class _Outcome:
    pairs: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    skipped: int = 0  # rules that found nothing to work with (no query written)
    given_up: dict[str, str] = field(default_factory=dict)  # feature -> why
    notes: list[str] = field(default_factory=list)


def _complexity(sql: str, dialect: str) -> str:
    # Spider's hardness buckets, "extra" folded into "hard".
    hardness = spider_hardness(sql, dialect) or "hard"
    return "hard" if hardness == "extra" else hardness


def synthesize_database(database: Database, db_id: str, quota: int, cfg: DictConfig,
                        bar: Any, exclusion: Exclusion | None = None) -> _Outcome:
    """Up to ``quota`` pairs for one database."""
    settings = cfg.synthesize
    out = _Outcome()
    profile = read_profile(database, db_id, timeout_s=cfg.db.timeout_s,
                           sample_rows=settings.sample_rows)
    out.notes += profile.notes
    rng = random.Random(f"{settings.seed}:{db_id}")  # str seeds hash the same in every run
    gen = Generator(profile, rng, dict(settings.column_phrases or {}))
    checker = Checker(database, cfg.db, settings.max_per_template, exclusion)
    state = SeenPairs()
    targets = _quotas(quota, dict(settings.weights))
    kept: Counter = Counter()
    rules = {f: list(RULES[f]) for f in targets}
    misses: Counter = Counter()  # consecutive Nones per rule
    failures: Counter = Counter()  # consecutive rejections per rule
    by_rule: Counter = Counter()  # pairs kept per rule
    budget = settings.max_attempts if settings.max_attempts is not None else 20 * settings.count
    budget = max(quota, round(budget * quota / settings.count))
    while len(out.pairs) < quota and out.attempts < budget:
        active = [f for f in targets if rules[f] and f not in out.given_up]
        if not active:
            break
        behind = [f for f in active if kept[f] < targets[f]]
        if behind:
            lowest = min(kept[f] / targets[f] for f in behind)
            feature = rng.choice([f for f in behind if kept[f] / targets[f] == lowest])
        else:  # every feature has its share, others gave up: share out the rest by weight
            feature = rng.choices(active, [settings.weights[f] for f in active])[0]
        # The rule of the feature with the fewest pairs so far: every query shape of a
        # feature gets its share, not only the shapes whose candidates pass most often.
        fewest = min(by_rule[r] for r in rules[feature])
        rule = rng.choice([r for r in rules[feature] if by_rule[r] == fewest])
        cand = rule(gen)
        if cand is None:
            out.skipped += 1
            misses[rule] += 1
            if misses[rule] >= RULE_PATIENCE:
                rules[feature].remove(rule)
                if not rules[feature]:
                    out.given_up[feature] = "not applicable to this schema (its rules found " \
                                            "no suitable table or column)"
            continue
        misses[rule] = 0
        out.attempts += 1
        cand = name_the_rows(gen, cand)
        sql = cand.tree.sql(dialect=database.dialect)
        reason, detail, result, template = checker.verdict(cand, sql, state)
        if reason is not None:
            out.rejected.append({"db_id": db_id, "feature": cand.feature, "rule": cand.rule,
                                 "reason": reason, "detail": detail, "query": sql,
                                 "question": cand.question})
            failures[rule] += 1
            if failures[rule] >= REJECT_PATIENCE:
                rules[feature].remove(rule)
                if not rules[feature]:
                    out.given_up[feature] = (f"{REJECT_PATIENCE} candidates in a row "
                                             "rejected for each of its rules (no more "
                                             "distinct queries of this kind)")
            continue
        failures[rule] = 0
        by_rule[rule] += 1
        state.queries.add(sql)
        state.questions.add(" ".join(cand.question.lower().split()))
        state.templates[template] += 1
        state.results.add((template, _fingerprint(result.rows)))
        kept[cand.feature] += 1
        tags = dict.fromkeys((cand.feature, *cand.tags))
        out.pairs.append({"question": cand.question, "query": sql, "db_id": db_id,
                          "feature": cand.feature, "features": ";".join(tags),
                          "complexity": _complexity(sql, database.dialect), "teacher": "none",
                          "style": "template", "agreement": "", "rule": cand.rule,
                          "rows": len(result.rows)})
        bar.update(1)
    return out


# ---------------------------------------------------------------- the teacher's work


class Journal:
    """``teacher.jsonl``: one line per finished item (a query questioned, a teacher-first
    request), flushed and fsynced as it is done. A killed run resumed with ``resume=true``
    reads it back and does only the items it lacks: no item twice, none lost but the ones in
    flight."""

    def __init__(self, path: Path, resumed: bool) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if resumed and path.exists():
            good = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a kill cut short: its item is done again
                self.done[row["key"]] = row
                good.append(line)
            # Rewritten whole so that the next line is not appended to a torn one.
            partial = path.with_suffix(".jsonl.partial")
            partial.write_text("".join(g + "\n" for g in good), encoding="utf-8")
            partial.replace(path)
            if self.done:
                log.info("synthesize: %d teacher items already done in %s; doing the rest",
                         len(self.done), path)
        self.handle = path.open("a", encoding="utf-8")

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            self.done[row["key"]] = row
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def usage(self) -> Usage:
        total = Usage()
        for row in self.done.values():
            total.add(row.get("usage") or {})
        return total

    def close(self) -> None:
        self.handle.close()


def _key(db_id: str, *parts: Any) -> str:
    return hashlib.sha1("\x00".join(map(str, (db_id, *parts))).encode()).hexdigest()


def _share(completions: list[Completion], seconds: float) -> dict[str, Any]:
    """One item's part of the teacher's work: its requests and tokens, its share of time."""
    return {"requests": len(completions), "failed": sum(1 for c in completions if c.error),
            "prompt_tokens": sum(c.prompt_tokens for c in completions),
            "completion_tokens": sum(c.completion_tokens for c in completions),
            "seconds": round(seconds, 4)}


def _chunk_size(t: DictConfig) -> int:
    """Items sent to the teacher together: enough to keep every request slot (openai) or
    batch row (local) busy."""
    return max(2, 2 * (t.concurrency if t.kind == "openai" else t.batch_size))


def question_with_teacher(database: Database, db_id: str, outcome: _Outcome, cfg: DictConfig,
                          teacher: Teacher, journal: Journal, bar: Any) -> None:
    """Replace the template questions of ``outcome.pairs`` by the teacher's: one candidate per
    style, chosen by agreement (the teacher's SQL back from the question gives the query's
    result). Pairs without an agreeing question are rejected when agreement is required."""
    t, dialect = cfg.synthesize.teacher, database.dialect
    styles = list(t.styles.items())
    schema = database.schema_text(sample_values=t.sample_values)
    ask_question = read_prompt(t.question_prompt, cfg.paths.prompts_dir, "question_prompt")
    ask_sql = (read_prompt(t.sql_prompt, cfg.paths.prompts_dir, "sql_prompt")
               if t.agreement != "off" else "")
    checker = Checker(database, cfg.db, cfg.synthesize.max_per_template)
    keys = [_key(db_id, "question", p["query"]) for p in outcome.pairs]
    todo = [i for i, k in enumerate(keys) if k not in journal.done]
    # Questions kept already (before a resume too): ingest drops a repeated question.
    taken = {_plain(journal.done[k]["pair"]["question"]) for k in keys
             if k in journal.done and journal.done[k]["pair"] is not None}
    bar.update(len(outcome.pairs) - len(todo))
    size = _chunk_size(t)
    for start in range(0, len(todo), size):
        chunk = todo[start:start + size]
        prompts = [fill(ask_question, dialect=dialect, schema=schema,
                        sql=outcome.pairs[i]["query"], style=name, style_hint=hint)
                   for i in chunk for name, hint in styles]
        asked, usage = teacher.complete(prompts, t.max_new_tokens)
        seconds = usage.seconds
        candidates: dict[int, list[dict[str, Any]]] = {}
        for n, i in enumerate(chunk):
            answers = asked[n * len(styles):(n + 1) * len(styles)]
            candidates[i] = [_candidate(name, a) for (name, _), a in
                             zip(styles, answers, strict=True)]
        spent: dict[int, list[Completion]] = {
            i: asked[n * len(styles):(n + 1) * len(styles)] for n, i in enumerate(chunk)}
        if t.agreement != "off":
            back = [(i, c) for i in chunk for c in candidates[i] if c["question"]]
            answers, usage_back = teacher.complete(
                [fill(ask_sql, dialect=dialect, schema=schema, question=c["question"])
                 for _, c in back], t.sql_max_new_tokens)
            seconds += usage_back.seconds
            for (i, c), answer in zip(back, answers, strict=True):
                c["sql"] = extract_sql(answer.text) if not answer.error else ""
                c["agrees"] = _agrees(checker, outcome.pairs[i]["query"], c["sql"], dialect)
                spent[i].append(answer)
        rows = []
        for i in chunk:
            row = choose_question(outcome.pairs[i], i, candidates[i], t.agreement,
                                  teacher.name, keys[i], _share(spent[i], seconds / len(chunk)),
                                  taken)
            if row["pair"] is not None:
                taken.add(_plain(row["pair"]["question"]))
            rows.append(row)
        journal.add(rows)
        bar.update(len(chunk))
    pairs, rejected = [], []
    for key in keys:
        row = journal.done[key]
        if row["pair"] is not None:
            pairs.append(row["pair"])
        else:
            rejected.append(row["rejected"])
    outcome.pairs = pairs
    outcome.rejected += rejected


def _plain(question: str) -> str:
    return " ".join(question.lower().split())


def _candidate(style: str, answer: Completion) -> dict[str, Any]:
    """One style's question from the teacher's answer; SQL instead of a question is none."""
    question = first_line_question(answer.text) if not answer.error else ""
    error = answer.error
    if re.match(r"(select|with)\b", question, re.IGNORECASE):
        question, error = "", "the teacher wrote SQL, not a question"
    return {"style": style, "question": question, "error": error, "agrees": None}


def _agrees(checker: Checker, query: str, back_sql: str, dialect: str) -> bool:
    """Whether the SQL written back from a question returns the query's result."""
    if not back_sql:
        return False
    try:
        reference = checker.execute(query)
        other = checker.execute(back_sql)
    except QueryError:
        return False
    return results_match(reference, other, order_matters=has_order_by(query, dialect))


def choose_question(pair: dict[str, Any], index: int, candidates: list[dict[str, Any]],
                    agreement: str, teacher_name: str, key: str, usage: dict[str, Any],
                    taken: set[str]) -> dict[str, Any]:
    """The journal row for one query: the pair with its chosen question, or its rejection.
    Styles are tried in an order that turns with the query's position, so that the kept
    questions mix the styles; a question kept for another query is not chosen again."""
    turn = index % max(1, len(candidates))
    ordered = [c for c in candidates[turn:] + candidates[:turn] if c["question"]]
    repeated = [c for c in ordered if _plain(c["question"]) in taken]
    ordered = [c for c in ordered if _plain(c["question"]) not in taken]
    agreeing = [c for c in ordered if c["agrees"]]
    chosen = agreeing[0] if agreeing else (ordered[0] if ordered and agreement != "required"
                                          else None)
    row: dict[str, Any] = {"key": key, "query": pair["query"], "candidates": candidates,
                           "usage": usage, "pair": None, "rejected": None}
    if chosen is None:
        if repeated and not ordered:
            reason = "duplicate question"
            detail = " | ".join(f"{c['style']}: {c['question']}" for c in repeated)[:600]
        elif not ordered:
            errors = sorted({c["error"] for c in candidates if c["error"]})
            reason, detail = "teacher gave no question", "; ".join(errors)[:300]
        else:
            reason = "no question agreed"
            detail = " | ".join(f"{c['style']}: {c['question']} -> {c.get('sql') or '(none)'}"
                                for c in ordered)[:600]
        row["rejected"] = {"db_id": pair["db_id"], "feature": pair["feature"],
                           "rule": pair["rule"], "reason": reason, "detail": detail,
                           "query": pair["query"], "question": pair["question"]}
        return row
    row["pair"] = {**pair, "question": chosen["question"], "teacher": teacher_name,
                   "style": chosen["style"],
                   "agreement": "" if agreement == "off" else
                   ("yes" if chosen["agrees"] else "no")}
    return row


def teacher_first_database(database: Database, db_id: str, quota: int, cfg: DictConfig,
                           teacher: Teacher, journal: Journal, bar: Any,
                           exclusion: Exclusion | None = None) -> _Outcome:
    """Up to ``quota`` pairs written by the teacher from the schema, each query run and
    checked like the rules' (read-only, non-empty, not degenerate, not a duplicate)."""
    settings, t, dialect = cfg.synthesize, cfg.synthesize.teacher, database.dialect
    out = _Outcome()
    schema = database.schema_text(sample_values=t.sample_values)
    ask_pairs = read_prompt(t.pairs_prompt, cfg.paths.prompts_dir, "pairs_prompt")
    focus = [f for f in FEATURES if settings.weights.get(f, 0) > 0]
    checker = Checker(database, cfg.db, settings.max_per_template, exclusion)
    state = SeenPairs()
    # Worked examples for the prompt ({examples}): pairs the rules wrote and the database
    # answered, so that even a small teacher sees the format and real names and values. A
    # teacher that copies one is rejected ("copies a prompt example").
    examples = synthesize_database(database, db_id, EXAMPLE_POOL, cfg, _NoBar(),
                                   exclusion).pairs
    state.copied = {e["query"] for e in examples}
    max_requests = t.max_requests or default_max_requests(quota, t.pairs_per_request)
    size = _chunk_size(t) // 2
    request = shown = 0
    while len(out.pairs) < quota and request < max_requests:
        wave = list(range(request, min(request + size, max_requests)))
        request = wave[-1] + 1
        keys = {i: _key(db_id, "pairs", i) for i in wave}
        needed = [i for i in wave if keys[i] not in journal.done]
        answers: dict[int, tuple[Completion, dict[str, Any]]] = {}
        if needed:
            prompts = [fill(ask_pairs, dialect=dialect, schema=schema,
                            count=t.pairs_per_request, focus=FOCUS[focus[i % len(focus)]],
                            examples=_example_text(examples, i)) for i in needed]
            done, usage = teacher.complete(prompts, t.pairs_max_new_tokens)
            for i, completion in zip(needed, done, strict=True):
                answers[i] = (completion, _share([completion], usage.seconds / len(needed)))
        for i in wave:
            if keys[i] in journal.done:  # done before a resume: its pairs count as seen
                row = journal.done[keys[i]]
                for pair, seen in zip(row["pairs"], row["seen"], strict=True):
                    state.queries.add(pair["query"])
                    state.questions.add(" ".join(pair["question"].lower().split()))
                    state.templates[seen[0]] += 1
                    state.results.add(tuple(seen))
            else:
                completion, usage_share = answers[i]
                row = check_teacher_pairs(completion, db_id, checker, state, teacher.name,
                                           dialect)
                row.update(key=keys[i], request=i, usage=usage_share)
                journal.add([row])
            out.pairs += row["pairs"]
            out.rejected += row["rejected"]
            out.attempts += len(row["pairs"]) + len(row["rejected"])
        bar.update(min(len(out.pairs), quota) - shown)
        shown = min(len(out.pairs), quota)
    if len(out.pairs) > quota:
        out.pairs = out.pairs[:quota]
    if len(out.pairs) < quota:
        out.notes.append(f"the teacher's {request} requests gave {len(out.pairs)} pairs that "
                         f"passed the checks ({quota} asked for); raise "
                         "synthesize.teacher.max_requests for more")
    return out


class _NoBar:
    def update(self, _n: int) -> None:
        pass


def _example_text(examples: list[dict[str, Any]], request: int) -> str:
    """Two of the worked examples, turning with the request."""
    if not examples:
        return ""
    chosen = [examples[(2 * request + k) % len(examples)] for k in range(min(2, len(examples)))]
    return "\n".join(f"Question: {e['question']}\nSQL: {e['query']}" for e in chosen)


def check_teacher_pairs(completion: Completion, db_id: str, checker: Checker,
                         state: SeenPairs, teacher_name: str, dialect: str) -> dict[str, Any]:
    """One teacher-first answer's pairs, checked in order (each sees the ones kept before)."""
    row: dict[str, Any] = {"pairs": [], "seen": [], "rejected": []}

    def reject(reason: str, question: str, sql: str, detail: str = "",
               feature: str = "") -> None:
        row["rejected"].append({"db_id": db_id, "feature": feature, "rule": "teacher",
                                "reason": reason, "detail": detail[:300], "query": sql,
                                "question": question})

    if completion.error:
        reject("teacher request failed", "", "", completion.error)
        return row
    found = parse_pairs(completion.text)
    if not found:
        reject("no pair in the teacher's answer", "", "", completion.text[:300])
        return row
    for question, raw_sql in found:
        sql_text = extract_sql(raw_sql) or raw_sql
        tree = parse_statement(sql_text, dialect)
        if tree is None:
            reject("query does not parse", question, sql_text)
            continue
        read_only, why = is_read_only_statement(sql_text, dialect)
        if not read_only or not isinstance(tree, exp.Query):
            reject("not a read-only query", question, sql_text, why)
            continue
        feature, tags = feature_of(tree)
        cand = Candidate(feature, "teacher", tree, question, tags)
        sql = tree.sql(dialect=dialect)
        if sql in state.copied:
            reject("copies a prompt example", question, sql, "", feature)
            continue
        reason, detail, result, template = checker.verdict(cand, sql, state)
        if reason is not None:
            reject(reason, question, sql, detail, feature)
            continue
        seen = (template, _fingerprint(result.rows))
        state.queries.add(sql)
        state.questions.add(" ".join(question.lower().split()))
        state.templates[template] += 1
        state.results.add(seen)
        row["pairs"].append({"question": question, "query": sql, "db_id": db_id,
                             "feature": feature, "features": ";".join((feature, *tags)),
                             "complexity": _complexity(sql, dialect),
                             "teacher": teacher_name, "style": "teacher", "agreement": "",
                             "rule": "teacher", "rows": len(result.rows)})
        row["seen"].append(list(seen))
    return row


# ---------------------------------------------------------------- report


def query_contexts(databases: Databases, pairs: list[dict[str, Any]]) -> None:
    """Set each pair's ``context``: the schema text of the tables its query uses
    (:func:`querycraft.sql.tables_in`, read once per set of tables). A query whose tables
    cannot be read gets an empty context, which ingest fills from the database."""
    cache: dict[tuple[str, tuple[str, ...]], str] = {}
    for pair in pairs:
        database = databases.get(pair["db_id"])
        try:
            names = tuple(sorted(tables_in(pair["query"], database.dialect)))
        except ValueError:
            names = ()
        key = (pair["db_id"], names)
        if key not in cache:
            try:
                cache[key] = database.schema_text(tables=list(names)) if names else ""
            except QueryCraftError as err:
                log.warning("synthesize: no context for tables %s: %s", names, err)
                cache[key] = ""
        pair["context"] = cache[key]


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _report(cfg: DictConfig, target: DatabaseTarget, db_ids: list[str],
            outcomes: dict[str, _Outcome], seconds: float, teacher_name: str,
            usage: Usage | None) -> dict[str, Any]:
    pairs = [p for o in outcomes.values() for p in o.pairs]
    rejected = [r for o in outcomes.values() for r in o.rejected]
    by_reason = Counter(r["reason"] for r in rejected)
    examples: dict[str, list[dict[str, str]]] = {}
    for r in rejected:
        shown = examples.setdefault(r["reason"], [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append({k: r[k] for k in ("db_id", "feature", "query", "question", "detail")})
    by_feature_complexity = {f: {c: 0 for c in COMPLEXITIES} for f in FEATURES}
    for p in pairs:
        by_feature_complexity[p["feature"]][p["complexity"]] += 1
    return {
        "database": target.describe(), "db_ids": db_ids, "seed": cfg.synthesize.seed,
        "requested": cfg.synthesize.count, "kept": len(pairs),
        "attempts": sum(o.attempts for o in outcomes.values()),
        "skipped": sum(o.skipped for o in outcomes.values()),
        "generation_seconds": round(seconds, 3),
        "weights": {f: float(cfg.synthesize.weights.get(f, 0.0)) for f in FEATURES},
        "by_feature": {f: sum(1 for p in pairs if p["feature"] == f) for f in FEATURES},
        "by_complexity": {c: sum(1 for p in pairs if p["complexity"] == c)
                          for c in COMPLEXITIES},
        "by_feature_complexity": by_feature_complexity,
        "by_db_id": {d: len(outcomes[d].pairs) for d in db_ids},
        "rejected": {"total": len(rejected), "by_reason": dict(by_reason.most_common()),
                     "examples": examples},
        "given_up": {d: o.given_up for d, o in outcomes.items() if o.given_up},
        "notes": {d: o.notes for d, o in outcomes.items() if o.notes},
        "mode": cfg.synthesize.mode, "teacher": teacher_name,
        "by_style": dict(Counter(p["style"] for p in pairs).most_common()),
        "agreement": {"setting": (cfg.synthesize.teacher.agreement
                                  if teacher_name != "none" else None),
                      "agreed": sum(1 for p in pairs if p["agreement"] == "yes"),
                      "not_agreed": sum(1 for p in pairs if p["agreement"] == "no")},
        # Over the run and its resumptions: requests, tokens, seconds spent waiting on it.
        "teacher_usage": usage.as_dict() if usage is not None else None,
    }


def _teacher_lines(report: dict[str, Any]) -> list[str]:
    usage = report["teacher_usage"]
    if usage is None:
        return []
    agreement = report["agreement"]
    styles = ", ".join(f"{s} {n}" for s, n in report["by_style"].items())
    lines = [f"- teacher requests: {usage['requests']} ({usage['failed']} failed), tokens: "
             f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion, "
             f"{usage['seconds']:.1f} s", f"- styles kept: {styles or 'none'}"]
    if report["mode"] == "sql_first":
        lines.append(f"- agreement ({agreement['setting']}): {agreement['agreed']} questions "
                     f"agreed, {agreement['not_agreed']} kept without agreement")
    return lines


def _markdown(report: dict[str, Any], output: str) -> str:
    lines = [
        "# Synthesized pairs", "",
        f"- database: {report['database']} ({', '.join(report['db_ids'])})",
        f"- kept: {report['kept']} of {report['requested']} requested, in `{output}`",
        f"- candidates tried: {report['attempts']}, rejected: {report['rejected']['total']} "
        "(see `rejected.csv`)",
        f"- generation seconds: {report['generation_seconds']}",
        f"- seed: {report['seed']}; mode: {report['mode']}; teacher: {report['teacher']}"
        + ("" if report["teacher"] != "none" else ", questions from built-in templates"),
        *_teacher_lines(report), "",
        "## By feature and complexity", "",
        "| feature | " + " | ".join(COMPLEXITIES) + " | total |",
        "|---|" + "---:|" * (len(COMPLEXITIES) + 1),
    ]
    for feature, counts in report["by_feature_complexity"].items():
        lines.append(f"| {feature} | " + " | ".join(str(counts[c]) for c in COMPLEXITIES)
                     + f" | {report['by_feature'][feature]} |")
    lines.append("| total | " + " | ".join(str(report["by_complexity"][c])
                                            for c in COMPLEXITIES) + f" | {report['kept']} |")
    lines += ["", "## Rejected queries", "", "| reason | count |", "|---|---:|"]
    lines += [f"| {r} | {n} |" for r, n in report["rejected"]["by_reason"].items()]
    for reason, shown in report["rejected"]["examples"].items():
        lines += ["", f"### {reason}", ""]
        for e in shown:
            detail = f" ({e['detail']})" if e["detail"] else ""
            lines.append(f"- `{e['query']}`{detail}")
    if report["given_up"] or report["notes"]:
        lines += ["", "## Notes", ""]
        for db_id, features in report["given_up"].items():
            lines += [f"- {db_id}: {f}: {why}" for f, why in features.items()]
        for db_id, notes in report["notes"].items():
            lines += [f"- {db_id}: {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry


def run(cfg: DictConfig) -> Path:
    """Synthesize ``synthesize.count`` pairs into the run folder.

    Returns:
        The run folder.

    Raises:
        QueryCraftError: When the database cannot be read, has no table with rows, or no
            candidate survives the checks.
    """
    settings = cfg.synthesize
    target, db_ids = _targets(cfg)
    quotas = dict(zip(db_ids, _shares(settings.count, len(db_ids)), strict=True))
    with start_run(cfg, "synthesize", resumable=True) as run_, Databases(target) as databases:
        exclusion = (Exclusion.of_run(settings.exclude, cfg.paths.output_dir)
                     if settings.exclude else None)
        teacher = make_teacher(cfg) if settings.teacher.kind != "none" else None
        journal = Journal(run_.path(JOURNAL), run_.resumed) if teacher is not None else None
        began = time.perf_counter()
        outcomes: dict[str, _Outcome] = {d: _Outcome() for d in db_ids}
        try:
            if settings.mode == "teacher_first":
                with tqdm(total=settings.count, desc="teacher writing pairs",
                          unit="pair") as bar:
                    for db_id, quota in quotas.items():
                        if quota:
                            outcomes[db_id] = teacher_first_database(
                                databases.get(db_id), db_id, quota, cfg, teacher, journal, bar,
                                exclusion)
            else:
                with tqdm(total=settings.count, desc="synthesizing", unit="pair") as bar:
                    for db_id, quota in quotas.items():
                        if quota:
                            outcomes[db_id] = synthesize_database(databases.get(db_id), db_id,
                                                                  quota, cfg, bar, exclusion)
                if teacher is not None:
                    with tqdm(total=sum(len(o.pairs) for o in outcomes.values()),
                              desc="teacher questions", unit="pair") as bar:
                        for db_id, outcome in outcomes.items():
                            if outcome.pairs:
                                question_with_teacher(databases.get(db_id), db_id, outcome, cfg,
                                                      teacher, journal, bar)
        finally:
            if journal is not None:
                journal.close()
        seconds = time.perf_counter() - began
        pairs = [p for o in outcomes.values() for p in o.pairs]
        rejected = [r for o in outcomes.values() for r in o.rejected]
        fields = PAIR_FIELDS
        if settings.context == "query_tables":
            query_contexts(databases, pairs)
            fields = (*PAIR_FIELDS[:2], "context", *PAIR_FIELDS[2:])
        _write_csv(run_.path(settings.output), fields, pairs)
        _write_csv(run_.path("rejected.csv"), REJECT_FIELDS, rejected)
        report = _report(cfg, target, db_ids, outcomes, seconds,
                         teacher.name if teacher is not None else "none",
                         journal.usage() if journal is not None else None)
        run_.path("report.json").write_text(json.dumps(report, indent=2, default=str),
                                            encoding="utf-8")
        run_.path("report.md").write_text(_markdown(report, settings.output), encoding="utf-8")
        if not pairs:
            reasons = ", ".join(f"{r} ({n})" for r, n in report["rejected"]["by_reason"].items())
            raise QueryCraftError(
                f"No question/SQL pair survived on {target.describe()}: every candidate was "
                f"rejected ({reasons or 'no rule found a table with rows to query'}). See "
                f"{run_.path('report.md')}; a database with more rows and columns, or more "
                "synthesize.max_attempts, gives the rules more to work with.")
        if len(pairs) < settings.count:
            log.warning("synthesize: kept %d of the %d pairs asked for (the database has no "
                        "more distinct queries the rules can write); see %s", len(pairs),
                        settings.count, run_.path("report.md"))
        run_.record(pairs=str(run_.path(settings.output)), count=len(pairs),
                    database=target.describe(), db_ids=db_ids, by_feature=report["by_feature"],
                    generation_seconds=report["generation_seconds"])
        log.info("synthesize: %d pairs in %s (%.1f s); report in %s", len(pairs),
                 run_.path(settings.output), seconds, run_.path("report.md"))
    return run_.dir
