"""The optional self-correction loop: the model is asked again with the database's error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from querycraft.cli import run
from querycraft.errors import QueryCraftError
from querycraft.prompts import load_template, render_prompt
from querycraft.runs import read_jsonl, read_manifest
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config
from tests.test_infer import serving


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


@pytest.mark.slow
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


# A query the sample shop database accepts, whatever was asked.
SERVED_ANSWER = "SELECT count(*) FROM customer"


def test_self_correction_asks_the_configured_backend(infer_dir):
    """infer.backend=openai: the refused queries go to that server (with the refused query in
    the prompt), not to the model the infer run loaded, and its answers are used."""
    out = infer_dir.parent
    with serving(lambda prompts, settings: [SERVED_ANSWER] * len(prompts)) as server:
        correct_dir = run(make_config(out, [
            "service=correct", f"correct.predictions_dir={infer_dir}",
            "correct.self_correct_rounds=2", "infer.backend=openai",
            f"infer.server.base_url={server.url}", *FAST_MODEL], out / "correct-served"))
    rows = read_jsonl(correct_dir / "predictions.jsonl")
    prompts = [prompt for request in server.requests for prompt in request["prompt"]]
    assert len(prompts) == len(rows)  # each refused query asked once: the first answer runs
    assert all("SELECT zzqx FROM nowhere_at_all" in prompt for prompt in prompts)
    assert {request["model"] for request in server.requests} == {"tiny-sql"}
    # infer.server.extra_body's default: llama-cpp-python's server would otherwise penalise
    # repeats (1.1) and its greedy SQL would not be the model's (tests/test_export.py).
    assert all(request["repeat_penalty"] == 1.0 for request in server.requests)
    for row in rows:
        assert row["valid"] and row["self_correct_attempts"] == 1
        assert row["corrected"].casefold() == SERVED_ANSWER.casefold()
        assert "self_correct" in row["rules_fired"]
    assert read_manifest(correct_dir)["self_correction"] == {"rounds": 2, "asked": len(rows),
                                                             "fixed": len(rows)}


def test_a_local_backend_needs_the_model_the_infer_run_names(infer_dir, tmp_path):
    served_run = tmp_path / "infer-served"  # as if the infer run had asked a server
    shutil.copytree(infer_dir, served_run)
    info = read_manifest(served_run)
    (served_run / "run.json").write_text(json.dumps({**info, "base_model": None,
                                                     "adapter": None, "backend": "openai"}))
    with pytest.raises(QueryCraftError, match=r"infer\.backend=openai"):
        run(make_config(tmp_path, ["service=correct", f"correct.predictions_dir={served_run}",
                                   "correct.self_correct_rounds=1", *FAST_MODEL],
                        tmp_path / "correct"))
