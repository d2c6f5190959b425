"""Run folders: each stage writes into its own folder with a ``run.json`` manifest.

The manifest says which stage made the folder, whether it finished, and what it produced,
so a later stage can find "the newest finished ingest run" without the user typing a path,
and a failed run is never mistaken for a finished one.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft.errors import QueryCraftError

log = logging.getLogger("querycraft")

MANIFEST = "run.json"
CONFIG_FILE = "config.yaml"


@dataclass
class Run:
    """A stage's run folder and the facts recorded in its manifest."""

    service: str
    dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    # True when this run continues an earlier, unfinished one in the same folder.
    resumed: bool = False
    # False on the non-zero ranks of a data-parallel launch: they never write files.
    is_main: bool = True

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def record(self, **facts: Any) -> None:
        """Add ``facts`` to the manifest (a later value replaces an earlier one) and save it.

        A stage records what it produced (``predictions=...``, ``summary=...``) here before
        its run ends; ``start_run`` records the status. No-op on non-main ranks.
        """
        if not self.is_main:
            return
        manifest = {"service": self.service, **self.info, **facts}
        tmp = self.dir / (MANIFEST + ".tmp")
        try:
            tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        except OSError as err:
            raise _named(err, self.dir / MANIFEST) from err
        tmp.replace(self.dir / MANIFEST)  # atomic: a crash never leaves half a manifest
        self.info = {k: v for k, v in manifest.items() if k != "service"}


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` when it names no file: a write that fails when its buffer is
    flushed (on a full disk, at close) says which file it was. The same subclass
    (``OSError(errno.ENOSPC, ...)`` is built as the class Python gives that errno)."""
    if err.filename is not None or err.errno is None:
        return err
    return OSError(err.errno, err.strerror, str(path))


def _write_in_place(path: Path, text: str) -> None:
    """Overwrite ``path`` without a temporary file: on a full disk the old content's blocks
    are freed by the truncation and reused. Not atomic; only for marking a run failed."""
    with path.open("w", encoding="utf-8") as out:
        out.write(text)


# ---------------------------------------------------------------- file-system problems

# The errors of the file system a user can act on, explained by :func:`file_system_problem`.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)


def file_system_problem(err: OSError, setting: str = "paths.output_dir") -> str | None:
    """One paragraph saying what went wrong with a file or folder and what to do, for the
    file-system errors a user can fix (disk full, read-only, a folder where a file belongs and
    the reverse, a missing path); None for any other ``OSError``.

    Args:
        setting: the config key that names the path, for "point <setting> elsewhere".
    """
    code = err.errno
    where = err.filename if err.filename is not None else "a file QueryCraft was writing"
    reason = err.strerror or str(err)
    if code in DISK_FULL:
        return (f"The disk is full: writing {where} failed ({reason}). Free space on that "
                f"disk (delete old runs you no longer need under paths.output_dir, or caches), "
                f"or point {setting} at a disk with room, then run again.")
    if code in NOT_WRITABLE:
        what = ("is on a read-only file system" if code == errno.EROFS else
                "may not be written or read by this user (permission denied)")
        return (f"{where} {what}. Make it writable (mount it read-write, or give your user "
                f"access with chmod/chown), or point {setting} at a folder you can write, then "
                f"run again.")
    if code == errno.EISDIR:
        return (f"{where} is a folder, but a file is needed there. Point {setting} at a file "
                f"(e.g. a file inside that folder), then run again.")
    if code in NOT_A_FOLDER:
        return (f"{where} (or a folder above it) is a file, but a folder is needed there. Move "
                f"the file away, or point {setting} at another folder, then run again.")
    if code == errno.ENOENT:
        return (f"{where} does not exist ({reason}): it, or a folder above it, is missing or "
                f"was moved or deleted while QueryCraft ran. Restore it, or point {setting} at "
                f"an existing path, then run again.")
    return None


def folder_problem(folder: str | Path, setting: str = "paths.output_dir") -> str | None:
    """Why runs cannot be written under ``folder`` (created if missing, as a run would),
    or None. Tried for real, with a probe folder made and removed inside it: a permission
    check alone says yes to root on a read-only file system."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        try:
            Path(tempfile.mkdtemp(prefix=".qc-probe-", dir=path)).rmdir()
        except OSError as err:  # named by the folder, not by the probe inside it
            raise OSError(err.errno, err.strerror, str(path)) from err
    except OSError as err:
        return file_system_problem(err, setting) or f"{path} cannot be written: {err}."
    return None


REDACTED = "***"


def redact(value: Any) -> Any:
    """A copy of a config container without secrets: ``password`` keys masked, and the
    password of any ``scheme://user:password@host`` URL in a string hidden."""
    from querycraft.targets import hide_password

    if isinstance(value, dict):
        return {k: (REDACTED if k == "password" and v is not None else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return hide_password(value) if isinstance(value, str) else value


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config (secrets masked), so a run can be understood and repeated."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    path.write_text(OmegaConf.to_yaml(redact(container)), encoding="utf-8")


def process_rank() -> int:
    """This process's rank when launched data-parallel (torchrun / accelerate), else 0."""
    return int(os.environ.get("RANK", "0"))


def _pid_alive(pid: Any, host: Any) -> bool:
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Settings that must not change when a run is resumed: they decide what is produced.
RESUME_CHECKED_KEYS = {
    "finetune": ("seed", "model", "peft", "collator", "prompt", "train"),
    "infer": ("seed", "model", "prompt", "infer", "question"),
    "synthesize": ("seed", "db", "synthesize"),
}


def _check_resumable(cfg: DictConfig, run_dir: Path, info: dict[str, Any],
                     service: str) -> None:
    if _pid_alive(info.get("pid"), info.get("host")):
        raise QueryCraftError(
            f"{run_dir} is being written by process {info['pid']} right now; wait for it to "
            f"finish or stop it before resuming."
        )
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE))
    current = redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    changed = [key for key in RESUME_CHECKED_KEYS.get(service, ())
               if saved.get(key) != current.get(key)]
    if changed:
        raise QueryCraftError(
            f"Cannot resume {run_dir}: the settings of {', '.join(changed)} differ from the "
            f"ones it started with (see its {CONFIG_FILE}). Resume with the same settings, or "
            f"start a new run (leave resume off and the run folder to the default)."
        )


@contextmanager
def start_run(cfg: DictConfig, service: str, *, resumable: bool = False) -> Iterator[Run]:
    """Create the run folder named by ``cfg.paths.run_dir`` and keep its manifest current.

    Args:
        resumable: the service can continue an unfinished run of its own kind in the same
            folder (finetune, from its last checkpoint); ``Run.resumed`` says whether it does.

    In a data-parallel launch only rank 0 writes the manifest; the other ranks share the
    folder.

    A file-system failure (disk full, read-only or missing folder...), while the folder is
    made or inside the block, becomes a one-paragraph ``QueryCraftError`` saying what to do,
    after the run is marked failed (on a full disk too: a half-written JSONL file is removed
    and the manifest is then rewritten in place).

    Raises:
        QueryCraftError: if the folder already holds another run's results, or cannot be
            written.
    """
    run_dir = Path(cfg.paths.run_dir)
    is_main = process_rank() == 0
    info: dict[str, Any] = {}
    resumed = False
    if (run_dir / MANIFEST).exists() and is_main:
        info = read_manifest(run_dir)
        if not (resumable and info.get("service") == service
                and info.get("status") != "completed"):
            raise QueryCraftError(
                f"{run_dir} already holds the results of an earlier run; QueryCraft never "
                f"writes over them. Choose another folder (paths.run_dir) or leave it to the "
                f"default."
            )
        _check_resumable(cfg, run_dir, info, service)
        for stale in ("service", "error", "pid"):
            info.pop(stale, None)
        resumed = True
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fs_error(err, None) from err
    run = Run(service=service, dir=run_dir, info=info, resumed=resumed, is_main=is_main)
    started = time.time()
    if is_main:
        try:
            run.record(status="running", pid=os.getpid(), host=socket.gethostname(),
                       **({"resumed": info.get("resumed", 0) + 1} if resumed else
                          {"started": datetime.now().isoformat(timespec="seconds")}))
            if not resumed:
                save_config(cfg, run_dir / CONFIG_FILE)
        except OSError as err:
            raise _fs_error(err, run_dir, _mark_failed(run, err, started)) from err
    log.info("%s: %s %s", service, "resuming in" if resumed else "writing to", run_dir)
    try:
        yield run
    except BaseException as err:
        marked = _mark_failed(run, err, started) if is_main else False
        if isinstance(err, OSError) and file_system_problem(err) is not None:
            raise _fs_error(err, run_dir if is_main else None, marked) from err
        raise
    if is_main:
        try:
            run.record(status="completed",
                       finished=datetime.now().isoformat(timespec="seconds"),
                       seconds=round(time.time() - started, 1))
        except OSError as err:
            raise _fs_error(err, run_dir, _mark_failed(run, err, started)) from err


def _mark_failed(run: Run, err: BaseException, started: float) -> bool:
    """Record the failure in the run's manifest, even on a full disk (then in place, after
    the temporary manifest is removed); never hides ``err``. Whether it could."""
    facts = {"status": "failed", "error": f"{type(err).__name__}: {err}",
             "seconds": round(time.time() - started, 1)}
    try:
        run.record(**facts)
        return True
    except OSError:
        pass
    manifest = {"service": run.service, **run.info, **facts}
    try:
        (run.dir / (MANIFEST + ".tmp")).unlink(missing_ok=True)
        _write_in_place(run.dir / MANIFEST, json.dumps(manifest, indent=2, default=str))
        run.info = {k: v for k, v in manifest.items() if k != "service"}
        return True
    except OSError:
        # Half a manifest would break every reader of the output folder: none is better.
        with suppress(OSError):
            (run.dir / MANIFEST).unlink(missing_ok=True)
        return False


def _fs_error(err: OSError, run_dir: Path | None, marked: bool = False) -> QueryCraftError:
    """The one-paragraph error for a file-system failure of a run (``marked``: the run's
    manifest says it failed)."""
    setting = "paths.output_dir"
    if isinstance(err.filename, (str, os.PathLike)) and run_dir is not None:
        inside = Path(os.path.abspath(err.filename)).is_relative_to(run_dir.absolute())
        setting = setting if inside else "the setting that names it"
    text = file_system_problem(err, setting) or f"{type(err).__name__}: {err}."
    if run_dir is not None:
        text += (f" This run ({run_dir}) is marked failed in its {MANIFEST}" if marked else
                 f" This run ({run_dir}) could not even record that it failed (it has no "
                 f"{MANIFEST}, so no later stage will read it): delete that folder")
        text += "; no earlier run was changed."
    return QueryCraftError(text)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise QueryCraftError(f"{run_dir} is not a QueryCraft run folder (it has no {MANIFEST}).")
    return json.loads(path.read_text(encoding="utf-8"))


def iter_runs(output_dir: str | Path, service: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every run folder of ``service`` anywhere under ``output_dir``, with its manifest.

    Folders are visited in sorted order; an unreadable manifest is skipped.
    """
    for manifest in sorted(Path(output_dir).rglob(MANIFEST)):
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("service") == service:
            yield manifest.parent, info


def latest_run(output_dir: str | Path, service: str | tuple[str, ...],
               accept: Callable[[dict[str, Any]], bool] | None = None) -> Path | None:
    """The newest completed run of ``service`` (or of any of several) anywhere under
    ``output_dir``; with ``accept``, the newest whose manifest it accepts."""
    services = (service,) if isinstance(service, str) else service
    finished = [(info.get("finished", ""), str(folder))
                for name in services for folder, info in iter_runs(output_dir, name)
                if info.get("status") == "completed" and (accept is None or accept(info))]
    return Path(max(finished)[1]) if finished else None


def latest_unfinished_run(output_dir: str | Path, service: str) -> Path | None:
    """The most recently started run of ``service`` under ``output_dir`` that did not finish."""
    unfinished = [(info.get("started", ""), str(folder))
                  for folder, info in iter_runs(output_dir, service)
                  if info.get("status") != "completed"]
    return Path(max(unfinished)[1]) if unfinished else None


def resolve_run(path: str | None, output_dir: str | Path, service: str | tuple[str, ...],
                setting: str, *, accept: Callable[[dict[str, Any]], bool] | None = None,
                wanted: str | None = None) -> Path:
    """The run folder the user named in ``setting``, or the newest finished one.

    Args:
        path: the folder the user gave, or None for the newest finished run.
        output_dir: where to look for runs.
        service: the stage (or stages) whose output is wanted; the first is searched for,
            or all of them when ``accept`` is given.
        setting: the config key that names the folder, for messages.
        accept: when set, the default is the newest finished run of any of the stages whose
            manifest it accepts (the user's own ``path`` is not filtered).
        wanted: what ``accept`` asks for, in words, for messages ("over a dataset").

    Raises:
        QueryCraftError: if the folder is missing, unfinished, of another stage, or none exists.
    """
    services = (service,) if isinstance(service, str) else service
    if path is None and accept is not None:
        found = latest_run(output_dir, services, accept)
        what = f"{' or '.join(services)} run {wanted or ''}".strip()
        if found is None:
            raise QueryCraftError(
                f"No finished {what} found under {output_dir}. Run `python -m querycraft "
                f"service={services[0]}` first, or set {setting} to the run folder to read.")
        log.info("%s not set: using the newest %s, %s", setting, what, found)
        return found
    if path is None:
        found = latest_run(output_dir, services[0])
        if found is None:
            raise QueryCraftError(
                f"No finished {services[0]} run found under {output_dir}. Run "
                f"`python -m querycraft service={services[0]}` first, or set {setting} to the "
                f"run folder to read."
            )
        log.info("%s not set: using the newest %s run, %s", setting, services[0], found)
        return found
    run_dir = Path(path)
    info = read_manifest(run_dir)
    if info.get("service") not in services:
        raise QueryCraftError(f"{setting}={run_dir} is a {info.get('service')} run, not a "
                              f"{' or '.join(services)} run; point it at the right run folder.")
    if info.get("status") != "completed":
        raise QueryCraftError(f"{setting}={run_dir} did not finish (status "
                              f"{info.get('status')}); run that stage again or pick another.")
    return run_dir


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows atomically: readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    except BaseException as err:
        tmp.unlink(missing_ok=True)  # a full disk gets its space back; no half file is left
        if isinstance(err, OSError):
            raise _named(err, path) from err
        raise
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise QueryCraftError(f"Expected file {path} is missing; was the run that makes it "
                              f"complete?")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

