"""The optional self-correction loop: the model is asked again with the database's error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from querycraft.cli import run
from querycraft.prompts import load_template, render_prompt
from querycraft.runs import read_jsonl, read_manifest
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config


def test_self_correct_prompt_shows_the_refused_query_and_the_error():
    template = load_template("self_correct", PROJECT_ROOT / "prompts")
    prompt = render_prompt(template, question="How many singers?", context="CREATE TABLE s (id)",
                           dialect="SQLite", previous_sql="SELECT count(*) FROM singers",
                           error="no such table: singers")
    assert "SELECT count(*) FROM singers" in prompt and "no such table: singers" in prompt
    assert prompt.rstrip().endswith("### Corrected SQL")


@pytest.fixture(scope="module")
def infer_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("selfcorrect") / "output"
    ingest = run(make_config(out, ["service=ingest", "ingest.max_rows=40", *FAST_MODEL],
                             out / "ingest"))
    finetune = run(make_config(out, ["service=finetune", f"train.dataset_dir={ingest}",
                                     *FAST_MODEL, "train.max_steps=2", "train.report_to=[]"],
                               out / "finetune"))
    infer = run(make_config(out, ["service=infer", f"infer.finetune_dir={finetune}",
                                  "infer.limit=4", *FAST_MODEL], out / "infer"))
    # Make every prediction one SQLite refuses, whatever the tiny model wrote.
    rows = read_jsonl(infer / "predictions.jsonl")
    for row in rows:
        row["raw_output"] = row["sql"] = "SELECT zzqx FROM nowhere_at_all"
    (infer / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return infer


def test_refused_queries_are_asked_again_at_most_n_times(infer_dir):
    out = infer_dir.parent
    correct_dir = run(make_config(out, ["service=correct",
                                        f"correct.predictions_dir={infer_dir}",
                                        "correct.self_correct_rounds=2", *FAST_MODEL],
                                  out / "correct"))
    rows = read_jsonl(correct_dir / "predictions.jsonl")
    stats = read_manifest(correct_dir)["self_correction"]
    assert stats["rounds"] == 2
    assert stats["asked"] == sum(r["self_correct_attempts"] for r in rows) >= len(rows)
    for row in rows:
        if row["valid"]:  # fixed by a new answer: marked, and SQLite accepts it
            assert "self_correct" in row["rules_fired"]
            assert 1 <= row["self_correct_attempts"] <= 2
        else:  # never fixed: asked twice, the rule-based correction kept
            assert row["self_correct_attempts"] == 2
            assert row["validation_error"]
    assert stats["fixed"] == sum("self_correct" in r["rules_fired"] for r in rows)


def test_self_correction_is_off_by_default(infer_dir):
    out = infer_dir.parent
    correct_dir = run(make_config(out, ["service=correct",
                                        f"correct.predictions_dir={infer_dir}", *FAST_MODEL],
                                  out / "correct-default"))
    rows = read_jsonl(correct_dir / "predictions.jsonl")
    assert all(r["valid"] is False for r in rows)
    assert "self_correct_attempts" not in rows[0]
    assert read_manifest(correct_dir)["self_correction"] is None
