"""A question asked after training gets its schema context built as ingest built the training
rows': the settings come from the ingest run's record, not from the asking config."""

from __future__ import annotations

import pytest

from querycraft.artifacts import IngestArtifact
from querycraft.cli import run
from querycraft.contexts import ContextSettings, question_contexts
from querycraft.runs import read_jsonl
from tests.conftest import FIXTURE_SPIDER, make_config

SPIDER = ["data=spider", f"data.path={FIXTURE_SPIDER / 'dev.json'}",
          f"data.database={FIXTURE_SPIDER / 'database'}"]


@pytest.mark.slow
def test_the_ingest_run_records_its_context_settings_and_later_questions_use_them(tmp_path):
    out = tmp_path / "output"
    ingest = run(make_config(out, ["service=ingest", *SPIDER, "ingest.context_tables=question",
                                   "db.sample_values=2"], out / "ingest"))
    recorded = IngestArtifact.read(ingest).context
    assert recorded is not None
    assert ContextSettings.from_dict(dict(recorded)) == ContextSettings(tables="question",
                                                                        sample_values=2)
    # The record alone decides: the saved config is gone and the asking config differs.
    (ingest / "config.yaml").unlink()
    asking = make_config(out, ["service=ask", "db.sample_values=0"])
    row = read_jsonl(ingest / "dataset" / "train.jsonl")[0]
    contexts = question_contexts(asking.db, str(FIXTURE_SPIDER / "database"), ingest)
    try:
        assert contexts.settings.tables == "question" and contexts.settings.sample_values == 2
        assert contexts.schema(row["db_id"], row["question"]) == row["context"]
    finally:
        contexts.close()


def test_without_an_ingest_run_every_table_is_shown(tmp_path):
    cfg = make_config(tmp_path, ["service=ask"])
    contexts = question_contexts(cfg.db, str(FIXTURE_SPIDER / "database"), None)
    try:
        text = contexts.schema("concert_singer", "How many singers are there?")
    finally:
        contexts.close()
    assert {"CREATE TABLE stadium", "CREATE TABLE singer", "CREATE TABLE concert"} <= {
        line.split(" (")[0] for line in text.splitlines()}
