"""Training data as Arrow datasets: the ingest output loads with ``datasets``, and finetune's
tokenized copy is cached on disk, keyed by rows, template, dialect and tokenizer."""

from __future__ import annotations

import json

import datasets
import pytest

from querycraft.artifacts import DATASET_DIR
from querycraft.data import encode_example, load_rows, tokenized_dataset
from querycraft.models import train_tokenizer
from querycraft.prompts import load_template
from querycraft.services import ingest
from querycraft.services.finetune import encode_split, split_validation
from tests.conftest import make_config

ROWS = [
    {"id": f"train-{i:05d}",
     "question": f"How many singers are older than {i}?" + " Count them all." * (i % 4),
     "query": f"SELECT count(*) FROM singer WHERE age > {i}",
     "context": "CREATE TABLE singer (id INT, name TEXT, age INT)", "db_id": "concert_singer"}
    for i in range(30)
]


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


@pytest.fixture
def tokenizer(tmp_path):
    corpus = [r["question"] + r["query"] + r["context"] for r in ROWS]
    return train_tokenizer(corpus, 300, tmp_path / "tok")


def test_tokenized_rows_are_the_ids_of_encode_example(tmp_path, rows_file, tokenizer):
    template = load_template("default", make_config(tmp_path).paths.prompts_dir)
    encoded = tokenized_dataset(load_rows(rows_file, tmp_path / "cache"), template, "SQLite",
                                tokenizer)
    assert len(encoded) == len(ROWS)
    for row, example in zip(ROWS, encoded, strict=True):
        expected = encode_example(row, template, "SQLite", tokenizer)
        assert example["input_ids"] == expected["input_ids"]
        assert example["prompt_length"] == expected["prompt_length"]
        assert example["length"] == len(expected["input_ids"])


def test_tokenized_rows_are_cached_and_a_new_template_is_not_served_stale_ids(
        tmp_path, rows_file, tokenizer):
    template = load_template("default", make_config(tmp_path).paths.prompts_dir)
    cache = tmp_path / "cache"
    first = tokenized_dataset(load_rows(rows_file, cache), template, "SQLite", tokenizer)
    (cache_file,) = {f["filename"] for f in first.cache_files} - {
        f["filename"] for f in load_rows(rows_file, cache).cache_files}
    written = (tmp_path / cache_file).stat().st_mtime_ns
    again = tokenized_dataset(load_rows(rows_file, cache), template, "SQLite", tokenizer)
    assert cache_file in {f["filename"] for f in again.cache_files}
    assert (tmp_path / cache_file).stat().st_mtime_ns == written  # read back, not rewritten

    changed = load_template("chatml", make_config(tmp_path).paths.prompts_dir)
    assert changed.text != template.text
    other = tokenized_dataset(load_rows(rows_file, cache), changed, "SQLite", tokenizer)
    assert cache_file not in {f["filename"] for f in other.cache_files}
    assert other[0]["input_ids"] == encode_example(ROWS[0], changed, "SQLite",
                                                   tokenizer)["input_ids"]
    postgres = tokenized_dataset(load_rows(rows_file, cache), template, "PostgreSQL", tokenizer)
    assert cache_file not in {f["filename"] for f in postgres.cache_files}


def test_validation_split_of_a_dataset_matches_the_list_split(tmp_path, rows_file):
    rows = load_rows(rows_file, tmp_path / "cache")
    train, val = split_validation(rows, 0.1, seed=3)
    list_train, list_val = split_validation(ROWS, 0.1, seed=3)
    assert [r["id"] for r in train] == [r["id"] for r in list_train]
    assert [r["id"] for r in val] == [r["id"] for r in list_val]
    train, val = split_validation(rows, 0.0, seed=3)
    assert len(train) == len(ROWS) and len(val) == 0


def test_too_long_examples_are_left_out_and_listed(tmp_path, rows_file, tokenizer):
    cfg = make_config(tmp_path, ["train.max_seq_length=40"])
    template = load_template("default", cfg.paths.prompts_dir)
    rows = load_rows(rows_file, tmp_path / "cache")
    full = tokenized_dataset(rows, template, "SQLite", tokenizer)
    limit = sorted(set(full["length"]))[1]  # the two shortest lengths are kept
    cfg.train.max_seq_length = limit
    split = encode_split(rows, template, cfg, tokenizer)
    assert split.too_long and all(n > limit for _, n in split.too_long)
    assert len(split.examples) + len(split.too_long) == len(ROWS)
    assert max(split.examples["length"]) <= limit
    assert split.input_tokens() == sum(split.examples["length"])


@pytest.mark.slow
def test_ingest_output_loads_with_datasets_load_dataset(tmp_path):
    cfg = make_config(tmp_path, ["data=sample"])
    run_dir = ingest.run(cfg)
    loaded = datasets.load_dataset(str(run_dir / DATASET_DIR),
                                   cache_dir=str(tmp_path / "hf"))
    counts = json.loads((run_dir / "report.json").read_text())
    # datasets names a file called eval.* the "test" split.
    assert (loaded["train"].num_rows, loaded["test"].num_rows) == (counts["train"],
                                                                   counts["eval"])
    assert {"question", "query", "context", "db_id"} <= set(loaded["train"].column_names)
