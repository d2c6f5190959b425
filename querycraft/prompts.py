"""Prompt templates: one renderer for both the training text and the inference prompt.

A template is a text file in ``prompts/`` with named placeholders in braces. ``{query}`` marks
where the SQL goes: everything before it is the prompt, the SQL (plus whatever the template
puts after ``{query}``) is the target the model learns. Because training and inference both
call ``render_prompt``, the prompt a model sees when answering is, character for character,
the text it was trained on up to where the SQL starts.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from querycraft.errors import QueryCraftError

PLACEHOLDERS = {
    "context": "the schema: CREATE TABLE statements",
    "question": "the user's question",
    "query": "the SQL answer (training target; must come last)",
    "dialect": "the SQL dialect's name, e.g. SQLite",
    "db_id": "the database's name",
    "values": "the database's values that match words of the question (ingest.value_index)",
    # Only for self-correction prompts (prompts/self_correct.txt): empty elsewhere.
    "previous_sql": "the model's earlier query that the database refused",
    "error": "the database's error message for it",
}
REQUIRED = ("question", "query")
# A finetune run keeps the template it trained with under this name; inference reads it.
SAVED_TEMPLATE_FILE = "prompt_template.txt"


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template, split at ``{query}``."""

    name: str
    text: str  # the template file's text, saved with a finetune run for inference to reuse
    prefix: str  # rendered into the prompt
    suffix: str  # follows the SQL in the training target (often empty)

    @property
    def stop_string(self) -> str | None:
        """Text that ends the SQL in generated output, when the template marks the end."""
        marker = self.suffix.strip()
        return marker.splitlines()[0] if marker else None


def _fields(text: str, source: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as err:
        raise QueryCraftError(
            f"Prompt template {source} is malformed ({err}). Placeholders are written "
            f"{{name}}; write a literal brace as {{{{ or }}}}."
        ) from err


def parse_template(text: str, name: str = "<text>") -> PromptTemplate:
    """Check a template's placeholders and split it at ``{query}``.

    Raises:
        QueryCraftError: on an unknown placeholder, a missing required one, or text that
            needs the answer after ``{query}``.
    """
    fields = _fields(text, name)
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        raise QueryCraftError(
            f"Prompt template {name} uses unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}. Known placeholders: {known}."
        )
    missing = [r for r in REQUIRED if r not in fields]
    if missing:
        raise QueryCraftError(
            f"Prompt template {name} lacks {', '.join('{' + m + '}' for m in missing)}: every "
            f"template needs {{question}} and, where the SQL goes, {{query}}."
        )
    if fields.count("query") > 1:
        raise QueryCraftError(f"Prompt template {name} has {{query}} more than once; "
                              f"it marks the one place where the SQL goes.")
    before, after = _split_at_query(text)
    if _fields(after, name):
        raise QueryCraftError(
            f"Prompt template {name} has placeholders after {{query}}; the prompt must be "
            f"complete before the SQL starts, so move them above {{query}}."
        )
    # The tail has no fields, so format() only turns escaped braces back into braces.
    return PromptTemplate(name=name, text=text, prefix=before, suffix=after.format().rstrip())


def _split_at_query(text: str) -> tuple[str, str]:
    """Split the raw template at its ``{query}`` field, skipping escaped braces."""
    i = 0
    while i < len(text):
        if text.startswith(("{{", "}}"), i):
            i += 2
        elif text.startswith("{query}", i):
            return text[:i], text[i + len("{query}"):]
        else:
            i += 1
    raise AssertionError("unreachable: {query} presence is checked first")


def load_template(name_or_path: str, prompts_dir: str | Path) -> PromptTemplate:
    """Load ``prompts/<name>.txt`` (or a file path) and check it.

    Raises:
        QueryCraftError: if the file is missing or the template is invalid.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = Path(prompts_dir) / f"{name_or_path}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in Path(prompts_dir).glob("*.txt"))
        raise QueryCraftError(
            f"Prompt template '{name_or_path}' not found (looked for {path}). Available in "
            f"{prompts_dir}: {', '.join(available) or 'none'}. Set prompt.template to one of "
            f"these or to a file path."
        )
    return parse_template(path.read_text(encoding="utf-8"), name=path.name)


def render_prompt(
    template: PromptTemplate,
    *,
    question: str,
    context: str = "",
    dialect: str = "SQL",
    db_id: str = "",
    values: str = "",
    previous_sql: str = "",
    error: str = "",
) -> str:
    """The text the model sees before it writes SQL (used in training and inference)."""
    return template.prefix.format(
        question=question.strip(), context=context.strip(), dialect=dialect, db_id=db_id,
        values=values.strip(), previous_sql=previous_sql.strip(), error=error.strip(),
    )


def render_target(template: PromptTemplate, query: str) -> str:
    """What the model learns to write after the prompt: the SQL and the template's tail."""
    return query.strip() + template.suffix


def render_training_text(template: PromptTemplate, *, query: str, **fields: str) -> str:
    """The full training text: prompt followed by target."""
    return render_prompt(template, **fields) + render_target(template, query)
