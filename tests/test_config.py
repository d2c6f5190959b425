"""Config composition and the command line's error messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from querycraft.config import check_config
from querycraft.data import prompt_for
from querycraft.engines import get_engine
from querycraft.errors import QueryCraftError
from querycraft.services.infer import resolve_request
from tests.conftest import PROJECT_ROOT, make_config

# Runs the CLI and, on its way out, notes which heavy libraries it imported: an error in the
# config must come before any of them loads (a check, not a timing, so that a busy machine
# cannot fail it).
_WRAPPER = """
import runpy, sys
sys.argv = ["querycraft", *sys.argv[1:]]
try:
    runpy.run_module("querycraft", run_name="__main__", alter_sys=True)
finally:
    heavy = sorted(m for m in ("torch", "transformers", "peft", "datasets") if m in sys.modules)
    sys.stderr.write("\\nHEAVY " + " ".join(heavy) + "\\n")
"""


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The finished CLI (stderr without the wrapper's line) and the heavy modules it loaded."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    stderr, _, heavy = done.stderr.rstrip("\n").rpartition("\nHEAVY ")
    done.stderr = stderr
    return done, heavy.split()


@pytest.mark.slow
def test_every_group_choice_composes(tmp_path):
    groups = ("service", "model", "peft", "collator", "data", "prompt", "db", "experiment")
    for group in groups:
        for path in sorted((PROJECT_ROOT / "conf" / group).glob("*.yaml")):
            cfg = make_config(tmp_path, [f"{group}={path.stem}"])
            assert cfg.service.name and cfg.model.name  # composed and typed
            if group != "experiment":  # experiments are global patches, not a node
                assert cfg[group] is not None


def test_a_new_key_in_a_map_says_to_add_it_with_a_plus():
    from querycraft import cli

    message = cli.diagnose_overrides(
        ["service=synthesize", 'synthesize.column_phrases={segment: ["customer type"]}'])
    assert message is not None and "+synthesize.column_phrases.segment=" in message
    assert "has no key 'column_phrases'" not in message  # the key exists: the map's is new
    assert cli.diagnose_overrides(
        ["service=synthesize", '+synthesize.column_phrases={segment: ["customer type"]}']) is None


def test_default_config_passes_checks(tmp_path):
    check_config(make_config(tmp_path))


@pytest.mark.slow
def test_typo_in_key_names_the_key_and_the_valid_ones():
    done, heavy = run_cli("peft.rr=8")
    assert done.returncode == 2
    message = done.stderr
    assert "'peft.rr'" in message and "Did you mean 'r'?" in message
    for key in ("alpha", "dropout", "r", "target_modules"):
        assert key in message
    assert "Traceback" not in message
    assert heavy == []


@pytest.mark.slow
def test_unknown_preset_lists_the_choices():
    done, heavy = run_cli("model=nosuch")
    assert done.returncode == 2
    assert "'nosuch'" in done.stderr and "tiny" in done.stderr and "mistral-7b" in done.stderr
    assert "Traceback" not in done.stderr
    assert heavy == []


@pytest.mark.slow
def test_unknown_service_says_what_a_new_one_is():
    done, _ = run_cli("service=ingset")
    assert done.returncode == 2
    assert "Did you mean 'ingest'?" in done.stderr
    assert "a new service is a module in querycraft/services/" in done.stderr


@pytest.mark.slow
def test_wrong_type_is_reported():
    done, _ = run_cli("peft.r=eight")
    assert done.returncode == 2
    assert "'peft.r'" in done.stderr and "Integer" in done.stderr


@pytest.mark.slow
def test_unknown_top_level_key():
    done, _ = run_cli("trian.epochs=2")
    assert done.returncode == 2
    assert "Did you mean 'train'?" in done.stderr


def test_value_checks_are_reported_together(tmp_path):
    cfg = make_config(tmp_path, ["ingest.eval_fraction=1.5", "train.global_batch_size=10",
                                 "train.micro_batch_size=4", "prompt.template=nosuch"])
    with pytest.raises(QueryCraftError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "eval_fraction" in message and "global_batch_size" in message
    assert "nosuch" in message and "default" in message


@pytest.mark.slow
def test_missing_data_file_is_a_clear_error_before_anything_loads():
    done, heavy = run_cli("service=ingest", "data.path=/nonexistent/file.csv",
                            "paths.output_dir=/tmp/qc-test-never-written")
    assert done.returncode == 2
    assert "/nonexistent/file.csv" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert heavy == []


def test_finetune_settings_are_checked_together(tmp_path):
    cfg = make_config(tmp_path, ["peft.method=lora2", "peft.quantization.bits=3",
                                 "train.on_too_long=truncate", "train.report_to=[tensorbord]",
                                 "collator=default", "collator.packing=true",
                                 "train.validation_fraction=0",
                                 "train.early_stopping_patience=2", "train.precision=fp8"])
    with pytest.raises(QueryCraftError) as caught:
        check_config(cfg)
    message = str(caught.value)
    for fragment in ("peft.method 'lora2'", "bits must be null, 4 or 8",
                     "on_too_long must be 'skip' or 'error'", "tensorbord",
                     "packing needs a dynamic-padding collator",
                     "early_stopping_patience needs validation loss", "precision 'fp8'"):
        assert fragment in message


def test_prompt_format_follows_the_model_preset_unless_set(tmp_path):
    assert make_config(tmp_path, ["model=qwen2.5-7b"]).prompt.template == "chatml"
    assert make_config(tmp_path, ["model=qwen2.5-7b", "prompt.template=default"]
                       ).prompt.template == "default"
    assert make_config(tmp_path).prompt.template == "default"  # the tiny preset's


def _prompt(cfg) -> str:
    """The prompt infer would send for one question (a served model: nothing is loaded)."""
    request = resolve_request(cfg)
    row = {"question": "How many singers are there?", "context": "CREATE TABLE singer (id INT)"}
    return prompt_for(row, request.template, request.dialect)


@pytest.mark.parametrize(("db", "name"), [("sqlite", "SQLite"), ("postgres", "PostgreSQL"),
                                          ("mysql", "MySQL"), ("db2", "Db2")])
def test_the_dialects_follow_the_target_database(tmp_path, db, name):
    cfg = make_config(tmp_path, [f"db={db}", "infer.backend=openai"])
    assert cfg.prompt.dialect_name == name == get_engine(db).prompt_name
    assert f"Write a {name} query" in _prompt(cfg)
    # Corrected SQL is written for the target database too; the gold's stays data.dialect.
    assert cfg.correct.target_dialect == get_engine(db).dialect
    assert cfg.data.dialect == "sqlite"


def test_an_explicit_dialect_wins(tmp_path):
    cfg = make_config(tmp_path, ["db=postgres", "infer.backend=openai",
                                 "prompt.dialect_name=T-SQL", "correct.target_dialect=tsql"])
    prompt = _prompt(cfg)
    assert "Write a T-SQL query" in prompt and "PostgreSQL" not in prompt
    assert cfg.correct.target_dialect == "tsql"


def test_only_the_two_dialects_a_user_must_say_are_settings(tmp_path):
    # The gold SQL's (data.dialect) and the target database's (db): the old extra settings
    # are unknown keys now.
    for gone in ("evaluate.gold_dialect=sqlite", "correct.read_dialect=sqlite"):
        with pytest.raises(Exception, match="Could not override"):
            make_config(tmp_path, [gone])
    cfg = make_config(tmp_path, ["service=correct", "data.dialect=klingon"])
    with pytest.raises(QueryCraftError, match=r"data\.dialect 'klingon' is not a sqlglot"):
        check_config(cfg)


def test_a_model_name_with_a_builder_preset_is_refused(tmp_path):
    # The tiny preset builds its own model: another name would train it anyway and record
    # the bogus name as the model trained.
    cfg = make_config(tmp_path, ["model.name=does/not-exist"])
    assert cfg.model.builder == "tiny"
    with pytest.raises(QueryCraftError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "model.name 'does/not-exist' is set with the builder preset model=tiny" in message
    assert "drop model.name" in message and "model=local" in message
    check_config(make_config(tmp_path, ["model.name=tiny"]))  # the preset's own name is fine
    check_config(make_config(tmp_path, ["model=local", "model.name=mine",
                                        f"model.name_or_path={tmp_path}"]))


def test_pyproject_license_is_an_spdx_string_not_the_deprecated_table():
    from tests.conftest import PROJECT_ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # PEP 639; {text = ...} warns in setuptools
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
