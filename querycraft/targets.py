"""Where SQL runs: a :class:`DatabaseTarget` built once from the ``db`` config group, with the
URL of each example's database (``{db_id}``) and names for messages that never show the
password. Engine-specific defaults (driver, port) come from :mod:`querycraft.engines`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy.engine import make_url

from querycraft.engines import Engine, get_engine
from querycraft.errors import QueryCraftError

__all__ = ["DB_ID", "DatabaseTarget", "hide_password", "target_from_config"]

DB_ID = "{db_id}"  # placeholder in db.database / db.schema / db.url / db.path


def hide_password(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` in it masked."""
    return re.sub(r"(\w[\w+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


@dataclass(frozen=True)
class DatabaseTarget:
    """Where SQL runs: built once from the ``db`` config, picklable for worker processes.

    For SQLite, ``location`` is a file, or a folder of ``<db_id>/<db_id>.sqlite`` (Spider's
    layout). For a server, ``url`` is a SQLAlchemy URL whose database (or ``schema``) may hold
    ``{db_id}``, so that one target serves a dataset of several databases. The password is
    kept in ``url`` only; :meth:`describe` and ``repr`` never show it.
    """

    kind: str
    location: str | None = None
    url: str | None = field(default=None, repr=False)
    schema: str | None = None
    connect_timeout_s: float = 10.0
    # db.allow_privileged: run generated SQL even as a superuser or a login that can write.
    allow_privileged: bool = False
    # db.allow_schemas: schemas (MySQL: databases) besides the configured one that generated
    # SQL may name before a table.
    allow_schemas: tuple[str, ...] = ()

    @property
    def engine(self) -> Engine:
        return get_engine(self.kind)

    @property
    def dialect(self) -> str:
        return self.engine.dialect

    @property
    def is_server(self) -> bool:
        return self.engine.is_server

    def url_for(self, db_id: str = "") -> sqlalchemy.URL:
        if self.url is None:
            raise QueryCraftError(f"No {self.kind} database is configured: set db.url, or "
                                  "db.host and db.database.")
        return make_url(self.url.replace(DB_ID, _plain_db_id(db_id) if DB_ID in self.url
                                         else db_id))

    def schema_for(self, db_id: str = "") -> str | None:
        if self.schema is None:
            return None
        return self.schema.replace(DB_ID, _plain_db_id(db_id)) if DB_ID in self.schema \
            else self.schema

    def describe(self, db_id: str | None = None) -> str:
        """A name for messages, manifests and reports: never the password."""
        if not self.is_server:
            return str(self.location)
        if self.url is None:
            return f"{self.kind} (not configured)"
        shown = make_url(self.url.replace(DB_ID, db_id or DB_ID)).render_as_string(
            hide_password=True)
        schema = self.schema_for(db_id) if db_id else self.schema
        return shown + (f" (schema {schema})" if schema else "")


def _plain_db_id(db_id: str) -> str:
    # A db_id goes into a URL or a schema name: letters, digits, '_', '-' and '.' only.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", db_id or ""):
        raise QueryCraftError(f"Database id {db_id!r} cannot name a server database or schema: "
                              "use letters, digits, '_', '-' and '.' only.")
    return db_id


def target_from_config(db_cfg: Any, fallback_location: str | None = None) -> DatabaseTarget:
    """The target the ``db`` config group describes.

    Args:
        db_cfg: ``cfg.db``.
        fallback_location: For SQLite without ``db.path``: the database recorded by an
            earlier run (the ingest run's ``database``).

    Raises:
        QueryCraftError: For an unknown kind or a server without the settings to reach it.
    """
    kind = db_cfg.kind
    engine = get_engine(kind)  # refuses an unknown kind, naming the known ones
    timeout = float(db_cfg.get("connect_timeout_s") or 10.0)
    if not engine.is_server:
        location = db_cfg.path or fallback_location
        return DatabaseTarget(kind, location=str(location) if location else None,
                              connect_timeout_s=timeout)
    url = db_cfg.get("url")
    if not url:
        missing = [k for k in ("host", "database") if not db_cfg.get(k)]
        if missing:
            raise QueryCraftError(
                f"db={kind} needs db.{' and db.'.join(missing)} (or a whole SQLAlchemy URL in "
                f"db.url). Set them in conf/db/{kind}.yaml or on the command line, e.g. "
                f"db.host=localhost db.database=sales; the password comes from the environment "
                f"variable named in conf/db/{kind}.yaml (QC_DB_PASSWORD by default).")
        url = sqlalchemy.URL.create(
            db_cfg.get("driver") or engine.driver or kind, username=db_cfg.get("user"),
            password=db_cfg.get("password"), host=db_cfg.host,
            port=db_cfg.get("port") or engine.default_port, database=db_cfg.database,
        ).render_as_string(hide_password=False)
        # URL.create escapes '{' and '}'; the placeholder must survive for url_for.
        url = url.replace("%7Bdb_id%7D", DB_ID)
    elif db_cfg.get("password") and make_url(url.replace(DB_ID, "x")).password is None:
        url = make_url(url.replace(DB_ID, "__QC_DB_ID__")).set(
            password=db_cfg.password).render_as_string(hide_password=False).replace(
            "__QC_DB_ID__", DB_ID)
    return DatabaseTarget(kind, url=url, schema=db_cfg.get("schema"), connect_timeout_s=timeout,
                          allow_privileged=bool(db_cfg.get("allow_privileged") or False),
                          allow_schemas=_names(db_cfg.get("allow_schemas")))


def _names(value: Any) -> tuple[str, ...]:
    """A list of names from the config; one name alone (a string) is a list of one."""
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


