"""Value-aware context: the index of a database's text values, its matching, and ingest,
training prompts and later questions sharing one renderer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from querycraft import db as dbmod
from querycraft.cli import run
from querycraft.contexts import question_contexts
from querycraft.data import prompt_for
from querycraft.errors import QueryCraftError
from querycraft.prompts import load_template
from querycraft.runs import read_jsonl
from querycraft.targets import DatabaseTarget
from querycraft.values import ValueIndex, ValueIndexConfig, read_values
from tests.conftest import PROJECT_ROOT, make_config

CONCERT = (Path(__file__).parent / "fixtures" / "spider" / "database" / "concert_singer"
           / "concert_singer.sqlite")
SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"

INDEX = ValueIndex({
    "customer.segment": ["corporate", "small business", "consumer"],
    "address.city": ["Milan", "New York", "York", "Lyon"],
    "product.category": ["Books", "office supplies"],
    "contact.channel": ["phone", "email"],
})


@pytest.mark.parametrize(("question", "expected"), [
    ("How many corporate customers are there?", [("customer.segment", "corporate")]),
    ("List small business customers.", [("customer.segment", "small business")]),
    ("Which customers are small?", []),  # part of a two-word value is not enough
    ("Addresses in new york", [("address.city", "New York"), ("address.city", "York")]),
    ("How many books were sold?", [("product.category", "Books")]),  # plural, any case
    ("Orders from MILAN or lyon", [("address.city", "Lyon"), ("address.city", "Milan")]),
    ("What is the total?", []),
])
def test_values_that_the_question_names_are_found(question, expected):
    assert sorted(INDEX.match(question)) == sorted(expected)


def test_rendered_values_keep_the_database_spelling_and_respect_the_caps():
    text = INDEX.render("corporate customers in milan with books")
    # Equally rare words: shorter values first, then by column.
    assert text.splitlines() == ["address.city = 'Milan'", "product.category = 'Books'",
                                 "customer.segment = 'corporate'"]
    assert len(INDEX.render("corporate customers in milan with books", max_values=2)
               .splitlines()) == 2
    assert INDEX.render("corporate customers in milan with books", max_tokens=8).count("\n") \
        == 0  # 32 characters: one line
    quoted = ValueIndex({"t.c": ["O'Brien"]}).render("Is O'Brien here?")
    assert quoted == "t.c = 'O''Brien'"


def test_rarer_words_rank_first():
    index = ValueIndex({"t.status": ["open"], "t.city": ["Ghent"],
                        "t.kind": ["open", "closed", "open air"]})
    assert index.match("open cases in Ghent")[0] == ("t.city", "Ghent")


def test_read_values_from_a_spider_database():
    with dbmod.SqliteDatabase(CONCERT) as database:
        columns = read_values(database, ValueIndexConfig())
    assert "France" in columns["singer.Country"]
    assert all(isinstance(v, str) for values in columns.values() for v in values)
    assert not any(k.endswith("Singer_ID") for k in columns)  # numbers are not text values
    index = ValueIndex(columns)
    assert ("singer.Country", "France") in index.match("What are the names of singers from "
                                                       "france?")


@pytest.mark.slow
def test_ingest_stores_the_index_and_later_questions_get_the_same_values(tmp_path):
    output = tmp_path / "output"
    ingest = run(make_config(output, ["service=ingest", "ingest.value_index.enabled=true",
                                      "prompt.template=values"], output / "ingest"))
    rows = read_jsonl(ingest / "dataset" / "train.jsonl")
    assert all("values" in r for r in rows)
    report = json.loads((ingest / "report.json").read_text())
    assert report["values"]["databases"] == 1 and report["values"]["questions_with_values"] > 0
    assert (ingest / "values" / "shop.json").is_file()
    with_values = next(r for r in rows if "'" in r["values"])
    template = load_template("values", PROJECT_ROOT / "prompts")
    prompt = prompt_for(with_values, template, "SQLite")
    assert with_values["values"] in prompt  # the training prompt carries them
    cfg = make_config(output, ["service=infer"])
    contexts = question_contexts(cfg.db, str(SAMPLE_DB), ingest)
    try:
        assert contexts.values("shop", with_values["question"]) == with_values["values"]
    finally:
        contexts.close()
    # Without the setting, no values: the field is absent and the placeholder renders empty.
    plain = run(make_config(output, ["service=ingest"], output / "plain"))
    assert "values" not in read_jsonl(plain / "dataset" / "train.jsonl")[0]
    assert not (plain / "values").exists()


def test_value_index_without_a_database_is_a_clear_error(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text("question,query,context\nHow many?,SELECT 1,CREATE TABLE t (a INT);\n"
                   "How many more?,SELECT 2,CREATE TABLE t (a INT);\n")
    cfg = make_config(tmp_path / "out", ["service=ingest", "data=csv_db", f"data.path={csv}",
                                         "data.database=null",
                                         "ingest.value_index.enabled=true"],
                      tmp_path / "out" / "ingest")
    with pytest.raises(QueryCraftError, match="value_index"):
        run(cfg)


def test_read_values_on_postgres(postgres_url):
    from tests.conftest import create_singers, postgres_read_only_role

    with postgres_read_only_role(create_singers(postgres_url)) as url, \
            dbmod.Databases(DatabaseTarget("postgres", url=url)) as databases:
        columns = read_values(databases.get(), ValueIndexConfig())
    assert sorted(columns["singer.name"]) == ["Joe Sharp", "Justin Brown", "Timbaland"]
    assert ValueIndex(columns).match("songs by timbaland") == [("singer.name", "Timbaland")]
