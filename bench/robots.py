"""Benchmark: notices to 300 group robots (WeCom, DingTalk, Feishu) against their per-robot limits.

Three loopback fakes (``tests/fakes/wecom_api.py``, ``dingtalk_api.py``, ``feishu_api.py``)
enforce each platform's per-robot limit server-side as sliding windows and answer the
platform's "too fast" code to anything faster: WeCom 20 messages a minute, DingTalk 20 a
minute, Feishu 5 a second and 100 a minute. dalaba sends through the production path: the
scheduler's dispatcher (``Scheduler.dispatch_due``, called at every tick as the runner does,
over a temporary SQLite database) calling the real robot channels (``robots/``: httpx,
signing, the WeCom voice upload as AMR).

One notice is one message per DingTalk or Feishu robot and two per WeCom robot (the markdown
with the share link, then the voice note: upload + send). One notice never reaches a
per-robot limit, so the bench sends ``--notices`` of them (11 by default: 22 messages per
WeCom robot, more than its 20 a minute). ``--scale`` shortens every window (fake and client
alike, and the client's waits with them); the default 1 keeps the platforms' own limits.
Scaled much below 1 the machine becomes the bound instead of the limits: the dispatcher
gets through about 100 deliveries a second here (each one is a few SQLite transactions), so
3,300 deliveries need about 30 s (``--scale 0.25``: ratio 2.1 against a 15 s bound).

The bound is computed from the limits the fakes enforce: for each robot, the earliest time
its last message may go when its windows start empty and every message goes the moment the
windows allow it (``k``-th message at ``max(t[k-count] + seconds)`` over the windows); the
slowest robot sets the bound. The dispatcher's tick (``--tick``, the runner's 5 s) adds to
the wall time but not to the bound: a notice due now may wait one tick.

    python bench/robots.py [--robots 300] [--notices 11] [--scale 1] [--tick 5]
                           [--workers 4] [--faults]

``--faults`` adds a few throttling answers ("too fast" with no time given) and 5xx answers
on each platform, and 5xx answers to WeCom voice uploads: all of them safe to retry. (A
dropped connection is not among them: the client cannot tell whether the message was
recorded, so the delivery is "uncertain" and waits for an officer, by design.)

The last line is
``RESULT robots=<n> seconds=<t> bound_s=<t> ratio=<t/bound> lost=<n> duplicates=<n>``:
``lost`` counts deliveries not recorded as sent or whose messages the fake did not record,
``duplicates`` messages recorded more than once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import seed_notice, seed_township, voice_note  # noqa: E402

PLATFORMS = ("wecom", "dingtalk", "feishu")
PARTS = {"wecom": 2, "dingtalk": 1, "feishu": 1}  # messages per notice
WINDOWS = {  # (count, seconds) per robot, as the platforms document them
    "wecom": ((20, 60.0),),
    "dingtalk": ((20, 60.0),),
    "feishu": ((5, 1.0), (100, 60.0)),
}


def earliest_last(messages: int, windows: tuple[tuple[int, float], ...]) -> float:
    """When the last of ``messages`` may go at the earliest under sliding ``windows``."""
    times: list[float] = []
    for k in range(messages):
        at = times[-1] if times else 0.0
        for count, seconds in windows:
            if k >= count:
                at = max(at, times[k - count] + seconds)
        times.append(at)
    return times[-1] if times else 0.0


def _seed(sessions, hooks: list[tuple[str, str, str]], notices: int, voice: Path) -> None:  # type: ignore[no-untyped-def]
    from cms.models import Delivery
    from cms.services.chats import bind_robot
    from cms.services.share import ensure_token

    with sessions() as session, session.begin():
        town, officer = seed_township(session)
        chats = [
            bind_robot(
                session,
                None,
                platform=p,
                webhook=url,
                secret=secret,
                area=town,
                title=f"群{i}",
                allow_local=True,  # the fakes listen on loopback
            )
            for i, (p, url, secret) in enumerate(hooks)
        ]
        session.flush()
        due = datetime.now(UTC) - timedelta(minutes=1)
        for n in range(notices):
            ann = seed_notice(session, town, officer, f"防汛紧急通知（第{n + 1}号）", voice)
            ensure_token(ann)
            session.add_all(
                Delivery(revision_id=ann.approved_revision_id, chat_group_id=c.id, due_at=due)
                for c in chats
            )
            session.flush()


def _text_key(body: dict[str, Any]) -> str:
    """A message as the group sees it (Feishu's signature and timestamp left out)."""
    return repr(sorted((k, repr(v)) for k, v in body.items() if k not in ("timestamp", "sign")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robots", type=int, default=300, help="split evenly over 3 platforms")
    parser.add_argument("--notices", type=int, default=11)
    parser.add_argument("--scale", type=float, default=1.0, help="window length factor")
    parser.add_argument("--tick", type=float, default=5.0, help="dispatcher tick, seconds")
    parser.add_argument("--workers", type=int, default=None, help="dispatcher threads")
    parser.add_argument("--faults", action="store_true", help="add throttling and 5xx answers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from sqlalchemy import select

    from cms.channels import ChannelRegistry
    from cms.db import make_engine, make_session_factory
    from cms.jobs.context import Context
    from cms.migrate import upgrade
    from cms.models import Delivery, DeliveryState
    from cms.scheduler.core import DISPATCH_WORKERS, Scheduler
    from cms.settings import Settings
    from robots.base import Window
    from robots.dingtalk import DingTalkChannel
    from robots.feishu import FeishuChannel
    from robots.wecom import WeComChannel
    from tests.fakes.dingtalk_api import FakeDingTalk
    from tests.fakes.feishu_api import FakeFeishu
    from tests.fakes.robot_base import RobotFault
    from tests.fakes.wecom_api import FakeWeCom

    workers = args.workers or DISPATCH_WORKERS
    windows = {
        p: tuple((count, seconds * args.scale) for count, seconds in w) for p, w in WINDOWS.items()
    }
    with (
        tempfile.TemporaryDirectory(prefix="dalaba-robots-") as tmp,
        FakeWeCom(windows=windows["wecom"]) as wecom,
        FakeDingTalk(windows=windows["dingtalk"]) as ding,
        FakeFeishu(windows=windows["feishu"]) as lark,
    ):
        folder = Path(tmp)
        settings = Settings.from_env({}, data_dir=folder / "data", secret_key="bench")
        engine = make_engine(settings.database_url, data_dir=settings.data_dir)
        upgrade(engine)
        sessions = make_session_factory(engine)
        fakes: dict[str, Any] = {"wecom": wecom, "dingtalk": ding, "feishu": lark}
        hooks: list[tuple[str, str, str]] = []
        tokens: list[tuple[str, str]] = []
        for i in range(args.robots):
            platform = PLATFORMS[i % 3]  # interleaved: the dispatcher sees them mixed
            if platform == "wecom":
                token, secret = f"wecom-key-{i:05d}", ""
                url = wecom.webhook(token)
            elif platform == "dingtalk":
                token, secret = f"dingtalktoken{i:05d}", f"SECbenchsecret{i:05d}"
                url = ding.webhook(token, secret=secret)
            else:
                token, secret = f"feishu-hook-{i:05d}", f"benchsecret{i:05d}"
                url = lark.webhook(token, secret=secret)
            hooks.append((platform, url, secret))
            tokens.append((platform, token))
        _seed(sessions, hooks, args.notices, voice_note(folder))

        longest = 60.0 * args.scale
        registry = ChannelRegistry()
        for cls in (WeComChannel, DingTalkChannel, FeishuChannel):
            registry.register(
                cls(
                    windows=[Window(c, s) for c, s in windows[cls.platform]],
                    max_wait=longest + 10.0 * args.scale,
                )
            )
        if args.faults:
            for fake in fakes.values():
                fake.fail(RobotFault.THROTTLE, times=3, kind="send")
                fake.fail(RobotFault.SERVER_ERROR, times=3, kind="send")
            wecom.fail(RobotFault.SERVER_ERROR, times=2, kind="upload")

        ctx = Context(
            settings=settings,
            engine=engine,
            sessions=sessions,
            registry=registry,
            worker="bench",
        )
        scheduler = Scheduler(ctx)

        def pending() -> int:
            with sessions() as session:
                return len(
                    list(
                        session.scalars(
                            select(Delivery.id).where(
                                Delivery.state.in_((DeliveryState.PENDING, DeliveryState.SENDING))
                            )
                        )
                    )
                )

        started = time.monotonic()
        ticks = 0
        deadline = started + 3 * longest + 120
        while pending() and time.monotonic() < deadline:
            scheduler.dispatch_due(workers=workers)
            # The runner's interval job (max_instances=1): a run that overlaps the next
            # tick makes it skip, so the next run starts at the next tick after this one.
            ticks = int((time.monotonic() - started) // args.tick) + 1
            if pending():
                time.sleep(max(0.0, started + args.tick * ticks - time.monotonic()))
        seconds = time.monotonic() - started

        with sessions() as session:
            rows = list(session.scalars(select(Delivery)))
            states: dict[str, int] = {}
            unsent: dict[str, int] = {}
            again = sum(1 for d in rows if d.attempts > 1)  # handed back, claimed again
            for d in rows:
                states[d.state.value] = states.get(d.state.value, 0) + 1
                if d.state is not DeliveryState.SENT:
                    title = d.chat_group.title
                    unsent[title] = unsent.get(title, 0) + 1
        lost = duplicates = 0
        slowest = 0.0
        firsts: dict[str, float] = {}  # the latest first message, per platform
        spans: dict[str, float] = {}  # the longest first-to-last, per platform
        for i, (platform, token) in enumerate(tokens):
            got = fakes[platform].messages_to(token)
            if got:
                firsts[platform] = max(firsts.get(platform, 0.0), got[0].at - started)
                spans[platform] = max(spans.get(platform, 0.0), got[-1].at - got[0].at)
            texts = [_text_key(m.body) for m in got if m.msgtype != "voice"]
            voices = sum(1 for m in got if m.msgtype == "voice")
            duplicates += len(texts) - len(set(texts))
            missing = args.notices - len(set(texts))
            if platform == "wecom":
                duplicates += max(0, voices - args.notices)
                missing = max(missing, args.notices - voices)
            lost += max(missing, unsent.get(f"群{i}", 0))
            slowest = max(slowest, earliest_last(PARTS[platform] * args.notices, windows[platform]))
        bound = slowest
        messages = sum(PARTS[p] * args.notices for p, _ in tokens)
        accepted = sum(len(f.messages) for f in fakes.values())
        refused = {p: f.refused for p, f in fakes.items()}
        faults = {p: sum(f.faults_fired.values()) for p, f in fakes.items()}
        per_platform = {p: earliest_last(PARTS[p] * args.notices, windows[p]) for p in PLATFORMS}
        print(
            f"robots={args.robots} notices={args.notices} deliveries={len(rows)} "
            f"messages={messages} accepted={accepted} states={states} claimed_again={again}"
        )
        print(
            f"limits (scale {args.scale:g}): WeCom 20/{60 * args.scale:g}s, DingTalk "
            f"20/{60 * args.scale:g}s, Feishu 5/{args.scale:g}s + 100/{60 * args.scale:g}s "
            f"per robot; refused_by_limits={refused} faults={faults} "
            f"workers={workers} tick={args.tick:g}s ticks={ticks}"
        )
        print(
            "bound per platform (earliest last message): "
            + ", ".join(f"{p} {s:.2f}s" for p, s in per_platform.items())
        )
        print(
            "measured per platform (latest first message; longest first-to-last): "
            + ", ".join(
                f"{p} {firsts.get(p, 0.0):.2f}s; {spans.get(p, 0.0):.2f}s" for p in PLATFORMS
            )
        )
        print(
            f"RESULT robots={args.robots} seconds={seconds:.2f} bound_s={bound:.2f} "
            f"ratio={seconds / bound if bound else float('inf'):.3f} lost={lost} "
            f"duplicates={duplicates}"
        )


if __name__ == "__main__":
    main()
