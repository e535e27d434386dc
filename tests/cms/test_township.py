"""Per-township settings: effective values, the settings and lexicon pages, share pages."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, Area, AreaKind, AuditLog, LexiconEntry, Role, Setting, User
from cms.services import areas, township
from cms.services import lexicon as lexicon_svc
from cms.services import outlets as outlet_svc
from cms.services.errors import NotFound, ValidationError
from cms.settings import Settings
from tests.cms.test_i18n import set_english
from tests.conftest import login


@pytest.fixture
def towns(session: Session) -> dict[str, Area]:
    """Two sibling townships with a village and a group."""
    a = areas.create_area(session, None, name="后箐乡", kind=AreaKind.TOWNSHIP, parent_id=None)
    b = areas.create_area(session, None, name="幸福镇", kind=AreaKind.TOWNSHIP, parent_id=None)
    va = areas.create_area(session, None, name="大箐村", kind=AreaKind.VILLAGE, parent_id=a.id)
    ga = areas.create_area(session, None, name="一组", kind=AreaKind.GROUP, parent_id=va.id)
    vb = areas.create_area(session, None, name="新寨村", kind=AreaKind.VILLAGE, parent_id=b.id)
    session.commit()
    return {"a": a, "b": b, "va": va, "ga": ga, "vb": vb}


@pytest.fixture
def admin_client(app: Any, make_user: Callable[..., User]) -> Any:
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    return client


# -- effective values -------------------------------------------------------------------


def test_values_fall_back_from_township_to_global_to_the_environment(
    session: Session, towns: dict[str, Area], settings: Settings
) -> None:
    group = towns["ga"]
    assert tree.township_of(group) == towns["a"]
    assert tree.township_of(None) is None
    assert tree.build_time(session, group, settings) == settings.build_time == "04:00"
    township.save(session, None, None, {tree.BUILD_TIME: "4:30"})
    assert tree.build_time(session, group, settings) == "04:30"  # global, normalised
    township.save(session, None, towns["a"], {tree.BUILD_TIME: "03:15"})
    assert tree.build_time(session, group, settings) == "03:15"  # the group's township
    assert tree.build_time(session, towns["vb"], settings) == "04:30"  # the other one
    resolved = tree.Values(session, [tree.BUILD_TIME]).resolve(
        tree.BUILD_TIME, towns["va"], settings.build_time
    )
    assert resolved.source == towns["a"] and resolved.inherited_by(towns["va"])
    assert not resolved.inherited_by(towns["a"])
    # An empty value removes the township's own: it inherits again.
    changed = township.save(session, None, towns["a"], {tree.BUILD_TIME: ""})
    assert changed == {tree.BUILD_TIME: None}
    assert tree.build_time(session, group, settings) == "04:30"
    township.save(session, None, None, {tree.BUILD_TIME: ""})
    assert session.scalar(select(Setting).where(Setting.key == tree.BUILD_TIME)) is None
    assert tree.build_time(session, group, settings) == "04:00"


def test_voice_slots_engine_and_office_per_township(
    session: Session, towns: dict[str, Area], settings: Settings, make_user: Callable[..., User]
) -> None:
    township.save(
        session,
        None,
        towns["a"],
        {
            tree.DEFAULT_VOICE: "zh-CN-YunjianNeural",
            tree.DEFAULT_SLOTS: "06:30 5，18:00",
            tree.TTS_ENGINE: "edge",
            tree.OFFICE_NAME: "后箐乡人民政府",
        },
    )
    assert tree.default_voice(session, towns["va"]) == "zh-CN-YunjianNeural"
    assert tree.default_voice(session, towns["vb"]) == "zh-CN-XiaoxiaoNeural"
    assert tree.default_slots(session, towns["va"]) == "06:30 5, 18:00 10"
    assert tree.default_slots(session, towns["vb"]) == tree.FALLBACK_SLOTS
    assert tree.engine_mode(session, towns["ga"], settings.tts_engine) == "edge"
    assert tree.engine_mode(session, towns["vb"], settings.tts_engine) == settings.tts_engine
    assert township.office_name(session, towns["ga"]) == ("{office}", {"office": "后箐乡人民政府"})
    assert township.office_name(session, towns["vb"]) == (township.OFFICE, {"area": "幸福镇"})
    # A new outlet left without slots gets its township's default slots.
    outlet = outlet_svc.save_outlet(
        session, make_user(Role.ADMIN), None, name="大箐喇叭", kind="loudspeaker",
        area_id=towns["va"].id, slots="",
    )  # fmt: skip
    assert [(f"{s.at:%H:%M}", s.minutes) for s in outlet.slots] == [("06:30", 5), ("18:00", 10)]
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "setting.update"))
    assert entry is not None and entry.detail["area_id"] == towns["a"].id


def test_bad_values_are_refused_together_and_nothing_is_saved(
    session: Session, towns: dict[str, Area]
) -> None:
    with pytest.raises(ValidationError) as caught:
        township.save(
            session,
            None,
            towns["a"],
            {
                tree.BUILD_TIME: "25:00",
                tree.DEFAULT_SLOTS: "7点半",
                tree.DEFAULT_VOICE: "zh-CN-Nobody",
                tree.TTS_ENGINE: "loud",
                tree.OFFICE_NAME: "很" * 17,
            },
        )
    assert set(caught.value.errors) == set(township.KEYS)
    with pytest.raises(ValidationError) as neural:
        township.save(session, None, None, {tree.TTS_ENGINE: "neural"}, engines=("auto",))
    assert set(neural.value.errors) == {tree.TTS_ENGINE}
    assert session.scalar(select(Setting)) is None
    with pytest.raises(NotFound):
        township.settable_area(session, towns["va"].id)  # a village follows its township
    with pytest.raises(ValidationError):
        township.require_township(session, "999")
    with pytest.raises(ValidationError):
        township.require_township(session, "abc")
    assert township.require_township(session, "") is None


def test_the_lexicon_merges_county_and_township_entries(
    session: Session, towns: dict[str, Area]
) -> None:
    lexicon_svc.save_entry(session, None, written="长街", spoken="常街")
    lexicon_svc.save_entry(session, None, written="重阳", spoken="虫阳")
    lexicon_svc.save_entry(session, None, written="长街", spoken="场街", area=towns["a"])
    assert tree.lexicon_pairs(session, towns["ga"]) == [("重阳", "虫阳"), ("长街", "场街")]
    assert tree.lexicon_pairs(session, towns["vb"]) == [("重阳", "虫阳"), ("长街", "常街")]
    assert tree.lexicon_pairs(session, None) == [("重阳", "虫阳"), ("长街", "常街")]
    assert [e.written for e in lexicon_svc.all_entries(session, towns["a"])] == ["长街"]
    assert len(lexicon_svc.all_entries(session)) == 2
    # Saving the same written form again in the township changes its own entry only.
    lexicon_svc.save_entry(session, None, written="长街", spoken="厂街", area=towns["a"])
    assert session.scalar(select(LexiconEntry.spoken).where(LexiconEntry.area_id.is_(None), LexiconEntry.written == "长街")) == "常街"  # fmt: skip


def test_an_announcement_uses_its_targets_common_area(
    session: Session, towns: dict[str, Area], make_announcement: Callable[..., Announcement]
) -> None:
    one = make_announcement("approved", area_ids=[towns["va"].id, towns["ga"].id])
    both = make_announcement("approved", area_ids=[towns["va"].id, towns["vb"].id])
    assert tree.revision_area(session, one.approved_revision) == towns["va"]
    assert tree.revision_area(session, both.approved_revision) is None  # no common area


# -- pages ----------------------------------------------------------------------------------


def test_share_page_shows_the_townships_office(
    client: Any, session: Session, towns: dict[str, Area], make_announcement: Callable[..., Any]
) -> None:
    in_a = make_announcement("approved", area_ids=[towns["va"].id])
    in_b = make_announcement("approved", area_ids=[towns["vb"].id])
    township.save(session, None, towns["a"], {tree.OFFICE_NAME: "后箐乡人民政府"})
    session.commit()
    text_a = client.get(f"/s/{in_a.share_token}").get_data(as_text=True)
    text_b = client.get(f"/s/{in_b.share_token}").get_data(as_text=True)
    assert "后箐乡人民政府" in text_a and "幸福镇" not in text_a
    assert "幸福镇宣传办" in text_b and "后箐乡" not in text_b


def test_settings_page_per_township_shows_inherited_values_and_saves(
    admin_client: Any, session: Session, towns: dict[str, Area]
) -> None:
    admin_client.post("/admin/settings", data={"build_time": "05:00", "allow_self_approval": "on"})
    page = admin_client.get(f"/admin/settings?area_id={towns['a'].id}").get_data(as_text=True)
    assert "后箐乡" in page and "幸福镇" in page  # the township selector
    assert "未设置，沿用全局设置：05:00" in page
    assert "未设置，使用系统默认：晓晓（女声，温暖）" in page  # a voice by its label
    assert "允许审核自己撰写的公告" not in page  # a global setting only
    response = admin_client.post(
        "/admin/settings",
        data={"area_id": towns["a"].id, "build_time": "03:00", "office_name": "后箐乡政府"},
    )
    assert response.status_code == 302 and f"area_id={towns['a'].id}" in response.location
    session.expire_all()
    assert tree.effective(session, tree.BUILD_TIME, towns["va"]) == "03:00"
    assert tree.effective(session, tree.BUILD_TIME, towns["vb"]) == "05:00"
    assert tree.effective(session, tree.OFFICE_NAME, towns["a"]) == "后箐乡政府"
    page = admin_client.get(f"/admin/settings?area_id={towns['a'].id}").get_data(as_text=True)
    assert 'name="build_time" value="03:00"' in page
    assert 'data-testid="inherited-build_time"' not in page
    assert 'data-testid="inherited-default_voice"' in page


def test_settings_page_bad_input_keeps_the_form(
    admin_client: Any, session: Session, towns: dict[str, Area]
) -> None:
    response = admin_client.post(
        "/admin/settings",
        data={"area_id": towns["a"].id, "build_time": "7点", "office_name": "乡政府"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "生成时间应为 HH:MM" in page
    assert 'value="7点"' in page and 'value="乡政府"' in page  # nothing typed is lost
    session.expire_all()
    assert session.scalar(select(Setting)) is None
    unknown = admin_client.post("/admin/settings", data={"area_id": "999", "build_time": "05:00"})
    assert unknown.status_code == 400
    text = unknown.get_data(as_text=True)
    assert "请选择存在的乡镇" in text and 'value="05:00"' in text
    assert session.scalar(select(Setting)) is None
    village = admin_client.get(f"/admin/settings?area_id={towns['va'].id}")
    assert village.status_code == 400 and "请选择存在的乡镇" in village.get_data(as_text=True)


def test_settings_page_in_english(
    admin_client: Any, session: Session, towns: dict[str, Area]
) -> None:
    set_english(admin_client)
    page = admin_client.get(f"/admin/settings?area_id={towns['a'].id}").get_data(as_text=True)
    assert "Daily build time" in page and "inherited" in page.lower()
    bad = admin_client.post("/admin/settings", data={"area_id": towns["a"].id, "build_time": "x"})
    assert bad.status_code == 400
    assert "Build time must be HH:MM" in html.unescape(bad.get_data(as_text=True))


def test_lexicon_page_per_township(
    app: Any, make_user: Callable[..., User], session: Session, towns: dict[str, Area]
) -> None:
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    client.post("/schedule/lexicon", data={"written": "长街", "spoken": "常街"})
    response = client.post(
        "/schedule/lexicon", data={"area_id": towns["a"].id, "written": "长街", "spoken": "场街"}
    )
    assert response.status_code == 302
    session.expire_all()
    assert tree.lexicon_pairs(session, towns["va"]) == [("长街", "场街")]
    assert tree.lexicon_pairs(session, towns["vb"]) == [("长街", "常街")]
    page = client.get(f"/schedule/lexicon?area_id={towns['a'].id}").get_data(as_text=True)
    assert "场街" in page and "已被本乡镇条目覆盖" in page
    county = client.get("/schedule/lexicon").get_data(as_text=True)
    assert "常街" in county and "场街" not in county
    bad = client.post(
        "/schedule/lexicon", data={"area_id": "999", "written": "重阳", "spoken": "虫阳"}
    )
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "请选择存在的乡镇" in text and 'value="重阳"' in text
    session.expire_all()
    assert session.scalar(select(LexiconEntry).where(LexiconEntry.written == "重阳")) is None


def test_the_editors_preview_uses_the_targets_township_lexicon(
    app: Any, make_user: Callable[..., User], session: Session, towns: dict[str, Area]
) -> None:
    session.add(LexiconEntry(written="长街", spoken="常街"))
    session.add(LexiconEntry(area_id=towns["a"].id, written="长街", spoken="场街"))
    session.commit()
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    fetch = {"X-Requested-With": "fetch"}

    def preview(area: Area) -> str:
        data = {"body": "长街今晚停水。", "area_ids": [str(area.id)]}
        response = client.post("/announcements/preview", data=data, headers=fetch)
        assert response.status_code == 200
        return response.get_data(as_text=True)

    assert "长街 = 场街" in preview(towns["ga"])
    assert "长街 = 常街" in preview(towns["vb"])


def test_migration_0008_keeps_the_admins_values_and_entries(tmp_path: Any) -> None:
    from sqlalchemy import text

    from cms.db import make_engine
    from cms.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO setting(key, value) VALUES ('allow_self_approval', 'true')"))
        conn.execute(
            text(
                "INSERT INTO lexicon_entry(written, spoken, note, created_at)"
                " VALUES ('长街', '常街', '', '2026-01-01 00:00:00')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT area_id, key, value FROM setting")).all() == [
            (None, "allow_self_approval", "true")
        ]
        assert conn.execute(text("SELECT area_id, written FROM lexicon_entry")).all() == [
            (None, "长街")
        ]
    engine.dispose()


def test_an_announcement_without_a_voice_gets_its_offices_default(
    app: Any, session: Session, towns: dict[str, Area], make_user: Callable[..., User]
) -> None:
    """An API client that leaves the voice out gets the township's default voice."""
    from datetime import timedelta

    from cms.services import announcements
    from cms.web import today

    township.save(session, None, towns["a"], {tree.DEFAULT_VOICE: "zh-CN-YunjianNeural"})
    session.commit()
    day = today(app.extensions["dalaba.settings"])
    data = {
        "title": "清运通知",
        "body": "本周六集中清运垃圾。",
        "area_ids": [towns["va"].id],
        "start_date": day.isoformat(),
        "end_date": (day + timedelta(days=3)).isoformat(),
        "to_loudspeaker": True,
    }
    mine = announcements.create(session, make_user(Role.EDITOR, area=towns["a"]), data, today=day)
    assert mine.current.voice == "zh-CN-YunjianNeural"
    other = make_user(Role.EDITOR, area=towns["b"])
    theirs = announcements.create(session, other, {**data, "area_ids": [towns["vb"].id]}, today=day)
    assert theirs.current.voice == "zh-CN-XiaoxiaoNeural"
    chosen = announcements.create(
        session,
        other,
        {**data, "area_ids": [towns["vb"].id], "voice": "zh-CN-YunxiNeural"},
        today=day,
    )
    assert chosen.current.voice == "zh-CN-YunxiNeural"


def test_the_voice_menu_names_the_townships_engine(
    app: Any, session: Session, towns: dict[str, Area], make_user: Callable[..., User]
) -> None:
    """The install speaks offline; one township chose the online voice: its editors are told."""
    township.save(session, None, towns["a"], {tree.TTS_ENGINE: "edge"})
    session.commit()
    pages = {}
    for key in ("a", "b"):
        client = app.test_client()
        login(client, make_user(Role.EDITOR, area=towns[key]))
        pages[key] = client.get("/announcements/new").get_data(as_text=True)
    assert 'data-engine="edge"' in pages["a"] and 'data-engine="offline"' not in pages["a"]
    assert 'data-engine="offline"' in pages["b"]
