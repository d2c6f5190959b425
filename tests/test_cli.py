"""The command line: where logs go, what --help says, progress bars."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def _querycraft(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "querycraft", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_log_lines_go_to_stderr_and_leave_stdout_to_results(tmp_path):
    done = _querycraft("service=report", f"paths.output_dir={tmp_path / 'out'}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "[INFO]" in done.stderr and "No completed evaluation run" in done.stderr


def test_transformers_progress_bars_are_off_once_transformers_is_imported():
    # QueryCraft's own bars are tqdm's, which this leaves alone.
    code = ("import querycraft.cli as c; c.quiet_transformers_progress(); "
            "import transformers.utils.logging as l; print(l.is_progress_bar_enabled())")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
