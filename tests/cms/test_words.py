"""Words, not codes, on the pages people use: platform names, singular and plural English,
punctuation in the reader's language, and a dashboard whose on-air count and list agree."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cms.models import Area, ChatGroup, Role
from cms.services import breakin as breakin_svc
from tests.conftest import login


def _english(client: Any) -> None:
    client.post("/lang", data={"lang": "en", "next": "/"})


def test_chat_platforms_read_as_their_names(
    app: Any, session: Session, grid: dict[str, Area], make_user: Any
) -> None:
    session.add_all(
        [
            ChatGroup(platform="telegram", chat_id="-1001", title="村民群", area_id=grid["v1"].id),
            ChatGroup(platform="dingtalk", chat_id="dt:1", title="村干部群", area_id=grid["v2"].id),
        ]
    )
    session.commit()
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    html = client.get("/chats").get_data(as_text=True)
    assert ">Telegram</td>" in html and ">钉钉</td>" in html
    assert ">telegram</td>" not in html and ">dingtalk</td>" not in html
    _english(client)
    html = client.get("/chats").get_data(as_text=True)
    assert ">Telegram</td>" in html and ">DingTalk</td>" in html


def test_english_says_one_thing_in_the_singular_and_many_in_the_plural(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    village_loudspeaker: Any,
    make_user: Any,
    make_announcement: Any,
    settings: Any,
    today: date,
) -> None:
    ann = make_announcement(
        "approved", title="寒潮蓝色预警", priority="urgent", area_ids=[grid["v1"].id]
    )
    reviewer = make_user(Role.REVIEWER)
    breakin_svc.start(session, reviewer, ann, rule="approval", today=today, now=settings.now())
    session.commit()
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    login(client, admin)
    _english(client)
    breakins = client.get("/breakins/").get_data(as_text=True)
    assert 'data-label="Announcement"' in breakins and 'data-label="Announcements"' not in breakins
    outlet = client.get(f"/admin/outlets/{village_loudspeaker.id}").get_data(as_text=True)
    assert '<label>Area<select name="area_id">' in outlet
    voices = client.get("/admin/voices/").get_data(as_text=True)
    assert "speaker(s)" not in voices
    assert re.search(r"\b1 speaker\b(?!s)", voices) and re.search(r"\b\d\d+ speakers\b", voices)
    assert '">Topics</a>' in voices and '">Topic</a>' not in voices


def test_a_notice_for_part_of_a_village_is_marked_in_the_readers_punctuation(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    village_loudspeaker: Any,
    make_user: Any,
    make_announcement: Any,
    today: date,
) -> None:
    make_announcement(
        "approved",
        title="垃圾分类从我做起",
        area_ids=[grid["g1"].id],
        start_date=today.isoformat(),
        end_date=(today + timedelta(days=1)).isoformat(),
    )
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    assert "垃圾分类从我做起（一组）" in client.get("/").get_data(as_text=True)
    _english(client)
    html = client.get("/").get_data(as_text=True)
    assert "垃圾分类从我做起 (一组)" in html and "（一组）" not in html


def test_the_dashboards_on_air_count_is_the_number_of_notices_listed_on_air(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    village_loudspeaker: Any,
    make_user: Any,
    make_announcement: Any,
    today: date,
) -> None:
    # Played since yesterday, to be played until tomorrow: on air at any hour of today.
    running = make_announcement(
        "approved",
        title="秋季防火",
        area_ids=[grid["v1"].id],
        start_date=(today - timedelta(days=1)).isoformat(),
        end_date=(today + timedelta(days=1)).isoformat(),
    )
    # For the group chats only: goes out today, never "on air".
    chats_only = make_announcement(
        "approved",
        title="医保缴费提醒",
        area_ids=[grid["v1"].id],
        to_loudspeaker=False,
        start_date=today.isoformat(),
        end_date=today.isoformat(),
        chat_post_time="09:30",
    )
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    html = client.get("/").get_data(as_text=True)
    on_air = html[
        html.index('data-testid="on-air"') : html.index(
            "</section>", html.index('data-testid="on-air"')
        )
    ]
    assert "播出中 1 条" in html[: html.index('data-testid="on-air"')]
    assert "<h2>播出中 1 条</h2>" in on_air
    assert f'data-testid="going-{running.id}"' in on_air
    assert f'data-testid="going-{chats_only.id}"' not in on_air
    other = html[html.index('data-testid="going-other"') :]
    assert "今天的其他公告 1 条" in other and f'data-testid="going-{chats_only.id}"' in other
    _english(client)
    html = client.get("/").get_data(as_text=True)
    assert "<h2>1 on air</h2>" in html and "Other announcements today: 1" in html
