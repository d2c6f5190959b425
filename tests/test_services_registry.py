"""Services are discovered: a new stage is one module plus one YAML file, nothing else.

The new service here is written at test time into a temporary folder that joins
``querycraft.services.__path__`` (Python's own way of spreading one package over several
folders), and its YAML into a temporary config folder that joins Hydra's search path
(``hydra.searchpath=[file://...]``, which the command line accepts like any override). No file
of the project changes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import querycraft.services
from querycraft import cli
from querycraft.config import CONFIG_DIR, check_config, register_configs
from querycraft.errors import QueryCraftError
from querycraft.runs import read_manifest
from querycraft.services import forget_services, get_service, services

NAME = "greet"

MODULE = '''
"""A stage that exists only in this test: it greets, in its own run folder."""

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from querycraft.runs import start_run


@dataclass
class GreetConfig:
    greeting: str = "hello"
    times: int = 1


SETTINGS = GreetConfig


def check(cfg: DictConfig) -> list[str]:
    return [] if cfg.greet.times >= 1 else ["greet.times must be at least 1"]


def run(cfg: DictConfig) -> Path:
    with start_run(cfg, "greet") as run_:
        text = " ".join([cfg.greet.greeting] * cfg.greet.times)
        run_.path("greeting.txt").write_text(text, encoding="utf-8")
        run_.record(greeting=text, dialect=cfg.prompt.dialect_name)
    return run_.dir
'''

# Its YAML holds its settings too: a _global_ package file names the service and sets them.
YAML = f"""# @package _global_
service:
  name: {NAME}
{NAME}:
  greeting: hi
"""


@pytest.fixture
def new_service(tmp_path: Path) -> Iterator[str]:
    """The service module and its YAML, each in a temp folder on the search path; yields the
    ``hydra.searchpath`` override that finds the YAML. Everything is undone afterwards."""
    package_dir = tmp_path / "more_services"
    package_dir.mkdir()
    (package_dir / f"{NAME}.py").write_text(MODULE, encoding="utf-8")
    (tmp_path / "conf" / "service").mkdir(parents=True)
    (tmp_path / "conf" / "service" / f"{NAME}.yaml").write_text(YAML, encoding="utf-8")
    search_path = querycraft.services.__path__
    search_path.append(str(package_dir))
    forget_services()
    try:
        yield f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    finally:
        search_path.remove(str(package_dir))
        sys.modules.pop(f"querycraft.services.{NAME}", None)
        forget_services()
        register_configs()  # the schema without the test's service again


def compose_with(search_override: str, output: Path, overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=[search_override, f"service={NAME}",
                                            f"paths.output_dir={output}",
                                            f"paths.run_dir={output / 'run'}", *overrides])


def test_the_project_services_are_found_with_their_settings() -> None:
    found = services()
    assert set(found) >= {"ingest", "finetune", "infer", "correct", "evaluate", "pipeline",
                          "report"}
    assert found["finetune"].settings_key == "train"  # its settings kept their key
    assert found["report"].settings is None and found["report"].check is None
    assert get_service("evaluate").entry.__module__ == "querycraft.services.evaluate"
    with pytest.raises(QueryCraftError, match=r"service\.name 'nosuch' is not one of .*ingest"):
        get_service("nosuch")


def test_a_new_service_runs_through_the_command_line(new_service: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "output"
    monkeypatch.setattr(sys, "argv", ["querycraft", f"service={NAME}", new_service,
                                      f"paths.output_dir={output}", "greet.times=2"])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        cli.main()  # python -m querycraft service=greet ..., in this process
    finally:  # Hydra set up logging for its run; the other tests keep theirs
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
    (run_dir,) = (output / NAME).iterdir()
    # The YAML's value and the command line's both reached the service, typed.
    assert (run_dir / "greeting.txt").read_text(encoding="utf-8") == "hi hi"
    info = read_manifest(run_dir)
    assert info["status"] == "completed" and info["greeting"] == "hi hi"
    assert info["dialect"] == "SQLite"


def test_a_new_service_settings_are_typed(new_service: str, tmp_path: Path) -> None:
    assert compose_with(new_service, tmp_path, []).greet.greeting == "hi"
    message = cli.diagnose_overrides([new_service, f"service={NAME}", "greet.times=twice"])
    assert message is not None and "'greet.times'" in message and "wrong type" in message
    message = cli.diagnose_overrides([new_service, f"service={NAME}", "greet.tims=2"])
    assert message is not None and "Did you mean 'times'?" in message


def test_a_new_service_check_joins_the_one_config_error(new_service: str,
                                                        tmp_path: Path) -> None:
    cfg = compose_with(new_service, tmp_path, ["greet.times=0", "train.max_seq_length=8"])
    with pytest.raises(QueryCraftError) as caught:
        cli.run(cfg)
    message = str(caught.value)
    assert message.count("The configuration has problems") == 1
    assert "greet.times must be at least 1" in message  # the new service's own check
    assert "train.max_seq_length must be at least 16" in message  # finetune's
    assert not (tmp_path / NAME).exists()  # nothing ran


def test_without_the_module_the_service_is_unknown(tmp_path: Path) -> None:
    assert NAME not in services()
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=[f"paths.output_dir={tmp_path}",
                                           f"paths.run_dir={tmp_path / 'run'}",
                                           f"service.name={NAME}"])
    with pytest.raises(QueryCraftError, match=rf"service\.name '{NAME}' is not one of "):
        check_config(cfg)
