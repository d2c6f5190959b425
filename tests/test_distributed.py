"""`accelerate launch` runs finetune data-parallel: here two CPU processes talking over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from querycraft.cli import run
from querycraft.config import CONFIG_DIR
from querycraft.runs import read_manifest
from tests.conftest import FAST_MODEL, PROJECT_ROOT, make_config


@pytest.mark.slow
def test_two_processes_train_one_adapter_in_one_run_folder(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    output = tmp_path / "output"
    ingest_dir = run(make_config(output, ["service=ingest", "ingest.max_rows=64",
                                          *FAST_MODEL], output / "ingest"))
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(CONFIG_DIR / "accelerate" / "ddp.yaml"),
               "--num_processes", "2", "-m", "querycraft", "service=finetune",
               f"paths.output_dir={output}", f"train.dataset_dir={ingest_dir}", *FAST_MODEL,
               "train.micro_batch_size=2", "train.global_batch_size=8", "train.max_steps=4",
               "train.logging_steps=1"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    # Both processes agreed on one folder (rank 0 chose it), and only rank 0 wrote results.
    (run_dir,) = [p.parent for p in (output / "finetune").glob("*/run.json")]
    assert read_manifest(run_dir)["status"] == "completed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4
    # 8 examples per step = 2 per process x 2 processes x 2 accumulation steps.
    assert "2 process(es), gradient accumulation 2" in done.stderr + done.stdout + \
        (run_dir / "cli.log").read_text()
    base = AutoModelForCausalLM.from_pretrained(run_dir / "base_model")
    adapted = PeftModel.from_pretrained(base, run_dir / "adapter")
    assert any("lora_A" in name for name, _ in adapted.named_parameters())


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed"])
def test_accelerate_config_files_parse(name):
    config = load_config_from_file(str(CONFIG_DIR / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value.lower().replace("multi_gpu", "ddp") == name
