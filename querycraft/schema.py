"""Reading a database's schema (the context retriever): tables, typed columns, primary and
foreign keys, rendered as compact CREATE TABLE statements, through SQLAlchemy's inspector so
that SQLite, PostgreSQL and Db2 are read the same way."""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.types import NullType

from querycraft.errors import QueryCraftError

__all__ = ["read_schema", "readonly_uri"]

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _ident(name: str) -> str:
    """Quote an identifier only when it cannot be written bare."""
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def readonly_uri(file: Path) -> str:
    # Percent-encode the path so that '?', '#' and '%' in file names stay part of the name.
    return f"file:{urllib.parse.quote(str(file.resolve()))}?mode=ro"


def _sqlite_schema_engine(file: Path) -> sqlalchemy.Engine:
    if not file.is_file():
        raise QueryCraftError(
            f"Cannot read the schema: {file} is not an existing file. Give the path of a .sqlite "
            "file or a SQLAlchemy URL such as postgresql://user@host/dbname."
        )
    uri = readonly_uri(file)
    # A creator rather than a sqlite:///file:...?mode=ro&uri=true URL: SQLAlchemy un-escapes
    # URLs, which would let a '#' or '?' in the file name cut off mode=ro.
    return sqlalchemy.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    )


def _schema_engine(url_or_path: str) -> tuple[sqlalchemy.Engine, str]:
    """An engine for the database, and how to name it in messages (password hidden)."""
    if "://" not in url_or_path:
        file = Path(url_or_path).expanduser()
        return _sqlite_schema_engine(file), str(file)
    try:
        url = make_url(url_or_path)
    except sa_exc.ArgumentError as err:
        raise QueryCraftError(f"{url_or_path} is not a valid database URL: {err}") from err
    database = url.database or ""
    is_file_url = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and is_file_url:
        # A plain SQLite file URL is opened read-only too, so a missing file is never created.
        file = Path(database).expanduser()
        return _sqlite_schema_engine(file), str(file)
    shown = url.render_as_string(hide_password=True)
    try:
        return sqlalchemy.create_engine(url), shown
    except (sa_exc.ArgumentError, ImportError) as err:
        raise QueryCraftError(
            f"Cannot connect to {shown}: {err}. Check the URL and that its driver is installed."
        ) from err


def _render_table(inspector: Any, dialect: Any, table: str) -> str:
    parts = []
    for col in inspector.get_columns(table):
        col_type = col["type"]
        if isinstance(col_type, NullType):
            parts.append(_ident(col["name"]))
            continue
        try:
            type_text = col_type.compile(dialect=dialect)
        except Exception:  # a type the dialect cannot print; its generic name will do
            type_text = str(col_type)
        parts.append(f"{_ident(col['name'])} {type_text.upper()}")
    pk = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if pk:
        parts.append(f"PRIMARY KEY ({', '.join(_ident(c) for c in pk)})")
    for fk in inspector.get_foreign_keys(table):
        local = ", ".join(_ident(c) for c in fk["constrained_columns"])
        target = _ident(fk["referred_table"])
        if fk.get("referred_schema"):
            target = f"{_ident(fk['referred_schema'])}.{target}"
        remote = ", ".join(_ident(c) for c in fk.get("referred_columns") or [])
        parts.append(
            f"FOREIGN KEY ({local}) REFERENCES {target}" + (f"({remote})" if remote else "")
        )
    return f"CREATE TABLE {_ident(table)} ({', '.join(parts)});"


def read_schema(url_or_path: str | Path, *, tables: list[str] | None = None) -> str:
    """Describe a database's tables as compact one-line CREATE TABLE statements.

    This is the schema context given to the model. Each table becomes
    ``CREATE TABLE name (col TYPE, ..., PRIMARY KEY (a, b), FOREIGN KEY (x) REFERENCES t(y));``
    with types as the database reports them (upper-case) and identifiers double-quoted only
    when they hold characters other than letters, digits and '_' or start with a digit.

    Args:
        url_or_path: A SQLite file path (opened read-only; the file is never modified) or any
            SQLAlchemy URL.
        tables: Only these tables, in this order (names match case-insensitively); by default
            every table, sorted by name.

    Returns:
        One statement per line.

    Raises:
        QueryCraftError: When the database cannot be read or a requested table is missing.
    """
    engine, shown = _schema_engine(str(url_or_path))
    try:
        inspector = sqlalchemy.inspect(engine)
        names = sorted(inspector.get_table_names(), key=lambda n: (n.lower(), n))
        if tables is not None:
            by_lower = {n.lower(): n for n in names}
            missing = [t for t in tables if t.lower() not in by_lower]
            if missing:
                raise QueryCraftError(
                    f"{shown} has no table named {', '.join(missing)}. "
                    f"Its tables are: {', '.join(names) or '(none)'}."
                )
            names = list(dict.fromkeys(by_lower[t.lower()] for t in tables))
        return "\n".join(_render_table(inspector, engine.dialect, t) for t in names)
    except sa_exc.SQLAlchemyError as err:
        raise QueryCraftError(
            f"Cannot read the schema of {shown}: {err.__class__.__name__}: "
            f"{str(err).splitlines()[0]}"
        ) from err
    finally:
        engine.dispose()


