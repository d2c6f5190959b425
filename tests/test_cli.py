"""The command line: where logs go, what --help says, progress bars."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


def _querycraft(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "querycraft", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_log_lines_go_to_stderr_and_leave_stdout_to_results(tmp_path):
    done = _querycraft("service=report", f"paths.output_dir={tmp_path / 'out'}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "[INFO]" in done.stderr and "No completed evaluation run" in done.stderr


@pytest.mark.slow
def test_transformers_progress_bars_are_off_once_transformers_is_imported():
    # QueryCraft's own bars are tqdm's, which this leaves alone.
    code = ("import querycraft.cli as c; c.quiet_transformers_progress(); "
            "import transformers.utils.logging as l; print(l.is_progress_bar_enabled())")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_help_is_a_short_usage_with_every_service_and_where_the_full_config_is():
    done = _querycraft("--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    from querycraft.services import services
    for name in services():
        assert f"\n  {name} " in text  # each service with its one line
    assert "Train a LoRA-family adapter" in text and "--cfg job" in text
    assert "model=<preset>" in text and "accelerate" not in text.split("Common")[0]
    assert len(text.splitlines()) < 60  # not Hydra's 200-line config dump


@pytest.mark.slow
def test_accelerate_as_a_config_group_is_a_one_paragraph_error():
    done = _querycraft("accelerate=ddp", "service=report")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "accelerate launch --config_file conf/accelerate/ddp.yaml" in line
    assert "docs/FINETUNE.md" in line
