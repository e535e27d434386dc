"""No input gives a 500: every route, as every role, with hostile path values, forms, headers.

The walker follows the permission walker (tests/cms/test_permissions.py): it takes every rule
of ``app.url_map`` and fills one parameter at a time with a hostile value while the others
stay valid (real ids, a real outlet link, today), so that each value reaches the code that
reads it. POST routes also get forms whose fields all carry hostile values, download routes
absurd Range headers, and the JSON API huge ids in bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.orm import Session

from cms.models import Alert, Role
from cms.services import operators as operator_svc
from cms.services.outlets import save_outlet
from cms.services.users import issue_api_token
from cms.web.auth import PUBLIC, route_rule
from tests.conftest import login
from tests.operators.conftest import encode_tone, write_program

TOO_BIG = [
    "9223372036854775808",  # 2**63: what SQLite's driver cannot bind (OverflowError)
    "9223372036854775807",
    "2147483648",  # 2**31: beyond PostgreSQL's INTEGER
    "18446744073709551616",
    "9" * 5000,  # beyond Python's int() digit limit
]
NOT_ASCII_NUMBERS = ["²", "١٢", "１２", "1_0", " 7", "0x1f", "1e3", "٠"]
HOSTILE_INTS = [*TOO_BIG, *NOT_ASCII_NUMBERS, "-1", "0", "-9223372036854775809"]
FAR_DATES = ["9999-12-31", "0001-01-01", "1999-12-31", "2101-01-01", "2026-02-30", "٢٠٢٦-١١-٢٨"]
HOSTILE_STRINGS = [
    *FAR_DATES,
    "20261128",
    "2026-W48-6",
    "²",
    "x" * 3000,
    "\x00",
    "\r\nX-Injected: 1",
    "..",
    "\ufffe\u202e",
    "2400",
    "²³⁰⁰",
    *TOO_BIG[:2],
]
FORM_FIELDS = [
    "area_id",
    "area_ids",
    "parent_id",
    "topic_id",
    "token_id",
    "user_id",
    "outlet_id",
    "operator_ids",
    "announcement_id",
    "repeats",
    "rate",
    "loop_minutes",
    "start_date",
    "end_date",
    "chat_post_time",
    "slots",
    "name",
    "title",
    "body",
    "spoken_text",
    "comment",
    "kind",
    "role",
    "username",
    "display_name",
    "password",
    "label",
    "written",
    "spoken",
    "note",
    "text",
    "lang",
    "next",
    "priority",
    "voice",
]
FORM_VALUES = [
    TOO_BIG[0],
    "²",
    "١٢",
    *TOO_BIG[1:],
    "-1",
    *FAR_DATES[:2],
    "\r\n/\\evil",
    "\ufffe\u202e\x00",
]
FORM_ACTIONS = ["", "delete", "revoke", "issue", "remove", "submit"]
QUERY_ARGS = ["page", "days", "topic", "area", "new", "old", "sample", "text", "dl", "status", "q"]
ABSURD_RANGES = [
    "bytes=0-" + "9" * 5000,
    "bytes=" + "9" * 5000 + "-",
    "bytes=-" + "9" * 5000,
    "bytes=9223372036854775808-9223372036854775809",
    "bytes=0-18446744073709551616",
    "bytes=٠-١٠",
    "bytes=²-",
    "bytes=" + ",".join(["0-1"] * 500),
]
ABSURD_DATES = [
    "Sat, 01 Jan 99999 00:00:00 GMT",
    "Mon, 32 Feb 2026 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 +9999",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Mon, 01 Jan 0001 00:00:00 +2359",
    "9" * 5000,
]
DOWNLOADS = {
    "operators.today_mp3",
    "operators.program_mp3",
    "operators.loop_current",
    "operators.loop_mp3",
    "operators.day_zip",
    "operators.playlist",
    "operators.feed",
    "operators.my_program_mp3",
    "schedule.audio",
}
ROLES = [None, *Role]


@pytest.fixture
def world(
    app: Any,
    session: Session,
    settings: Any,
    make_user: Any,
    make_announcement: Any,
    tmp_path: Path,
) -> dict[str, Any]:
    """Users of every role with API tokens, announcements, an outlet with a built program."""
    from cms.models import Program

    users = {role: make_user(role) for role in Role}
    for user in users.values():
        user.api_token = issue_api_token(session, None, user)
    review = make_announcement("in_review")
    make_announcement("approved")
    outlet = save_outlet(
        session,
        users[Role.ADMIN],
        None,
        name="石桥村大喇叭",
        kind="loudspeaker",
        area_id=review.current.areas[0].id,
        slots="07:30",
    )
    outlet.operators = [users[Role.OPERATOR]]
    session.flush()
    today = settings.today()
    path = settings.data_dir / "programs" / today.isoformat() / f"{outlet.id}-0730.mp3"
    write_program(path, encode_tone(tmp_path / "tone.mp3", 1.0, 440).read_bytes())
    program = Program(
        outlet_id=outlet.id,
        day=today,
        slot_id=outlet.slots[0].id,
        state="done",
        path=str(path),
        duration=1.0,
        manifest={"announcements": [{"title": "垃圾分类"}]},
    )
    session.add(program)
    token = operator_svc.issue_outlet_token(session, None, outlet)
    session.commit()
    return {
        "users": users,
        "token": token,
        "ids": {"outlet_id": outlet.id, "program_id": program.id},
        "today": today.isoformat(),
    }


def _valid(name: str, world: dict[str, Any]) -> str:
    """A value of parameter ``name`` that reaches the code behind it."""
    if name == "token":
        return world["token"]
    if name in {"day", "day_text"}:
        return world["today"]
    if name == "slot":
        return "0730"
    if name == "kind":
        return "program"
    if name == "key":
        return "0" * 64
    if name == "filename":
        return "app.css"
    return str(world["ids"].get(name, 1))


def _hostile(converter: Any) -> list[str]:
    return HOSTILE_INTS if hasattr(converter, "num_convert") else HOSTILE_STRINGS


def _url(rule: Any, values: dict[str, str]) -> str:
    url = rule.rule
    for name in rule.arguments:
        value = quote(values[name], safe="")
        url = re.sub(rf"<(?:[^:<>]+:)?{name}>", lambda _m, v=value: v, url)
    return url


def _cases(app: Any, world: dict[str, Any]) -> Iterator[tuple[Any, str, str, bool]]:
    """(rule, method, url, valid): the valid URL, then one parameter hostile at a time."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in {"static", "auth.logout"}:
            continue
        methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
        valid = {name: _valid(name, world) for name in rule.arguments}
        for method in methods:
            yield rule, method, _url(rule, valid), True
            for name, converter in rule._converters.items():
                for value in _hostile(converter):
                    yield rule, method, _url(rule, {**valid, name: value}), False


def _client(app: Any, world: dict[str, Any], role: Role | None) -> tuple[Any, dict[str, str]]:
    # A server error becomes a 500 answer, as in production, so that one run lists them all.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    headers: dict[str, str] = {}
    if role is not None:
        login(client, world["users"][role])
        headers["Authorization"] = f"Bearer {world['users'][role].api_token}"
    return client, headers


def _allowed(app: Any, endpoint: str, role: Role | None) -> bool:
    with app.test_request_context():
        allowed = route_rule(endpoint)
    return allowed == PUBLIC or (role is not None and role in allowed)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value if r else "anonymous")
def test_no_route_answers_5xx_to_hostile_input(app: Any, world: dict[str, Any], role: Any) -> None:
    client, headers = _client(app, world, role)
    problems: list[str] = []

    def check(method: str, url: str, note: str = "", **kw: Any) -> None:
        response = client.open(url, method=method, headers={**headers, **kw.pop("extra", {})}, **kw)
        if response.status_code >= 500:
            shown = url if len(url) < 100 else url[:100] + "…"
            problems.append(f"{method} {shown} {note[:60]}: {response.status_code}")

    for rule, method, url, valid in _cases(app, world):
        check(method, url)
        if not valid or not _allowed(app, rule.endpoint, role):
            continue
        if method == "GET":
            for value in [*TOO_BIG[:2], "²", "١٢", "-1", "9999-12-31", "\x00"]:
                query = {name: value for name in QUERY_ARGS}
                check(method, url, f"query={value!r}", query_string=query)
            if rule.endpoint in DOWNLOADS:
                for header in ABSURD_RANGES:
                    check(method, url, f"Range: {header}", extra={"Range": header})
                    check(method, url, f"If-Range: {header}", extra={"If-Range": header})
                for when in ABSURD_DATES:
                    for name in ("If-Modified-Since", "If-Range"):
                        check(
                            method, url, f"{name}: {when}", extra={name: when, "Range": "bytes=0-1"}
                        )
        elif method == "POST" and not url.startswith("/api/"):
            if rule.endpoint == "schedule.lexicon_sample" and role is not Role.ADMIN:
                continue  # it synthesises speech, slowly: one role is enough
            for value in FORM_VALUES:
                # The actions pick different branches; the first values are the worst ones.
                for action in FORM_ACTIONS if value in FORM_VALUES[:3] else [""]:
                    form = {name: value for name in FORM_FIELDS}
                    form.update(action=action, allow_self_approval="1")
                    check(method, url, f"form={value!r} action={action}", data=form)
    assert not problems, "\n".join(problems)


API_BODIES: list[dict[str, Any]] = [
    {"topic_id": 2**63, "area_ids": [2**63], "parent_id": 2**64, "name": "x", "kind": "village"},
    {"area_ids": [2**31, -(2**63)], "repeats": 2**70, "rate": -(2**70)},
    {"start_date": "9999-12-31", "end_date": "9999-12-31"},
    {"start_date": "0001-01-01", "end_date": "0001-01-01"},
    {"title": "\ufffe", "comment": "\u202e", "reason": "\x00"},
]


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_api_refuses_huge_ids_in_bodies(
    app: Any, world: dict[str, Any], content: Any, role: Role
) -> None:
    client, headers = _client(app, world, role)
    problems = []
    base = {k: v for k, v in content().items() if k not in {"to_loudspeaker", "to_chats"}}
    base["channels"] = ["loudspeaker", "chats"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        url = _url(rule, {name: "1" for name in rule.arguments})
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH"}):
            for extra in API_BODIES:
                body = json.dumps({**base, **extra}, default=str)
                response = client.open(
                    url, method=method, data=body, content_type="application/json", headers=headers
                )
                if response.status_code >= 500:
                    problems.append(f"{method} {url} {extra}: {response.status_code}")
                elif response.status_code == 400:
                    assert response.json["error"]["code"] in {"invalid_input", "bad_request"}
    assert not problems, "\n".join(problems)


# --- What the hostile values get -------------------------------------------------------------


def test_text_helpers_take_ascii_digits_only() -> None:
    from cms.services.text import MAX_ID, parse_date, parse_id, parse_int

    assert parse_int("42") == 42 and parse_int(" -7 ") == -7 and parse_int(12) == 12
    for raw in ["²", "١٢", "１２", "1_0", "0x1f", "1e3", "", "-", "9" * 19, "9" * 5000, True, 1.0]:
        assert parse_int(raw) is None, raw
    assert parse_id("1") == 1 and parse_id(str(MAX_ID)) == MAX_ID
    for raw in ["0", "-1", str(MAX_ID + 1), "9223372036854775808", 2**63]:
        assert parse_id(raw) is None, raw
    assert parse_date("2026-11-28") == date(2026, 11, 28)
    for raw in ["20261128", "2026-W48-6", "٢٠٢٦-١١-٢٨", "2026-02-30", "2026-11-28T00:00"]:
        assert parse_date(raw) is None, raw


def test_huge_and_non_ascii_ids_in_paths_are_not_found(app: Any, world: dict[str, Any]) -> None:
    client, headers = _client(app, world, Role.ADMIN)
    for value in [*TOO_BIG, "²", "١", "１"]:
        v = quote(value, safe="")
        assert client.get(f"/announcements/{v}").status_code == 404, value
        assert client.post(f"/admin/users/{v}").status_code == 404, value
        assert client.get(f"/schedule/outlets/{v}/calendar").status_code == 404, value
        api = client.get(f"/api/v1/announcements/{v}", headers=headers)
        assert api.status_code == 404 and api.json["error"]["code"] == "not_found", value
    assert client.get("/announcements/1").status_code == 200


def test_huge_and_unicode_ids_in_forms_are_refused_clearly(
    app: Any, world: dict[str, Any], session: Session
) -> None:
    from cms.models import Area

    client, _headers = _client(app, world, Role.ADMIN)
    huge = "9223372036854775808"
    assert client.post("/admin/topics", data={"topic_id": huge, "name": "x"}).status_code == 404
    revoke = client.post("/admin/tokens", data={"action": "revoke", "token_id": huge})
    assert revoke.status_code == 200 and "令牌不存在" in revoke.get_data(as_text=True)
    areas_before = session.query(Area).count()
    for parent in [huge, "²", "١"]:
        page = client.post(
            "/admin/areas", data={"name": "新村", "kind": "village", "parent_id": parent}
        )
        assert page.status_code == 400 and "请选择存在的区域" in page.get_data(as_text=True)
    assert session.query(Area).count() == areas_before
    code = client.post("/chats/codes", data={"area_id": huge})
    assert code.status_code == 400 and "请选择区域" in code.get_data(as_text=True)
    link = client.post("/operator/links", data={"outlet_id": "²", "action": "issue"})
    assert link.status_code == 404


def test_announcement_form_names_each_bad_number_and_date(
    app: Any, world: dict[str, Any], content: Any
) -> None:
    client, _headers = _client(app, world, Role.EDITOR)
    data = {**content(), "topic_id": "9223372036854775808", "repeats": "²", "rate": "١"}
    data.update(area_ids=["99999999999999999999"], start_date="9999-12-31", end_date="9999-12-31")
    page = client.post("/announcements/new", data=data).get_data(as_text=True)
    assert "主题无效" in page
    assert "区域编号“99999999999999999999”无效" in page
    assert "重复次数应为整数" in page and "语速应为整数" in page
    assert "开始日期应在 2000-01-01 到 2100-12-31 之间" in page


def test_far_dates_are_not_found_or_refused(app: Any, world: dict[str, Any]) -> None:
    client, _headers = _client(app, world, Role.ADMIN)
    outlet = world["ids"]["outlet_id"]
    for day in ["9999-12-31", "0001-01-01", "1999-12-31", "2101-01-01", "٢٠٢٦-١١-٢٨", "20261128"]:
        assert client.get(f"/schedule/outlets/{outlet}/{quote(day)}").status_code == 404, day
        assert client.get(f"/schedule/outlets/{outlet}/{quote(day)}/runsheet").status_code == 404
        assert client.get(f"/o/{world['token']}/{quote(day)}.m3u").status_code == 404, day
        budget = client.get("/schedule/budget", query_string={"start_date": day, "body": "x"})
        assert budget.status_code == 400 and "start_date" in budget.json["errors"], day
    assert client.get(f"/schedule/outlets/{outlet}/2100-12-31").status_code == 200
    assert client.get(f"/schedule/outlets/{outlet}/{world['today']}").status_code == 200


def test_absurd_ranges_are_416_and_unicode_digits_are_not_positions(
    app: Any, world: dict[str, Any]
) -> None:
    client = app.test_client()  # only the link token is needed
    url = f"/o/{world['token']}/{world['today']}/0730.mp3"
    size = len(client.get(url).data)
    for header in ABSURD_RANGES[:5]:
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["Content-Range"] == f"bytes */{size}"
    for header in ["bytes=٠-١٠", "bytes=²-"]:
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 200 and len(response.data) == size, header
    assert client.get(url, headers={"Range": "bytes=0-9"}).status_code == 206


@pytest.mark.parametrize(
    "target",
    [
        "/\r\nSet-Cookie: x=1",
        "/%0d%0a",
        "/\t/evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "//evil.example",
        "https://evil.example/",
        "/\x00",
        "/\u202e",
    ],
)
def test_next_with_control_characters_or_backslashes_is_ignored(
    app: Any, world: dict[str, Any], target: str
) -> None:
    from cms.web.auth import local_url
    from tests.conftest import PASSWORD

    if "%" not in target:
        assert local_url(target) is None
    client = app.test_client()
    user = world["users"][Role.ADMIN]
    login_page = client.post(
        "/login",
        query_string={"next": target},
        data={"username": user.username, "password": PASSWORD},
    )
    assert login_page.status_code == 302
    assert login_page.headers["Location"] in {"/", "/%0d%0a"}
    lang = client.post("/lang", data={"lang": "en", "next": target})
    assert lang.status_code == 302 and lang.headers["Location"] in {"/", "/%0d%0a"}
    with app.extensions["dalaba.sessions"].begin() as session:
        alert = Alert(kind="test", message="测试提醒", object_type="test")
        session.add(alert)
        session.flush()
        alert_id = alert.id
    back = client.post(f"/schedule/alerts/{alert_id}/resolve", data={"next": target})
    assert back.status_code == 302 and back.headers["Location"] in {"/schedule/", "/%0d%0a"}


def test_a_plain_local_next_is_still_followed(app: Any, world: dict[str, Any]) -> None:
    from tests.conftest import PASSWORD

    client = app.test_client()
    user = world["users"][Role.EDITOR]
    response = client.post(
        "/login?next=/announcements/%3Fq%3D%E5%9E%83",
        data={"username": user.username, "password": PASSWORD},
    )
    assert response.headers["Location"] == "/announcements/?q=%E5%9E%83"


def test_api_names_huge_ids_and_far_dates_as_fields(
    app: Any, world: dict[str, Any], content: Any
) -> None:
    client, headers = _client(app, world, Role.EDITOR)
    body = {k: v for k, v in content().items() if k not in {"to_loudspeaker", "to_chats"}}
    body.update(
        channels=["loudspeaker"],
        topic_id=2**63,
        area_ids=[2**63],
        start_date="9999-12-31",
        end_date="0001-01-01",
    )
    response = client.post("/api/v1/announcements", json=body, headers=headers)
    assert response.status_code == 400
    fields = response.json["error"]["fields"]
    assert set(fields) == {"topic_id", "area_ids", "start_date", "end_date"}
    assert fields["start_date"] == "开始日期应在 2000-01-01 到 2100-12-31 之间"
    patch = client.patch(
        "/api/v1/announcements/1", json={"area_ids": ["²"], "repeats": 2**70}, headers=headers
    )
    assert patch.status_code == 400 and set(patch.json["error"]["fields"]) == {
        "area_ids",
        "repeats",
    }
