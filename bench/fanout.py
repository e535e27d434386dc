"""Benchmark: one notice (text + voice note) to 500 group chats, against Telegram's flood limits.

A loopback Bot API server (``tests/fakes/telegram_api.py``) enforces Telegram-like limits as
token buckets: ``--overall-rate`` messages a second for the whole bot (Telegram: 30) and
``--group-max`` per ``--group-period`` seconds in each group (Telegram: 20 a minute). It
answers 429 with ``retry_after`` to anything faster. dalaba sends through the production
path: the scheduler's dispatcher (``cms.jobs.deliveries.send_one`` for every due row
in a temporary SQLite database) calling the Telegram channel (real python-telegram-bot).

The bound is computed from the limits the server enforces: with both buckets full at the
start, ``messages`` sends need at least ``(messages - overall_rate) / overall_rate`` seconds
(and ``(per_group - group_max) / (group_max / group_period)`` for the busiest group).

    python bench/fanout.py [--groups 500] [--overall-rate 30] [--group-max 20]
                           [--group-period 60] [--workers 4] [--faults]

With Telegram's own limits (the default) the run takes about 35 s; scale them to finish
sooner (``--overall-rate 60``: about 17 s), as long as the machine keeps up with the rate.
``--workers`` dispatcher threads call ``send_one`` side by side (claims are guarded and the
channel is thread-safe). One thread cannot reach the bound: while it commits a part's
message id and claims the next row, the rate it is allowed goes unused (measured: ratio
1.38 with one thread, 1.06–1.08 with two to four, on a loaded 2-core machine).
``--faults`` adds a few 5xx answers and short 429s on top of the flood limits.

The last line is
``RESULT groups=<n> seconds=<t> bound_s=<t> ratio=<t/bound> lost=<n> duplicates=<n>``:
``lost`` counts groups that did not get the whole notice, ``duplicates`` extra copies.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = (
    "各位村民：根据气象部门预报，明天起我镇将有一次强降雨过程。请大家及时检查房前屋后排水沟，"
    "加固棚舍，转移低洼地带的物资；山边、河边的住户注意防范山洪和地质灾害，夜间不要外出捕鱼。"
    "如遇险情，请立即拨打村委会值班电话。"
)
PARTS = 2  # the text fits one message; then the voice note


def voice_note(folder: Path) -> Path:
    """An 8 s OGG/Opus voice note in ``folder``."""
    from imageio_ffmpeg import get_ffmpeg_exe

    path = folder / "notice.ogg"
    subprocess.run(
        [get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "sine=frequency=440:duration=8", "-ac", "1", "-ar", "48000", "-c:a", "libopus",
         "-b:a", "24k", str(path)],
        check=True,
    )  # fmt: skip
    return path


def seed_township(session):  # type: ignore[no-untyped-def]
    """A township and its publicity officer: (area, user)."""
    from cms.models import Area, AreaKind, Role, User

    town = Area(name="清水镇", kind=AreaKind.TOWNSHIP, path="")
    session.add(town)
    session.flush()
    town.path = f"/{town.id}/"
    officer = User(username="officer", display_name="宣传委员", password_hash="-", role=Role.EDITOR)
    session.add(officer)
    session.flush()
    return town, officer


def seed_notice(session, town, officer, title: str, voice: Path):  # type: ignore[no-untyped-def]
    """An approved notice for ``town`` today, its voice note rendered: its announcement."""
    from cms.models import Announcement, Clip, ClipProfile, JobState, Revision, Status

    ann = Announcement(status=Status.APPROVED, created_by_id=officer.id)
    session.add(ann)
    session.flush()
    rev = Revision(
        announcement_id=ann.id,
        number=1,
        title=title,
        body=BODY,
        start_date=date.today(),
        end_date=date.today(),
        author_id=officer.id,
        areas=[town],
    )
    session.add(rev)
    session.flush()
    ann.latest_revision_id = ann.approved_revision_id = rev.id
    session.add(
        Clip(
            revision_id=rev.id,
            profile=ClipProfile.VOICE,
            state=JobState.DONE,
            path=str(voice),
            duration=8.0,
        )
    )
    return ann


def _seed(sessions, groups: int, voice: Path) -> list[int]:  # type: ignore[no-untyped-def]
    from cms.models import ChatGroup, Delivery

    with sessions() as session, session.begin():
        town, officer = seed_township(session)
        ann = seed_notice(session, town, officer, "防汛紧急通知", voice)
        chats = [
            ChatGroup(chat_id=str(-1_000_000_000 - i), title=f"群{i}", area=town)
            for i in range(groups)
        ]
        session.add_all(chats)
        session.flush()
        due = datetime.now(UTC) - timedelta(minutes=1)
        rows = [
            Delivery(revision_id=ann.approved_revision_id, chat_group_id=c.id, due_at=due)
            for c in chats
        ]
        session.add_all(rows)
        session.flush()
        return [d.id for d in rows]


class _ShiftedClock:
    """The real clock, moved ahead when the bench skips the dispatcher's retry backoff."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def skip(self, delta: timedelta) -> None:
        self.offset += delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument(
        "--overall-rate", type=float, default=30.0, help="messages/s (Telegram: 30)"
    )
    parser.add_argument("--group-max", type=float, default=20.0, help="per group (Telegram: 20)")
    parser.add_argument("--group-period", type=float, default=60.0, help="seconds (Telegram: 60)")
    parser.add_argument("--workers", type=int, default=4, help="dispatcher threads")
    parser.add_argument("--faults", action="store_true", help="add a few 5xx and short 429s")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)

    from sqlalchemy import select

    from bot.application import Limits, build_application
    from bot.channel import TelegramChannel
    from cms.channels import ChannelRegistry
    from cms.db import make_engine, make_session_factory
    from cms.jobs import deliveries
    from cms.jobs.context import Context
    from cms.migrate import upgrade
    from cms.models import Delivery, DeliveryState
    from cms.settings import Settings
    from tests.fakes.telegram_api import FakeBotApi, Fault
    from tests.fakes.telegram_api import Limits as ServerLimits

    limits = ServerLimits(args.overall_rate, args.group_max, args.group_period)
    with tempfile.TemporaryDirectory(prefix="dalaba-fanout-") as tmp, FakeBotApi() as api:
        folder = Path(tmp)
        settings = Settings.from_env(
            {"DALABA_TELEGRAM_TOKEN": api.token, "DALABA_TELEGRAM_API_URL": api.api_url},
            data_dir=folder / "data",
            secret_key="bench",
        )
        engine = make_engine(settings.database_url, data_dir=settings.data_dir)
        upgrade(engine)
        sessions = make_session_factory(engine)
        ids = _seed(sessions, args.groups, voice_note(folder))
        channel = TelegramChannel(
            build_application(
                settings,
                sessions=sessions,
                limits=Limits.below(args.overall_rate, args.group_max, args.group_period),
                updates=False,
            ),
            updates="none",
        )
        channel.start()
        registry = ChannelRegistry()
        registry.register(channel)
        api.set_limits(limits)  # from here on, buckets start full
        if args.faults:
            api.fail(Fault.SERVER_ERROR, times=10, method="sendMessage")
            api.fail(Fault.BAD_GATEWAY, times=5, method="sendVoice")
            api.fail(Fault.RETRY_AFTER, times=3, retry_after=1, method="sendMessage")

        clock = _ShiftedClock()

        def worker(n: int, todo: list[int], lock: threading.Lock) -> None:
            ctx = Context(
                settings=settings,
                engine=engine,
                sessions=sessions,
                registry=registry,
                worker=f"bench-{n}",
                clock=clock,
            )
            while True:
                with lock:
                    if not todo:
                        return
                    delivery_id = todo.pop(0)
                deliveries.send_one(ctx, delivery_id)

        def run_pass(todo: list[int]) -> None:
            lock = threading.Lock()
            threads = [
                threading.Thread(target=worker, args=(n, todo, lock)) for n in range(args.workers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        started = time.monotonic()
        run_pass(list(ids))
        # Deliveries handed back with TemporaryFailure are due again after the dispatcher's
        # backoff (30 s and up); the clock skips that wait instead of sleeping through it.
        for _ in range(5):
            with sessions() as session:
                retry = list(
                    session.scalars(
                        select(Delivery.id).where(Delivery.state == DeliveryState.PENDING)
                    )
                )
            if not retry:
                break
            clock.skip(timedelta(hours=2))
            run_pass(retry)
        seconds = time.monotonic() - started
        channel.close()

        with sessions() as session:
            rows = list(session.scalars(select(Delivery)))
            chat_of = {d.id: d.chat_group.chat_id for d in rows}
            sent = {d.id for d in rows if d.state is DeliveryState.SENT}
            states: dict[str, int] = {}
            for d in rows:
                states[d.state.value] = states.get(d.state.value, 0) + 1
        lost = duplicates = 0
        for delivery_id, chat_id in chat_of.items():
            got = len(api.messages_to(chat_id))
            if delivery_id not in sent or got < PARTS:
                lost += 1
            duplicates += max(0, got - PARTS)
        messages = args.groups * PARTS
        bound = limits.bound_seconds(messages, PARTS)
        print(
            f"groups={args.groups} messages={messages} sent={api.sent_count()} states={states} "
            f"refused_by_limits={api.refused} faults={sum(api.faults_fired.values())} "
            f"limits={args.overall_rate:g}/s, {args.group_max:g}/{args.group_period:g}s per group "
            f"workers={args.workers}"
        )
        print(
            f"RESULT groups={args.groups} seconds={seconds:.2f} bound_s={bound:.2f} "
            f"ratio={seconds / bound if bound else float('inf'):.3f} lost={lost} "
            f"duplicates={duplicates}"
        )


if __name__ == "__main__":
    main()
