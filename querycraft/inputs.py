"""The input files a run reads (the ``data`` group's), checked before anything loads.

Shared by the stages that prepare a dataset (``service=ingest``, ``service=pipeline``) so that
a missing file is one clear message at start, not an error half-way through a run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def path_exists(path: str | None) -> bool:
    return path is not None and Path(path).exists()


def folder_not_file(setting: str, path: str) -> str:
    """The message for a setting that names a folder where a file is wanted."""
    return (f"{setting} '{path}' is a folder, not a file: point {setting} at the file "
            f"inside it (e.g. {setting}={Path(path) / 'examples.csv'})")


def data_problems(cfg: DictConfig) -> list[str]:
    """The data files a stage that prepares the dataset reads, where they are missing or
    are folders."""
    problems = []
    if not path_exists(cfg.data.path):
        problems.append(f"data.path '{cfg.data.path}' does not exist: put your file in "
                        f"input/ and point data.path at it")
    elif Path(cfg.data.path).is_dir():
        problems.append(folder_not_file("data.path", cfg.data.path))
    if cfg.data.database is not None and not path_exists(cfg.data.database):
        problems.append(f"data.database '{cfg.data.database}' does not exist")
    return problems
