"""Shared test helpers: compose the real configs from conf/, pointed at a temp folder."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
import sqlalchemy
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from querycraft.config import CONFIG_DIR, register_configs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_SPIDER = PROJECT_ROOT.parent / "shared" / "spider-dev"
FIXTURE_SPIDER = Path(__file__).parent / "fixtures" / "spider"



def skip_or_fail(what: str, message: str) -> NoReturn:
    """Skip a test whose ``what`` (POSTGRES, MYSQL, SPIDER, CHROMIUM, LLAMA_CPP, SMOLLM2) is
    missing on this machine; fail it where CI requires it (``QC_REQUIRE_<WHAT>=1``, which
    .ci/run sets for everything it installs), so that CI never passes by skipping."""
    if os.environ.get(f"QC_REQUIRE_{what}") == "1":
        pytest.fail(f"{message} (QC_REQUIRE_{what}=1: this must run here)")
    pytest.skip(message)


def require_module(name: str, what: str) -> ModuleType:
    """The module ``name``, or :func:`skip_or_fail` for ``what`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        skip_or_fail(what, f"{name} is not installed ({err})")


def shared_spider() -> Path:
    """``../shared/spider-dev``, or :func:`skip_or_fail` for SPIDER when it is absent."""
    if not (SHARED_SPIDER / "dev.json").is_file():
        skip_or_fail("SPIDER", f"the Spider dev set is not at {SHARED_SPIDER}")
    return SHARED_SPIDER


@pytest.fixture
def spider_dev() -> Path:
    """The shared Spider dev set (``shared_spider``)."""
    return shared_spider()


def chromium() -> str:
    """A headless browser's path, or :func:`skip_or_fail` for CHROMIUM."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("CHROMIUM", "no headless browser: none of chromium, chromium-browser, "
                             "google-chrome is on PATH (apt-get install -y chromium)")


# Small enough to train in seconds; the real default (conf/model/tiny.yaml) is larger.
FAST_MODEL = [
    "model.tiny.hidden_size=64", "model.tiny.num_layers=1", "model.tiny.intermediate_size=128",
    "model.tiny.vocab_size=600", "train.epochs=1", "train.global_batch_size=8",
    "train.micro_batch_size=8", "infer.max_new_tokens=24", "peft.r=4",
]


def make_config(output_dir: Path, overrides: list[str] | None = None,
                run_dir: Path | None = None) -> DictConfig:
    """The composed project config, writing under ``output_dir``."""
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return compose("config", overrides=[
            f"paths.output_dir={output_dir}",
            f"paths.run_dir={run_dir or output_dir / 'run'}",
            *(overrides or []),
        ])


@pytest.fixture
def config_factory(tmp_path: Path):
    def factory(overrides: list[str] | None = None, name: str = "run") -> DictConfig:
        return make_config(tmp_path / "output", overrides, tmp_path / "output" / name)
    return factory


# PostgreSQL: tests create and drop their own databases on this server. Locally they skip when
# no server answers; CI sets QC_REQUIRE_POSTGRES=1 so that a missing server fails instead.
POSTGRES_SERVER = os.environ.get("QC_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _postgres_admin():
    psycopg = require_module("psycopg", "POSTGRES")
    from sqlalchemy.engine import make_url

    url = make_url(f"{POSTGRES_SERVER}/postgres")
    try:
        return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                               password=url.password, dbname="postgres", autocommit=True,
                               connect_timeout=3)
    except psycopg.OperationalError as err:
        message = f"no PostgreSQL server at {url.host}:{url.port} ({err})"
        if os.environ.get("QC_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; yields its SQLAlchemy URL, then drops it."""
    admin = _postgres_admin()
    name = f"qc_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


# MySQL / MariaDB: the same, with root (empty password) over TCP; CI sets QC_REQUIRE_MYSQL=1.
MYSQL_SERVER = os.environ.get("QC_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")


def mysql_admin():
    if os.environ.get("QC_REQUIRE_MYSQL") == "1":
        import pymysql  # required: a missing driver fails instead of skipping
    else:
        pymysql = pytest.importorskip("pymysql")
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_SERVER)
    try:
        return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                               password=url.password or "", autocommit=True, connect_timeout=3)
    except pymysql.err.OperationalError as err:
        message = f"no MySQL/MariaDB server at {url.host}:{url.port} ({err})"
        if os.environ.get("QC_REQUIRE_MYSQL") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def fresh_mysql_database() -> Iterator[str]:
    """A new, empty MySQL/MariaDB database for one test; yields its URL, then drops it."""
    admin = mysql_admin()
    name = f"qc_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_SERVER}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@contextlib.contextmanager
def mysql_select_only_user(url: str, databases: list[str] | None = None) -> Iterator[str]:
    """A user that may only SELECT in the database of ``url`` (or in each of ``databases``);
    yields ``url`` logged in as it (with its password), then drops the user."""
    from sqlalchemy.engine import make_url

    target = make_url(url.replace("{db_id}", "__QC_DB_ID__"))
    admin = mysql_admin()
    name, password = f"qc_ro_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        for database in databases or [target.database]:
            cursor.execute(f"GRANT SELECT ON `{database}`.* TO '{name}'@'%'")
    try:
        yield target.set(username=name, password=password).render_as_string(
            hide_password=False).replace("__QC_DB_ID__", "{db_id}")
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    with fresh_mysql_database() as url:
        yield url


def create_singers(url: str, *extra_statements: str) -> str:
    """Create the three-row ``singer`` table (plus ``extra_statements``) in the database at
    ``url``; returns ``url``. The same rows on every server the read-only tests run on."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, "
                             "age INTEGER)")
        conn.exec_driver_sql("INSERT INTO singer VALUES (1, 'Joe Sharp', 52), "
                             "(2, 'Timbaland', 32), (3, 'Justin Brown', 29)")
        for statement in extra_statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url


# Least privilege (issue 14): generated SQL runs as a role that may only read. The services
# refuse a superuser or a login that can write unless db.allow_privileged=true, so the tests
# that run generated SQL on the local servers log in as one of these.
@contextlib.contextmanager
def postgres_read_only_role(url: str) -> Iterator[str]:
    """A login role that may only read the tables of the database at ``url``: USAGE on each
    of its schemas and SELECT on their tables, now and later (default privileges of the admin
    that creates them), as docs/DATABASES.md sets it up. Yields ``url`` logged in as it, then
    drops the role."""
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    target = make_url(url)
    name = f"qc_ro_{uuid.uuid4().hex[:8]}"
    admin = _postgres_admin()

    def in_database() -> Any:
        return psycopg.connect(host=target.host, port=target.port or 5432,
                               user=target.username, password=target.password,
                               dbname=target.database, autocommit=True, connect_timeout=3)

    admin.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    try:
        with in_database() as conn:
            schemas = [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                "AND nspname <> 'information_schema'")]
            for schema in schemas:
                conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {name}')
                conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {name}')
                conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" '
                             f"GRANT SELECT ON TABLES TO {name}")
        yield target.set(username=name, password=None).render_as_string(hide_password=False)
    finally:
        try:
            with in_database() as conn:
                conn.execute(f"DROP OWNED BY {name}")  # its grants and default privileges
        except psycopg.OperationalError:
            pass  # the database is gone, and its grants with it
        admin.execute(f"DROP ROLE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def postgres_reader(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` (a fresh database) logged in as a read-only role; create the tables
    through ``postgres_url`` (the admin)."""
    with postgres_read_only_role(postgres_url) as url:
        yield url


def predictions_run(out: Path, database: str, pairs: list[tuple[str, str]]) -> Path:
    """A finished infer run folder holding these (gold, predicted) pairs, about ``database``."""
    import json

    folder = out / "infer" / "given"
    folder.mkdir(parents=True)
    with (folder / "predictions.jsonl").open("w") as file:
        for i, (gold, pred) in enumerate(pairs):
            file.write(json.dumps({"id": str(i), "db_id": "shop", "question": f"q{i}",
                                   "query": gold, "raw_output": pred, "sql": pred}) + "\n")
    (folder / "run.json").write_text(json.dumps({
        "service": "infer", "status": "completed", "database": database,
        "base_model": "tiny", "adapter": None}))
    return folder
