"""Pipeline: ingest -> finetune -> infer -> correct -> evaluate in one run folder, with the
base model scored before fine-tuning so the gain is shown side by side.

Each stage is called through its service's entry (``querycraft.services.<stage>.run``) with
a copy of the config whose input paths point at the previous stage's folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from querycraft.artifacts import EvaluationArtifact, EvaluationSummary
from querycraft.inputs import data_problems
from querycraft.runs import start_run
from querycraft.services import get_service

log = logging.getLogger("querycraft")


@dataclass
class PipelineConfig:
    # Also score the base model before fine-tuning, for the side-by-side comparison.
    evaluate_base: bool = True
    # Run the correct stage between infer and evaluate; both the raw and the corrected SQL
    # are scored.
    correct: bool = True


SETTINGS = PipelineConfig


def check(cfg: DictConfig) -> list[str]:
    """With service=pipeline: the data files its ingest stage reads."""
    return data_problems(cfg) if cfg.service.name == "pipeline" else []


METRICS = (("execution accuracy", "execution_accuracy"), ("exact match", "exact_match"),
           ("token match", "token_match"), ("valid SQL", "valid_sql_rate"))
# Rows of the table: (label, summary column) for the raw SQL and, when correct ran, the
# corrected SQL.
COLUMN_LABELS = {"sql": "", "corrected": " (corrected)"}


def _stage(cfg: DictConfig, stage: str, run_dir: Path, settings: dict[str, Any]) -> Path:
    stage_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(stage_cfg):
        stage_cfg.paths.run_dir = str(run_dir)
        stage_cfg.service.name = stage
        for key, value in settings.items():
            OmegaConf.update(stage_cfg, key, value)
    log.info("pipeline: %s", stage)
    return get_service(stage).entry(stage_cfg)


def comparison_table(before: EvaluationSummary | None, after: EvaluationSummary) -> str:
    """A small text table of the metrics before and after fine-tuning (raw SQL, and the
    corrected SQL when the correct stage ran)."""
    width = 32
    lines = [f"{'':<{width}}{'before fine-tuning':>20}{'after fine-tuning':>20}"]
    for column, suffix in COLUMN_LABELS.items():
        right = after.column_scores(column)
        if not right:
            continue
        left = before.column_scores(column) if before else {}
        for label, key in METRICS:
            if column == "corrected" and key != "execution_accuracy":
                continue  # the one figure correction is for
            left_text = f"{left[key]:.3f}" if left.get(key) is not None else "-"
            lines.append(f"{label + suffix:<{width}}{left_text:>20}{right[key]:>20.3f}")
    lines.append(f"{'questions':<{width}}{before.items if before else '-':>20}"
                 f"{after.items:>20}")
    return "\n".join(lines)


def _generate_and_score(cfg: DictConfig, root: Path, finetune_dir: Path, use_adapter: bool,
                        folders: tuple[str, str, str]) -> EvaluationSummary:
    """Infer (with or without the adapter), correct when configured, evaluate: the summary."""
    infer_folder, correct_folder, evaluate_folder = folders
    predictions = _stage(cfg, "infer", root / infer_folder,
                         {"infer.finetune_dir": str(finetune_dir),
                          "infer.use_adapter": use_adapter, "infer.dataset_dir": None})
    if cfg.pipeline.correct:
        predictions = _stage(cfg, "correct", root / correct_folder,
                             {"correct.predictions_dir": str(predictions)})
    evaluation = _stage(cfg, "evaluate", root / evaluate_folder,
                        {"evaluate.predictions_dir": str(predictions)})
    return EvaluationArtifact.read(evaluation).summary


def run(cfg: DictConfig) -> Path:
    """Run every stage on the configured data and model.

    Returns:
        The pipeline's run folder, holding one sub-folder per stage and ``summary.json``.
    """
    root = Path(cfg.paths.run_dir)
    with start_run(cfg, "pipeline") as run_:
        ingest_dir = _stage(cfg, "ingest", root / "1-ingest", {})
        finetune_dir = _stage(cfg, "finetune", root / "2-finetune",
                              {"train.dataset_dir": str(ingest_dir)})
        before = (_generate_and_score(cfg, root, finetune_dir, use_adapter=False,
                                      folders=("3-infer-base", "3b-correct-base",
                                               "4-evaluate-base"))
                  if cfg.pipeline.evaluate_base else None)
        after = _generate_and_score(cfg, root, finetune_dir, use_adapter=True,
                                    folders=("5-infer", "5b-correct", "6-evaluate"))
        table = comparison_table(before, after)
        scores = {"before": before.as_dict() if before else None, "after": after.as_dict()}
        summary = {**scores, "model": cfg.model.name, "data": cfg.data.name}
        run_.path("summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        run_.path("summary.txt").write_text(table + "\n", encoding="utf-8")
        run_.record(summary=scores)
    print(f"\nQueryCraft pipeline: model {cfg.model.name}, data {cfg.data.name}\n{table}\n"
          f"Results: {root}")
    return root
