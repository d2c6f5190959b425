"""synthesize.exclude (issue 31): pairs written for training never give an evaluation query,
or its shape, away."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from querycraft.services import ingest, synthesize
from querycraft.splits import query_key, query_skeleton
from tests.conftest import PROJECT_ROOT, make_config

SHOP = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"


def _pairs(run_dir: Path, name: str) -> list[dict[str, str]]:
    with (run_dir / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_excluded_evaluation_queries_and_shapes_are_never_written(tmp_path: Path) -> None:
    output = tmp_path / "output"
    common = [f"db.path={SHOP}", "synthesize.count=60"]
    first = synthesize.run(make_config(output, ["service=synthesize", *common],
                                       output / "synth-1"))
    written = _pairs(first, "pairs.csv")
    # An evaluation file made of queries the synthesizer itself writes with this seed: the
    # second run would write them again without the exclusion.
    held_out = written[::6]
    test_file = tmp_path / "test.csv"
    with test_file.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "query", "db_id"])
        writer.writerows((p["question"], p["query"], "shop") for p in held_out)
    test_run = ingest.run(make_config(output, [
        "service=ingest", f"data.path={test_file}", f"data.database={SHOP}", "data=csv_db",
        "ingest.eval_fraction=1.0"], output / "ingest-test"))

    second = synthesize.run(make_config(output, ["service=synthesize", *common,
                                                 f"synthesize.exclude={test_run}"],
                                        output / "synth-2"))
    kept = _pairs(second, "pairs.csv")
    rejected = _pairs(second, "rejected.csv")
    keys = {query_key(p["query"]) for p in held_out}
    shapes = {query_skeleton(p["query"]) for p in held_out}
    assert kept
    assert not {query_key(p["query"]) for p in kept} & keys
    assert not {query_skeleton(p["query"]) for p in kept} & shapes
    reasons = {r["reason"] for r in rejected}
    assert {"an evaluation query", "an evaluation query's shape"} & reasons, reasons
    assert all(r["detail"] == "synthesize.exclude" for r in rejected
               if r["reason"].startswith("an evaluation"))
