"""HTML reports: the run page and the leaderboard, rendered from evaluation run folders.

The run folders here are written with the evaluate service's file contract (run.json,
summary.json, items.jsonl); the leaderboard is also opened in headless Chromium when one is
installed, to check that a browser shows the expected rows.
"""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import querycraft.cli
from querycraft.artifacts import EvaluationSummary
from querycraft.errors import QueryCraftError
from querycraft.report import ERROR_KIND_TEXT, render_leaderboard, render_run_report, short_name
from querycraft.services.evaluate import ITEM_ERROR_KINDS
from tests.conftest import chromium, make_config

XSS_QUESTION = "Which <script>alert('x')</script> singers & bands?"


def make_item(n: int, *, column: str = "sql", match: bool, **extra: Any) -> dict[str, Any]:
    item = {
        "id": f"q{n}", "db_id": "concert_singer", "question": f"How many singers are in list {n}?",
        "query": f"SELECT count(*) FROM singer WHERE list_id = {n}", "column": column,
        "prediction": f"SELECT count(*) FROM singer WHERE list = {n}",
        "execution_match": match, "exact_match": match, "exact_set_match": match,
        "token_match": 1.0 if match else 0.5, "prediction_valid": True, "error_kind": "",
        "error": "", "relation": "same" if match else "different_values",
        "difficulty": "easy", "features": ["aggregate"], "gold_preview": [[n]],
        "pred_preview": [[n + 1]], "gold_rows": 1, "pred_rows": 1, "seconds": 0.001,
    }
    item.update(extra)
    return item


def make_summary(model: str, ex: float | None, *, peft: dict | None = None,
                 corrected: bool = False) -> dict[str, Any]:
    headline = {"execution_accuracy": ex,
                "exact_match": None if ex is None else round(ex / 2, 4),
                "token_match": 0.8, "valid_sql_rate": 0.9}
    columns = {"sql": headline}
    if corrected:
        columns["corrected"] = {"execution_accuracy": 0.9, "exact_match": 0.6,
                                "token_match": 0.85, "valid_sql_rate": 1.0}
    return {
        "items": 4, "gold_failed": 0, **headline, "exact_set_match": 0.3125,
        "errors": {"no_such_column": 1, "syntax": 2},
        "relations": {"different_values": 1, "more_rows": 3},
        "by_difficulty": {"easy": {"count": 2, "execution_accuracy": 1.0, "exact_match": 0.5},
                          "hard": {"count": 2, "execution_accuracy": 0.0, "exact_match": 0.0}},
        "by_feature": {"aggregate": {"count": 3, "execution_accuracy": 0.6667,
                                     "exact_match": 0.3333},
                       "join": {"count": 1, "execution_accuracy": 0.0, "exact_match": 0.0}},
        "columns": columns, "column": "sql", "model": model,
        "adapter": "output/finetune/2025-01-01_00-00-00/adapter" if peft else None,
        "peft": peft, "dataset": "spider-dev", "database": "/data/spider/database",
        "predictions": "output/infer/2025-01-01_00-00-00", "distinct": "keep", "seconds": 1.5,
    }


def typed(summary: dict[str, Any]) -> EvaluationSummary:
    return EvaluationSummary.from_dict(summary)


def typed_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**run, "summary": typed(run["summary"])} for run in runs]


def write_evaluation(run_dir: Path, summary: dict[str, Any], items: list[dict[str, Any]],
                     *, finished: str, status: str = "completed") -> Path:
    run_dir.mkdir(parents=True)
    manifest = {"service": "evaluate", "status": status, "started": finished,
                "finished": finished, "summary": summary}
    (run_dir / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (run_dir / "items.jsonl").write_text(
        "".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return run_dir


def sample_items() -> list[dict[str, Any]]:
    return [
        make_item(1, match=True),
        make_item(2, match=False, question=XSS_QUESTION,
                  prediction="SELECT name FROM singer WHERE age > 30 AND x < 'a&b'",
                  relation="more_rows", pred_preview=[["<b>Joe</b>"], [None]], pred_rows=7),
        make_item(3, match=False, prediction="SELEC name FROM singer", prediction_valid=False,
                  error_kind="syntax", error="near \"SELEC\": syntax error", relation="",
                  pred_preview=None, pred_rows=None),
        make_item(4, match=True, column="corrected"),
        make_item(5, match=False, column="corrected",
                  prediction="SELECT only_in_corrected FROM singer"),
    ]


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    """Three completed evaluation runs (one nested in a pipeline run), one failed, one infer."""
    out = tmp_path / "output"
    write_evaluation(out / "evaluate" / "2025-01-01_10-00-00",
                     make_summary("tiny-llama", 0.25), sample_items(),
                     finished="2025-01-01T10:05:00")
    write_evaluation(out / "evaluate" / "2025-01-02_10-00-00",
                     make_summary("Qwen/Qwen2.5-Coder-7B <b>", 0.75,
                                  peft={"method": "qlora", "r": 16, "alpha": 32},
                                  corrected=True),
                     sample_items(), finished="2025-01-02T10:05:00")
    write_evaluation(out / "pipeline" / "2025-01-03_10-00-00" / "6-evaluate",
                     make_summary("mistral-7b", 0.5, peft={"method": "lora", "r": 8,
                                                           "alpha": 16}),
                     sample_items(), finished="2025-01-03T10:05:00")
    write_evaluation(out / "evaluate" / "2025-01-04_10-00-00", make_summary("failed", 0.99),
                     sample_items(), finished="2025-01-04T10:05:00", status="failed")
    infer = out / "infer" / "2025-01-01_09-00-00"
    infer.mkdir(parents=True)
    (infer / "run.json").write_text(json.dumps({"service": "infer", "status": "completed"}))
    return out


EXPECTED_ORDER = ["evaluate/2025-01-02_10-00-00", "pipeline/2025-01-03_10-00-00/6-evaluate",
                  "evaluate/2025-01-01_10-00-00"]


def test_run_report_headline_failing_items_and_escaping():
    summary = make_summary("tiny-llama", 0.25)
    page = render_run_report(typed(summary), sample_items())
    # Headline numbers: EX, EM, exact set, token match, valid SQL, items.
    for text in ("25.0%", "12.5%", "31.2%", "80.0%", "90.0%", ">4<"):
        assert text in page
    # The failing items of the headline column, with gold and predicted SQL side by side;
    # a passing item and the other column's items are not listed.
    assert 'data-id="q2"' in page and 'data-id="q3"' in page
    assert 'data-id="q1"' not in page and 'data-id="q5"' not in page
    assert "SELECT count(*) FROM singer WHERE list_id = 2" in page
    assert "SELEC name FROM singer" in page
    assert "syntax error" in page and "more_rows" in page
    # Every user string is escaped: no markup from the data reaches the page.
    assert "<script" not in page
    assert "Which &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; singers &amp; bands?" in page
    assert "x &lt; &#x27;a&amp;b&#x27;" in page
    assert "&lt;b&gt;Joe&lt;/b&gt;" in page and "<b>" not in page
    # Result previews, and charts as inline SVG; nothing external is fetched.
    assert "7 rows" in page and "NULL" in page
    assert page.count("<svg") == 4
    assert not re.search(r"(src|href)=\"https?:", page) and "@import" not in page
    # One column only: no raw-vs-corrected table.
    assert "Raw and corrected SQL" not in page


def test_every_item_error_kind_has_its_text_and_no_other_kind_does():
    assert sorted(ERROR_KIND_TEXT) == sorted(ITEM_ERROR_KINDS)


def test_run_report_raw_and_corrected_side_by_side():
    summary = make_summary("m", 0.75, corrected=True)
    page = render_run_report(typed(summary), sample_items())
    assert "Raw and corrected SQL" in page
    assert 'data-column="sql"' in page and 'data-column="corrected"' in page
    assert "+15.0 pt" in page  # execution accuracy 75% -> 90%


def test_run_report_caps_failing_items_and_old_summaries():
    items = [make_item(n, match=False) for n in range(12)]
    page = render_run_report(typed(make_summary("m", 0.0)), items, max_failing=10)
    assert page.count('class="item"') == 10 and "2 more failing items" in page
    # A summary from before the breakdowns (no columns, charts or exact set) still renders.
    old = {"items": 3, "execution_accuracy": 0.5, "exact_match": 0.25, "token_match": 0.5,
           "valid_sql_rate": 1.0, "errors": {}, "column": "sql", "model": None}
    page = render_run_report(typed(old), [])
    assert "50.0%" in page and "Exact set match" not in page and "not available" in page


def test_leaderboard_orders_by_execution_accuracy():
    runs = [{"name": name, "when": f"2025-01-0{n}T10:00:00",
             "summary": make_summary(f"model-{name}", ex), "report": f"../{name}/report.html"}
            for n, (name, ex) in enumerate([("a", 0.2), ("b", 0.9), ("c", None)], 1)]
    page = render_leaderboard(typed_runs(runs))
    assert re.findall(r'<tr class="run" data-run="([^"]+)"', page) == ["b", "a", "c"]
    assert 'href="../b/report.html"' in page


def test_report_service_writes_leaderboard_and_run_pages(output_dir: Path):
    kept = output_dir / "evaluate" / "2025-01-01_10-00-00" / "report.html"
    kept.write_text("an earlier page", encoding="utf-8")
    cfg = make_config(output_dir, ["service=report"], output_dir / "report" / "now")
    page = querycraft.cli.run(cfg)
    assert page == output_dir / "report" / "now" / "leaderboard.html"
    html = page.read_text(encoding="utf-8")
    assert re.findall(r'<tr class="run" data-run="([^"]+)"', html) == EXPECTED_ORDER
    assert "Qwen/Qwen2.5-Coder-7B &lt;b&gt;" in html and "qlora r=16 α=32" in html
    assert "failed" not in re.findall(r'class="model">([^<]*)<', html)
    # Each link leads to that run's page; a missing page was written, an existing one kept.
    for href in re.findall(r'href="([^"]+)"', html):
        assert (page.parent / href).resolve().is_file()
    assert kept.read_text(encoding="utf-8") == "an earlier page"
    written = output_dir / "pipeline" / "2025-01-03_10-00-00" / "6-evaluate" / "report.html"
    assert "mistral-7b" in written.read_text(encoding="utf-8")
    manifest = json.loads((page.parent / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "completed" and manifest["evaluations"] == 3


def test_report_service_without_evaluations(tmp_path: Path):
    cfg = make_config(tmp_path / "output", ["service=report"], tmp_path / "output" / "r")
    with pytest.raises(QueryCraftError, match="service=evaluate` first"):
        querycraft.cli.run(cfg)


class _Rows(HTMLParser):
    """The data-run and model cell of every ``tr.run`` in a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[str] = []
        self.models: list[str] = []
        self._in_model = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "run" in (a.get("class") or "").split():
            self.runs.append(a.get("data-run") or "")
        self._in_model = tag == "td" and a.get("class") == "model"

    def handle_data(self, data: str) -> None:
        if self._in_model:
            self.models.append(data)
            self._in_model = False


@pytest.mark.slow
def test_leaderboard_in_headless_chromium(output_dir: Path, tmp_path: Path):
    browser = chromium()
    cfg = make_config(output_dir, ["service=report"], output_dir / "report" / "now")
    page = querycraft.cli.run(cfg)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    rows = _Rows()
    rows.feed(dom)
    assert rows.runs == EXPECTED_ORDER
    assert rows.models == ["Qwen/Qwen2.5-Coder-7B <b>", "mistral-7b", "tiny-llama"]
    shot = tmp_path / "leaderboard.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
                   capture_output=True, timeout=60, check=True)
    assert shot.is_file() and shot.stat().st_size > 5 * 1024


def test_run_titles_name_preset_adapter_dataset_and_folder_never_an_absolute_path():
    base = {**make_summary("/models/cache/qwen2.5-coder-7b", 0.1), "preset": "qwen2.5-coder-7b",
            "dataset": "/home/me/output/pipeline/x/1-ingest", "adapter": None,
            # the finetune run's settings, recorded by an older evaluate for a base model
            "peft": {"method": "lora", "r": 8, "alpha": 16}}
    tuned = {**base, "adapter": "/home/me/output/pipeline/x/2-finetune/adapter"}
    base_page = render_run_report(typed(base), [], run_name="4-evaluate-base")
    tuned_page = render_run_report(typed(tuned), [], run_name="6-evaluate")
    title = re.compile(r"<title>([^<]*)</title>")
    assert title.search(base_page)[1] == \
        "Evaluation: qwen2.5-coder-7b · base model · 1-ingest (4-evaluate-base)"
    assert title.search(tuned_page)[1] == \
        "Evaluation: qwen2.5-coder-7b · lora r=8 α=16 · 1-ingest (6-evaluate)"
    assert "/home/me" not in title.search(tuned_page)[1]
    # A base-model report shows no adapter settings.
    assert "Adapter settings" not in base_page and "PEFT" not in base_page
    assert "Adapter settings" in tuned_page
    assert short_name("/abs/path/model/") == "model" and short_name("org/name") == "org/name"


def test_wrong_results_chart_leaves_out_correct_items_and_small_buckets_are_marked():
    summary = {**make_summary("m", 0.5), "relations": {"same": 7, "more_rows": 3}}
    page = render_run_report(typed(summary), [])
    chart = page[page.index('data-chart="relations"'):]
    chart = chart[:chart.index("</svg>")]
    assert "more_rows" in chart and "same" not in chart
    assert "easy (2)*" in page and "fewer than 10 items" in page


def test_prose_is_labelled_not_sql_not_a_refused_write():
    assert ERROR_KIND_TEXT["not_sql"].startswith("not SQL")
    items = [make_item(2, match=False, error_kind="not_sql", error="the output is not SQL",
                       prediction="Sure! Here are the singers.")]
    page = render_run_report(typed(make_summary("m", 0.0)), items)
    assert "not SQL" in page and "not a read-only query" not in page


def test_leaderboard_fits_its_width_sorts_by_column_and_marks_small_samples():
    runs = [{"name": "pipeline/2025-01-03_10-00-00/6-evaluate", "when": "2025-01-03T10:00:00",
             "summary": {**make_summary("/very/long/absolute/path/to/a/model-folder", 0.5),
                         "dataset": "/srv/output/pipeline/2025-01-03_10-00-00/1-ingest"},
             "report": "x/report.html"}]
    page = render_leaderboard(typed_runs(runs))
    assert "table-layout:fixed" in page and "overflow-wrap:anywhere" in page
    assert "/very/long" not in page and "/srv/output" not in page
    assert ">model-folder<" in page and ">1-ingest<" in page
    assert 'class="grid leaderboard sortable"' in page and "<script>" in page
    assert 'data-v="0.5"' in page  # numeric sort keys
    assert ">4*<" in page and "fewer than 10 items" in page
    assert not re.search(r"<script[^>]+src=", page)


def test_leaderboard_with_long_names_fits_1280_px_in_headless_chromium(tmp_path: Path):
    browser = chromium()
    long = "a_very_long_model_folder_name_without_any_break_" * 3  # no break opportunity
    runs = [{"name": f"pipeline/2025-01-0{n}_10-00-00-{long}/6-evaluate",
             "when": f"2025-01-0{n}T10:00:00",
             "summary": {**make_summary(f"/models/{long}{n}", 0.1 * n,
                                        peft={"method": "qlora", "r": 16, "alpha": 32}),
                         "dataset": f"/srv/out/{long}/1-ingest-{long}"},
             "report": f"../{n}/report.html"} for n in range(1, 4)]
    page = render_leaderboard(typed_runs(runs))
    assert [int(r[18]) for r in re.findall(r'data-run="([^"]+)"', page)] == [3, 2, 1]
    page = page.replace(  # measure, then sort by EX with a click on its heading (ascending)
        "</body>", "<script>document.body.setAttribute('data-scroll-width', "
                   "document.documentElement.scrollWidth);"
                   "document.querySelectorAll('th')[7].click();</script></body>")
    path = tmp_path / "leaderboard.html"
    path.write_text(page, encoding="utf-8")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'p'}",
                          "--window-size=1280,900", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    width = int(re.search(r'data-scroll-width="(\d+)"', dom)[1])
    assert width <= 1280, width
    assert [int(r[18]) for r in re.findall(r'<tr class="run" data-run="([^"]+)"', dom)] == \
        [1, 2, 3]
