"""Execution-guided voting (infer.candidates): the choice on a real database, the likelihood
tie-break against transformers' own scores, and infer writing candidates and votes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from querycraft import db as dbmod
from querycraft.backends import HFBackend, ModelSource
from querycraft.cli import run
from querycraft.generation import GenerationSettings, generate_batch, sequence_logprobs
from querycraft.runs import read_jsonl, read_manifest
from querycraft.voting import vote
from tests.conftest import FAST_MODEL, make_config

CONCERT = (Path(__file__).parent / "fixtures" / "spider" / "database" / "concert_singer"
           / "concert_singer.sqlite")
OLDEST = "SELECT Name FROM singer ORDER BY Age DESC LIMIT 1"
OLDEST_TOO = "SELECT Name FROM singer WHERE Age = (SELECT max(Age) FROM singer)"
YOUNGEST = "SELECT Name FROM singer ORDER BY Age LIMIT 1"


@pytest.fixture(scope="module")
def concert():
    with dbmod.SqliteDatabase(CONCERT) as database:
        yield lambda sql: database.execute(sql, timeout_s=2.0, max_rows=100)


def test_the_largest_group_of_equal_results_wins(concert):
    chosen = vote([YOUNGEST, OLDEST, "SELECT nme FROM singer", OLDEST_TOO, YOUNGEST + " "],
                  concert)
    # Two groups of two (oldest: 1 and 3; youngest: 0 and 4)? No: the texts 0 and 4 differ,
    # both give the youngest; 1 and 3 give the oldest. A tie, without scores: the first group.
    assert chosen.group_sizes == [2, 2] and chosen.tie and chosen.chosen == 0
    chosen = vote([YOUNGEST, OLDEST, OLDEST_TOO, "DELETE FROM singer"], concert)
    assert chosen.group_sizes == [1, 2] and not chosen.tie
    assert chosen.chosen == 1  # the winning group's most frequent text (each once: first)
    assert [c["valid"] for c in chosen.candidates] == [True, True, True, False]
    assert chosen.candidates[3]["error"].startswith("refused")


def test_the_greedy_candidate_is_kept_when_its_group_wins_and_when_none_runs(concert):
    assert vote([OLDEST_TOO, YOUNGEST, OLDEST], concert).chosen == 0
    none_run = vote(["SELECT nme FROM singer", "", "DROP TABLE singer"], concert)
    assert none_run.fallback and none_run.chosen == 0 and none_run.group_sizes == []


def test_ties_go_to_the_likeliest_group(concert):
    asked = []

    def likelihood(indices):
        asked.append(indices)
        return [-1.0 if i == 3 else -5.0 for i in indices]

    chosen = vote([YOUNGEST, YOUNGEST, OLDEST, OLDEST_TOO], concert, likelihood)
    assert chosen.tie and chosen.candidates[3]["group"] == chosen.candidates[chosen.chosen][
        "group"] == 1
    assert asked == [[0, 2, 3]]  # each distinct text once


def test_a_cut_result_groups_only_with_its_own_text(concert):
    with dbmod.SqliteDatabase(CONCERT) as database:
        def small(sql):
            return database.execute(sql, timeout_s=2.0, max_rows=2)
        cross = "SELECT a.Name FROM singer AS a, singer AS b"
        chosen = vote([cross, cross + " LIMIT 3", cross], small)
    assert chosen.group_sizes == [2, 1]


# ------------------------------------------------------------------ with the tiny model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("voting") / "output"
    ingest = run(make_config(output, ["service=ingest", "ingest.max_rows=60", *FAST_MODEL],
                             output / "ingest"))
    finetune = run(make_config(output, ["service=finetune", f"train.dataset_dir={ingest}",
                                        *FAST_MODEL, "train.max_steps=2", "train.report_to=[]",
                                        "train.max_seq_length=1024"], output / "finetune"))
    return output, finetune


@pytest.mark.slow
def test_sequence_logprobs_match_a_token_by_token_sum(trained):
    """Batched, right-padded scoring equals the plain sum of log-softmax, one token at a
    time, for texts of different lengths."""
    _, finetune = trained
    info = read_manifest(finetune)
    backend = HFBackend(ModelSource(base=info["base_model"], adapter=info["adapter"]),
                        make_config(finetune.parent, FAST_MODEL).model)
    model, tokenizer = backend.model, backend.tokenizer
    prompt = "Question: How many singers are there?\nSQL:"
    texts = [" SELECT count(*) FROM singer", " SELECT 1", " SELECT Name FROM singer"]

    def one_at_a_time(text):
        ids = tokenizer(prompt)["input_ids"]
        total = 0.0
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            total += float(torch.log_softmax(logits, -1)[token])
            ids.append(token)
        return total

    got = backend.logprobs(prompt, texts)
    assert got == pytest.approx([one_at_a_time(t) for t in texts], abs=1e-3)
    assert sequence_logprobs(model, tokenizer, prompt, texts[:1]) == pytest.approx(got[:1],
                                                                                  abs=1e-3)
    samples = generate_batch(model, tokenizer, [prompt, prompt + " "],
                             GenerationSettings(max_new_tokens=5, do_sample=True, samples=3))
    assert [len(g.samples) for g in samples] == [3, 3]


@pytest.mark.slow
def test_infer_with_candidates_records_them_and_the_vote(trained):
    output, finetune = trained
    common = ["service=infer", *FAST_MODEL, f"infer.finetune_dir={finetune}", "infer.limit=4",
              "infer.max_new_tokens=24", "infer.batch_size=2"]
    greedy = read_jsonl(run(make_config(output, common, output / "greedy"))
                        / "predictions.jsonl")
    voted = read_jsonl(run(make_config(output, [*common, "infer.candidates=3"],
                                       output / "voted")) / "predictions.jsonl")
    assert [r["id"] for r in voted] == [r["id"] for r in greedy]
    for plain, row in zip(greedy, voted, strict=True):
        assert row["greedy_sql"] == plain["sql"]  # candidate 0 is the greedy query
        assert len(row["candidates"]) == 3
        assert row["candidates"][0]["sql"] == plain["sql"]
        chosen = row["vote"]["chosen"]
        assert row["sql"] == row["candidates"][chosen]["sql"]
        groups = row["vote"]["groups"]
        if row["vote"]["fallback"]:
            assert chosen == 0 and groups == []
        else:
            assert len(groups) >= 1
            assert groups[row["candidates"][chosen]["group"]] == max(groups)
    # Evaluate carries each vote into its items and the report shows it under the prediction.
    evaluate = run(make_config(output, ["service=evaluate", *FAST_MODEL,
                                        f"evaluate.predictions_dir={output / 'voted'}"],
                               output / "evaluate"))
    items = read_jsonl(evaluate / "items.jsonl")
    assert all(i["vote"]["candidates"] == 3 for i in items)
    failing = [i for i in items if not i["execution_match"]]
    report = (evaluate / "report.html").read_text()
    assert not failing or "voting:" in report
