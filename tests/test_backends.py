"""The Backend protocol: what a backend that only generates in batches gives the callers
that want one batch (the server's batcher) or likelihoods (voting's tie-break)."""

from __future__ import annotations

import pytest

from querycraft.backends import BatchBackend, HFBackend, OpenAIBackend
from querycraft.batching import DynamicBatcher
from querycraft.generation import Generation, GenerationSettings


class Reversed(BatchBackend):
    """Answers each prompt with itself reversed, in batches of 2, the last batch first (a
    server backend yields whichever request finishes first)."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def generate_batches(self, prompts, settings):
        self.batch_sizes.append(settings.batch_size)
        chunks = [list(range(s, min(s + 2, len(prompts)))) for s in range(0, len(prompts), 2)]
        for chunk in reversed(chunks):
            yield chunk, [Generation(prompts[i][::-1], 0.0) for i in chunk]


def test_one_batch_is_every_prompt_in_order_asked_as_one_batch():
    backend = Reversed()
    out = backend.generate_batch(["ab", "cd", "ef"], GenerationSettings(batch_size=1))
    assert [g.text for g in out] == ["ba", "dc", "fe"]
    assert backend.batch_sizes == [3]


def test_a_batch_backend_cannot_score_and_says_so():
    assert not Reversed().scores_texts
    with pytest.raises(NotImplementedError, match="cannot score"):
        Reversed().logprobs("p", ["a"])
    # What voting reads to choose a tie-break: only the HF backend scores.
    assert HFBackend.scores_texts and not OpenAIBackend.scores_texts


def test_the_batcher_sends_a_non_streaming_backends_text_in_one_piece():
    batcher = DynamicBatcher(Reversed(), max_batch_size=4, max_wait_s=0.01)
    pieces: list[str] = []
    try:
        generation = batcher.submit("hello", GenerationSettings(),
                                    on_delta=pieces.append).result(timeout=10)
    finally:
        batcher.close()
    assert generation.text == "olleh" and pieces == ["olleh"]
