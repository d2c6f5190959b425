"""Prompt templates: one renderer for training and inference."""

from __future__ import annotations

import pytest

from querycraft.errors import QueryCraftError
from querycraft.prompts import (
    load_template,
    parse_template,
    render_prompt,
    render_target,
    render_training_text,
)
from tests.conftest import PROJECT_ROOT

FIELDS = {"question": "How many singers?", "context": "CREATE TABLE singer (id INT);",
          "dialect": "SQLite", "db_id": "concert"}


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "prompts").glob("*.txt")))
def test_shipped_templates_prompt_is_prefix_of_training_text(path):
    template = load_template(str(path), PROJECT_ROOT / "prompts")
    text = render_training_text(template, query="SELECT count(*) FROM singer", **FIELDS)
    prompt = render_prompt(template, **FIELDS)
    assert text.startswith(prompt)
    assert text[len(prompt):].startswith("SELECT count(*) FROM singer")


def test_render_fills_every_placeholder():
    template = parse_template(
        "Schema: {context}\nDB {db_id} in {dialect}\nQ: {question}\nA: {query}")
    assert render_prompt(template, **FIELDS) == (
        "Schema: CREATE TABLE singer (id INT);\nDB concert in SQLite\nQ: How many singers?\nA: ")


def test_text_after_query_is_part_of_the_target_and_a_stop_string():
    template = parse_template("Q: {question}\nSQL: {query}\n### End\n")
    assert render_target(template, "SELECT 1") == "SELECT 1\n### End"
    assert template.stop_string == "### End"


def test_escaped_braces_stay_literal():
    template = parse_template("Use {{JSON}} {question} -> {query} {{done}}")
    assert render_prompt(template, question="q") == "Use {JSON} q -> "
    assert template.suffix == " {done}"


@pytest.mark.parametrize(("text", "needle"), [
    ("{question} {query} {colour}", "{colour}"),
    ("{context} {query}", "{question}"),
    ("{question}", "{query}"),
    ("{question} {query} {query}", "more than once"),
    ("{question} {query} {context}", "after {query}"),
    ("{question {query}", "malformed"),
])
def test_bad_templates_are_clear_errors(text, needle):
    with pytest.raises(QueryCraftError, match="Prompt template") as caught:
        parse_template(text, "bad.txt")
    assert needle in str(caught.value)


def test_missing_template_lists_available(tmp_path):
    with pytest.raises(QueryCraftError) as caught:
        load_template("nosuch", PROJECT_ROOT / "prompts")
    assert "default" in str(caught.value)
