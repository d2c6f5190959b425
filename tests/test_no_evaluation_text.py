"""No evaluation text in the package (issue 31, item 4).

The synthesizer's rules, templates and prompts must not be tuned by reading the evaluation
sets: the questions and gold queries of the bundled sample (``input/sample/shop.csv``, every
row, since any row may land in an evaluation split) and of Spider dev (the bundled
``tests/fixtures/spider/dev.json`` always, the shared ``../shared/spider-dev`` where present).
A benchmark of the package on those questions is only blind if none of their text is in it.

Three checks over every ``.py`` file under ``querycraft/`` and every file under ``prompts/``:

* no run of :data:`NGRAM` consecutive words of an evaluation question (lower-cased, punctuation
  stripped, whitespace collapsed; a ``{placeholder}`` in the source breaks a run);
* no gold query of shop.csv (lower-cased, whitespace collapsed);
* no name-like string value of a shop.csv gold query (``= 'X'``, ``LIKE '%X%'``, a capitalised
  word of 4+ letters, or a phrase of such words) as a whole word, unless it is an SQL keyword
  or a table/column name of the shop schema.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlglot.tokens import Tokenizer

from tests.conftest import FIXTURE_SPIDER, PROJECT_ROOT, shared_spider

NGRAM = 6
SHOP_CSV = PROJECT_ROOT / "input" / "sample" / "shop.csv"
SHOP_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"

# A placeholder such as {table} or {0} in a source file ends a run of words.
_PLACEHOLDER = re.compile(r"\{[^{}\n]*\}")
_BREAK = "\x00"
_WORD = re.compile(r"[a-z0-9]+|\x00")
# An apostrophe inside a word is dropped ("customer's" -> "customers"); other punctuation,
# underscores included, separates words.
_INNER_APOSTROPHE = re.compile(r"(?<=[a-z0-9])['\u2019](?=[a-z0-9])")

# Words that are SQL, not values (sqlglot's keywords): a literal equal to one is no leak.
SQL_KEYWORDS = frozenset(word.lower() for keyword in Tokenizer.KEYWORDS
                         for word in keyword.split() if word.isalpha())


def _words(text: str) -> list[str]:
    """``text`` lower-cased, apostrophes inside words dropped, split into words."""
    return _WORD.findall(_INNER_APOSTROPHE.sub("", text.lower()))


def _ngrams(words: list[str], n: int = NGRAM) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Each run of ``n`` consecutive words (none of them a break), with its start index."""
    for start in range(len(words) - n + 1):
        gram = tuple(words[start:start + n])
        if _BREAK not in gram:
            yield start, gram


def _collapse(text: str) -> str:
    return " ".join(text.lower().split())


def _package_files() -> list[Path]:
    files = sorted((PROJECT_ROOT / "querycraft").rglob("*.py"))
    files += sorted(p for p in (PROJECT_ROOT / "prompts").rglob("*") if p.is_file())
    return [p for p in files if "__pycache__" not in p.parts]


class _Source:
    """One package file: its words (with the line of each) and its collapsed text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8", errors="replace")
        self.words: list[str] = []
        self.word_lines: list[int] = []
        for number, line in enumerate(_PLACEHOLDER.sub(f" {_BREAK} ", self.text).splitlines(), 1):
            found = _words(line)
            self.words += found
            self.word_lines += [number] * len(found)

    @property
    def name(self) -> str:
        inside = self.path.is_relative_to(PROJECT_ROOT)
        return str(self.path.relative_to(PROJECT_ROOT) if inside else self.path)

    def line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1


@cache
def _sources() -> tuple[_Source, ...]:
    return tuple(_Source(path) for path in _package_files())


def _source_ngrams(sources: tuple[_Source, ...]
                   ) -> dict[tuple[str, ...], list[tuple[_Source, int]]]:
    """Every n-gram of ``sources``, with where it starts (file, line)."""
    found: dict[tuple[str, ...], list[tuple[_Source, int]]] = {}
    for source in sources:
        for start, gram in _ngrams(source.words):
            found.setdefault(gram, []).append((source, source.word_lines[start]))
    return found


@cache
def _shop_rows() -> tuple[dict[str, str], ...]:
    with SHOP_CSV.open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


def _spider_questions(dev_json: Path) -> list[str]:
    return [item["question"] for item in json.loads(dev_json.read_text(encoding="utf-8"))]


@cache
def _package_ngrams() -> dict[tuple[str, ...], list[tuple[_Source, int]]]:
    return _source_ngrams(_sources())


def _question_leaks(questions: list[str], label: str,
                    sources: tuple[_Source, ...] | None = None) -> list[str]:
    """Each run of NGRAM words of ``questions`` found in ``sources`` (default: the package),
    as "file:line: 'the words' (from <label> question '...')"."""
    package = _package_ngrams() if sources is None else _source_ngrams(sources)
    leaks: dict[tuple[str, int, str], str] = {}
    for question in questions:
        for _, gram in _ngrams(_words(question)):
            for source, line in package.get(gram, ()):
                leaks.setdefault((source.name, line, " ".join(gram)),
                                 f"{source.name}:{line}: {' '.join(gram)!r} "
                                 f"(from {label} question {question!r})")
    return [leaks[key] for key in sorted(leaks)]


def _report(leaks: list[str], what: str) -> str:
    shown = "\n".join(leaks[:200])
    more = f"\n... and {len(leaks) - 200} more" if len(leaks) > 200 else ""
    return f"{len(leaks)} {what} in the package:\n{shown}{more}"


def test_no_shop_question_text() -> None:
    leaks = _question_leaks([row["question"] for row in _shop_rows()], "shop.csv")
    assert not leaks, _report(leaks, f"{NGRAM}-word runs of shop.csv questions")


def test_no_bundled_spider_dev_question_text() -> None:
    leaks = _question_leaks(_spider_questions(FIXTURE_SPIDER / "dev.json"), "Spider dev")
    assert not leaks, _report(leaks, f"{NGRAM}-word runs of Spider dev questions")


def test_no_shared_spider_dev_question_text() -> None:
    leaks = _question_leaks(_spider_questions(shared_spider() / "dev.json"), "Spider dev")
    assert not leaks, _report(leaks, f"{NGRAM}-word runs of Spider dev questions")


def _gold_query_leaks(sources: tuple[_Source, ...]) -> list[str]:
    """Each shop.csv gold query (lower-cased, whitespace collapsed) found in ``sources``."""
    leaks = []
    for row in _shop_rows():
        gold = _collapse(row["query"]).rstrip(";").strip()
        for source in sources:
            collapsed = _collapse(source.text)
            start = collapsed.find(gold)
            while start >= 0:
                line = _line_of_collapsed(source.text, start)
                leaks.append(f"{source.name}:{line}: gold query {row['query']!r}")
                start = collapsed.find(gold, start + 1)
    return leaks


@pytest.mark.slow
def test_no_shop_gold_query() -> None:
    leaks = _gold_query_leaks(_sources())
    assert not leaks, _report(leaks, "shop.csv gold queries")


def _line_of_collapsed(text: str, offset: int) -> int:
    """The line of ``text`` at which the character ``offset`` of its collapsed form lies."""
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        length = len(" ".join(line.split()))
        if seen + length >= offset:
            return number
        seen += length + (1 if length else 0)
    return text.count("\n") + 1


@cache
def _shop_schema_names() -> frozenset[str]:
    """The shop database's table and column names, lower-cased."""
    names: set[str] = set()
    with sqlite3.connect(f"file:{SHOP_DB}?mode=ro", uri=True) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            names.add(table.lower())
            names.update(row[1].lower() for row in connection.execute(
                f'PRAGMA table_info("{table}")'))
    return frozenset(names)


_LITERAL = re.compile(r"(?:=|\blike)\s*'([^']*)'", re.IGNORECASE)
_NAME_WORD = re.compile(r"[A-Z][a-z]{3,}")


def _shop_gold_names() -> dict[str, str]:
    """Each name-like string value of a shop.csv gold query, with the query it comes from."""
    allowed = SQL_KEYWORDS | _shop_schema_names()
    names: dict[str, str] = {}
    for row in _shop_rows():
        for match in _LITERAL.finditer(row["query"]):
            value = match.group(1).strip("%").strip()
            words = value.split()
            # A name, or a phrase of capitalised words with a name among them ('Oak Shelf').
            if not any(_NAME_WORD.fullmatch(word) for word in words):
                continue
            if len(words) == 1 and not _NAME_WORD.fullmatch(value):
                continue
            if not all(word[:1].isupper() for word in words) or value.lower() in allowed:
                continue
            names.setdefault(value, row["query"])
    return names


def test_gold_names_are_found() -> None:
    """The check below reads real names out of the gold queries (else it would pass vacuously)."""
    names = _shop_gold_names()
    assert {"Ricci", "Weber", "Lyon"} <= set(names)
    assert "Mechanical Keyboard" in names


def _gold_value_leaks(sources: tuple[_Source, ...]) -> list[str]:
    """Each name-like value of a shop.csv gold query found as a whole word in ``sources``."""
    leaks = []
    # A single word the code itself writes in lower case ('data', 'desk') is vocabulary, not
    # a value taken from the data: it counts only where it is a name ('Ricci', 'Lyon').
    vocabulary = {word for source in sources for word in re.findall(r"\b[a-z]{4,}\b",
                                                                    source.text)}
    for value, query in sorted(_shop_gold_names().items()):
        if " " not in value and value.lower() in vocabulary:
            continue
        pattern = re.compile(r"(?<![A-Za-z0-9_])" + r"\s+".join(map(re.escape, value.split()))
                             + r"(?![A-Za-z0-9_])")
        for source in sources:
            for match in pattern.finditer(source.text):
                leaks.append(f"{source.name}:{source.line_of(match.start())}: {value!r} "
                             f"(a value of gold query {query!r})")
    return leaks


@pytest.mark.slow
def test_no_shop_gold_values() -> None:
    leaks = _gold_value_leaks(_sources())
    assert not leaks, _report(leaks, "shop.csv gold values")


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize("question, expected", [
    ("How many loans does member 12 have?", ["how", "many", "loans", "does", "member", "12",
                                              "have"]),
    ("Which member's books are overdue?", ["which", "members", "books", "are", "overdue"]),
])
def test_normalisation(question: str, expected: list[str]) -> None:
    assert _words(question) == expected


def test_placeholders_break_runs(tmp_path: Path) -> None:
    path = tmp_path / "template.py"
    path.write_text('Q = "list the books of {author} written by that author"\n')
    source = _Source(path)
    assert _BREAK in source.words
    assert all(_BREAK not in gram for _, gram in _ngrams(source.words))
    assert not any(gram[:3] == ("books", "of", "written") for _, gram in _ngrams(source.words))


def test_each_check_finds_a_planted_leak(tmp_path: Path) -> None:
    """A file quoting a sample question (split over two comment lines), a gold query and a
    gold value is caught by each check, at the right line; a made-up example is not."""
    row = next(r for r in _shop_rows() if "Ricci" in r["query"])
    words = row["question"].rstrip(".?").split()
    path = tmp_path / "planted.py"
    path.write_text(
        '"""Rules."""\n\n'
        f"# e.g. {' '.join(words[:3])}\n# {' '.join(words[3:])}\n"
        "X = 1\n"
        f"GOLD = (\n    {row['query']!r}\n)\n"
        "# Which loans of member 12 are overdue and unpaid by now?\n", encoding="utf-8")
    planted = (_Source(path),)
    found = _question_leaks([row["question"]], "shop.csv", planted)
    assert found and all(leak.startswith(f"{path}:3: ") or leak.startswith(f"{path}:4: ")
                         for leak in found), found
    assert _question_leaks(["Which books of member 12 are overdue today?"], "made-up",
                           planted) == []  # five words in a row at most
    gold = _gold_query_leaks(planted)
    assert gold and gold[0].startswith(f"{path}:7: gold query "), gold
    values = _gold_value_leaks(planted)
    assert any(leak.startswith(f"{path}:7: 'Ricci'") for leak in values), values
