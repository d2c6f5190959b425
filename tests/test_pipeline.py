"""End to end: every stage alone (chained by run-folder paths) and the whole pipeline."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from querycraft.cli import run
from querycraft.errors import QueryCraftError
from querycraft.runs import read_jsonl, read_manifest
from tests.conftest import FAST_MODEL, PROJECT_ROOT


@pytest.mark.slow
def test_each_service_runs_alone_reading_the_previous_stage(config_factory):
    ingest_dir = run(config_factory(["service=ingest", *FAST_MODEL], name="ingest"))
    finetune_dir = run(config_factory(
        ["service=finetune", f"train.dataset_dir={ingest_dir}", *FAST_MODEL], name="finetune"))
    assert (finetune_dir / "adapter" / "adapter_config.json").is_file()
    assert (finetune_dir / "prompt_template.txt").read_text().endswith("{query}\n")
    metrics = json.loads((finetune_dir / "metrics.json").read_text())
    trained = len(read_jsonl(ingest_dir / "dataset" / "train.jsonl"))
    assert metrics["steps"] > 0 and metrics["train_examples"] > trained // 2
    assert metrics["train_examples"] + metrics["validation_examples"] == trained

    infer_dir = run(config_factory(
        ["service=infer", f"infer.finetune_dir={finetune_dir}", "infer.limit=6", *FAST_MODEL],
        name="infer"))
    predictions = read_jsonl(infer_dir / "predictions.jsonl")
    assert len(predictions) == 6
    assert set(predictions[0]) >= {"id", "question", "raw_output", "sql", "seconds", "adapter"}

    correct_dir = run(config_factory(
        ["service=correct", f"correct.predictions_dir={infer_dir}", *FAST_MODEL],
        name="correct"))
    corrected = read_jsonl(correct_dir / "predictions.jsonl")
    assert all("corrected" in row for row in corrected)
    assert read_jsonl(infer_dir / "predictions.jsonl") == predictions  # input untouched

    evaluate_dir = run(config_factory(
        ["service=evaluate", f"evaluate.predictions_dir={correct_dir}",
         "evaluate.prediction_column=corrected", *FAST_MODEL], name="evaluate"))
    summary = json.loads((evaluate_dir / "summary.json").read_text())
    assert summary["items"] == 6
    assert 0.0 <= summary["execution_accuracy"] <= 1.0
    with (evaluate_dir / "items.csv").open() as handle:
        scored = list(csv.DictReader(handle))
    # Raw and corrected SQL side by side: two rows per prediction.
    assert sorted(row["column"] for row in scored) == ["corrected"] * 6 + ["sql"] * 6


@pytest.mark.slow
def test_stages_find_the_newest_finished_run_when_no_path_is_given(config_factory):
    first = run(config_factory(["service=ingest", "seed=1"], name="ingest-1"))
    newest = run(config_factory(["service=ingest", "seed=2"], name="ingest-2"))
    failed_dir = newest.parent / "ingest-3"
    failed_dir.mkdir()
    (failed_dir / "run.json").write_text(json.dumps({"service": "ingest", "status": "failed"}))
    finetune_dir = run(config_factory(["service=finetune", *FAST_MODEL], name="finetune"))
    assert read_manifest(finetune_dir)["dataset_dir"] == str(newest)
    assert first != newest


@pytest.mark.slow
def test_pointing_a_stage_at_the_wrong_run_is_a_clear_error(config_factory):
    ingest_dir = run(config_factory(["service=ingest"], name="ingest"))
    with pytest.raises(QueryCraftError, match="is a ingest run, not a finetune run"):
        run(config_factory(["service=infer", f"infer.finetune_dir={ingest_dir}"], name="infer"))


def test_missing_previous_stage_is_a_clear_error(config_factory):
    with pytest.raises(QueryCraftError, match="No finished ingest run"):
        run(config_factory(["service=finetune"], name="finetune"))


@pytest.mark.slow
def test_a_run_folder_is_never_written_over(config_factory):
    cfg = config_factory(["service=ingest"], name="same")
    run(cfg)
    train_file = Path(cfg.paths.run_dir) / "dataset" / "train.jsonl"
    content = train_file.read_text()
    with pytest.raises(QueryCraftError, match="never writes over"):
        run(config_factory(["service=ingest", "seed=9"], name="same"))
    assert train_file.read_text() == content


@pytest.mark.slow
def test_cli_gives_each_run_its_own_folder(tmp_path):
    out = tmp_path / "output"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "querycraft", "service=ingest",
                               f"paths.output_dir={out}"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    runs = sorted((out / "ingest").iterdir())
    assert len(runs) == 2
    assert all(read_manifest(r)["status"] == "completed" for r in runs)


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_prints_before_and_after(config_factory, capsys):
    root = run(config_factory(["service=pipeline", *FAST_MODEL, "infer.limit=8"]))
    for stage in ("1-ingest", "2-finetune", "3-infer-base", "3b-correct-base",
                  "4-evaluate-base", "5-infer", "5b-correct", "6-evaluate"):
        assert read_manifest(root / stage)["status"] == "completed", stage
    summary = json.loads((root / "summary.json").read_text())
    assert summary["before"]["items"] == summary["after"]["items"] == 8
    # Raw and corrected SQL are both scored, before and after.
    assert set(summary["before"]["columns"]) == set(summary["after"]["columns"]) == {
        "sql", "corrected"}
    printed = capsys.readouterr().out
    assert "before fine-tuning" in printed and "after fine-tuning" in printed
    assert "execution accuracy" in printed and "execution accuracy (corrected)" in printed


@pytest.mark.slow
def test_pipeline_without_correct(config_factory):
    root = run(config_factory(["service=pipeline", *FAST_MODEL, "infer.limit=4",
                               "pipeline.correct=false", "pipeline.evaluate_base=false"]))
    assert not (root / "5b-correct").exists()
    summary = json.loads((root / "summary.json").read_text())
    assert set(summary["after"]["columns"]) == {"sql"} and summary["before"] is None


@pytest.mark.slow
def test_default_pipeline_learns(config_factory):
    """The quickstart itself: the tiny model (random weights) on the sample's default split.

    That split holds out whole query shapes, which a model this small and untrained cannot
    compose (its execution accuracy there stays near 0, docs/BENCHMARKS.md), so what the
    quickstart must show is that the plumbing learns: from no SQL at all to mostly valid SQL
    that shares much of the gold's tokens, scored on questions of shapes it never saw."""
    root = run(config_factory(["service=pipeline"]))
    summary = json.loads((root / "summary.json").read_text())
    before, after = summary["before"], summary["after"]
    ingest = json.loads((root / "1-ingest" / "report.json").read_text())
    assert ingest["split_by"] == "skeleton" and ingest["overlap"]["same_skeleton"] == 0, ingest
    assert after["valid_sql_rate"] >= before["valid_sql_rate"] + 0.3, summary
    assert after["token_match"] > before["token_match"] + 0.3, summary


def test_correct_runs_by_default_and_the_table_shows_corrected_execution_accuracy(
        config_factory):
    from querycraft.artifacts import EvaluationSummary
    from querycraft.services.pipeline import comparison_table

    assert config_factory(["service=pipeline"]).pipeline.correct is True
    scores = {"execution_accuracy": 0.5, "exact_match": 0.25, "token_match": 0.7,
              "valid_sql_rate": 0.9}
    after = EvaluationSummary.from_dict({
        **scores, "items": 4, "column": "corrected",
        "columns": {"sql": scores, "corrected": {**scores, "execution_accuracy": 0.75}}})
    table = comparison_table(None, after)
    assert "execution accuracy (corrected)" in table and "0.750" in table
