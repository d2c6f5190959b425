"""Time the README's quickstart command on a fresh clone in a new virtual environment.

Usage: python bench/quickstart.py [--keep] [--real]

Clones this repository (HEAD) into a temporary folder, runs the first ```bash block of the
README's Quickstart section there with bash, and reports the wall time and the before/after
table the pipeline prints. With --real it runs the README's real-model command instead
(section "Next: a real model"), after the same virtual environment and torch install as the
quickstart, with an empty model cache, so the time includes installing the model package
and converting its GGUF file once. The pipeline's own baseline (the base model before fine-tuning,
scored in the same run) is the comparison: the printed ratio is after / before for token
match, and the difference for execution accuracy (before is usually 0).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(readme: str, section: str = "## Quickstart") -> str:
    text = readme.split(section, 1)[1]
    return re.search(r"```bash\n(.*?)\n```", text, re.S).group(1).strip()


def table_rows(table: str) -> dict[str, list[str]]:
    """The pipeline's before/after table: label -> [before, after]."""
    rows = {}
    for line in table.splitlines():
        m = re.match(r"^(\S.*?)\s{2,}(\S+)\s+(\S+)$", line)
        if m:
            rows[m.group(1)] = [m.group(2), m.group(3)]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    parser.add_argument("--real", action="store_true",
                        help="time the README's real-model command (SmolLM2) instead")
    args = parser.parse_args()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme_command(readme)
    if args.real:
        setup = command.split("pip install -e .")[0]  # venv + torch, as in the quickstart
        command = setup + readme_command(readme, "## Next: a real model")
    work = Path(tempfile.mkdtemp(prefix="qc-quickstart-"))
    clone = work / "querycraft"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # The clone sits in a temp folder: give it ../shared like CI does, if we have one.
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (work / "shared").symlink_to(shared)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
    env["HF_HUB_OFFLINE"] = "1"  # prove no model or data download happens
    env["QC_CACHE_DIR"] = str(work / "cache")  # a GGUF model is converted as on a new machine
    print(f"running in {clone}:\n  {command}", flush=True)
    began = time.perf_counter()
    done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - began
    output = done.stdout + done.stderr
    (work / "quickstart.log").write_text(output, encoding="utf-8")
    if done.returncode != 0:
        print(output[-4000:])
        print(f"FAILED with exit code {done.returncode} after {seconds:.0f} s")
        return 1
    table = output[output.index("QueryCraft pipeline:"):].strip()
    print(table)
    rows = table_rows(table)
    before_ex, after_ex = map(float, rows["execution accuracy"])
    before_tm, after_tm = map(float, rows["token match"])
    if "execution accuracy (corrected)" in rows:
        print("execution accuracy (corrected): {} -> {}".format(
            *rows["execution accuracy (corrected)"]))
    print(f"\nwall time (install + pipeline): {seconds:.0f} s on {os.cpu_count()} CPU cores")
    print(f"execution accuracy: {before_ex:.3f} -> {after_ex:.3f} (+{after_ex - before_ex:.3f})")
    print(f"token match: {before_tm:.3f} -> {after_tm:.3f} "
          f"(x{after_tm / max(before_tm, 1e-9):.0f})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
