"""Shared test helpers: compose the real configs from conf/, pointed at a temp folder."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from querycraft.config import CONFIG_DIR, register_configs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_SPIDER = PROJECT_ROOT.parent / "shared" / "spider-dev"
FIXTURE_SPIDER = Path(__file__).parent / "fixtures" / "spider"

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
    psycopg = pytest.importorskip("psycopg")
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
def mysql_select_only_user(url: str) -> Iterator[str]:
    """A user that may only SELECT in the database of ``url``; yields a URL that logs in as
    it (with its password), then drops the user."""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = mysql_admin()
    name, password = f"qc_ro_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT SELECT ON `{target.database}`.* TO '{name}'@'%'")
    try:
        yield target.set(username=name, password=password).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        admin.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    with fresh_mysql_database() as url:
        yield url
