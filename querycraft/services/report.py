"""Report: HTML pages for the evaluation runs under the output folder.

Writes ``leaderboard.html`` (every completed evaluation run, best execution accuracy first)
into this run's own folder, and a ``report.html`` into each evaluation run folder that has
none yet. The pages are self-contained: open them from disk, no server needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from querycraft.artifacts import EvaluationArtifact, finished_runs
from querycraft.errors import QueryCraftError
from querycraft.report import render_leaderboard, render_run_report
from querycraft.runs import read_jsonl, start_run

log = logging.getLogger("querycraft")

REPORT_FILE = "report.html"
LEADERBOARD_FILE = "leaderboard.html"


def find_evaluations(output_dir: str | Path) -> list[tuple[Path, EvaluationArtifact]]:
    """Every completed evaluate run under ``output_dir`` (nested ones too), read."""
    return list(finished_runs(output_dir, EvaluationArtifact))


def write_run_report(run_dir: Path, evaluation: EvaluationArtifact) -> Path:
    """Write ``report.html`` into one evaluation run folder from its summary and items."""
    summary = evaluation.summary
    items: list[dict[str, Any]] = []
    if evaluation.items is not None:
        items = read_jsonl(evaluation.items)
    else:
        log.warning("report: %s has no items.jsonl; its page shows the summary only", run_dir)
    path = run_dir / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_run_report(summary, items, run_name=run_dir.name), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a page
    return path


def run(cfg: DictConfig) -> Path:
    """Render the leaderboard of every completed evaluation run under ``paths.output_dir``.

    Returns:
        The path of ``leaderboard.html`` in this run's folder.

    Raises:
        QueryCraftError: if there is no completed evaluation run.
    """
    output_dir = Path(cfg.paths.output_dir)
    with start_run(cfg, "report") as run_:
        evaluations = find_evaluations(output_dir)
        if not evaluations:
            raise QueryCraftError(
                f"No completed evaluation run under {output_dir}: run "
                f"`python -m querycraft service=evaluate` first (or service=pipeline).")
        runs, written = [], 0
        for run_dir, evaluation in evaluations:
            if not (run_dir / REPORT_FILE).is_file():
                write_run_report(run_dir, evaluation)
                written += 1
            runs.append({
                "name": run_dir.relative_to(output_dir).as_posix(),
                "when": evaluation.finished,
                "summary": evaluation.summary,
                "report": Path(os.path.relpath(run_dir / REPORT_FILE, run_.dir)).as_posix(),
            })
        page = run_.path(LEADERBOARD_FILE)
        page.write_text(render_leaderboard(runs), encoding="utf-8")
        run_.record(evaluations=len(runs), reports_written=written, page=str(page))
        log.info("report: %d evaluation runs (%d new run pages); leaderboard: %s",
                 len(runs), written, page)
    return page
