"""Ingest: every input format (CSV in chunks, Excel, Parquet, JSON), validation with per-row
reports (tabular rows numbered with the header as row 1), clear errors, splitting."""

from __future__ import annotations

import csv
import json

import pytest

from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from querycraft.services import ingest
from tests.conftest import FIXTURE_SPIDER, PROJECT_ROOT, shared_spider

SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"
CONTEXT = "CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, first_name TEXT);"


def write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def ingest_csv(config_factory, path, *extra):
    cfg = config_factory(["data=csv", f"data.path={path}", "data.database=null", *extra])
    return ingest.run(cfg)


def dropped_rows(run_dir):
    with (run_dir / "dropped.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_sample_data_ingests_with_schema_checks(config_factory):
    run_dir = ingest.run(config_factory(["service=ingest"]))
    info = read_manifest(run_dir)
    assert info["status"] == "completed"
    train = read_jsonl(run_dir / "dataset" / "train.jsonl")
    evaluation = read_jsonl(run_dir / "dataset" / "eval.jsonl")
    assert len(train) + len(evaluation) == info["counts"]["train"] + info["counts"]["eval"]
    assert 0.08 < len(evaluation) / (len(train) + len(evaluation)) < 0.12
    report = json.loads((run_dir / "report.json").read_text())
    assert report["dropped"] == 0
    lengths = report["token_lengths"]
    assert lengths["p50"] <= lengths["p90"] <= lengths["max"]
    assert "tiny preset" in lengths["measured_with"]
    assert (run_dir / "report.md").read_text().startswith("# Ingest report")


@pytest.mark.slow
def test_split_is_deterministic_and_seeded(config_factory):
    first = ingest.run(config_factory(["seed=3"], name="a"))
    second = ingest.run(config_factory(["seed=3"], name="b"))
    third = ingest.run(config_factory(["seed=4"], name="c"))
    ids = lambda run_dir: [r["question"] for r in read_jsonl(run_dir / "dataset" / "eval.jsonl")]  # noqa: E731
    assert ids(first) == ids(second)
    assert ids(first) != ids(third)


def test_csv_without_query_column_is_a_clear_error(config_factory, tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["question", "sql", "context"],
                     [["How many?", "SELECT 1", CONTEXT]])
    with pytest.raises(QueryCraftError) as caught:
        ingest_csv(config_factory, path)
    message = str(caught.value)
    assert "'query'" in message and "sql" in message and "data.columns.query" in message


def test_column_names_are_configurable(config_factory, tmp_path):
    rows = [[f"Name of customer {i}?", f"SELECT first_name FROM customer WHERE customer_id = {i}",
             CONTEXT] for i in range(1, 6)]
    path = write_csv(tmp_path / "mine.csv", ["text", "sql", "schema"], rows)
    run_dir = ingest_csv(config_factory, path, "data.columns.question=text",
                         "data.columns.query=sql", "data.columns.context=schema")
    assert read_manifest(run_dir)["counts"]["dropped"] == 0


def test_empty_file_is_a_clear_error(config_factory, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(QueryCraftError, match="is empty"):
        ingest_csv(config_factory, path)


@pytest.mark.slow
def test_non_utf8_file_is_a_clear_error(config_factory, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,query,context\nQuel café?,SELECT 1,x\n".encode("latin-1"))
    with pytest.raises(QueryCraftError) as caught:
        ingest_csv(config_factory, path)
    message = str(caught.value)
    assert "not UTF-8" in message and "Save the file as UTF-8" in message
    assert "byte 0xe9 at offset 31 " in message


def test_malformed_csv_is_a_clear_error(config_factory, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('question,query,context\n"How many,SELECT 1,x\n')
    with pytest.raises(QueryCraftError, match="well-formed CSV"):
        ingest_csv(config_factory, path)


def test_bad_rows_are_reported_and_left_out(config_factory, tmp_path):
    good = ["Name of customer 1?", "SELECT first_name FROM customer WHERE customer_id = 1",
            CONTEXT]
    rows = [
        good,                                                   # line 2: kept
        ["", "SELECT 1", CONTEXT],                              # line 3: empty question
        ["Anything?", "  ", CONTEXT],                           # line 4: empty query
        ["Broken?", "SELEC name FROM", CONTEXT],                # line 5: does not parse
        ["No schema?", "SELECT 1", ""],                         # line 6: no context
        [good[0].upper(), good[1], CONTEXT],                    # line 7: duplicate question
        ["Name of customer 2?", good[1].replace("= 1", "= 2"), CONTEXT],  # line 8: kept
    ]
    run_dir = ingest_csv(config_factory, write_csv(tmp_path / "mixed.csv",
                                                   ["question", "query", "context"], rows))
    dropped = {int(r["row"]): r["reason"] for r in dropped_rows(run_dir)}
    assert dropped[3] == "empty question"
    assert dropped[4] == "empty query"
    assert dropped[5].startswith("gold SQL does not parse")
    assert dropped[6].startswith("no schema context")
    assert dropped[7] == "duplicate of row 2"
    assert set(dropped) == {3, 4, 5, 6, 7}
    assert read_manifest(run_dir)["counts"]["train"] + read_manifest(run_dir)["counts"]["eval"] == 2


def test_all_rows_failing_stops_with_the_reasons(config_factory, tmp_path):
    path = write_csv(tmp_path / "blank.csv", ["question", "query", "context"],
                     [["", "SELECT 1", CONTEXT], ["", "SELECT 2", CONTEXT]])
    with pytest.raises(QueryCraftError) as caught:
        ingest_csv(config_factory, path)
    assert "row 2: empty question" in str(caught.value)


def test_csv_with_database_reads_context_and_executes_gold(config_factory, tmp_path):
    rows = [["How many customers are there?", "SELECT COUNT(*) FROM customer"],
            ["List all product names.", "SELECT name FROM product"],
            ["Which column does not exist?", "SELECT nonexistent FROM product"]]
    path = write_csv(tmp_path / "q.csv", ["question", "query"], rows)
    cfg = config_factory(["data=csv", f"data.path={path}", f"data.database={SAMPLE_DB}"])
    run_dir = ingest.run(cfg)
    kept = read_jsonl(run_dir / "dataset" / "train.jsonl") + \
        read_jsonl(run_dir / "dataset" / "eval.jsonl")
    assert len(kept) == 2
    for row in kept:
        assert "CREATE TABLE customer" in row["context"] and "PRIMARY KEY" in row["context"]
        assert row["db_id"] == "shop"
    (problem,) = dropped_rows(run_dir)
    assert problem["row"] == "4" and "fails on database" in problem["reason"]


def test_alpaca_json(config_factory, tmp_path):
    items = [{"instruction": f"Name of customer {i}?", "input": CONTEXT,
              "output": f"SELECT first_name FROM customer WHERE customer_id = {i}"}
             for i in range(4)]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(items))
    run_dir = ingest.run(config_factory(["data=alpaca_json", f"data.path={path}"]))
    rows = read_jsonl(run_dir / "dataset" / "train.jsonl")
    assert rows[0]["context"] == CONTEXT and rows[0]["query"].startswith("SELECT first_name")


def test_json_that_is_not_a_list_is_a_clear_error(config_factory, tmp_path):
    path = tmp_path / "obj.json"
    path.write_text('{"instruction": "x"}')
    with pytest.raises(QueryCraftError, match="JSON list of objects"):
        ingest.run(config_factory(["data=alpaca_json", f"data.path={path}"]))


def test_spider_fixture_reads_context_from_each_database(config_factory):
    cfg = config_factory(["data=spider", f"data.path={FIXTURE_SPIDER / 'dev.json'}",
                          f"data.database={FIXTURE_SPIDER / 'database'}"])
    run_dir = ingest.run(cfg)
    rows = read_jsonl(run_dir / "dataset" / "train.jsonl")
    by_db = {r["db_id"]: r["context"] for r in rows}
    assert set(by_db) == {"concert_singer", "pets_1"}
    assert "CREATE TABLE singer" in by_db["concert_singer"]
    assert "FOREIGN KEY" in by_db["pets_1"]


@pytest.mark.slow
def test_shared_spider_dev_ingests(config_factory):
    shared_spider()
    run_dir = ingest.run(config_factory(["data=spider"]))
    info = read_manifest(run_dir)
    counts = info["counts"]
    # Spider dev has a handful of exact duplicate questions; everything else must survive.
    assert counts["train"] + counts["eval"] > 950
    rows = read_jsonl(run_dir / "dataset" / "eval.jsonl")
    assert all(r["context"].startswith("CREATE TABLE") for r in rows)


@pytest.mark.slow
def test_split_by_database_holds_out_the_same_share_of_each(config_factory, tmp_path):
    rows = [(f"How many {t} rows? ({db} {i})", f"SELECT count(*) FROM {t}", CONTEXT, db)
            for db, t, n in (("a", "customer", 20), ("b", "customer", 10), ("c", "customer", 1))
            for i in range(n)]
    path = write_csv(tmp_path / "multi.csv", ["question", "query", "context", "db_id"], rows)
    run_dir = ingest_csv(config_factory, path, "ingest.split_by=db_id", "ingest.eval_fraction=0.3",
                         "ingest.validate_execution=false")
    dataset = run_dir / "dataset"
    held_out = [r["db_id"] for r in read_jsonl(dataset / "eval.jsonl")]
    trained = [r["db_id"] for r in read_jsonl(dataset / "train.jsonl")]
    assert (held_out.count("a"), held_out.count("b"), held_out.count("c")) == (6, 3, 0)
    assert (trained.count("a"), trained.count("b"), trained.count("c")) == (14, 7, 1)
    again = ingest.run(config_factory(
        ["data=csv", f"data.path={path}", "data.database=null", "ingest.split_by=db_id",
         "ingest.eval_fraction=0.3", "ingest.validate_execution=false"], name="again"))
    assert read_jsonl(again / "dataset" / "eval.jsonl") == read_jsonl(dataset / "eval.jsonl")


# ---------------------------------------------------------------- tabular formats, chunks


def mixed_frame():
    """Six rows: kept, empty question, kept, bad SQL, duplicate of the first, kept."""
    import pandas as pd

    query = "SELECT first_name FROM customer WHERE customer_id = {}"
    return pd.DataFrame({
        "question": ["Name of customer 1?", "", "Name of customer 2?", "Broken?",
                     "name of CUSTOMER 1?", "Name of customer 3?"],
        "query": [query.format(1), "SELECT 1", query.format(2), "SELEC name FROM",
                  query.format(1), query.format(3)],
        "context": [CONTEXT] * 6,
    })


def assert_mixed_outcome(run_dir):
    dropped = {int(r["row"]): r["reason"] for r in dropped_rows(run_dir)}
    # Header = row 1: the six data rows are rows 2..7.
    assert dropped.keys() == {3, 5, 6}
    assert dropped[3] == "empty question"
    assert dropped[5].startswith("gold SQL does not parse")
    assert dropped[6] == "duplicate of row 2"
    kept = read_jsonl(run_dir / "dataset" / "train.jsonl") + \
        read_jsonl(run_dir / "dataset" / "eval.jsonl")
    assert sorted(r["question"] for r in kept) == [f"Name of customer {i}?" for i in (1, 2, 3)]
    assert all(r["context"] == CONTEXT for r in kept)


def test_excel_input_ingests_end_to_end(config_factory, tmp_path):
    path = tmp_path / "mine.xlsx"
    mixed_frame().to_excel(path, index=False)
    assert_mixed_outcome(ingest_csv(config_factory, path, "data.format=excel"))


def test_parquet_input_ingests_end_to_end(config_factory, tmp_path):
    path = tmp_path / "mine.parquet"
    frame = mixed_frame()
    frame["extra"] = range(6)  # a non-text column the reader leaves out
    frame.to_parquet(path, index=False)
    assert_mixed_outcome(ingest_csv(config_factory, path, "data.format=parquet"))


def test_parquet_without_query_column_is_a_clear_error(config_factory, tmp_path):
    path = tmp_path / "mine.parquet"
    mixed_frame().rename(columns={"query": "sql"}).to_parquet(path, index=False)
    with pytest.raises(QueryCraftError, match="lacks the column"):
        ingest_csv(config_factory, path, "data.format=parquet")


def test_excel_format_on_a_csv_is_a_clear_error(config_factory, tmp_path):
    path = write_csv(tmp_path / "plain.csv", ["question", "query", "context"],
                     [["How many?", "SELECT 1", CONTEXT]])
    with pytest.raises(QueryCraftError, match="cannot be read as an Excel workbook"):
        ingest_csv(config_factory, path, "data.format=excel")


def test_csv_is_read_in_chunks_with_row_numbers_across_them(config_factory, tmp_path,
                                                             monkeypatch):
    chunks = []
    real_read_csv = __import__("pandas").read_csv

    def counting_read_csv(*args, **kwargs):
        reader = real_read_csv(*args, **kwargs)
        if kwargs.get("chunksize") is None:
            return reader
        return (chunks.append(len(chunk)) or chunk for chunk in reader)

    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    monkeypatch.setattr("pandas.read_csv", counting_read_csv)
    path = tmp_path / "mixed.csv"
    mixed_frame().to_csv(path, index=False)
    assert_mixed_outcome(ingest_csv(config_factory, path))
    assert chunks == [2, 2, 2]  # three chunks: the duplicate (row 6) is in another chunk


def test_csv_row_with_too_many_fields_names_the_line(config_factory, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("question,query,context\nHow many?,SELECT 1,x\nWhich?,SELECT 2,x,surplus\n")
    with pytest.raises(QueryCraftError) as caught:
        ingest_csv(config_factory, path)
    message = str(caught.value)
    assert "well-formed CSV" in message and "line 3" in message and "Quote fields" in message


def test_non_utf8_byte_offset_is_the_file_offset_past_the_first_buffer(config_factory,
                                                                          tmp_path):
    head = b"question,query,context\n"
    row = b"How many customers?,SELECT COUNT(*) FROM customer,x\n"
    body = head + row * (3_000_000 // len(row))
    path = tmp_path / "late.csv"
    path.write_bytes(body + "Quel café?,SELECT 1,x\n".encode("latin-1"))
    offset = len(body) + len("Quel caf")
    with pytest.raises(QueryCraftError) as caught:
        ingest_csv(config_factory, path)
    assert f"byte 0xe9 at offset {offset} " in str(caught.value)


@pytest.mark.slow
def test_token_lengths_come_from_a_seeded_sample_of_a_large_split(config_factory,
                                                                   monkeypatch):
    monkeypatch.setattr(ingest, "TOKEN_SAMPLE", 25)
    run_dir = ingest.run(config_factory(["service=ingest"]))
    lengths = json.loads((run_dir / "report.json").read_text())["token_lengths"]
    assert lengths["sampled"] == 25 and lengths["of"] > 25
    assert "from a sample of 25 of" in (run_dir / "report.md").read_text()


# ---------------------------------------------------------------- hostile input (issue 14)


LIST_CONTEXT = str(["CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, first_name TEXT)",
                    "CREATE TABLE product (product_id INTEGER, name TEXT DEFAULT 'n/a')"])
UNWRAPPED = ("CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, first_name TEXT)\n"
             "CREATE TABLE product (product_id INTEGER, name TEXT DEFAULT 'n/a')")


def customer_rows(count, context=CONTEXT):
    return [[f"Name of customer {i}?",
             f"SELECT first_name FROM customer WHERE customer_id = {i}", context]
            for i in range(1, count + 1)]


def test_a_folder_as_data_path_is_refused_by_the_check_and_by_the_run(config_factory,
                                                                      tmp_path):
    from querycraft.config import check_config

    folder = tmp_path / "examples"
    folder.mkdir()
    cfg = config_factory(["service=ingest", f"data.path={folder}", "data.database=null"])
    with pytest.raises(QueryCraftError) as caught:
        check_config(cfg)
    assert f"data.path '{folder}' is a folder, not a file" in str(caught.value)
    assert f"data.path={folder / 'examples.csv'}" in str(caught.value)
    with pytest.raises(QueryCraftError, match="is a folder, not a file") as caught:
        ingest.run(cfg)  # without the check: the same words, no IsADirectoryError
    assert "Traceback" not in str(caught.value)
    load = config_factory(["service=ingest", f"ingest.load.csv={folder}"])
    with pytest.raises(QueryCraftError, match=r"ingest\.load\.csv '.*' is a folder, not a file"):
        check_config(load)


def test_a_list_context_is_unwrapped_with_a_warning(config_factory, tmp_path, caplog):
    rows = customer_rows(2, LIST_CONTEXT) + customer_rows(4)[2:]
    path = write_csv(tmp_path / "ibm.csv", ["question", "query", "context"], rows)
    with caplog.at_level("WARNING", logger="querycraft"):
        run_dir = ingest_csv(config_factory, path)
    kept = read_jsonl(run_dir / "dataset" / "train.jsonl") + \
        read_jsonl(run_dir / "dataset" / "eval.jsonl")
    contexts = {r["question"]: r["context"] for r in kept}
    assert contexts["Name of customer 1?"] == contexts["Name of customer 2?"] == UNWRAPPED
    assert contexts["Name of customer 3?"] == CONTEXT  # plain text is left alone
    assert not any(c.startswith("[") for c in contexts.values())
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "the context of 2 row(s)" in warning and "(rows 2, 3)" in warning
    assert "Python list of strings" in warning and "ingest.list_context=refuse" in warning
    report = json.loads((run_dir / "report.json").read_text())
    assert report["list_context_unwrapped"] == 2 and report["dropped"] == 0
    assert "context given as a Python list, unwrapped: 2 row(s)" in \
        (run_dir / "report.md").read_text()


def test_a_list_context_is_refused_when_configured(config_factory, tmp_path):
    rows = customer_rows(2, LIST_CONTEXT) + customer_rows(4)[2:]
    path = write_csv(tmp_path / "ibm.csv", ["question", "query", "context"], rows)
    run_dir = ingest_csv(config_factory, path, "ingest.list_context=refuse")
    dropped = {int(r["row"]): r["reason"] for r in dropped_rows(run_dir)}
    assert dropped.keys() == {2, 3}
    assert dropped[2].startswith("context is a Python list: the cell holds ['...', ...]")
    assert "ingest.list_context=unwrap" in dropped[2]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["drop_reasons"] == {"context is a Python list": 2}
    assert report["list_context_unwrapped"] == 0


@pytest.mark.parametrize("cell", [
    "[1, 2]",                                   # not strings
    "['CREATE TABLE t (x)', __import__('os')]",  # not a literal: never evaluated
    "[dbo].[customer] (id INT)",                # T-SQL brackets
    "['a'] + ['b']",                            # an expression
    "[" * 50_000 + "]" * 50_000,                # too deep to parse
])
def test_only_a_plain_list_of_strings_is_unwrapped(cell):
    assert ingest.unwrap_list_context(cell) is None


def test_list_context_setting_is_checked(config_factory):
    from querycraft.config import check_config

    with pytest.raises(QueryCraftError,
                       match=r"ingest\.list_context must be 'unwrap' or 'refuse', got 'maybe'"):
        check_config(config_factory(["ingest.list_context=maybe"]))


def test_a_repeated_question_with_another_query_is_a_conflicting_duplicate(config_factory,
                                                                           tmp_path):
    query = "SELECT first_name FROM customer WHERE customer_id = 1"
    rows = [
        *customer_rows(3),
        ["name of  CUSTOMER 1?", f"  {query.replace(' WHERE', chr(10) + 'WHERE')} ;", CONTEXT],
        ["Name of customer 1?", query.replace("= 1", "= 7"), CONTEXT],
        ["Name of customer 2?", "SELECT customer_id FROM customer", CONTEXT],
    ]
    run_dir = ingest_csv(config_factory, write_csv(tmp_path / "dups.csv",
                                                   ["question", "query", "context"], rows))
    dropped = {int(r["row"]): r["reason"] for r in dropped_rows(run_dir)}
    assert dropped == {5: "duplicate of row 2",  # the same query, laid out differently
                       6: "conflicting duplicate of row 2: a different query",
                       7: "conflicting duplicate of row 3: a different query"}
    kept = read_jsonl(run_dir / "dataset" / "train.jsonl") + \
        read_jsonl(run_dir / "dataset" / "eval.jsonl")
    first = next(r for r in kept if r["question"] == "Name of customer 1?")
    assert first["query"] == query and first["source_row"] == 2  # the first row is kept
    report = json.loads((run_dir / "report.json").read_text())
    assert report["drop_reasons"] == {"duplicate": 1, "conflicting duplicate": 2}
    assert "| conflicting duplicate | 2 |" in (run_dir / "report.md").read_text()
