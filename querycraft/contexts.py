"""The schema context of a question: what a prompt shows of the database, read once.

One reader serves ingest (rows without a context column) and every stage that asks after
training (``service=ask``, ``serve``, ``infer question=...``), so that a question's prompt is
built exactly as the training prompts were. The settings that shape it
(:class:`ContextSettings`) are recorded in the ingest run (``IngestArtifact.context``), and
:func:`question_contexts` reads them from there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from querycraft.artifacts import IngestArtifact
from querycraft.db import Databases
from querycraft.targets import DatabaseTarget, target_from_config
from querycraft.values import ValueIndex, ValueIndexConfig, index_file, read_values

log = logging.getLogger("querycraft")

# Per-question contexts kept at most (least recently used out first): a server asked endless
# distinct questions must not keep every one.
SCHEMA_CACHE_SIZE = 4096
# An ingest run's value indexes, one file per database.
VALUES_DIR = "values"


@dataclass(frozen=True)
class ContextSettings:
    """What shapes a question's context: ``ingest.context_tables``, ``db.sample_values`` and
    ``ingest.value_index`` as the ingest run had them."""

    # "all": every table of the database; "question": the tables the question names.
    tables: str = "all"
    # Example values shown per column in the CREATE TABLE text.
    sample_values: int = 0
    value_index: ValueIndexConfig = field(default_factory=ValueIndexConfig)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextSettings:
        index = dict(data.get("value_index") or {})
        known = {f.name for f in dataclasses.fields(ValueIndexConfig)}
        return cls(tables=str(data.get("tables", "all")),
                   sample_values=int(data.get("sample_values") or 0),
                   value_index=ValueIndexConfig(**{k: v for k, v in index.items()
                                                   if k in known}))


def database_target(db: DictConfig, sqlite_location: str | None) -> DatabaseTarget | None:
    """The database a context is read from: for SQLite the file or Spider-layout folder given
    (None: no database), for a server the ``db`` group's."""
    if db.kind == "sqlite":
        return DatabaseTarget("sqlite", location=sqlite_location) if sqlite_location else None
    return target_from_config(db)


class SchemaContexts:
    """Each database's schema text (per question with ``tables="question"``), its value
    index, and a check that gold SQL runs; databases opened once and closed by :meth:`close`.

    Args:
        target: The database(s); None: none (then only :attr:`available` may be asked).
        settings: How a context is built.
        timeout_s: The time budget of each query it runs.
        values_dir: Where value indexes are kept (an ingest run's ``values/``): read from
            there, and built into it when missing and a database is at hand.
    """

    def __init__(self, target: DatabaseTarget | None, settings: ContextSettings,
                 timeout_s: float, values_dir: Path | None = None) -> None:
        self.target, self.settings, self.timeout_s = target, settings, timeout_s
        self.values_dir = values_dir
        self._databases = Databases(target) if target else None
        self._indexes: dict[str, ValueIndex | None] = {}
        self._schemas: OrderedDict[tuple[str, str], str] = OrderedDict()

    @property
    def available(self) -> bool:
        return self._databases is not None

    def default_db_id(self) -> str:
        assert self._databases is not None
        return self._databases.default_db_id()

    def schema(self, db_id: str, question: str) -> str:
        assert self._databases is not None
        key = (db_id, question if self.settings.tables == "question" else "")
        if key in self._schemas:
            self._schemas.move_to_end(key)
        else:
            self._schemas[key] = self._databases.get(db_id).schema_text(
                sample_values=self.settings.sample_values, question=key[1] or None)
            while len(self._schemas) > SCHEMA_CACHE_SIZE:
                self._schemas.popitem(last=False)
        return self._schemas[key]

    def value_index(self, db_id: str) -> ValueIndex | None:
        """The database's value index: from ``values_dir`` when it is there, else read from
        the database (and saved into ``values_dir``); None without either."""
        if db_id not in self._indexes:
            stored = index_file(self.values_dir, db_id) if self.values_dir else None
            if stored is not None and stored.is_file():
                self._indexes[db_id] = ValueIndex.load(stored)
            elif self._databases is not None:
                index = ValueIndex(read_values(self._databases.get(db_id),
                                               self.settings.value_index, self.timeout_s))
                if stored is not None:
                    index.save(stored)
                self._indexes[db_id] = index
            else:
                self._indexes[db_id] = None
        return self._indexes[db_id]

    def values(self, db_id: str, question: str) -> str:
        """The ``{values}`` text for a question: "" when the value index is off."""
        settings = self.settings.value_index
        if not settings.enabled:
            return ""
        index = self.value_index(db_id)
        return index.render(question, settings.max_values, settings.max_tokens) if index \
            else ""

    def run(self, db_id: str, sql: str) -> None:
        """Run ``sql`` (one row at most): raises the engine's error when it fails."""
        assert self._databases is not None
        self._databases.get(db_id).execute(sql, timeout_s=self.timeout_s, max_rows=1)

    def close(self) -> None:
        if self._databases is not None:
            self._databases.close()


def trained_context_settings(ingest_run: Path | None, sample_values: int) -> ContextSettings:
    """The context settings the model's training prompts were built with: the ingest run's
    record, or (runs older than it) its saved config.yaml. Without a run: every table,
    ``sample_values`` and no value index."""
    if ingest_run is None:
        return ContextSettings(sample_values=sample_values)
    recorded = IngestArtifact.read(ingest_run).context
    if recorded is not None:
        return ContextSettings.from_dict(dict(recorded))
    saved_config = ingest_run / "config.yaml"
    if not saved_config.is_file():
        log.warning("%s is missing: the schema context uses every table and db.sample_values "
                    "%d, which may differ from the prompts the model trained on",
                    saved_config, sample_values)
        return ContextSettings(sample_values=sample_values)
    saved = OmegaConf.load(saved_config)
    values = OmegaConf.select(saved, "ingest.value_index", default=None)
    return ContextSettings.from_dict({
        "tables": OmegaConf.select(saved, "ingest.context_tables", default="all"),
        "sample_values": OmegaConf.select(saved, "db.sample_values", default=0),
        "value_index": OmegaConf.to_container(values) if values else {}})


def question_contexts(db: DictConfig, database: str | None,
                      ingest_run: Path | None) -> SchemaContexts:
    """The context reader for questions asked after training, built as ingest built the
    training rows' contexts (:func:`trained_context_settings`).

    Args:
        db: The ``db`` group (the database kind, a server's settings, the time budget).
        database: SQLite: the file or Spider-layout folder; ignored for servers.
        ingest_run: The ingest run the model trained on, or None.
    """
    settings = trained_context_settings(ingest_run, int(db.sample_values or 0))
    values_dir = ingest_run / VALUES_DIR if ingest_run is not None else None
    return SchemaContexts(database_target(db, database), settings, float(db.timeout_s),
                          values_dir if values_dir is not None and values_dir.is_dir()
                          else None)
