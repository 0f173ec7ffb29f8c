"""Shared fixtures: a migrated database (SQLite file, or PostgreSQL when
HUZHU_TEST_DATABASE_URL is set), the emulator and the bot served over loopback HTTP, and a
Villager that talks to the webhook exactly as WeChat does."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, settings
from sqlalchemy import text
from waitress.server import create_server

from bot.web.app import AppContext
from bot.devtools.chat import Villager
from bot.devtools.demo import demo_config
from core.db import Database
from core.models import Base

# Property tests check what holds for every input, not how fast inputs are drawn: on a loaded
# machine (CI runs two suites at once on two cores) Hypothesis's timing checks fail for
# reasons that are not the code's.
settings.register_profile("huzhu", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("huzhu")

PG_URL = os.environ.get("HUZHU_TEST_DATABASE_URL", "")
SHARED = Path(__file__).resolve().parents[2] / "shared"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def pytest_report_header(config):
    if PG_URL:
        return (f"database: PostgreSQL {PG_URL} (the tests that use no database are left out: "
                "they run the same in the SQLite run)")
    return "database: SQLite (a file per test)"


def uses_the_database(item) -> bool:
    """The test gets the test database (the `db_url` fixture, directly or through another), or
    its module reaches PostgreSQL by its URL (`PG_URL`)."""
    return ("db_url" in getattr(item, "fixturenames", ())
            or hasattr(getattr(item, "module", None), "PG_URL"))


def pytest_collection_modifyitems(config, items):
    """The PostgreSQL run is for what PostgreSQL changes: a test that uses no database (the
    rules, OCR, the emulator, commands on a SQLite file of their own) would run exactly as in
    the SQLite run, so it is left out (deselected, and counted as such)."""
    if not PG_URL:
        return
    left_out = [item for item in items if not uses_the_database(item)]
    if left_out:
        items[:] = [item for item in items if uses_the_database(item)]
        config.hook.pytest_deselected(items=left_out)


@pytest.fixture(scope="session")
def _template_sqlite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def _template_sqlite_started(_template_sqlite) -> Path:
    """The migrated database as the app's start (`bootstrap`) leaves it: the DRG catalogue
    and the demo pool and scheme, made once for the tests that start the app."""
    from core.bootstrap import ensure_catalog, ensure_demo

    path = _template_sqlite.with_name("started.db")
    shutil.copy(_template_sqlite, path)
    db = Database(f"sqlite:///{path}")
    ensure_catalog(db)
    ensure_demo(db)
    db.dispose()
    return path


# Fixtures that start the app on the test's database: for their tests the database starts as
# `bootstrap` leaves it (the same rows, made once per run instead of once per test).
STARTS_THE_APP = ("app_ctx", "safe_bot")


def _worker_database(url: str, worker: str):
    """Under pytest-xdist (`-n N`), each worker gets its own database beside the given one,
    named <database>_<worker>, created afresh and dropped at the end."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_migrated(worker_id):
    if not PG_URL:
        yield None
        return
    own = _worker_database(PG_URL, worker_id) if worker_id != "master" else iter([PG_URL])
    url = next(own)
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS started CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.upgrade()
    _keep_started(db, url)
    db.dispose()
    yield url
    next(own, None)


_RESTORE: dict[str, str] = {}  # test database URL → the statements of `_restore_started`


def _keep_started(db: Database, url: str) -> None:
    """What `bootstrap` adds to the migrated database, kept in the schema `started` (a copy of
    every table that has rows), and the statements that copy it back and set each sequence
    where it stood, for `_restore_started`."""
    from core.bootstrap import ensure_catalog, ensure_demo

    ensure_catalog(db)
    ensure_demo(db)
    statements = []
    with db.engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA started"))
        for t in Base.metadata.sorted_tables:
            if conn.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{t.name}")')):
                conn.execute(text(f'CREATE TABLE started."{t.name}" AS '
                                  f'SELECT * FROM public."{t.name}"'))
                statements.append(f'INSERT INTO public."{t.name}" '
                                  f'SELECT * FROM started."{t.name}"')
        for name, value in conn.execute(text(
                "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences "
                "WHERE schemaname = 'public' AND last_value IS NOT NULL")):
            statements.append(f"SELECT setval('{name}', {value})")
    _RESTORE[url] = "; ".join(statements)
    _truncate_all(db)


def _restore_started(db: Database, url: str) -> None:
    """The emptied database back to what `bootstrap` leaves (`_keep_started`), in one round
    trip."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(_RESTORE[url])


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker name ("gw0", …), or "master" when the suite runs in one process."""
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "master"


def _truncate_all(db: Database) -> None:
    """Empty every table and restart every sequence, as TRUNCATE … RESTART IDENTITY would:
    DELETEs children first, in one round trip, are some thirty times faster than a TRUNCATE of
    thirty mostly empty tables (which PostgreSQL pays for per table, about 0.1 s a test)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)] + ["scheduler_job"]
    with db.engine.begin() as conn:
        seqs = conn.execute(text("SELECT schemaname || '.' || sequencename FROM pg_sequences "
                                 "WHERE schemaname = 'public'"))
        conn.exec_driver_sql("; ".join([f'DELETE FROM "{t}"' for t in tables]
                                       + [f"ALTER SEQUENCE {q} RESTART" for (q,) in seqs]))


@pytest.fixture
def db_url(request, tmp_path, _template_sqlite, _pg_migrated) -> str:
    started = any(name in request.fixturenames for name in STARTS_THE_APP)
    if _pg_migrated:
        db = Database(_pg_migrated)
        _truncate_all(db)
        if started:
            _restore_started(db, _pg_migrated)
        db.dispose()
        return _pg_migrated
    path = tmp_path / "huzhu.db"
    template = (request.getfixturevalue("_template_sqlite_started") if started
                else _template_sqlite)
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db(db_url):
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def emulator_url(tmp_path_factory):
    from bot.devtools.emulator import create_emulator_app

    server = create_server(create_emulator_app(tmp_path_factory.mktemp("emulator")),
                           host="127.0.0.1", port=0, threads=16)
    threading.Thread(target=server.run, daemon=True).start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@pytest.fixture
def emulator(emulator_url):
    requests.delete(f"{emulator_url}/_emulator/calls", timeout=5)
    return emulator_url


def make_cfg(tmp_path: Path, db_url: str, emulator_url: str, **overrides):
    return demo_config(tmp_path / "data", emulator_url, DATABASE_URL=db_url,
                       OUTBOX_BACKOFF_SECONDS=1, **overrides)


@pytest.fixture
def cfg(tmp_path, db_url, emulator):
    return make_cfg(tmp_path, db_url, emulator)


@pytest.fixture
def app_ctx(cfg, db):
    from bot.server import bootstrap

    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    return x


def start_bot(x: AppContext, worker: bool = True, scheduler: bool = False):
    from bot.server import Running

    return Running(x, worker=worker, scheduler=scheduler, threads=16).start()


@pytest.fixture
def bot(app_ctx):
    running = start_bot(app_ctx)
    yield running
    running.stop()


@pytest.fixture
def villager(bot, cfg, emulator) -> Villager:
    return Villager(bot.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, "", emulator)


@pytest.fixture
def safe_bot(tmp_path, db, db_url, emulator):
    from bot.server import bootstrap

    cfg = make_cfg(tmp_path, db_url, emulator, WECHAT_AES_KEY=AES_KEY)
    x = AppContext(cfg=cfg, db=db)
    bootstrap(x)
    running = start_bot(x)
    yield running, Villager(running.url, cfg.WECHAT_TOKEN, cfg.WECHAT_APP_ID, AES_KEY, emulator)
    running.stop()


@pytest.fixture
def rules_db(db):
    """The migrated database, for the rules' tests (scheme store, catalogue import)."""
    return db
