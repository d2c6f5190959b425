"""File-system failures end in one paragraph (what happened, what to do), never a traceback:
a read-only, misplaced or missing output folder, a full disk (the run marked failed, nothing
earlier changed). Real file systems where the machine allows: a small tmpfs mounted for the
test (root only; skipped with the reason otherwise), else a simulated error."""

from __future__ import annotations

import csv
import errno
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from querycraft import cli, runs
from querycraft.errors import QueryCraftError
from querycraft.runs import file_system_problem, folder_problem, read_manifest
from querycraft.services import ingest
from tests.conftest import PROJECT_ROOT, make_config

CONTEXT = "CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, first_name TEXT);"


def write_examples(path: Path, count: int, context: str = CONTEXT) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "query", "context"])
        writer.writerows([f"Name of customer {i}?",
                          f"SELECT first_name FROM customer WHERE customer_id = {i}", context]
                         for i in range(1, count + 1))
    return path


def ingest_into(output_dir: Path, name: str, data: Path, *extra: str) -> Path:
    cfg = make_config(output_dir, ["data=csv", f"data.path={data}", "data.database=null", *extra],
                      output_dir / name)
    return ingest.run(cfg)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; the test is skipped where mounting is not
    permitted (it needs root with CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here ({done.stderr.strip() or 'mount failed'}):"
                    f" a real full or read-only disk needs root with CAP_SYS_ADMIN; the "
                    f"simulated tests below still run")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


# ---------------------------------------------------------------- the messages


@pytest.mark.parametrize(("code", "expected"), [
    (errno.ENOSPC, ["The disk is full", "/out/x.jsonl", "Free space", "paths.output_dir"]),
    (errno.EROFS, ["/out/x.jsonl is on a read-only file system", "Make it writable"]),
    (errno.EACCES, ["permission denied", "chmod/chown", "paths.output_dir"]),
    (errno.EISDIR, ["/out/x.jsonl is a folder, but a file is needed"]),
    (errno.ENOTDIR, ["is a file, but a folder is needed", "Move the file away"]),
    (errno.ENOENT, ["/out/x.jsonl does not exist", "Restore it"]),
])
def test_each_file_system_error_says_what_happened_and_what_to_do(code, expected):
    import os

    message = file_system_problem(OSError(code, os.strerror(code), "/out/x.jsonl"))
    assert message is not None and "\n" not in message
    for fragment in expected:
        assert fragment in message
    assert message.endswith("run again.")


def test_other_os_errors_are_not_dressed_up():
    assert file_system_problem(OSError(errno.ECONNRESET, "Connection reset")) is None


def test_a_file_where_the_output_folder_belongs(tmp_path):
    blocker = tmp_path / "output"
    blocker.write_text("not a folder")
    problem = folder_problem(blocker / "ingest", "paths.output_dir")
    assert problem is not None and "is a file, but a folder is needed" in problem
    assert "paths.output_dir" in problem
    assert blocker.read_text() == "not a folder"


def test_a_missing_output_folder_is_made(tmp_path):
    deep = tmp_path / "not" / "yet" / "there"
    assert folder_problem(deep) is None and deep.is_dir() and not any(deep.iterdir())


def test_a_run_folder_that_is_a_file_is_explained(tmp_path):
    data = write_examples(tmp_path / "ex.csv", 4)
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "run").write_text("keep me")
    with pytest.raises(QueryCraftError) as caught:
        ingest_into(tmp_path / "output", "run", data)
    assert "is a file, but a folder is needed" in str(caught.value)
    assert (tmp_path / "output" / "run").read_text() == "keep me"


@pytest.mark.slow
def test_the_command_line_explains_an_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "output"
    blocker.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "querycraft", "service=ingest",
                           f"paths.output_dir={blocker}"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "is a file, but a folder is needed" in done.stderr
    assert "paths.output_dir" in done.stderr and "Traceback" not in done.stderr
    assert cli.output_problem(make_config(tmp_path / "ok"), [f"hydra.run.dir={blocker}/r"])


@pytest.mark.slow
def test_the_command_line_explains_a_folder_given_as_data_path(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-m", "querycraft", "service=ingest",
                           f"data.path={folder}", f"paths.output_dir={tmp_path / 'output'}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    said = done.stderr + done.stdout  # Hydra's log handler writes to stdout
    assert f"data.path '{folder}' is a folder, not a file" in said
    assert "Traceback" not in said


# ---------------------------------------------------------------- disk full


def assert_failed_disk_full(run_dir: Path, message: str) -> None:
    assert "The disk is full" in message and "paths.output_dir" in message
    assert f"This run ({run_dir}) is marked failed" in message
    assert "no earlier run was changed" in message
    info = read_manifest(run_dir)
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    assert not list(run_dir.rglob("*.tmp"))  # no half-written file left behind


def test_a_full_disk_marks_the_run_failed_simulated(tmp_path, monkeypatch):
    data = write_examples(tmp_path / "ex.csv", 6)
    output = tmp_path / "output"
    earlier = ingest_into(output, "earlier", data)
    before = snapshot(earlier)

    def full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ingest, "write_jsonl", full)
    with pytest.raises(QueryCraftError) as caught:
        ingest_into(output, "later", data)
    assert_failed_disk_full(output / "later", str(caught.value))
    assert snapshot(earlier) == before


def test_the_failure_is_recorded_even_when_the_manifest_cannot_be_replaced(tmp_path,
                                                                         monkeypatch):
    data = write_examples(tmp_path / "ex.csv", 6)
    real_record = runs.Run.record

    def record(self, **facts):
        if facts.get("status") == "running":
            return real_record(self, **facts)
        (self.dir / (runs.MANIFEST + ".tmp")).write_text("{half")
        raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "run.json.tmp"))

    monkeypatch.setattr(runs.Run, "record", record)
    with pytest.raises(QueryCraftError):
        ingest_into(tmp_path / "output", "run", data)
    info = json.loads((tmp_path / "output" / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "No space left" in info["error"]
    assert not (tmp_path / "output" / "run" / "run.json.tmp").exists()


@pytest.mark.slow
def test_a_full_disk_marks_the_run_failed_on_a_real_tmpfs(tmp_path):
    small = write_examples(tmp_path / "small.csv", 6)
    big = write_examples(tmp_path / "big.csv", 300, CONTEXT + " -- " + "x" * 4000)
    with tmpfs(tmp_path / f"disk-{uuid.uuid4().hex[:6]}", "512k") as disk:
        output = disk / "output"
        earlier = ingest_into(output, "earlier", small)
        before = snapshot(earlier)
        with pytest.raises(QueryCraftError) as caught:
            ingest_into(output, "later", big)
        assert_failed_disk_full(output / "later", str(caught.value))
        assert snapshot(earlier) == before
        assert read_manifest(earlier)["status"] == "completed"


# ---------------------------------------------------------------- read-only


@pytest.mark.slow
def test_a_read_only_output_folder_on_a_real_mount(tmp_path):
    data = write_examples(tmp_path / "ex.csv", 6)
    with tmpfs(tmp_path / f"ro-{uuid.uuid4().hex[:6]}", "1m") as disk:
        output = disk / "output"
        earlier = ingest_into(output, "earlier", data)
        before = snapshot(earlier)
        remount_read_only(disk)
        with pytest.raises(QueryCraftError) as caught:
            ingest_into(output, "later", data)
        message = str(caught.value)
        assert f"{output / 'later'} is on a read-only file system" in message
        assert "point paths.output_dir at a folder you can write" in message
        assert not (output / "later").exists()
        # The command line stops before Hydra makes its run folder, without a traceback.
        done = subprocess.run([sys.executable, "-m", "querycraft", "service=ingest",
                               f"paths.output_dir={output}"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert f"{output} is on a read-only file system" in done.stderr
        assert "Traceback" not in done.stderr
        assert snapshot(earlier) == before


@pytest.mark.slow
def test_the_command_line_on_a_disk_that_is_already_full(tmp_path):
    with tmpfs(tmp_path / f"full-{uuid.uuid4().hex[:6]}", "64k") as disk:
        earlier = disk / "output" / "ingest" / "earlier"
        earlier.mkdir(parents=True)
        (earlier / "run.json").write_text('{"service": "ingest", "status": "completed"}')
        before = snapshot(disk / "output")
        with pytest.raises(OSError), (disk / "filler").open("wb", buffering=0) as filler:
            while True:
                filler.write(b"x" * 4096)
        done = subprocess.run([sys.executable, "-m", "querycraft", "service=ingest",
                               f"paths.output_dir={disk / 'output'}"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=120)
        said = done.stderr + done.stdout
        assert done.returncode == 2, said
        assert "The disk is full" in said and "Traceback" not in said
        assert "no earlier run was changed" in said or "paths.output_dir" in said
        after = snapshot(disk / "output")
        assert {k: v for k, v in after.items() if k in before} == before
