"""The typed stage contract (querycraft/artifacts.py): each run kind written and read back, the
errors for the wrong folder, and, computed from the code, that no service reads (or writes)
another run's manifest keys except through the artifacts."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from querycraft.artifacts import (
    EvaluationArtifact,
    EvaluationSummary,
    FinetuneArtifact,
    IngestArtifact,
    PredictionsArtifact,
    finished_runs,
)
from querycraft.errors import QueryCraftError
from querycraft.prompts import SAVED_TEMPLATE_FILE
from querycraft.runs import Run, read_manifest
from tests.conftest import PROJECT_ROOT


def _run(folder: Path, service: str) -> Run:
    folder.mkdir(parents=True)
    return Run(service=service, dir=folder)


def _finish(run_: Run) -> None:
    run_.record(status="completed", finished="2026-01-01T00:00:00")


def _ingest(folder: Path, **changes) -> IngestArtifact:
    run_ = _run(folder, "ingest")
    (folder / "dataset").mkdir()
    (folder / "dataset" / "eval.jsonl").write_text('{"id": "eval-00000"}\n')
    written = IngestArtifact(dataset=folder / "dataset", dialect="sqlite",
                             database="/data/shop.sqlite", database_kind="sqlite",
                             counts={"train": 0, "eval": 1, "dropped": 0})
    written = dataclasses.replace(written, **changes)
    written.write(run_)
    _finish(run_)
    return written


def _finetune(folder: Path, ingest_dir: Path) -> FinetuneArtifact:
    run_ = _run(folder, "finetune")
    (folder / SAVED_TEMPLATE_FILE).write_text("Q: {question}\nSQL: {query}")
    written = FinetuneArtifact(base_model="tiny", adapter=folder / "adapter",
                               ingest_run=ingest_dir, prompt_dialect="SQLite",
                               prompt_template=folder / SAVED_TEMPLATE_FILE,
                               model_name="tiny", peft={"method": "lora", "r": 8},
                               quantization={"bits": None})
    written.write(run_)
    _finish(run_)
    return written


def test_ingest_round_trip_and_splits(tmp_path):
    written = _ingest(tmp_path / "ingest")
    read = IngestArtifact.read(tmp_path / "ingest")
    assert read == written
    assert read.split_file("eval") == tmp_path / "ingest" / "dataset" / "eval.jsonl"
    with pytest.raises(QueryCraftError, match=r"no train split .*service=ingest again"):
        read.split_file("train")
    # The on-disk keys stay the ones tests and older runs use.
    info = read_manifest(tmp_path / "ingest")
    assert info["dataset"] == str(tmp_path / "ingest" / "dataset")
    assert info["counts"]["eval"] == 1 and info["dialect"] == "sqlite"


def test_a_server_database_is_no_sqlite_fallback(tmp_path):
    read = _ingest(tmp_path / "ingest", database="postgresql://qc@db/shop",
                   database_kind="postgres")
    assert read.sqlite_database() is None
    assert IngestArtifact.read(tmp_path / "ingest").database == "postgresql://qc@db/shop"


def test_a_table_loading_ingest_run_has_no_dataset(tmp_path):
    run_ = _run(tmp_path / "load", "ingest")
    written = IngestArtifact(dataset=None, database="/data/shop.sqlite",
                             loaded={"table": "singer", "rows": 3})
    written.write(run_)
    _finish(run_)
    read = IngestArtifact.read(tmp_path / "load")
    assert read == written and "dataset" not in read_manifest(tmp_path / "load")
    with pytest.raises(QueryCraftError, match="loaded a table"):
        read.split_file("train")


def test_finetune_round_trip_and_its_ingest_run(tmp_path):
    ingest = _ingest(tmp_path / "ingest")
    written = _finetune(tmp_path / "finetune", tmp_path / "ingest")
    read = FinetuneArtifact.read(tmp_path / "finetune")
    assert read == written
    assert read.ingest() == ingest  # the database comes from there, not relayed
    info = read_manifest(tmp_path / "finetune")
    assert info["dataset_dir"] == str(tmp_path / "ingest") and "database" not in info


def test_the_model_source_of_a_finetune_run_is_built_in_one_place(tmp_path):
    _ingest(tmp_path / "ingest")
    run_ = FinetuneArtifact.read(_finetune(tmp_path / "finetune", tmp_path / "ingest")
                                 .adapter.parent)
    with_adapter = run_.model_source()
    assert (with_adapter.base, with_adapter.adapter) == ("tiny", str(run_.adapter))
    # As it trained: the quantization and the rank (vLLM sizes LoRA slots by it).
    assert with_adapter.quantization == {"bits": None} and with_adapter.lora_rank == 8
    base = run_.model_source(use_adapter=False)
    assert (base.adapter, base.quantization, base.merged) == (None, None, None)
    with pytest.raises(QueryCraftError, match="no merged model"):
        run_.model_source(use_merged=True)
    merged = dataclasses.replace(run_, merged_model=str(tmp_path / "merged"))
    assert merged.model_source(use_merged=True).merged == str(tmp_path / "merged")


@pytest.mark.parametrize("service", ["infer", "correct"])
def test_predictions_round_trip(tmp_path, service):
    _ingest(tmp_path / "ingest")
    _finetune(tmp_path / "finetune", tmp_path / "ingest")
    run_ = _run(tmp_path / service, service)
    (tmp_path / service / "predictions.jsonl").write_text('{"id": "eval-00000"}\n')
    extra = ({"fingerprint": {"infer": {"split": "eval"}}} if service == "infer" else
             {"source": tmp_path / "infer", "dialect": "sqlite",
              "correction": {"changed": 1, "valid": 1, "validated": 1, "unresolved": 0,
                             "fired": {"reformat": 1}, "read_dialect": "sqlite",
                             "self_correction": None}})
    written = PredictionsArtifact(
        predictions=tmp_path / service / "predictions.jsonl", count=1, base_model="tiny",
        adapter=str(tmp_path / "finetune" / "adapter"), backend="hf",
        dataset_run=tmp_path / "ingest", database="/data/shop.sqlite", **extra)
    written.write(run_)
    _finish(run_)
    read = PredictionsArtifact.read(tmp_path / service)
    assert read == written
    assert read.ingest() == IngestArtifact.read(tmp_path / "ingest")
    assert read.finetune() == FinetuneArtifact.read(tmp_path / "finetune")
    assert read.sqlite_database() == "/data/shop.sqlite"


def test_predictions_written_by_hand_or_by_older_runs_still_read(tmp_path):
    folder = tmp_path / "infer"
    folder.mkdir()
    (folder / "predictions.jsonl").write_text("")
    (folder / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": "/data/shop.sqlite",
        "base_model": "tiny", "adapter": None, "dataset_dir": "None"}))
    read = PredictionsArtifact.read(folder)
    assert read.dataset_run is None and read.ingest() is None and read.finetune() is None
    assert read.database_kind == "sqlite" and read.correction is None


def test_evaluation_round_trip(tmp_path):
    run_ = _run(tmp_path / "evaluate", "evaluate")
    written = EvaluationArtifact(summary=EvaluationSummary(
        items=2, execution_accuracy=0.5, model="tiny", column="sql",
        columns={"sql": {"execution_accuracy": 0.5}}, extra={"note": "kept"}))
    written.write(run_)
    _finish(run_)
    read = EvaluationArtifact.read(tmp_path / "evaluate")
    assert read.summary == written.summary and read.items is None
    assert read.finished == "2026-01-01T00:00:00"
    on_disk = json.loads((tmp_path / "evaluate" / "summary.json").read_text())
    assert on_disk == written.summary.as_dict() and on_disk["note"] == "kept"
    assert read_manifest(tmp_path / "evaluate")["summary"] == on_disk


def test_an_older_summary_reads_with_what_it_has():
    old = EvaluationSummary.from_dict({"items": 3, "execution_accuracy": 0.5, "column": "sql",
                                       "exact_set_match": None})
    assert old.columns == {} and old.errors == {} and old.exact_set_match is None
    # One column scored: its rates are the headline's.
    assert old.column_scores("sql")["execution_accuracy"] == 0.5
    assert old.column_scores("corrected") == {}


def test_the_wrong_kind_of_run_is_named(tmp_path):
    _ingest(tmp_path / "ingest")
    with pytest.raises(QueryCraftError, match=r"made by service=ingest, not a finetune run; "
                                              r"point the setting .*service=finetune"):
        FinetuneArtifact.read(tmp_path / "ingest")
    with pytest.raises(QueryCraftError, match="not an infer or correct run"):
        PredictionsArtifact.read(tmp_path / "ingest")
    with pytest.raises(QueryCraftError, match="is not a QueryCraft run folder"):
        EvaluationArtifact.read(tmp_path)


def test_an_unfinished_run_is_refused(tmp_path):
    run_ = _run(tmp_path / "ingest", "ingest")
    run_.record(status="failed")
    with pytest.raises(QueryCraftError, match=r"did not finish \(status failed\)"):
        IngestArtifact.read(tmp_path / "ingest")


@pytest.mark.parametrize("key", ["base_model", "adapter", "dataset_dir", "prompt_dialect"])
def test_a_missing_field_says_what_to_run_again(tmp_path, key):
    _finetune(tmp_path / "finetune", tmp_path / "ingest")
    manifest = tmp_path / "finetune" / "run.json"
    info = json.loads(manifest.read_text())
    del info[key]
    manifest.write_text(json.dumps(info))
    with pytest.raises(QueryCraftError, match=rf"has no '{key}'.*older QueryCraft.*"
                                              rf"Fine-tune again"):
        FinetuneArtifact.read(tmp_path / "finetune")


def test_a_missing_file_of_the_run_says_what_to_run_again(tmp_path):
    _finetune(tmp_path / "finetune", tmp_path / "ingest")
    (tmp_path / "finetune" / SAVED_TEMPLATE_FILE).unlink()
    with pytest.raises(QueryCraftError, match=r"without its prompt template.*Fine-tune again"):
        FinetuneArtifact.read(tmp_path / "finetune")
    run_ = _run(tmp_path / "evaluate", "evaluate")
    _finish(run_)
    with pytest.raises(QueryCraftError, match=r"no 'summary'.*service=evaluate"):
        EvaluationArtifact.read(tmp_path / "evaluate")


def test_finished_runs_lists_only_finished_readable_runs(tmp_path):
    for name, status in (("a", "completed"), ("b", "failed"), ("c", "completed")):
        run_ = _run(tmp_path / name, "infer")
        if name != "c":  # c lost its predictions
            (tmp_path / name / "predictions.jsonl").write_text("")
        run_.record(status=status)
    with pytest.raises(QueryCraftError, match=r"without its predictions\.jsonl"):
        list(finished_runs(tmp_path, PredictionsArtifact))
    found = finished_runs(tmp_path, PredictionsArtifact, "infer", skip_unreadable=True)
    assert [folder.name for folder, _ in found] == ["a"]


# ------------------------------------------------------- the contract, computed from the code

# What a stage may take from querycraft.runs: its own run's lifecycle and the JSONL helpers.
# Everything that opens another run's manifest lives in querycraft.artifacts.
ALLOWED_FROM_RUNS = {"Run", "start_run", "resolve_run", "read_jsonl", "write_jsonl"}
# Stages whose run is one of the artifact kinds: they record it through the artifact only.
ARTIFACT_STAGES = {"ingest", "finetune", "infer", "correct", "evaluate"}
MANIFEST_READERS = [*sorted((PROJECT_ROOT / "querycraft" / "services").glob("*.py")),
                    PROJECT_ROOT / "querycraft" / "report.py"]


def manifest_access(source: str, module: str) -> list[str]:
    """What a module does with manifests outside the artifacts, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "querycraft.runs":
            found += [f"imports {a.name} from querycraft.runs" for a in node.names
                      if a.name not in ALLOWED_FROM_RUNS]
        elif isinstance(node, ast.ImportFrom) and node.module == "querycraft":
            found += ["imports the querycraft.runs module" for a in node.names
                      if a.name == "runs"]
        elif isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name == "querycraft.runs"]
        elif isinstance(node, ast.Constant) and node.value in ("run.json", "MANIFEST"):
            found.append(f"names the manifest file ({node.value!r})")
        elif (isinstance(node, ast.Attribute) and node.attr == "record"
              and module in ARTIFACT_STAGES):
            found.append("calls Run.record itself instead of writing its artifact")
    return found


def test_no_service_reads_manifest_keys_but_through_the_artifacts():
    problems = {path.relative_to(PROJECT_ROOT).as_posix(): found for path in MANIFEST_READERS
                if (found := manifest_access(path.read_text(encoding="utf-8"), path.stem))}
    assert problems == {}


def test_the_contract_check_sees_a_direct_manifest_read():
    reader = ("from querycraft.runs import read_manifest, start_run\n"
              "def run(cfg):\n"
              "    return read_manifest(cfg.infer.finetune_dir)['dataset_dir']\n")
    assert manifest_access(reader, "infer") == ["imports read_manifest from querycraft.runs"]
    writer = "def run(cfg, run_):\n    run_.record(adapter='x')\n"
    assert manifest_access(writer, "finetune") != []
    assert manifest_access(writer, "pipeline") == []  # no artifact kind: records its own facts


def test_infer_finds_the_database_through_the_finetune_runs_ingest_run(tmp_path):
    """Nothing is loaded: a served model (infer.backend=openai) with a finetune run's prompt."""
    from querycraft.services.infer import resolve_request
    from tests.conftest import make_config

    _ingest(tmp_path / "ingest")
    _finetune(tmp_path / "finetune", tmp_path / "ingest")
    request = resolve_request(make_config(tmp_path, [
        "infer.backend=openai", f"infer.finetune_dir={tmp_path / 'finetune'}"]))
    assert request.database == "/data/shop.sqlite"  # ingest's, finetune never recorded it
    assert request.dialect == "SQLite" and request.template.text == "Q: {question}\nSQL: {query}"
    assert request.dataset_dir == tmp_path / "ingest"
    assert request.finetune_dir == tmp_path / "finetune"
