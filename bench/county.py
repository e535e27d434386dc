"""Benchmark: one county (12 townships, 192 villages, 384 outlets) on one machine.

Seeds, through the services, a county with ``--townships`` × ``--villages`` villages × 3
groups, two outlets per village (a loudspeaker with three slots, a mobile speaker with
one looped slot), ``--chats`` bound chats on the local outbox platform, officers (an editor
and a reviewer per township, both of the county) with their areas, and ``--announcements``
live announcements: a third are county campaigns, approved by the county and adopted as is
by some townships or adapted (own text, reviewed by the township) by others; the rest are
township announcements aimed at a few of its villages. Then, in one run:

1. renders the clips the day needs (offline eSpeak engine; reported as ``render_s``, not
   part of the build);
2. builds the whole day's programs for every outlet (``build_cold_s``), the baseline being
   one township's outlets built alone, then all of them again with nothing changed
   (``build_unchanged_s``: hash checks);
3. plans and sends the day's chat deliveries to the outbox (``deliveries``, ``deliver_s``);
4. starts two ``dalaba serve --no-scheduler`` web processes and lets ``--clients`` officers
   browse their own township's pages and API, spread over both, for ``--seconds``, each
   reading a page for ``--think`` seconds on average (uniform 0–6 s by default) before the
   next click; the baseline is one officer alone, clicking again at once, for
   ``--baseline-seconds``.
   ``--think 0`` makes it a stress test (everyone clicking again at once).
5. the same officers browse again while the scheduler builds: ``dalaba build-day`` runs in
   its own process, over and over with the program files removed, so that every program
   is built again (``web_build_p99_ms``, the web's p99 during those builds).

PostgreSQL when ``--database-url`` (an empty database) or ``DALABA_TEST_POSTGRES_URL`` is
set (a new database ``dalaba_bench_county_<hex>`` beside it, dropped afterwards), else
SQLite in a temporary folder.

    python bench/county.py [--townships 12] [--villages 16] [--chats 1000]
                           [--announcements 60] [--clients 50] [--seconds 30] [--think 3]

Targets (issue 13, this 2-core machine): build_unchanged_s < 5, errors_5xx = 0,
web_p99_ms < 1000; (issue 22, PostgreSQL) web_build_p99_ms < 300. The last line is

    RESULT db=… outlets=… build_cold_s=… build_unchanged_s=… deliveries=… deliver_s=…
    web_p99_ms=… web_build_p99_ms=… builds_during_web=… errors_5xx=…
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import Client, Stats, dalaba, free_port, stop, wait_ready  # noqa: E402

PASSWORD = "county-bench-pw"
SLOTS_SPEAKER = "07:30 10, 12:00 10, 19:30 15"
SLOTS_MOBILE = "09:00 30"
SUBJECTS = [
    "森林防火", "医保缴费", "秸秆禁烧", "防汛演练", "反诈宣传", "农机补贴", "养老认证",
    "健康体检", "垃圾分类", "疫苗接种", "道路施工", "停水通知", "户长会", "绿美乡村",
]  # fmt: skip


@dataclass
class Officer:
    username: str
    token: str
    township_id: int
    announcement_ids: list[int]
    reviewer: bool


@dataclass
class County:
    """What the phases need from the seed."""

    outlets: int
    townships: list[int]
    officers: list[Officer]
    announcements: int
    campaigns: int
    adopted: int
    adapted: int
    chats: int
    seed_s: float
    outlets_of: dict[int, list[int]] = field(default_factory=dict)  # township → outlet ids


def body_text(rng: random.Random, subject: str, place: str) -> str:
    m, d, h = rng.randint(1, 12), rng.randint(1, 20), rng.randint(7, 9)
    return (
        f"各位村民请注意：{place}{subject}工作将于{m}月{d}日上午{h}点在村委会开展，"
        f"请各户派一名代表参加。咨询电话0871-6512345{h}。"
    )


def content(
    title: str, body: str, topic_id: int, area_ids: list[int], start: date, to_chats: bool
) -> dict[str, Any]:
    return {
        "title": title,
        "body": body,
        "spoken_text": "",
        "topic_id": topic_id,
        "priority": "normal",
        "area_ids": area_ids,
        "to_loudspeaker": True,
        "to_chats": to_chats,
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=10)).isoformat(),
        "repeats": 2,
        # Posted at 00:00 on a first day that has begun: due at once, whatever the hour.
        "chat_post_time": "00:00",
        "voice": "zh-CN-XiaoxiaoNeural",
        "rate": 0,
    }


def seed(
    sessions: Any,
    today: date,
    *,
    townships: int,
    villages: int,
    chats: int,
    announcements: int,
) -> County:
    """The county, through the services (one transaction)."""
    from sqlalchemy import select

    from cms.models import Announcement, AreaKind, OutletKind, Role
    from cms.services import announcements as anns
    from cms.services import areas, campaigns, outlets, topics, users
    from cms.services import chats as chat_service

    started = time.perf_counter()
    rng = random.Random(13)
    start = today - timedelta(days=1)  # live since yesterday: the post times have passed
    with sessions() as session, session.begin():

        def user(name: str, role: Role, area_id: int | None) -> Any:
            return users.create_user(
                session,
                None,
                username=name,
                display_name=name,
                role=role.value,
                password=PASSWORD,
                area_id=area_id,
            )

        county = areas.create_area(session, None, name="云县", kind="county", parent_id=None)
        admin = user("admin", Role.ADMIN, None)
        county_editor = user("county_editor", Role.EDITOR, county.id)
        county_reviewer = user("county_reviewer", Role.REVIEWER, county.id)
        topic_id = topics.save_topic(session, admin, None, name="通知").id
        towns, village_ids, staff = [], {}, {}
        outlets_of: dict[int, list[int]] = {}
        yesterday = datetime.now().astimezone() - timedelta(days=1)
        for t in range(townships):
            town = areas.create_area(
                session,
                None,
                name=f"第{t + 1}乡",
                kind=AreaKind.TOWNSHIP.value,
                parent_id=county.id,
            )
            towns.append(town)
            staff[town.id] = (
                user(f"t{t + 1}_editor", Role.EDITOR, town.id),
                user(f"t{t + 1}_reviewer", Role.REVIEWER, town.id),
            )
            village_ids[town.id] = []
            for v in range(villages):
                village = areas.create_area(
                    session, None, name=f"{v + 1}村", kind=AreaKind.VILLAGE.value, parent_id=town.id
                )
                village_ids[town.id].append(village.id)
                for g in ("一组", "二组", "三组"):
                    areas.create_area(
                        session, None, name=g, kind=AreaKind.GROUP.value, parent_id=village.id
                    )
                made = [
                    outlets.save_outlet(
                        session,
                        admin,
                        None,
                        name=f"{town.name}{village.name}大喇叭",
                        kind=OutletKind.LOUDSPEAKER.value,
                        area_id=village.id,
                        slots=SLOTS_SPEAKER,
                    ),
                    outlets.save_outlet(
                        session,
                        admin,
                        None,
                        name=f"{town.name}{village.name}流动音箱",
                        kind=OutletKind.MOBILE.value,
                        area_id=village.id,
                        slots=SLOTS_MOBILE,
                        loop_minutes=30,
                    ),
                ]
                for outlet in made:
                    outlet.created_at = yesterday  # every slot of today applies
                outlets_of.setdefault(town.id, []).extend(o.id for o in made)
        all_villages = [(town, v) for town in towns for v in village_ids[town.id]]
        for i in range(chats):
            town, village_id = all_villages[i % len(all_villages)]
            chat_service.bind_chat(
                session,
                admin,
                platform="outbox",
                chat_id=f"-{100_000 + i}",
                area=session.get(type(town), village_id),
                title=f"{town.name}村民群{i}",
            )

        # A third county campaigns: each offered to half the townships (some to all), a
        # third of those adopting it as is and a sixth adapting it.
        n_campaigns = announcements // 3
        adopted = adapted = 0
        for c in range(n_campaigns):
            subject = SUBJECTS[c % len(SUBJECTS)]
            reach = towns if c % 4 == 0 else rng.sample(towns, max(1, len(towns) // 2))
            area_ids = [county.id] if reach is towns else [t.id for t in reach]
            campaign = anns.create(
                session,
                county_editor,
                content(
                    f"县级活动{c + 1}：{subject}",
                    body_text(rng, subject, "全县"),
                    topic_id,
                    area_ids,
                    start,
                    to_chats=c % 2 == 0,
                ),
                today=start,
                campaign=True,
            )
            anns.submit(session, county_editor, campaign)
            anns.approve(session, county_reviewer, campaign, "同意")
            for k, town in enumerate(reach):
                editor, reviewer = staff[town.id]
                if k % 3 == 0:
                    campaigns.adopt(session, editor, campaign, town)
                    adopted += 1
                elif k % 6 == 1:
                    copy = campaigns.adapt(session, editor, campaign, town)
                    data = content(
                        f"{town.name}：{subject}",
                        body_text(rng, subject, town.name),
                        topic_id,
                        [town.id],
                        start,
                        to_chats=c % 2 == 0,
                    )
                    anns.update(session, editor, copy, data, today=start)
                    anns.submit(session, editor, copy)
                    anns.approve(session, reviewer, copy, "同意")
                    adapted += 1
        # The rest: township announcements aimed at one to three of its villages.
        for a in range(announcements - n_campaigns):
            town = towns[a % len(towns)]
            editor, reviewer = staff[town.id]
            subject = SUBJECTS[(a + 5) % len(SUBJECTS)]
            targets = rng.sample(village_ids[town.id], min(len(village_ids[town.id]), 1 + a % 3))
            ann = anns.create(
                session,
                editor,
                content(
                    f"{town.name}{subject}通知{a + 1}",
                    body_text(rng, subject, town.name),
                    topic_id,
                    targets,
                    start,
                    to_chats=a % 3 == 0,
                ),
                today=start,
            )
            anns.submit(session, editor, ann)
            anns.approve(session, reviewer, ann, "同意")

        officers = []
        for town in towns:
            owned = list(
                session.scalars(select(Announcement.id).where(Announcement.area_id == town.id))
            )
            for person in staff[town.id]:
                token = users.issue_api_token(session, None, person, "county-bench")
                officers.append(
                    Officer(person.username, token, town.id, owned, person.role is Role.REVIEWER)
                )
        outlet_count = sum(len(ids) for ids in outlets_of.values())
        town_ids = [t.id for t in towns]
    return County(
        outlets=outlet_count,
        townships=town_ids,
        officers=officers,
        announcements=announcements,
        campaigns=n_campaigns,
        adopted=adopted,
        adapted=adapted,
        chats=chats,
        seed_s=time.perf_counter() - started,
        outlets_of=outlets_of,
    )


# -- the web: officers browsing their own township ----------------------------------------

PAGES = [
    "/",
    "/announcements/",
    "/campaigns/",
    "/campaigns/report",
    "/schedule/",
    "/schedule/outlets",
    "/schedule/outbox",
    "/compliance",
]
REVIEWER_PAGES = [*PAGES, "/announcements/review"]


class WebStats(Stats):
    """:class:`Stats`, plus latencies and statuses by path (ids as ``{id}``, no query)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_path: dict[str, list[float]] = {}
        self.path_statuses: dict[str, Counter[int]] = {}

    def add(self, kind: str, status: int, seconds: float, detail: str = "") -> None:
        super().add(kind, status, seconds, detail)
        parts = detail.split(" ", 2)
        path = re.sub(r"/\d+", "/{id}", parts[1].split("?", 1)[0]) if len(parts) > 1 else kind
        with self.lock:
            self.by_path.setdefault(path, []).append(seconds)
            self.path_statuses.setdefault(path, Counter())[status] += 1

    def slowest(self, count: int = 6) -> list[str]:
        """The paths with the highest p90, as ``path p50/p90 ms (n, statuses)``."""
        rows = []
        for path, seconds in self.by_path.items():
            ordered = sorted(seconds)
            p50 = ordered[len(ordered) // 2] * 1000
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1000
            statuses = dict(sorted(self.path_statuses[path].items()))
            rows.append((p90, f"{path} {p50:.0f}/{p90:.0f} ms ({len(ordered)}, {statuses})"))
        return [text for _, text in sorted(rows, reverse=True)[:count]]


class Officer_(Client):
    """One officer: logs in on the web, browses pages, reads the API with a token."""

    def __init__(
        self, port: int, officer: Officer, stats: Stats, rng: random.Random, think: float
    ) -> None:
        super().__init__(port, None, stats, rng)  # type: ignore[arg-type]
        self.officer = officer
        self.think = think

    def browse(self) -> None:
        if not self.cookie:
            self.form("login", "/login", {"username": self.officer.username, "password": PASSWORD})
        ids = self.officer.announcement_ids
        pick = self.rng.random()
        if pick < 0.45:
            pages = REVIEWER_PAGES if self.officer.reviewer else PAGES
            self.request("page", "GET", self.rng.choice(pages))
        elif pick < 0.6 and ids:
            self.request("page", "GET", f"/announcements/{self.rng.choice(ids)}")
        elif pick < 0.8:
            self.api("api", "GET", "/announcements?per_page=20", self.officer.token)
        elif pick < 0.9 and ids:
            self.api("api", "GET", f"/announcements/{self.rng.choice(ids)}", self.officer.token)
        else:
            self.api("api", "GET", "/areas", self.officer.token)

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.browse()
            if self.think:  # reading the page before the next click
                pause = min(self.rng.uniform(0, 2 * self.think), deadline - time.monotonic())
                time.sleep(max(0.0, pause))
        self.close()


def browse(
    ports: list[int], officers: list[Officer], clients: int, seconds: float, think: float = 0
) -> tuple[WebStats, Stats]:
    """Officers browsing for ``seconds``; returns their requests and, apart, their logins.

    Every officer logs in first (sessions last hours: a working day's browsing does not
    start with fifty password checks in the same second), then starts at a random moment
    within one reading time, as people do.
    """
    stats, logins = WebStats(), Stats()
    people = [
        Officer_(ports[i % len(ports)], officers[i % len(officers)], stats, random.Random(i), think)
        for i in range(clients)
    ]

    def log_in(person: Officer_) -> None:
        person.stats = logins
        person.form("login", "/login", {"username": person.officer.username, "password": PASSWORD})
        person.stats = stats

    def start(person: Officer_, deadline: float) -> None:
        time.sleep(person.rng.uniform(0, think))
        person.run(deadline)

    for batch in (people[i : i + 10] for i in range(0, len(people), 10)):
        entering = [threading.Thread(target=log_in, args=(person,)) for person in batch]
        for thread in entering:
            thread.start()
        for thread in entering:
            thread.join(120)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=start, args=(person, deadline)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return stats, logins


@contextmanager
def web_processes(count: int, env: dict[str, str], folder: Path) -> Iterator[list[int]]:
    """``count`` ``dalaba serve --no-scheduler`` processes on free loopback ports."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    logs = []
    try:
        for n in range(count):
            port = free_port()
            log = (folder / f"serve-{n}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from cms.cli import main; main()",
                        "serve",
                        "--no-scheduler",
                        "--port",
                        str(port),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
            ports.append(port)
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc)
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


# -- the database ----------------------------------------------------------------------


@contextmanager
def database(given: str | None, folder: Path, from_env: bool = True) -> Iterator[tuple[str, str]]:
    """(URL, kind): the given one, a new PostgreSQL database beside
    ``DALABA_TEST_POSTGRES_URL`` (when ``from_env``), or SQLite in ``folder``."""
    if given:
        yield given, "postgresql" if given.startswith("postgresql") else "sqlite"
        return
    base = os.environ.get("DALABA_TEST_POSTGRES_URL") if from_env else None
    if not base:
        yield f"sqlite:///{folder / 'dalaba.db'}", "sqlite"
        return
    from sqlalchemy import create_engine, make_url, text

    name = f"dalaba_bench_county_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base).set(database=name).render_as_string(hide_password=False), "postgresql"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the run -----------------------------------------------------------------------------


@dataclass
class Outcome:
    db: str
    county: County
    render_s: float
    programs: int
    built: int
    build_cold_s: float
    baseline_outlets: int
    baseline_build_s: float
    build_unchanged_s: float
    unchanged: int
    deliveries: int
    deliver_s: float
    sent: int
    baseline: WebStats
    web: WebStats
    logins: Stats
    serve_log_tail: str
    during_build: WebStats
    builds_during_web: int


def run(
    *,
    townships: int = 12,
    villages: int = 16,
    chats: int = 1000,
    announcements: int = 60,
    clients: int = 50,
    seconds: float = 30,
    baseline_seconds: float = 5,
    web_processes_count: int = 2,
    database_url: str | None = None,
    postgres_from_env: bool = True,
    data_dir: Path | None = None,
    profile: bool = False,
    think: float = 3.0,
) -> Outcome:
    """Seed and measure; ``database_url`` is an empty database to use (see :func:`database`).

    ``data_dir`` is a folder to use and keep (its clip cache makes the renders of a second
    run with the same seed quick); ``profile`` prints where the unchanged build spends its
    time.
    """
    folder = data_dir or Path(tempfile.mkdtemp(prefix="dalaba-county-"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in ("dalaba.db", "dalaba.db-wal", "dalaba.db-shm"):
        (folder / old).unlink(missing_ok=True)
    shutil.rmtree(folder / "audio" / "programs", ignore_errors=True)
    try:
        with database(database_url, folder, postgres_from_env) as (url, kind):
            return _run(
                folder, url, kind, townships, villages, chats, announcements,
                clients, seconds, baseline_seconds, web_processes_count, profile, think,
            )  # fmt: skip
    finally:
        if data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def scheduler_context(folder: Path, url: str):  # type: ignore[no-untyped-def]
    """The environment of a dalaba whose data is in ``folder`` and database at ``url`` (made
    and migrated), and a scheduler context on it that posts to the outbox: ``(env, ctx)``.
    The caller disposes of ``ctx.engine``."""
    from cms.channels import ChannelRegistry
    from cms.db import make_engine, make_session_factory
    from cms.jobs.context import Context
    from cms.jobs.outbox import OutboxChannel
    from cms.settings import Settings

    env = {
        **os.environ,
        "DALABA_DATA_DIR": str(folder),
        "DALABA_SECRET_KEY": secrets.token_hex(32),
        "DALABA_TTS_ENGINE": "offline",
        "DALABA_DATABASE_URL": url,
        "PYTHONPATH": str(ROOT),
    }
    dalaba("db", "upgrade", env=env)
    settings = Settings.from_env(env)
    engine = make_engine(url, data_dir=settings.data_dir)
    sessions = make_session_factory(engine)
    registry = ChannelRegistry()
    registry.register(OutboxChannel(sessions))
    ctx = Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        registry=registry,
        worker="bench",
    )
    return env, ctx


def _run(
    folder: Path,
    url: str,
    kind: str,
    townships: int,
    villages: int,
    chats: int,
    announcements: int,
    clients: int,
    seconds: float,
    baseline_seconds: float,
    web_count: int,
    profile: bool = False,
    think: float = 0.0,
) -> Outcome:
    from sqlalchemy import func, select

    from cms.models import Delivery, DeliveryState, Program
    from cms.scheduler.core import Scheduler

    env, ctx = scheduler_context(folder, url)
    engine, sessions = ctx.engine, ctx.sessions
    try:
        scheduler = Scheduler(ctx)
        today = ctx.today()
        county = seed(
            sessions,
            today,
            townships=townships,
            villages=villages,
            chats=chats,
            announcements=announcements,
        )

        # 1. The clips the day needs (rendered first, not part of the build).
        started = time.perf_counter()
        ids = scheduler.prepare_day(today)
        render_s = time.perf_counter() - started

        # 2. Programs: one township alone (the baseline), the rest, then all unchanged.
        first = set(county.outlets_of[county.townships[0]])
        with sessions() as session:
            rows = session.execute(select(Program.id, Program.outlet_id).where(Program.id.in_(ids)))
            outlet_of = {program_id: outlet_id for program_id, outlet_id in rows}
        own = [i for i in ids if outlet_of[i] in first]
        rest = [i for i in ids if outlet_of[i] not in first]
        started = time.perf_counter()
        lines = list(scheduler.build_listed(own))
        baseline_build_s = time.perf_counter() - started
        lines += list(scheduler.build_listed(rest))
        build_cold_s = time.perf_counter() - started
        built = sum(line.outcome == "built" for line in lines)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        again = list(scheduler.build_listed(ids))
        build_unchanged_s = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        unchanged = sum(line.outcome == "unchanged" for line in again)

        # 3. The day's chat deliveries, planned and sent to the outbox.
        started = time.perf_counter()
        scheduler.plan()
        while scheduler.dispatch_due():
            pass
        deliver_s = time.perf_counter() - started
        with sessions() as session:
            deliveries = session.scalar(select(func.count(Delivery.id))) or 0
            sent = (
                session.scalar(
                    select(func.count(Delivery.id)).where(Delivery.state == DeliveryState.SENT)
                )
                or 0
            )
    finally:
        engine.dispose()

    # 4. Officers on the web, two processes sharing the database.
    serve_env = {**env, "DALABA_SCHEDULER": "false"}
    with web_processes(web_count, serve_env, folder) as ports:
        # One officer clicking again at once: each request's own time, nobody queueing.
        baseline, _ = browse(ports[:1], county.officers[:1], 1, baseline_seconds, 0)
        web, logins = browse(ports, county.officers, clients, seconds, think)
        # 5. The same officers while the scheduler builds the day (in its own process).
        with building(env, folder) as runs:
            during_build, _ = browse(ports, county.officers, clients, seconds, think)
        builds_during_web = runs[0]
    tail = "".join(
        p.read_text("utf-8", "replace")[-1500:] for p in sorted(folder.glob("serve-*.log"))
    )
    return Outcome(
        db=kind,
        county=county,
        render_s=render_s,
        programs=len(ids),
        built=built,
        build_cold_s=build_cold_s,
        baseline_outlets=len(first),
        baseline_build_s=baseline_build_s,
        build_unchanged_s=build_unchanged_s,
        unchanged=unchanged,
        deliveries=deliveries,
        deliver_s=deliver_s,
        sent=sent,
        baseline=baseline,
        web=web,
        logins=logins,
        serve_log_tail=tail,
        during_build=during_build,
        builds_during_web=builds_during_web,
    )


@contextmanager
def building(env: dict[str, str], folder: Path) -> Iterator[list[int]]:
    """``dalaba build-day`` in its own process, again and again, each time with the program
    files removed (so every program is built, none found unchanged), until the block ends;
    yields a one-item list that holds the number of builds started once it has ended."""
    ended = threading.Event()
    runs = [0]
    log = (folder / "build-day.log").open("ab")

    def loop() -> None:
        while not ended.is_set():
            shutil.rmtree(folder / "audio" / "programs", ignore_errors=True)
            runs[0] += 1
            proc = subprocess.Popen(
                [sys.executable, "-c", "from cms.cli import main; main()", "build-day"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            while proc.poll() is None:
                if ended.wait(0.2):
                    stop(proc)

    thread = threading.Thread(target=loop, name="build-day", daemon=True)
    thread.start()
    try:
        yield runs
    finally:
        ended.set()
        thread.join(60)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--townships", type=int, default=12)
    parser.add_argument("--villages", type=int, default=16, help="per township")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--announcements", type=int, default=60)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline-seconds", type=float, default=5)
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument(
        "--database-url",
        help="an empty database (postgresql+psycopg://…); default: a new database beside "
        "DALABA_TEST_POSTGRES_URL, else SQLite",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="a data folder to use and keep (its clip cache is reused)"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=3.0,
        help="mean seconds an officer reads a page before the next click (uniform 0 to "
        "twice that; 0: click again at once, a stress test)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile the unchanged build (cProfile)"
    )
    args = parser.parse_args(argv)
    o = run(
        townships=args.townships,
        villages=args.villages,
        chats=args.chats,
        announcements=args.announcements,
        clients=args.clients,
        seconds=args.seconds,
        baseline_seconds=args.baseline_seconds,
        web_processes_count=args.web_processes,
        database_url=args.database_url,
        data_dir=args.data_dir,
        profile=args.profile,
        think=args.think,
    )
    c = o.county
    print(f"database: {o.db}")
    print(
        f"seeded in {c.seed_s:.1f} s: {len(c.townships)} townships, {c.outlets} outlets, "
        f"{c.chats} chats, {c.announcements} announcements ({c.campaigns} county campaigns: "
        f"{c.adopted} adopted and {c.adapted} adapted copies), {len(c.officers)} officers"
    )
    print(f"clips rendered in {o.render_s:.1f} s (offline engine; not part of the build)")
    per = o.baseline_build_s / max(1, o.baseline_outlets)
    print(
        f"build cold: {o.programs} programs ({o.built} built) in {o.build_cold_s:.2f} s; "
        f"baseline: one township's {o.baseline_outlets} outlets in {o.baseline_build_s:.2f} s "
        f"({per * 1000:.0f} ms an outlet → {per * c.outlets:.1f} s for {c.outlets} if linear)"
    )
    print(
        f"build unchanged: {o.unchanged}/{o.programs} unchanged in {o.build_unchanged_s:.2f} s "
        "(target < 5 s)"
    )
    print(f"deliveries: {o.deliveries} planned, {o.sent} sent to the outbox in {o.deliver_s:.1f} s")
    base, web = o.baseline, o.web
    print(f"{'web':24}{'1 officer (baseline)':>22}{f'{args.clients} officers':>16}")
    print(f"{'requests':24}{base.requests:>22}{web.requests:>16}")
    print(
        f"{'requests/s':24}{base.requests / args.baseline_seconds:>22.1f}"
        f"{web.requests / args.seconds:>16.1f}"
    )
    print(f"{'p50 ms':24}{base.percentile(0.5):>22.1f}{web.percentile(0.5):>16.1f}")
    print(f"{'p99 ms':24}{base.percentile(0.99):>22.1f}{web.percentile(0.99):>16.1f}")
    print(f"{'5xx or no answer':24}{base.errors_5xx:>22}{web.errors_5xx:>16}")
    print(f"mix: {dict(web.by_kind)}; statuses: {dict(sorted(web.statuses.items()))}")
    print(
        f"logins before the browsing: {o.logins.requests} requests, "
        f"p50 {o.logins.percentile(0.5):.0f} ms, p99 {o.logins.percentile(0.99):.0f} ms, "
        f"5xx {o.logins.errors_5xx}"
    )
    print("slowest paths under load (p50/p90):")
    for line in web.slowest():
        print("  " + line)
    during = o.during_build
    print(
        f"while the scheduler builds ({o.builds_during_web} build-day runs): "
        f"{during.requests} requests, p50 {during.percentile(0.5):.0f} ms, "
        f"p99 {during.percentile(0.99):.0f} ms, 5xx {during.errors_5xx}"
    )
    for line in during.slowest():
        print("  " + line)
    for failure in (base.failures + web.failures + during.failures)[:10]:
        print("  failed:", failure)
    errors = web.errors_5xx + o.logins.errors_5xx + during.errors_5xx  # the logins count too
    print(
        f"RESULT db={o.db} outlets={c.outlets} build_cold_s={o.build_cold_s:.2f} "
        f"build_unchanged_s={o.build_unchanged_s:.2f} deliveries={o.deliveries} "
        f"deliver_s={o.deliver_s:.1f} web_p99_ms={web.percentile(0.99):.0f} "
        f"web_build_p99_ms={during.percentile(0.99):.0f} "
        f"builds_during_web={o.builds_during_web} errors_5xx={errors}"
    )
    met = o.build_unchanged_s < 5 and errors == 0 and web.percentile(0.99) < 1000
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
