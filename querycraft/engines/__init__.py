"""The database engines QueryCraft runs SQL on, one module each, found by discovery.

Every module in this package except :mod:`~querycraft.engines.base` describes one engine in a
module-level ``ENGINE = Engine(...)`` (:class:`~querycraft.engines.base.Engine`); the
registry imports them all on first use. A new engine is therefore one module here plus
``conf/db/<kind>.yaml``, and nothing else: ``db.kind`` checks, URL building, session guards,
error classification, the schema reader and the CSV loader all read the registry.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re

from querycraft.engines.base import (
    ERROR_KINDS,
    Engine,
    ErrorKind,
    QueryError,
    QueryResult,
    compile_error_patterns,
)
from querycraft.errors import QueryCraftError

__all__ = [
    "ERROR_KINDS",
    "Engine",
    "ErrorKind",
    "QueryError",
    "QueryResult",
    "classify_error",
    "engine_for_sqlalchemy",
    "engine_kinds",
    "engines",
    "forget_engines",
    "get_engine",
]

_NOT_ENGINES = frozenset({"base", "bounds", "syntax"})


@functools.cache
def engines() -> dict[str, Engine]:
    """Every engine, by kind: the ``ENGINE`` of each module of this package, sorted by kind."""
    found: dict[str, Engine] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_ENGINES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        engine = getattr(module, "ENGINE", None)
        if not isinstance(engine, Engine):
            raise TypeError(f"{module.__name__} must define ENGINE = Engine(...)")
        if engine.kind in found:
            raise TypeError(f"two engine modules define kind {engine.kind!r}")
        found[engine.kind] = engine
    return dict(sorted(found.items()))


def engine_kinds() -> tuple[str, ...]:
    """The values ``db.kind`` may take."""
    return tuple(engines())


def get_engine(kind: str) -> Engine:
    """The engine of ``db.kind``; a QueryCraftError naming the known ones otherwise."""
    try:
        return engines()[kind]
    except KeyError:
        raise QueryCraftError(f"db.kind '{kind}' is not known; use one of "
                              f"{', '.join(engine_kinds())} (the files in conf/db/).") from None


def engine_for_sqlalchemy(dialect_name: str) -> Engine | None:
    """The engine whose SQLAlchemy dialect is called ``dialect_name`` (None: not one of ours,
    e.g. a SQLAlchemy URL of another database given to the schema reader)."""
    for engine in engines().values():
        if dialect_name in engine.sqlalchemy_names:
            return engine
    return None


@functools.cache
def _error_patterns() -> list[tuple[ErrorKind, re.Pattern[str]]]:
    return compile_error_patterns(list(engines().values()))


def forget_engines() -> None:
    """Discover the engine modules again on next use (after one was added while running)."""
    engines.cache_clear()
    _error_patterns.cache_clear()


def classify_error(message: str) -> ErrorKind:
    """Sort a database error message into one of :data:`ERROR_KINDS`.

    Every engine's wordings are tried (a message says which engine it came from well enough),
    kind by kind: timeout, refused, ambiguous column, no such table, no such column, syntax.

    Args:
        message: The error text (for SQLite, ``str()`` of the ``sqlite3.Error``).

    Returns:
        The kind; ``"other"`` when no pattern fits (for example ``no such function``).
    """
    for kind, pattern in _error_patterns():
        if pattern.search(message):
            return kind
    return "other"
