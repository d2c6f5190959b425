"""A killed finetune run continues from its last checkpoint: same steps, same losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from querycraft.cli import run
from querycraft.config import register_configs
from querycraft.errors import QueryCraftError
from querycraft.runs import read_manifest
from querycraft.services.finetune import last_complete_checkpoint
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config

STEPS = 12
SETTINGS = [*FAST_MODEL, f"train.max_steps={STEPS}", "train.save_steps=3",
            "train.logging_steps=1", "train.report_to=[]", "train.save_total_limit=10"]


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "output"
    return run(make_config(out, ["service=ingest", "ingest.max_rows=64", *FAST_MODEL],
                           out / "ingest"))


def _start(output_dir: Path, ingest_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "querycraft", "service=finetune",
               f"paths.output_dir={output_dir}", f"train.dataset_dir={ingest_dir}",
               *SETTINGS, *extra]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _kill_after_checkpoint(process: subprocess.Popen, checkpoints: Path, step: int) -> None:
    """SIGKILL ``process`` (no cleanup, like a crash or a lost machine) once ``step`` is saved."""
    deadline = time.time() + 240
    while not (checkpoints / f"checkpoint-{step}" / "trainer_state.json").exists():
        if process.poll() is not None:
            raise AssertionError(f"run ended before checkpoint {step}: {process.stderr.read()}")
        if time.time() > deadline:
            process.kill()
            raise AssertionError(f"no checkpoint {step} within 240 s")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "metrics.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.mark.slow
def test_killed_run_resumes_with_same_step_count_and_losses(tmp_path, ingest_dir):
    # The uninterrupted reference, in process.
    reference_dir = run(make_config(tmp_path / "ref", ["service=finetune",
                                                       f"train.dataset_dir={ingest_dir}",
                                                       *SETTINGS], tmp_path / "ref" / "run"))
    output = tmp_path / "output"
    first = _start(output, ingest_dir)
    # Hydra names the folder; find it once it exists.
    deadline = time.time() + 120
    while not list((output / "finetune").glob("*/run.json")) and time.time() < deadline:
        time.sleep(0.05)
    (run_dir,) = [p.parent for p in (output / "finetune").glob("*/run.json")]
    _kill_after_checkpoint(first, run_dir / "checkpoints", 3)
    assert read_manifest(run_dir)["status"] == "running"  # killed: nothing could record it

    # Started again in the same folder, it continues; killed again later.
    second = _start(output, ingest_dir, f"hydra.run.dir={run_dir}")
    _kill_after_checkpoint(second, run_dir / "checkpoints", 9)

    # resume=true finds the newest unfinished run by itself and finishes it.
    third = _start(output, ingest_dir, "resume=true")
    assert third.wait(timeout=300) == 0, third.stderr.read()
    assert [p.parent for p in (output / "finetune").glob("*/run.json")] == [run_dir]

    info = read_manifest(run_dir)
    assert info["status"] == "completed" and info["resumed"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == STEPS
    assert metrics["resumed_from"].endswith("checkpoint-9")
    resumed, reference = _losses(run_dir), _losses(reference_dir)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    # Same optimizer state, schedule, data order and random state: the same losses.
    for step in range(1, STEPS + 1):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-4), step


@pytest.mark.slow
def test_a_finished_run_is_never_resumed_or_written_over(tmp_path, ingest_dir):
    cfg = make_config(tmp_path / "out", ["service=finetune", f"train.dataset_dir={ingest_dir}",
                                         *FAST_MODEL, "train.max_steps=2", "train.report_to=[]"],
                      tmp_path / "out" / "run")
    run(cfg)
    with pytest.raises(QueryCraftError, match="never writes over them"):
        run(cfg)


@pytest.mark.slow
def test_resuming_with_different_settings_is_refused(tmp_path, ingest_dir):
    base = ["service=finetune", f"train.dataset_dir={ingest_dir}", *FAST_MODEL,
            "train.max_steps=2", "train.report_to=[]"]
    run_dir = run(make_config(tmp_path / "out", base, tmp_path / "out" / "run"))
    info = read_manifest(run_dir)
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "failed", "pid": None}))
    with pytest.raises(QueryCraftError, match=r"settings of peft differ"):
        run(make_config(tmp_path / "out", [*base, "peft.r=8"], run_dir))


def _run_dir(output_dir: Path, service: str, resume: bool) -> str:
    """The folder conf/config.yaml's ``hydra.run.dir`` names, through the same resolver."""
    register_configs()
    spec = f"${{qc_run_dir:'{output_dir}',{service},{str(resume).lower()}}}"
    return OmegaConf.create({"dir": spec}).dir


def test_resume_true_picks_the_newest_unfinished_run_of_the_service(tmp_path):
    out = tmp_path / "output"
    for name, service, status, started in [("a", "finetune", "failed", "2026-01-01T00:00:00"),
                                           ("b", "finetune", "running", "2026-01-02T00:00:00"),
                                           ("c", "finetune", "completed", "2026-01-03T00:00:00"),
                                           ("d", "infer", "failed", "2026-01-04T00:00:00")]:
        folder = out / service / name
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(
            {"service": service, "status": status, "started": started}))
    assert _run_dir(out, "finetune", True) == str(out / "finetune" / "b")
    fresh = _run_dir(out, "ingest", True)  # nothing to resume: a new folder
    assert Path(fresh).parent == out / "ingest" and not Path(fresh).exists()


def test_a_checkpoint_cut_off_while_saving_is_passed_over(tmp_path):
    for step, complete in [(3, True), (6, True), (9, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert last_complete_checkpoint(tmp_path / "absent") is None
