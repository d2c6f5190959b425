"""Value-aware context: the database's own text values that match words of a question, for
the prompt's ``{values}`` placeholder, so the model copies 'corporate' and not 'Corporate'.

At ingest (``ingest.value_index.enabled``) :func:`read_values` reads each database's distinct text
values once through the read-only execution layer, and :class:`ValueIndex` keeps them with an
inverted index of their words; the index is stored with the ingest run (``values/<db_id>.json``)
so that questions asked later (``service=ask``, ``serve``, ``infer question=...``) get their
values the way the training rows did. Matching is BM25-like: a value matches when the question
holds all its words (most of them, for long values), light plural folding included, and
matches rank by the rarity of the words they share with the question (inverse document
frequency over all values of the database); at most ``max_values`` lines and about
``max_tokens`` tokens (4 characters a token) go into the prompt.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlglot import exp

__all__ = ["ValueIndex", "ValueIndexConfig", "index_file", "read_values"]

_WORD = re.compile(r"\w+", re.UNICODE)
# Words that say nothing about which value is meant.
_STOPWORDS = frozenset(
    """a an and are as at be by did do does for from has have how in is it its of on or that the
    their there these this those to was were what when where which who whom whose why with all
    any each list show give name names many much number me find""".split()  # noqa: SIM905
)


@dataclass
class ValueIndexConfig:
    # Build the index at ingest and fill each row's "values" field (the {values} placeholder
    # of the template, e.g. prompts/values.txt).
    enabled: bool = False
    # Distinct values read per text column (the first, in the database's order).
    per_column: int = 5000
    # Longer values (addresses, descriptions) are not indexed.
    max_value_chars: int = 80
    # Lines per prompt, and about this many tokens in all (4 characters a token).
    max_values: int = 8
    max_tokens: int = 96


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 or w.isdigit()]


def _fold(word: str) -> str:
    """A plural's singular, roughly (cities -> city, boxes -> box, singers -> singer)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _keys(text: str) -> list[str]:
    return [_fold(w) for w in _words(text) if w not in _STOPWORDS]


class ValueIndex:
    """The text values of one database and an inverted index of their words."""

    def __init__(self, columns: dict[str, list[str]]) -> None:
        self.columns = columns
        # (column, value, its distinct keys) per indexed value
        self.entries: list[tuple[str, str, tuple[str, ...]]] = []
        self.postings: dict[str, list[int]] = defaultdict(list)
        for column, values in columns.items():
            for value in values:
                keys = tuple(dict.fromkeys(_keys(value)))
                if not keys or all(k.isdigit() for k in keys):
                    continue
                number = len(self.entries)
                self.entries.append((column, value, keys))
                for key in keys:
                    self.postings[key].append(number)
        total = max(len(self.entries), 1)
        self.idf = {k: math.log(1 + total / len(p)) for k, p in self.postings.items()}

    def match(self, question: str, max_values: int = 8) -> list[tuple[str, str]]:
        """``(table.column, value)`` pairs whose words the question holds, best first."""
        asked = set(_keys(question))
        hits: dict[int, int] = defaultdict(int)
        for key in asked:
            for number in self.postings.get(key, ()):
                hits[number] += 1
        scored = []
        for number, shared in hits.items():
            column, value, keys = self.entries[number]
            # Short values must be in the question whole; long ones mostly.
            if shared < len(keys) if len(keys) <= 3 else shared < 0.66 * len(keys):
                continue
            score = sum(self.idf[k] for k in keys if k in asked) / math.sqrt(len(keys))
            scored.append((-score, len(value), column, value))
        scored.sort()
        found, seen = [], set()
        for _, _, column, value in scored:
            if (column, value) not in seen:
                seen.add((column, value))
                found.append((column, value))
            if len(found) >= max_values:
                break
        return found

    def render(self, question: str, max_values: int = 8, max_tokens: int = 96) -> str:
        """The prompt's ``{values}`` text: one ``table.column = 'value'`` line per match,
        within ``max_tokens`` (4 characters a token); empty when nothing matches."""
        lines, used = [], 0
        for column, value in self.match(question, max_values):
            line = f"{column} = '{value.replace(chr(39), chr(39) * 2)}'"
            if (used + len(line) + 1) > 4 * max_tokens:
                break
            lines.append(line)
            used += len(line) + 1
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"columns": self.columns}, ensure_ascii=False),
                        encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ValueIndex:
        return cls(json.loads(path.read_text(encoding="utf-8"))["columns"])


def read_values(database: Any, settings: ValueIndexConfig, timeout_s: float = 10.0
                ) -> dict[str, list[str]]:
    """``{"table.column": [distinct text values]}`` of a database (a
    :class:`querycraft.db.Database`), each column read read-only with its own query; a
    column that fails is skipped."""
    from querycraft.engines.base import QueryError

    columns: dict[str, list[str]] = {}
    for table, names in database.columns_by_table().items():
        for name in names:
            query = (exp.select(exp.column(name, quoted=True)).distinct()
                     .from_(exp.table_(table, quoted=True))
                     .where(exp.column(name, quoted=True).is_(exp.null()).not_())
                     .limit(settings.per_column))
            try:
                rows = database.execute(query.sql(dialect=database.dialect),
                                        timeout_s=timeout_s, max_rows=settings.per_column).rows
            except QueryError:
                continue
            texts = [v for (v,) in rows if isinstance(v, str) and v.strip()
                     and len(v) <= settings.max_value_chars
                     and any(c.isalpha() for c in v)]
            if texts:
                columns[f"{table}.{name}"] = texts
    return columns


def index_file(folder: Path, db_id: str) -> Path:
    """Where an ingest run keeps one database's index (a db_id made safe as a file name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", db_id or "default")
    return folder / f"{safe}.json"
