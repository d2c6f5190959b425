"""Ask: answer questions about the database in plain words, with a fine-tuned model.

``python -m querycraft service=ask question="How many customers are there?"``, or without a
question an interactive prompt (one question a line, until an empty line or end of input).
The finetune run (the newest finished one, or ``ask.finetune_dir``) is loaded once by
:class:`querycraft.asking.Asker`, which puts each question to it in the prompt it was trained
with, corrects, checks and runs the SQL read-only, and answers in one sentence, or says "I
don't know" and why. Only the answers go to stdout (``ask.format=json``: one object per question);
logs go to stderr.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TextIO

from omegaconf import DictConfig

from querycraft.asking import Answer, Asker

log = logging.getLogger("querycraft")

FORMATS = ("text", "json")


@dataclass
class AskConfig:
    # A finetune run folder; null: the newest completed finetune run under output/.
    finetune_dir: str | None = None
    # text: the SQL, a small table and a sentence; json: one JSON object per question.
    format: str = "text"
    # Rows of the result shown (and named in the sentence when there are this few).
    max_rows_shown: int = 10
    # Characters of one value shown in the table and the sentence.
    max_value_chars: int = 40
    max_new_tokens: int = 256
    # With a folder of databases (Spider's layout): the db_id of the one to ask about.
    db_id: str | None = None


SETTINGS = AskConfig


def check(cfg: DictConfig) -> list[str]:
    """The ask.* settings."""
    ask, problems = cfg.ask, []
    if ask.format not in FORMATS:
        problems.append(f"ask.format must be 'text' or 'json', got '{ask.format}'")
    if ask.max_rows_shown < 1 or ask.max_new_tokens < 1 or ask.max_value_chars < 4:
        problems.append("ask.max_rows_shown and ask.max_new_tokens must be at least 1, "
                        "ask.max_value_chars at least 4")
    return problems


def _logs_to_stderr() -> None:
    """Every log handler that writes to stdout writes to stderr instead: stdout holds only
    the answers (Hydra's console handler writes to stdout)."""
    for logger in (logging.getLogger(), log):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) \
                    and getattr(handler, "stream", None) is sys.stdout:
                handler.setStream(sys.stderr)


def _questions(cfg: DictConfig, stdin: TextIO) -> list[str] | TextIO:
    return [str(cfg.question)] if cfg.question else stdin


def run(cfg: DictConfig, stdin: TextIO | None = None, stdout: TextIO | None = None
        ) -> list[Answer]:
    """Answer ``question=...``, or each line of stdin until an empty line or its end.

    Returns:
        The answers, in order.
    """
    _logs_to_stderr()
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    asker = Asker(cfg)
    answers = []
    interactive = not cfg.question and stdin.isatty()
    if interactive:
        print("Ask a question about the database (an empty line stops):", file=sys.stderr)
    try:
        for line in _questions(cfg, stdin):
            question = line.strip()
            if not question:
                break
            answer = asker.ask(question)
            answers.append(answer)
            stdout.write(asker.render(answer) + ("\n" if asker.settings.format == "json"
                                                 else ""))
            stdout.flush()
            if interactive:
                print("Ask another question (empty line to stop):", file=sys.stderr)
    finally:
        asker.close()
    return answers
