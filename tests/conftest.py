"""Shared test helpers: compose the real configs from conf/, pointed at a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from querycraft.config import CONFIG_DIR, register_configs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_SPIDER = PROJECT_ROOT.parent / "shared" / "spider-dev"
FIXTURE_SPIDER = Path(__file__).parent / "fixtures" / "spider"

# Small enough to train in seconds; the real default (conf/model/tiny.yaml) is larger.
FAST_MODEL = [
    "model.tiny.hidden_size=64", "model.tiny.num_layers=1", "model.tiny.intermediate_size=128",
    "model.tiny.vocab_size=600", "train.epochs=1", "train.global_batch_size=8",
    "train.micro_batch_size=8", "infer.max_new_tokens=24", "peft.r=4",
]


def make_config(output_dir: Path, overrides: list[str] | None = None,
                run_dir: Path | None = None) -> DictConfig:
    """The composed project config, writing under ``output_dir``."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=[
            f"paths.output_dir={output_dir}",
            f"paths.run_dir={run_dir or output_dir / 'run'}",
            *(overrides or []),
        ])


@pytest.fixture
def config_factory(tmp_path: Path):
    def factory(overrides: list[str] | None = None, name: str = "run") -> DictConfig:
        return make_config(tmp_path / "output", overrides, tmp_path / "output" / name)
    return factory
