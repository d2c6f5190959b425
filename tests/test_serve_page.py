"""The web page of service=serve in headless Chromium (Debian's, driven by Playwright): a
question typed into the page comes back as a result table and a chart, the SQL is edited
and re-run read-only, the CSV downloads, the history keeps the question.

The model must write right SQL for the page to show rows, so it is the real one: SmolLM2,
fine-tuned for a few steps on paraphrases of one question (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from querycraft.cli import run
from tests.conftest import PROJECT_ROOT, chromium, make_config, require_module
from tests.test_gguf import smollm2_cache  # noqa: F401  (session fixture)
from tests.test_serve import digest, free_port

pytestmark = pytest.mark.slow

SAMPLE_DB = PROJECT_ROOT / "input" / "sample" / "shop.sqlite"
KEY = "page-key-81d2"
QUESTION = "How many customers are in each segment?"
PARAPHRASES = [QUESTION, "Count the customers per segment.", "Number of customers by segment?",
               "For each segment, how many customers are there?", "Customers per segment",
               "How many customers does each segment have?",
               "Show the customer count of every segment.", "Segment sizes in customers?",
               "How are customers spread over segments?", "Give me customers per segment."]
GOLD = "SELECT segment, count(*) FROM customer GROUP BY segment ORDER BY segment"
REAL = ["model=smollm2-135m", "train.micro_batch_size=2", "train.global_batch_size=4",
        "train.validation_fraction=0", "train.report_to=[]", "ask.max_new_tokens=48"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, smollm2_cache):  # noqa: F811
    require_module("playwright", "CHROMIUM")
    root = tmp_path_factory.mktemp("page")
    output, database, examples = root / "output", root / "shop.sqlite", root / "one.csv"
    shutil.copy(SAMPLE_DB, database)
    with examples.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "query", "db_id"])
        writer.writerows([(q, GOLD, "shop") for q in PARAPHRASES])
    common = [*REAL, f"paths.cache_dir={smollm2_cache}"]
    # Paraphrases of one query: split by question (split_by=query needs two queries).
    ingest = run(make_config(output, ["service=ingest", f"data.path={examples}",
                                      f"data.database={database}", "ingest.split_by=random",
                                      *common], output / "ingest"))
    finetune = run(make_config(output, ["service=finetune", f"train.dataset_dir={ingest}",
                                        "train.max_steps=6", "train.learning_rate=0.001",
                                        *common], output / "finetune"))
    port = free_port()
    log = root / "serve.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "querycraft", "service=serve", f"paths.output_dir={output}",
             f"hydra.run.dir={output / 'serve'}", f"ask.finetune_dir={finetune}",
             f"serve.port={port}", *common], cwd=PROJECT_ROOT,
            env={**os.environ, "QUERYCRAFT_API_KEY": KEY}, stdout=handle,
            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"service=serve did not start:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url + "/health", timeout=5)
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    yield url, database, root
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(),
                                             args=["--no-sandbox", "--disable-gpu"])
        # bypass_csp: the test's own waits evaluate script, which the page's policy forbids.
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      accept_downloads=True, bypass_csp=True)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda err: errors.append(str(err)))
        requests: list[str] = []
        tab.on("request", lambda request: requests.append(request.url))
        yield tab
        assert not errors, errors  # no script error
        assert all(r.startswith(served[0]) or r.startswith("data:") for r in requests), \
            requests  # nothing from the network
        browser.close()


def test_a_question_typed_into_the_page_comes_back_as_a_table(served, page, tmp_path):
    url, database, root = served
    before = digest(database)
    page.goto(url + "/")
    # The server wants a key: the page asks for it, keeps it and retries.
    page.wait_for_selector("#api-key", state="visible", timeout=30_000)
    page.fill("#api-key", KEY)
    page.click("#save-key")
    page.fill("#question", QUESTION)
    page.click("#ask")
    page.wait_for_selector("#result tbody tr", timeout=120_000)
    assert not page.is_visible("#api-key")  # the key worked: its field is gone
    rows = page.eval_on_selector_all(
        "#result tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert rows == [["consumer", "35"], ["corporate", "14"], ["small business", "11"]]
    assert "segment" in page.inner_text("#result thead")
    assert "SELECT" in page.inner_text("#sql") and "customer" in page.inner_text("#sql")
    assert page.locator("#sql .tok-keyword").count() >= 3  # highlighted
    assert page.is_visible("#chart")  # labels and counts: a simple series
    assert page.locator("#chart rect").count() >= 3
    assert "3 rows" in page.inner_text("#answer")
    shot = root / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # The CSV of what is shown.
    with page.expect_download() as download:
        page.click("#download-csv")
    saved = tmp_path / "result.csv"
    download.value.save_as(saved)
    lines = saved.read_text(encoding="utf-8-sig").splitlines()
    assert lines[1:] == ["consumer,35", "corporate,14", "small business,11"]

    # Edited SQL runs read-only: a write is refused and changes nothing.
    page.click("#edit-sql")
    page.fill("#sql-editor", "DROP TABLE customer")
    page.click("#run-sql")
    page.wait_for_function(
        "document.querySelector('#answer').textContent.includes(\"I don't know\")",
        timeout=30_000)
    assert "refused" in page.inner_text("#answer")
    if not page.is_visible("#sql-editor"):
        page.click("#edit-sql")
    page.fill("#sql-editor", "SELECT first_name FROM customer ORDER BY customer_id LIMIT 2")
    page.click("#run-sql")
    page.wait_for_function("document.querySelectorAll('#result tbody tr').length === 2",
                           timeout=30_000)
    assert digest(database) == before

    # The session's history holds the question.
    assert QUESTION in page.inner_text("#history")
