"""Benchmark: 立即插播 across a county, from approval to every outlet's insert file ready.

Seeds the county of bench/county.py (``--townships`` × ``--villages`` villages, two outlets
a village: 384 outlets by default) through the services, and an urgent cold-wave warning
for the whole county, submitted for review. Then, in one run:

* ``render_s`` (the baseline): the warning's loudspeaker clip rendered alone, once, by a
  renderer with an empty cache of its own (offline eSpeak engine);
* ``ready_s``: the reviewer approves it with 立即插播 (one transaction, as the web does),
  and the scheduler's break-in job takes it from there: the clip is rendered (nobody has
  rendered it yet: the worst case, a notice approved the moment it was written), the
  insert is built once (chime, the notice read twice), and each reached outlet gets its
  copy (a hard link). The clock stops when every outlet's file is on disk and its row says
  ready; ``ratio = ready_s / render_s``;
* ``warm_s``: the same notice broken in again after the first was ended (its clip cached,
  as for a notice rendered during review): the insert and the links alone.

Both engines are warmed up first with an unrelated sentence, so neither pays eSpeak's
start-up. PostgreSQL when ``--database-url`` or ``DALABA_TEST_POSTGRES_URL`` is set (a new
database beside it, dropped afterwards), else SQLite.

    python bench/breakin.py [--townships 12] [--villages 16]

Target (issue 20, this 2-core machine): ready_s ≤ 30. The last line is

    RESULT outlets=… ready_s=… render_s=… ratio=… warm_s=… db=…
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.county import content, database, seed  # noqa: E402
from bench.load import dalaba  # noqa: E402

TITLE = "寒潮蓝色预警"
BODY = (
    "县气象台发布寒潮蓝色预警：今天夜间到明天，全县气温将下降八到十度，最低气温零下三度，"
    "并伴有五到六级偏北风。请各户做好防寒保暖，关好门窗，检查取暖设施，注意用火用电安全，"
    "照顾好家中老人和小孩；养殖户请加固圈舍，做好牲畜防冻。"
)
WARM_UP = "各位村民请注意，这是一条测试广播。"


@dataclass
class Outcome:
    db: str
    outlets: int
    ready_s: float
    render_s: float
    warm_s: float
    files: int
    linked: int
    seed_s: float

    @property
    def ratio(self) -> float:
        return self.ready_s / self.render_s if self.render_s else float("inf")


def run(
    *,
    townships: int = 12,
    villages: int = 16,
    database_url: str | None = None,
    postgres_from_env: bool = True,
) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="dalaba-breakin-"))
    try:
        with database(database_url, folder, postgres_from_env) as (url, kind):
            return _run(folder, url, kind, townships, villages)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, url: str, kind: str, townships: int, villages: int) -> Outcome:
    from sqlalchemy import func, select

    from audio.render import Renderer
    from cms.channels import ChannelRegistry
    from cms.db import make_engine, make_session_factory
    from cms.models import Announcement, BreakIn, BreakInOutlet, JobState, User
    from cms.scheduler import breakin as job
    from cms.scheduler.context import Context
    from cms.scheduler.outbox import OutboxChannel
    from cms.services import announcements as anns
    from cms.services import breakin as svc
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
    try:
        sessions = make_session_factory(engine)
        registry = ChannelRegistry()
        registry.register(OutboxChannel(sessions))
        ctx = Context(
            settings=settings, engine=engine, sessions=sessions, registry=registry, worker="bench"
        )
        today = ctx.today()
        county = seed(sessions, today, townships=townships, villages=villages, chats=0,
                      announcements=0)  # fmt: skip
        with sessions() as session, session.begin():
            editor = session.scalar(select(User).where(User.username == "county_editor"))
            top = county_area(session)
            assert editor is not None
            data = content(TITLE, BODY, None, [top], today, to_chats=False)  # type: ignore[arg-type]
            data.update(priority="urgent", topic_id=None, start_date=today.isoformat(),
                        end_date=(today + timedelta(days=2)).isoformat())  # fmt: skip
            ann = anns.create(session, editor, data, today=today)
            anns.submit(session, editor, ann)
            ann_id = ann.id

        # Both renderers warmed up on an unrelated sentence: neither pays the start-up.
        baseline = Renderer(folder / "baseline-cache", engine="offline")
        baseline.render(WARM_UP)
        ctx.renderer.render(WARM_UP)
        ctx.renderer.chime()

        # The baseline: the clip alone.
        started = time.perf_counter()
        with sessions() as session:
            spoken = session.get(Announcement, ann_id).current.speech  # type: ignore[union-attr]
        baseline.render(spoken)
        render_s = time.perf_counter() - started

        def approve_and_break_in(rule: str) -> float:
            started = time.perf_counter()
            with sessions() as session, session.begin():
                reviewer = session.scalar(select(User).where(User.username == "county_reviewer"))
                ann = session.get(Announcement, ann_id)
                assert reviewer is not None and ann is not None
                if rule == "approval":
                    anns.approve(session, reviewer, ann, "同意，立即插播")
                row = svc.start(session, reviewer, ann, rule=rule, today=today)
                session.flush()
                row_id = row.id
            while True:  # the scheduler's break-in tick, as often as it can
                if job.build_one(ctx, row_id) in ("built", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            with sessions() as session:
                paths = list(
                    session.scalars(
                        select(BreakInOutlet.path).where(BreakInOutlet.break_in_id == row_id)
                    )
                )
                state = session.scalar(select(BreakIn.state).where(BreakIn.id == row_id))
            assert state is JobState.DONE, state
            missing = [p for p in paths if not Path(p).is_file()]
            assert not missing, missing[:3]
            elapsed = time.perf_counter() - started
            with sessions() as session, session.begin():
                reviewer = session.scalar(select(User).where(User.username == "county_reviewer"))
                row = session.get(BreakIn, row_id)
                assert reviewer is not None and row is not None
                svc.end(session, reviewer, row)
            return elapsed

        ready_s = approve_and_break_in("approval")
        warm_s = approve_and_break_in("reviewer")
        with sessions() as session:
            files = session.scalar(select(func.count(BreakInOutlet.id))) or 0
            first = session.scalars(select(BreakInOutlet.path).limit(2)).all()
        inodes = {Path(p).stat().st_ino for p in first}
    finally:
        engine.dispose()
    return Outcome(
        db=kind,
        outlets=county.outlets,
        ready_s=ready_s,
        render_s=render_s,
        warm_s=warm_s,
        files=files,
        linked=len(inodes),
        seed_s=county.seed_s,
    )


def county_area(session: object) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from cms.models import Area, AreaKind

    assert isinstance(session, Session)
    found = session.scalar(select(Area.id).where(Area.kind == AreaKind.COUNTY))
    assert found is not None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--townships", type=int, default=12)
    parser.add_argument("--villages", type=int, default=16, help="per township")
    parser.add_argument("--database-url", help="an empty database (postgresql+psycopg://…)")
    args = parser.parse_args(argv)
    o = run(townships=args.townships, villages=args.villages, database_url=args.database_url)
    print(f"database: {o.db}; county of {o.outlets} outlets seeded in {o.seed_s:.1f} s")
    print(f"the clip rendered alone: {o.render_s:.2f} s (baseline)")
    print(
        f"approval → every outlet's insert ready: {o.ready_s:.2f} s "
        f"({o.files // 2} outlet files per break-in; the copies share one inode: "
        f"{o.linked == 1})"
    )
    print(f"again with the clip cached (insert + links only): {o.warm_s:.2f} s")
    print(
        f"RESULT outlets={o.outlets} ready_s={o.ready_s:.2f} render_s={o.render_s:.2f} "
        f"ratio={o.ratio:.2f} warm_s={o.warm_s:.2f} db={o.db}"
    )
    return 0 if o.ready_s <= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
