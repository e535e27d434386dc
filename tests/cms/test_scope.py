"""Offices see only their area: a county with two sibling townships, walked route by route.

Every route and API endpoint (from ``app.url_map``) is called by the admin, editor, reviewer
and operator of township A with the ids of township B's objects: each answers not found (or
the role's refusal) and changes nothing of B's; every page A's users can open names nothing
of B's; county users see both townships.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.routing import IntegerConverter

from cms.models import (
    Alert,
    Announcement,
    ApiToken,
    Area,
    AreaKind,
    AuditLog,
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    LexiconEntry,
    OutboxMessage,
    Outlet,
    Program,
    PublisherAccount,
    PublisherArticle,
    Role,
    Topic,
    User,
)
from cms.services import announcements, areas, chats, operators, outlets
from cms.services.errors import Message
from cms.services.scope import Scope
from cms.services.users import issue_api_token
from cms.tree import common_area_id
from cms.web.auth import PUBLIC, route_rule
from tests.conftest import login

B_MARK = "幸福"
"""Every name and title of township B contains this; none of A's or the county's does."""
B_LOGIN = "xingfu"
"""… and every user name of township B this."""
MISSING = 987654
LEXICON_WORD = "喇叭站"
"""Each township has its own reading of this word (B's names B)."""
STATES = ("draft", "in_review", "approved", "withdrawn")
ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.OPERATOR)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Any) -> Any:
    """Each test of this module on SQLite and on PostgreSQL (a private schema)."""
    if request.param == "postgresql":
        return settings.with_(database_url=request.getfixturevalue("postgres_schema"))
    return settings


@dataclass
class Town:
    area: Area
    villages: list[Area]
    users: dict[Role, User]
    tokens: dict[Role, str]
    outlet: Outlet
    outlet_link: str
    chat: ChatGroup
    anns: dict[str, Announcement]
    program: Program
    clip: Clip
    delivery: Delivery
    alert: Alert
    outbox: OutboxMessage
    article: PublisherArticle
    api_token_id: int
    lexicon_entry: LexiconEntry
    ids: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class County:
    area: Area
    a: Town
    b: Town
    users: dict[Role, User]
    tokens: dict[Role, str]


def _town(
    session: Session,
    county: Area,
    prefix: str,
    login_prefix: str,
    content: Callable[..., dict[str, Any]],
    make_user: Callable[..., User],
    today: date,
) -> Town:
    town = areas.create_area(
        session, None, name=f"{prefix}乡", kind=AreaKind.TOWNSHIP, parent_id=county.id
    )
    villages = [
        areas.create_area(
            session, None, name=f"{prefix}{n}村", kind=AreaKind.VILLAGE, parent_id=town.id
        )
        for n in ("上", "下")
    ]
    areas.create_area(
        session, None, name=f"{prefix}一组", kind=AreaKind.GROUP, parent_id=villages[0].id
    )
    session.commit()
    users = {
        role: make_user(role, username=f"{login_prefix}-{role.value}", area=town) for role in ROLES
    }
    for user in users.values():
        user.display_name = f"{prefix}{user.role.value}"
    tokens = {role: issue_api_token(session, None, u) for role, u in users.items()}
    outlet = outlets.save_outlet(
        session,
        users[Role.ADMIN],
        None,
        name=f"{prefix}喇叭",
        kind="loudspeaker",
        area_id=villages[0].id,
        slots="07:30 10",
    )
    outlet.operators = [users[Role.OPERATOR]]
    # Installed long ago, so that yesterday's program counts in the compliance view.
    outlet.created_at = datetime.now(UTC) - timedelta(days=30)
    link = operators.issue_outlet_token(session, users[Role.ADMIN], outlet)
    chat = chats.bind_chat(
        session,
        users[Role.ADMIN],
        platform="telegram",
        chat_id=f"-100{len(prefix)}{town.id}",
        area=villages[1],
        title=f"{prefix}群",
    )
    session.commit()
    editor, reviewer = users[Role.EDITOR], users[Role.REVIEWER]
    anns: dict[str, Announcement] = {}
    for state in STATES:
        ann = announcements.create(
            session,
            editor,
            content(title=f"{prefix}公告{state}", area_ids=[villages[0].id, villages[1].id]),
            today=today,
        )
        if state != "draft":
            announcements.submit(session, editor, ann)
        if state in {"approved", "withdrawn"}:
            announcements.approve(session, reviewer, ann)
        if state == "withdrawn":
            announcements.withdraw(session, editor, ann)
        anns[state] = ann
    session.flush()
    live = anns["approved"].approved
    program = Program(
        outlet=outlet,
        day=today - timedelta(days=1),
        slot=outlet.slots[0],
        state=JobState.FAILED,
        last_error="x",
    )
    clip = Clip(revision=live, profile=ClipProfile.LOUDSPEAKER, state=JobState.FAILED)
    delivery = Delivery(
        revision=live,
        chat_group=chat,
        due_at=datetime.now(UTC),
        state=DeliveryState.FAILED,
        last_error="x",
    )
    session.add_all([program, clip, delivery])
    session.flush()
    alert = Alert(
        kind="program_failed",
        message=Message("{outlet} 节目生成失败", {"outlet": outlet.name}).dumps(),
        day=today,
        object_type="program",
        object_id=program.id,
    )
    outbox = OutboxMessage(chat_group_id=chat.id, kind="text", text=f"{prefix}群消息")
    account = PublisherAccount(
        area_id=town.id,
        platform="wechat",
        credentials={"app_id": f"wx{town.id:016d}", "app_secret": "s"},
        office=f"{prefix}宣传办",
    )
    session.add_all([alert, outbox, account])
    session.flush()
    article = PublisherArticle(account=account, announcement_id=anns["approved"].id, revision=live)
    session.add(article)
    lexicon_entry = LexiconEntry(area_id=town.id, written=LEXICON_WORD, spoken=f"{prefix}读法")
    session.add(lexicon_entry)
    session.commit()
    api_token_id = session.scalar(
        select(ApiToken.id).where(ApiToken.user_id == users[Role.EDITOR].id)
    )
    assert api_token_id is not None
    return Town(
        area=town,
        villages=villages,
        users=users,
        tokens=tokens,
        outlet=outlet,
        outlet_link=link,
        chat=chat,
        anns=anns,
        program=program,
        clip=clip,
        delivery=delivery,
        alert=alert,
        outbox=outbox,
        article=article,
        api_token_id=api_token_id,
        lexicon_entry=lexicon_entry,
    )


@pytest.fixture
def county(
    session: Session,
    content: Callable[..., dict[str, Any]],
    make_user: Callable[..., User],
    today: date,
) -> County:
    top = areas.create_area(session, None, name="云县", kind=AreaKind.COUNTY, parent_id=None)
    session.commit()
    a = _town(session, top, "后箐", "houqing", content, make_user, today)
    b = _town(session, top, B_MARK, B_LOGIN, content, make_user, today)
    users = {
        role: make_user(role, username=f"county-{role.value}", area=top)
        for role in (Role.ADMIN, Role.EDITOR, Role.REVIEWER)
    }
    tokens = {role: issue_api_token(session, None, u) for role, u in users.items()}
    session.commit()
    return County(area=top, a=a, b=b, users=users, tokens=tokens)


def _b_values(b: Town, today: date) -> dict[str, list[str]]:
    """Values of B's objects for each URL parameter name."""
    return {
        "announcement_id": [str(a.id) for a in b.anns.values()],
        "campaign_id": [str(a.id) for a in b.anns.values()],  # B's rows are no campaign of A's
        "area_id": [str(b.area.id), str(b.villages[0].id)],
        "outlet_id": [str(b.outlet.id)],
        "user_id": [str(u.id) for u in b.users.values()],
        "chat_group_id": [str(b.chat.id)],
        "program_id": [str(b.program.id)],
        "clip_id": [str(b.clip.id)],
        "delivery_id": [str(b.delivery.id)],
        "alert_id": [str(b.alert.id)],
        "article_id": [str(b.article.id)],
        "entry_id": [str(b.lexicon_entry.id)],
        "number": ["1"],
        "day_text": ["today", today.isoformat()],
    }


def _urls(rule: Any, values: dict[str, list[str]], b: Town) -> Iterator[str]:
    """The rule's URL once per value of its object parameter (B's objects)."""
    names = list(rule._converters)
    if rule.endpoint == "schedule.audio":
        for kind, object_id in (
            ("program", b.program.id),
            ("clip", b.clip.id),
            ("outbox", b.outbox.id),
        ):
            yield f"/schedule/audio/{kind}/{object_id}"
        return
    if rule.endpoint == "publishing.publish" or rule.endpoint == "publishing.retry":
        action = rule.endpoint.split(".")[1]
        for ann_id in (b.anns["approved"].id, MISSING):
            yield f"/schedule/announcements/{ann_id}/wechat/{b.article.id}/{action}"
        return
    main = next((n for n in names if n in values and n not in {"number", "day_text"}), None)
    if main is None:
        return
    for value in values[main]:
        url = rule.rule
        for name, converter in rule._converters.items():
            fill = value if name == main else values.get(name, ["1"])[0]
            if not isinstance(converter, IntegerConverter) and name not in values:
                fill = "x"
            url = re.sub(rf"<(?:[^<>]+:)?{name}>", fill, url)
        yield url


def _snapshot(session: Session, b: Town) -> dict[str, Any]:
    """Everything of B's that a request could change."""
    session.rollback()  # end any read snapshot, then forget what was loaded: see the commits
    session.expire_all()
    ids = {
        "ann": [a.id for a in b.anns.values()],
        "user": [u.id for u in b.users.values()],
    }
    return {
        "anns": [
            (a.id, a.status, a.latest_revision_id, a.approved_revision_id, a.share_token)
            for a in session.scalars(select(Announcement).where(Announcement.id.in_(ids["ann"])))
        ],
        "areas": [
            (a.id, a.name)
            for a in session.scalars(select(Area).where(Area.path.startswith(b.area.path)))
        ],
        "users": [
            (u.id, u.role, u.active, u.area_id, u.display_name, u.session_version)
            for u in session.scalars(select(User).where(User.id.in_(ids["user"])))
        ],
        "operates": [
            (u.id, sorted(o.id for o in u.outlets))
            for u in session.scalars(select(User).where(User.id.in_(ids["user"])))
        ],
        "outlet": (b.outlet.name, b.outlet.active, b.outlet.area_id, len(b.outlet.operators)),
        "link": operators.active_token(session, b.outlet).id,  # type: ignore[union-attr]
        "chat": (b.chat.active, b.chat.area_id),
        "jobs": (b.program.state, b.clip.state, b.delivery.state, b.alert.resolved_at),
        "article": b.article.state,
        "lexicon": [
            (e.id, e.written, e.spoken)
            for e in session.scalars(select(LexiconEntry).where(LexiconEntry.area_id == b.area.id))
        ],
        "tokens": [
            (t.id, t.revoked_at)
            for t in session.scalars(select(ApiToken).where(ApiToken.user_id.in_(ids["user"])))
        ],
        "b_outlets": len(
            list(session.scalars(select(Outlet).where(Outlet.area_id == b.villages[0].id)))
        ),
    }


def _client(app: Any, user: User) -> Any:
    client = app.test_client()
    login(client, user)
    return client


def _open(client: Any, method: str, url: str, token: str, data: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if url.startswith("/api/") else {}
    if url.startswith("/api/") and method in {"POST", "PUT", "PATCH"}:
        return client.open(url, method=method, headers=headers, json=data or {})
    return client.open(url, method=method, headers=headers, data=data or {})


def _leaks(response: Any) -> bool:
    text = _text(response)
    return B_MARK in text or B_LOGIN in text


def _text(response: Any) -> str:
    if response.mimetype and (
        response.mimetype.startswith("text/") or response.mimetype.endswith("json")
    ):
        return response.get_data(as_text=True)
    return ""


# Routes whose objects are the install's, not an area's (topics, lexicon, settings) or whose
# access is a secret token (operator links, share pages): they are not scoped by area.
UNSCOPED = {"admin.topics", "admin.settings_page", "static"}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_township_users_cannot_open_or_change_the_neighbours_objects(
    app, session, county, role, today
):
    a, b = county.a, county.b
    user = a.users[role]
    client = _client(app, user)
    before = _snapshot(session, b)
    values = _b_values(b, today)
    problems = []
    with app.test_request_context():
        rules = [(r, route_rule(r.endpoint)) for r in app.url_map.iter_rules()]
    checked = 0
    for rule, allowed in rules:
        if allowed == PUBLIC or rule.endpoint in UNSCOPED:
            continue
        for url in _urls(rule, values, b):
            missing = re.sub(r"/\d+(?=/|$|\.mp3)", f"/{MISSING}", url, count=1)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                token = a.tokens[role]
                response = _open(client, method, url, token)
                status = response.status_code
                checked += 1
                if status >= 500:
                    problems.append(f"{method} {url}: {status}")
                    continue
                if _leaks(response):
                    problems.append(f"{method} {url}: shows township B")
                if status in {401, 403, 404}:
                    continue
                # Some forms answer a missing id with a message and a redirect: a neighbour's id
                # must get exactly that answer.
                same = _open(client, method, missing, token)
                if (status, response.headers.get("Location")) != (
                    same.status_code,
                    same.headers.get("Location"),
                ):
                    problems.append(f"{method} {url}: {status} (a missing id: {same.status_code})")
    assert checked > 60
    assert problems == []
    assert _snapshot(session, b) == before


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_township_pages_name_nothing_of_the_neighbour(app, session, county, role):
    a = county.a
    client = _client(app, a.users[role])
    own = {
        "announcement_id": str(a.anns["approved"].id),
        "outlet_id": str(a.outlet.id),
        "area_id": str(a.area.id),
        "number": "1",
        "day_text": "today",
    }
    with app.test_request_context():
        rules = [(r, route_rule(r.endpoint)) for r in app.url_map.iter_rules()]
    pages = 0
    problems = []
    for rule, allowed in rules:
        if "GET" not in rule.methods or allowed == PUBLIC or rule.endpoint in UNSCOPED:
            continue
        if role not in allowed:  # type: ignore[operator]
            continue
        if any(name not in own for name in rule._converters):
            continue
        url = rule.rule
        for name in rule._converters:
            url = re.sub(rf"<(?:[^<>]+:)?{name}>", own[name], url)
        for query in ("", "?status=draft", "?status=in_review", "?days=7"):
            response = _open(client, "GET", url + query, a.tokens[role])
            assert response.status_code < 500, url
            pages += 1
            if _leaks(response):
                problems.append(url + query)
    assert pages > 10
    assert problems == []
    # The lists do show A's own things.
    if role is not Role.OPERATOR:
        page = client.get("/announcements/").get_data(as_text=True)
        assert all(ann.current.title in page for ann in a.anns.values())
        api = _open(client, "GET", "/api/v1/announcements?per_page=100", a.tokens[role])
        assert {i["id"] for i in api.get_json()["items"]} == {x.id for x in a.anns.values()}
    outlets_page = client.get("/schedule/outlets").get_data(as_text=True)
    assert a.outlet.name in outlets_page


@pytest.mark.any_hour
def test_forms_refuse_the_neighbours_areas_users_and_rows(app, session, county, content, today):
    a, b = county.a, county.b
    before = _snapshot(session, b)
    admin = _client(app, a.users[Role.ADMIN])
    editor = _client(app, a.users[Role.EDITOR])
    b_village = b.villages[0].id
    data = content(area_ids=[b_village])
    response = editor.post("/announcements/new", data=data)
    assert response.status_code == 400
    api_data = {
        "title": "借邻乡的村",
        "body": "正文",
        "area_ids": [b_village],
        "channels": ["loudspeaker"],
        "start_date": today.isoformat(),
        "end_date": today.isoformat(),
    }
    api = _open(editor, "POST", "/api/v1/announcements", a.tokens[Role.EDITOR], api_data)
    assert api.status_code == 400
    assert list(api.get_json()["error"]["fields"]) == ["area_ids"]
    api_data["area_ids"] = [a.villages[0].id]
    assert (
        _open(editor, "POST", "/api/v1/announcements", a.tokens[Role.EDITOR], api_data).status_code
        == 201
    )
    own = a.anns["draft"]
    edit = editor.post(f"/announcements/{own.id}/edit", data=data)
    assert edit.status_code == 400
    patch = _open(
        editor,
        "PATCH",
        f"/api/v1/announcements/{own.id}",
        a.tokens[Role.EDITOR],
        {"area_ids": [b_village]},
    )
    assert patch.status_code == 400
    budget = editor.get(f"/schedule/budget?body=测试&area_ids={b_village}")
    assert budget.status_code == 400
    assert (
        admin.get(
            f"/api/v1/announcements?area_id={b_village}",
            headers={"Authorization": f"Bearer {a.tokens[Role.ADMIN]}"},
        ).status_code
        == 400
    )
    # Admin forms.
    assert (
        admin.post(
            "/admin/areas", data={"name": "新村", "kind": "village", "parent_id": b.area.id}
        ).status_code
        == 400
    )
    assert admin.post("/admin/areas", data={"name": "新乡", "kind": "township"}).status_code == 400
    api_area = _open(
        admin,
        "POST",
        "/api/v1/areas",
        a.tokens[Role.ADMIN],
        {"name": "新村", "kind": "village", "parent_id": b.area.id},
    )
    assert api_area.status_code == 400
    made = admin.post(
        "/admin/users",
        data={
            "username": "spy",
            "role": "editor",
            "password": "a-long-password",
            "area_id": b.area.id,
        },
    )
    assert made.status_code == 400
    assert session.scalar(select(User).where(User.username == "spy")) is None
    assert (
        admin.post(
            "/admin/outlets/new",
            data={
                "name": "新喇叭",
                "kind": "loudspeaker",
                "area_id": b_village,
                "slots": "07:30 10",
            },
        ).status_code
        == 400
    )
    assert (
        admin.post(
            "/operator/links", data={"outlet_id": b.outlet.id, "action": "revoke"}
        ).status_code
        == 404
    )
    assert admin.post("/chats/codes", data={"area_id": b_village}).status_code == 400
    assert (
        admin.post("/chats/link-codes", data={"user_id": b.users[Role.OPERATOR].id}).status_code
        == 400
    )
    robot = admin.post(
        "/chats/robots",
        data={
            "platform": "wecom",
            "webhook": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc",
            "area_id": b_village,
        },
    )
    assert robot.status_code == 400
    admin.post("/admin/tokens", data={"action": "revoke", "token_id": b.api_token_id})
    admin.post("/admin/tokens", data={"username": b.users[Role.EDITOR].username})
    # An A operator on an outlet form stays; a B operator given to A's outlet does not.
    admin.post(
        f"/admin/outlets/{a.outlet.id}",
        data={
            "name": a.outlet.name,
            "kind": "loudspeaker",
            "area_id": a.villages[0].id,
            "slots": "07:30 10",
            "active": "on",
            "operator_ids": [a.users[Role.OPERATOR].id, b.users[Role.OPERATOR].id],
        },
    )
    session.rollback()  # end any read snapshot, then forget what was loaded: see the commits
    session.expire_all()
    assert [u.id for u in a.outlet.operators] == [a.users[Role.OPERATOR].id]
    assert admin.post(
        "/admin/wechat",
        data={"area_id": b.area.id, "app_id": "wx0123456789abcdef", "app_secret": "x" * 32},
    ).status_code in {200, 400}
    assert _snapshot(session, b) == before
    assert (
        session.scalar(
            select(PublisherAccount.id).where(
                PublisherAccount.credentials["app_id"].as_string() == "wx0123456789abcdef"
            )
        )
        is None
    )


def test_a_township_admin_adds_users_only_in_the_township(app, session, county):
    a = county.a
    admin = _client(app, a.users[Role.ADMIN])
    response = admin.post(
        "/admin/users",
        data={"username": "newbie", "role": "editor", "password": "a-long-password"},
    )
    assert response.status_code == 302
    newbie = session.scalar(select(User).where(User.username == "newbie"))
    assert newbie is not None and newbie.area_id == a.area.id  # none given: the admin's own
    response = admin.post(
        "/admin/users",
        data={
            "username": "villager",
            "role": "operator",
            "password": "a-long-password",
            "area_id": a.villages[1].id,
        },
    )
    assert response.status_code == 302
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "newbie" in page and "villager" in page and "county-admin" not in page


@pytest.mark.any_hour
def test_county_users_see_both_townships(app, session, county, today):
    a, b = county.a, county.b
    reviewer = _client(app, county.users[Role.REVIEWER])
    queue = reviewer.get("/announcements/review").get_data(as_text=True)
    assert a.anns["in_review"].current.title in queue
    assert b.anns["in_review"].current.title in queue
    assert reviewer.post(f"/announcements/{b.anns['in_review'].id}/approve").status_code == 302
    session.rollback()  # end any read snapshot, then forget what was loaded: see the commits
    session.expire_all()
    assert b.anns["in_review"].status.value == "approved"
    admin = _client(app, county.users[Role.ADMIN])
    for url in (
        "/announcements/",
        "/schedule/outlets",
        "/schedule/",
        "/chats",
        "/operator/links",
        "/admin/users",
        "/admin/areas",
        "/admin/audit",
        "/compliance",
        "/schedule/outbox",
    ):
        page = admin.get(url).get_data(as_text=True)
        assert "后箐" in page and B_MARK in page, url
    listed = _open(admin, "GET", "/api/v1/announcements?per_page=100", county.tokens[Role.ADMIN])
    assert {i["id"] for i in listed.get_json()["items"]} == {
        x.id for t in (a, b) for x in t.anns.values()
    }
    for ann in b.anns.values():
        assert admin.get(f"/announcements/{ann.id}").status_code == 200
    # The county editor drafts for villages of both townships: the draft is the county's.
    editor = _client(app, county.users[Role.EDITOR])
    response = _open(
        editor,
        "POST",
        "/api/v1/announcements",
        county.tokens[Role.EDITOR],
        {
            "title": "全县森林防火",
            "body": "请各村做好森林防火。",
            "area_ids": [a.villages[0].id, b.villages[0].id],
            "channels": ["loudspeaker"],
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=3)).isoformat(),
        },
    )
    assert response.status_code == 201, response.get_json()
    session.rollback()  # a fresh read: the request committed in its own session
    session.expire_all()
    created = session.get(Announcement, response.get_json()["id"])
    assert created is not None and created.area_id == county.area.id
    shown = admin.get(f"/announcements/{created.id}").get_data(as_text=True)
    assert "所属单位" in shown and "云县" in shown
    # … which a township's staff do not open.
    town_editor = _client(app, a.users[Role.EDITOR])
    assert town_editor.get(f"/announcements/{created.id}").status_code == 404
    # Once approved it plays at A's outlet: A's dashboard names it there, without a link.
    session.rollback()  # a write from a fresh snapshot (the requests above committed)
    announcements.submit(session, county.users[Role.EDITOR], created)
    announcements.approve(session, county.users[Role.REVIEWER], created)
    session.commit()
    home = town_editor.get("/").get_data(as_text=True)
    assert "全县森林防火" in home
    assert f"/announcements/{created.id}" not in home


@pytest.mark.any_hour
def test_the_whole_install_and_the_owner_of_an_announcement(
    session, county, make_user, content, today
):
    a, b = county.a, county.b
    everyone = make_user(Role.EDITOR)  # no area: the whole install
    assert Scope.of(everyone).whole
    ann = announcements.create(
        session,
        everyone,
        content(area_ids=[a.villages[0].id, a.villages[1].id]),
        today=today,
    )
    assert ann.area_id == a.area.id  # the targets' common ancestor
    both = announcements.create(
        session,
        everyone,
        content(area_ids=[a.villages[0].id, b.villages[1].id]),
        today=today,
    )
    assert both.area_id == county.area.id
    assert common_area_id([]) is None
    town_editor = a.users[Role.EDITOR]
    assert announcements.get(session, ann.id, town_editor) is ann
    from cms.services.errors import NotFound, ValidationError

    with pytest.raises(NotFound):
        announcements.get(session, both.id, town_editor)
    with pytest.raises(NotFound):
        announcements.submit(session, town_editor, b.anns["draft"])
    with pytest.raises(ValidationError):
        announcements.update(
            session, town_editor, ann, content(area_ids=[b.villages[0].id]), today=today
        )
    # Audit rows of A's admin list A's and the county's doings on A, not B's.
    rows = session.scalars(select(AuditLog).where(Scope.of(a.users[Role.ADMIN]).audit())).all()
    assert rows and all(r.user_id not in {u.id for u in b.users.values()} for r in rows)


def test_a_county_is_only_the_top_of_the_tree(session, county):
    from cms.services.errors import ValidationError

    with pytest.raises(ValidationError) as exc:
        areas.create_area(session, None, name="另一县", kind="county", parent_id=county.a.area.id)
    assert "kind" in exc.value.errors
    again = areas.create_area(session, None, name="邻县", kind="county", parent_id=None)
    assert again.kind is AreaKind.COUNTY


def test_api_areas_are_the_users_subtree(app, county):
    a, b = county.a, county.b
    client = app.test_client()
    headers = {"Authorization": f"Bearer {a.tokens[Role.EDITOR]}"}
    listed = client.get("/api/v1/areas", headers=headers).get_json()["items"]
    assert {i["id"] for i in listed} == {a.area.id, *(v.id for v in a.villages)} | {
        i["id"] for i in listed if i["name"] == "后箐一组"
    }
    assert client.get(f"/api/v1/areas/{b.area.id}", headers=headers).status_code == 404
    assert json.dumps(listed, ensure_ascii=False).count(B_MARK) == 0


def test_an_area_with_users_or_announcements_is_not_deleted(app, session, county, make_user):
    a = county.a
    empty = areas.create_area(session, None, name="后箐新村", kind="village", parent_id=a.area.id)
    session.commit()
    make_user(Role.OPERATOR, username="newvillage", area=empty)
    admin = _client(app, a.users[Role.ADMIN])
    response = admin.post(f"/admin/areas/{empty.id}", data={"action": "delete"})
    assert response.status_code == 302
    session.rollback()
    session.expire_all()
    assert session.get(Area, empty.id) is not None
    page = admin.get("/admin/areas").get_data(as_text=True)
    assert "还有所属用户" in page


# Every id a form, query or JSON body carries, with the neighbour's value (and the text that
# makes a lexicon leak visible: B reads LEXICON_WORD as a phrase naming B).
PARAMETERS = (
    "area_id",
    "area_ids",
    "parent_id",
    "announcement_id",
    "outlet_id",
    "operator_ids",
    "user_id",
    "username",
    "token_id",
    "entry_id",
    "account_id",
    "chat_group_id",
    "township",
)
# Routes whose request ends the walking user's own session.
SELF_ENDING = {"auth.logout", "auth.set_language"}


def _b_parameters(b: Town) -> dict[str, str]:
    return {
        "area_id": str(b.villages[0].id),
        "area_ids": str(b.villages[0].id),
        "parent_id": str(b.area.id),
        "announcement_id": str(b.anns["approved"].id),
        "outlet_id": str(b.outlet.id),
        "operator_ids": str(b.users[Role.OPERATOR].id),
        "user_id": str(b.users[Role.OPERATOR].id),
        "username": b.users[Role.EDITOR].username,
        "token_id": str(b.api_token_id),
        "entry_id": str(b.lexicon_entry.id),
        "account_id": str(b.article.account_id),
        "chat_group_id": str(b.chat.id),
        "township": str(b.area.id),
    }


def _a_path_values(a: Town, spare: User) -> dict[str, str]:
    """A's own objects for the path, so that each route reaches its parameters."""
    return {
        "announcement_id": str(a.anns["draft"].id),
        "campaign_id": str(a.anns["approved"].id),
        "area_id": str(a.villages[1].id),
        "outlet_id": str(a.outlet.id),
        "user_id": str(spare.id),
        "chat_group_id": str(a.chat.id),
        "program_id": str(a.program.id),
        "clip_id": str(a.clip.id),
        "delivery_id": str(a.delivery.id),
        "alert_id": str(a.alert.id),
        "article_id": str(a.article.id),
        "entry_id": str(a.lexicon_entry.id),
        "number": "1",
        "day_text": "today",
    }


def _send(client: Any, method: str, url: str, token: str, params: dict[str, str]) -> Any:
    """``params`` as the route would take them: query (GET), form, or JSON under /api/."""
    base = {"body": f"请到{LEXICON_WORD}集合。", "spoken_text": f"请到{LEXICON_WORD}集合。"}
    if url.startswith("/api/"):
        headers = {"Authorization": f"Bearer {token}"}
        if method in {"POST", "PUT", "PATCH"}:
            body: dict[str, Any] = {}
            for name, value in params.items():
                body[name] = [int(value)] if name.endswith("_ids") else _number(value)
            return client.open(url, method=method, headers=headers, json=body)
        return client.open(url, method=method, headers=headers, query_string=params)
    if method == "GET":
        return client.open(url, method=method, query_string={**base, **params})
    from audio.voices import VOICES

    form = {**base, "voice": next(iter(VOICES)), "rate": "0", **params}
    return client.open(url, method=method, data=form)


def _number(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _answer(response: Any, value: str, replacement: str) -> tuple[int, str | None]:
    location = response.headers.get("Location")
    if location is not None:
        location = re.sub(rf"(?<![\w.]){re.escape(value)}(?!\w)", replacement, location)
    return response.status_code, location


def _differs(response: Any, same: Any, value: str, missing: str) -> bool:
    """Whether the answer to B's id differs from the answer to a missing id (an id echoed
    into a redirect counts as the same answer)."""
    expected = _answer(same, "", "")
    return _answer(response, "", "") != expected and _answer(response, value, missing) != expected


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_the_neighbours_ids_in_forms_queries_and_json_change_and_show_nothing(
    app, session, county, make_user, role
):
    """Each route, with A's own objects in its path, gets each id parameter set to one of B's:
    it answers as it does to an id that does not exist, shows nothing of B's, changes nothing
    of B's."""
    a, b = county.a, county.b
    spare = make_user(Role.EDITOR, username="houqing-spare", area=a.area)
    user = a.users[role]
    client = _client(app, user)
    token = a.tokens[role]
    before = _snapshot(session, b)
    own = _a_path_values(a, spare)
    theirs = _b_parameters(b)
    with app.test_request_context():
        rules = [(r, route_rule(r.endpoint)) for r in app.url_map.iter_rules()]
    problems = []
    checked = 0
    for rule, allowed in rules:
        if allowed == PUBLIC or rule.endpoint in UNSCOPED | SELF_ENDING:
            continue
        if role not in allowed:  # type: ignore[operator]
            continue
        if any(name not in own for name in rule._converters):
            continue
        url = rule.rule
        for name in rule._converters:
            url = re.sub(rf"<(?:[^<>]+:)?{name}>", own[name], url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS", "DELETE"}):
            for name in PARAMETERS:
                value = theirs[name]
                missing = "nobody-here" if name == "username" else str(MISSING)
                response = _send(client, method, url, token, {name: value})
                same = _send(client, method, url, token, {name: missing})
                checked += 1
                where = f"{method} {url} {name}={value}"
                if response.status_code >= 500:
                    problems.append(f"{where}: {response.status_code}")
                    continue
                if B_MARK in _text(response) or B_LOGIN in _text(response).replace(value, ""):
                    problems.append(f"{where}: shows township B")  # beyond the value echoed
                if _differs(response, same, value, missing):
                    # The first request may have changed A's object (a submit): ask again.
                    response = _send(client, method, url, token, {name: value})
                    if _differs(response, same, value, missing):
                        problems.append(
                            f"{where}: {response.status_code} (a missing id: "
                            f"{same.status_code} {same.headers.get('Location')})"
                        )
    assert checked > 100
    assert problems == []
    assert _snapshot(session, b) == before


def test_topics_are_the_whole_installs_and_a_rename_keeps_them_active(
    app, session, county, make_user, topic
):
    """Topics are install-wide: a township's admin sees them and changes nothing; the install's
    admin renames one without the active box (an API client, an old form) and it stays active."""
    town_admin = _client(app, county.a.users[Role.ADMIN])
    page = town_admin.get("/admin/topics")
    assert page.status_code == 200
    assert topic.name in page.get_data(as_text=True)
    assert 'name="topic_id"' not in page.get_data(as_text=True)
    for data in ({"topic_id": topic.id, "name": "改名"}, {"name": "新主题"}):
        assert town_admin.post("/admin/topics", data=data).status_code == 403
    county_admin = _client(app, county.users[Role.ADMIN])  # an office too: the county's
    assert county_admin.post("/admin/topics", data={"name": "新主题"}).status_code == 403
    session.rollback()
    session.expire_all()
    assert session.get(Topic, topic.id).name != "改名"
    assert session.scalar(select(Topic).where(Topic.name == "新主题")) is None
    whole = _client(app, make_user(Role.ADMIN, username="it-admin"))
    assert 'name="topic_id"' in whole.get("/admin/topics").get_data(as_text=True)
    whole.post("/admin/topics", data={"topic_id": topic.id, "name": "改名"})
    session.rollback()
    session.expire_all()
    renamed = session.get(Topic, topic.id)
    assert (renamed.name, renamed.active) == ("改名", True)
    whole.post("/admin/topics", data={"topic_id": topic.id, "name": "改名", "active_shown": "1"})
    session.rollback()
    session.expire_all()
    assert session.get(Topic, topic.id).active is False  # the box shown and left empty
    actions = session.scalars(select(AuditLog.action).where(AuditLog.action == "topic.save"))
    assert len(list(actions)) >= 2
