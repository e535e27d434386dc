"""Shared fixtures: a migrated temporary database, the app, clients and small factories."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cms.db import make_engine, make_session_factory
from cms.migrate import upgrade
from cms.models import Announcement, Area, AreaKind, Role, Topic, User
from cms.services import announcements, areas, topics, users
from cms.settings import Settings
from tests.clock import ANY_HOUR, SuiteClock
from tests.pg import postgres_url, private_schema

PASSWORD = "correct-horse-1"
_counter = itertools.count(1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test marked ``any_hour`` with the injected clock at each of ANY_HOUR (UTC)."""
    if metafunc.definition.get_closest_marker("any_hour") is None:
        return
    if "injected_clock" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: any_hour needs the injected clock")
    metafunc.parametrize(
        "injected_clock",
        ANY_HOUR,
        indirect=True,
        ids=[f"utc{h.replace(':', '')}" for h in ANY_HOUR],
    )


@pytest.fixture
def injected_clock(request: pytest.FixtureRequest) -> SuiteClock:
    """The one clock of app, services and scheduler (``settings.clock``).

    Real time, unless the test is marked ``any_hour`` (then pinned at one of ANY_HOUR) or a
    fixture pins it (the scheduler's 03:00, the operators' noon).
    """
    hhmm = getattr(request, "param", None)
    return SuiteClock.at_utc(hhmm) if hhmm else SuiteClock()


@pytest.fixture
def settings(tmp_path: Path, injected_clock: SuiteClock) -> Settings:
    return Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        secret_key="test-secret",
        tts_engine="offline",
        clock=injected_clock,
    )


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database migrated to head once per run; each test gets a copy (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "dalaba.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A private schema in the PostgreSQL test database (see tests/pg.py)."""
    with private_schema(postgres_url()) as url:
        yield url


@pytest.fixture
def engine(settings: Settings, migrated_db: Path) -> Iterator[Engine]:
    if not settings.database_url.startswith("sqlite"):
        # PostgreSQL (a module's settings chose it): a private schema, migrated here.
        engine = make_engine(settings.database_url, data_dir=settings.data_dir)
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    target = Path(settings.database_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, target)
    engine = make_engine(settings.database_url, data_dir=settings.data_dir)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _keep_cpu_priority() -> Iterator[None]:
    """A command run in-process (``dalaba build-day`` through Click's runner) lowers the CPU
    priority of the thread that runs it (cms.scheduler.priority); the suite's thread gets its
    own back, so that later tests and the processes they start are not lowered too."""
    if not hasattr(os, "getpriority"):
        yield
        return
    before = os.getpriority(os.PRIO_PROCESS, 0)
    yield
    if os.getpriority(os.PRIO_PROCESS, 0) != before:
        with contextlib.suppress(OSError):  # raising a priority needs root (CI has it)
            os.setpriority(os.PRIO_PROCESS, 0, before)


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt's deliberate slowness is for attackers, not for the test suite."""
    from werkzeug import security

    fast = functools.partial(security.generate_password_hash, method="pbkdf2:sha256:1000")
    monkeypatch.setattr(users, "generate_password_hash", fast)


@pytest.fixture
def session(engine: Engine, settings: Settings) -> Iterator[Session]:
    with make_session_factory(engine, clock=settings.clock)() as session:
        yield session


def _no_background_commits(app: Any) -> None:
    """No thread of the app commits while a test runs: a test's own session that read before
    such a commit cannot write after it (SQLite answers "database is locked" at once).

    Bookkeeping runs on the request's thread (tests/cms/test_db.py covers the background
    writer); recorded downloads wait for the test's flushes, or the app's close.
    """
    app.extensions["dalaba.bookkeeper"].inline = True
    app.extensions["dalaba.downloads"].interval = 3600


@pytest.fixture
def app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    from cms.web import create_app

    app = create_app(settings, engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    _no_background_commits(app)
    yield app
    app.extensions["dalaba.downloads"].close()  # its thread writes no more to this database


@pytest.fixture
def csrf_app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    """The app with CSRF checks on, as in production."""
    from cms.web import create_app

    app = create_app(settings, engine=engine)
    app.config.update(TESTING=True)
    _no_background_commits(app)
    yield app
    app.extensions["dalaba.downloads"].close()


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def today(settings: Settings) -> date:
    """The township's date on the injected clock (not the server's, not UTC's)."""
    return settings.today()


@pytest.fixture
def make_user(session: Session) -> Callable[..., User]:
    def make(role: Role | str = Role.EDITOR, username: str | None = None, **kw: Any) -> User:
        role = Role(role)
        user = users.create_user(
            session,
            None,
            username=username or f"{role.value}{next(_counter)}",
            display_name=kw.pop("display_name", None) or f"{role.value} 用户",
            role=role.value,
            password=kw.pop("password", PASSWORD),
            area_id=area.id if (area := kw.pop("area", None)) is not None else None,
        )
        session.commit()
        return user

    return make


@pytest.fixture
def grid(session: Session) -> dict[str, Area]:
    """A township with two villages and a group in each."""
    town = areas.create_area(session, None, name="清水镇", kind=AreaKind.TOWNSHIP, parent_id=None)
    v1 = areas.create_area(session, None, name="石桥村", kind=AreaKind.VILLAGE, parent_id=town.id)
    v2 = areas.create_area(session, None, name="柳林村", kind=AreaKind.VILLAGE, parent_id=town.id)
    g1 = areas.create_area(session, None, name="一组", kind=AreaKind.GROUP, parent_id=v1.id)
    g2 = areas.create_area(session, None, name="一组", kind=AreaKind.GROUP, parent_id=v2.id)
    session.commit()
    return {"town": town, "v1": v1, "v2": v2, "g1": g1, "g2": g2}


@pytest.fixture
def village_loudspeaker(session: Session, grid: dict[str, Area]) -> Any:
    """A loudspeaker in 石桥村 (grid v1): a notice aimed there reaches something, so it may
    be submitted through the web and the API (one that reaches nothing is refused)."""
    from cms.services import outlets

    outlet = outlets.save_outlet(
        session,
        None,
        None,
        name="石桥村村委会大喇叭",
        kind="loudspeaker",
        area_id=grid["v1"].id,
        slots="07:30 10, 19:30 10",
    )
    session.commit()
    return outlet


@pytest.fixture
def topic(session: Session) -> Topic:
    t = topics.save_topic(session, None, None, name="绿美知识")
    session.commit()
    return t


@pytest.fixture
def content(grid: dict[str, Area], topic: Topic, today: date) -> Callable[..., dict[str, Any]]:
    def make(**overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "title": "垃圾分类从我做起",
            "body": "各位村民：本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加。",
            "spoken_text": "",
            "topic_id": topic.id,
            "priority": "normal",
            "area_ids": [grid["v1"].id],
            "to_loudspeaker": True,
            "to_chats": True,
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=6)).isoformat(),
            "repeats": 2,
            "chat_post_time": "09:00",
            "voice": "zh-CN-XiaoxiaoNeural",
            "rate": 0,
        }
        data.update(overrides)
        return data

    return make


@pytest.fixture
def make_announcement(
    session: Session,
    content: Callable[..., dict[str, Any]],
    make_user: Callable[..., User],
    today: date,
) -> Callable[..., Announcement]:
    """Create an announcement and drive it to ``state`` (draft, in_review, approved, withdrawn)."""

    def make(state: str = "draft", author: User | None = None, **overrides: Any) -> Announcement:
        author = author or make_user(Role.EDITOR)
        ann = announcements.create(session, author, content(**overrides), today=today)
        if state in {"in_review", "approved", "withdrawn"}:
            announcements.submit(session, author, ann)
        if state in {"approved", "withdrawn"}:
            announcements.approve(session, make_user(Role.REVIEWER), ann)
        if state == "withdrawn":
            announcements.withdraw(session, author, ann)
        session.commit()
        return ann

    return make


def login(client, user: User, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    """Log ``user`` in through the real form (the test app has CSRF switched off)."""
    response = client.post("/login", data={"username": user.username, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return response
