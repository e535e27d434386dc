"""The JSON API under /api/v1: workflow, roles, tokens, validation and the OpenAPI document.

Every call goes through ``Api``, which checks the answer against the OpenAPI document the
app serves: the status must be documented for that operation and the body must match the
declared schema. So the document is tested by every test, not only by its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema import ValidationError as SchemaError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cms.models import Announcement, ApiToken, Area, AuditLog, Revision, Role, User, utcnow
from cms.services import users
from cms.web import today as app_today

API = "/api/v1"
ROLES = tuple(Role)
READERS = {Role.ADMIN, Role.EDITOR, Role.REVIEWER}
EDITORS = {Role.ADMIN, Role.EDITOR}
REVIEWERS = {Role.ADMIN, Role.REVIEWER}


# --- Answers checked with jsonschema against the served document ------------------------

DOC_URI = "urn:dalaba:served-openapi"
FORMATS = FormatChecker(["date"])


@FORMATS.checks("date-time", raises=ValueError)
def _aware_date_time(value: object) -> bool:
    """Every time the API gives is ISO 8601 with its UTC offset."""
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def registry(doc: dict[str, Any]) -> Registry[Any]:
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    return Registry().with_resource(DOC_URI, resource)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """What a ``#/...`` reference in the document points to (raises when it points nowhere)."""
    return registry(doc).resolver().lookup(DOC_URI + ref).contents


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(doc: dict[str, Any], ref: str, among: Registry[Any] | None = None) -> Any:
    """A jsonschema validator for the schema at ``ref`` in the document."""
    schema = {"$ref": DOC_URI + ref}
    return Draft202012Validator(schema, registry=among or registry(doc), format_checker=FORMATS)


def validate(doc: dict[str, Any], ref: str, value: Any) -> None:
    """Raise jsonschema's ValidationError unless ``value`` matches the schema at ``ref``."""
    validator(doc, ref).validate(value)


def operation_for(doc: dict[str, Any], method: str, url: str) -> tuple[str, str] | None:
    """The documented (path, method) that serves ``url``, or None."""
    path = url.split("?", 1)[0].removeprefix(API)
    for template, item in doc["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, method.lower()
    return None


# --- Fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests log in with tokens only; scrypt would make each test user cost 0.3 s."""
    from werkzeug.security import generate_password_hash

    monkeypatch.setattr(
        users, "generate_password_hash", lambda pw: generate_password_hash(pw, "pbkdf2:sha256:1")
    )


class Api:
    """A test client speaking JSON with a bearer token, checking answers against the doc."""

    def __init__(self, client: Any, doc: dict[str, Any], token: str | None) -> None:
        self.client, self.doc, self.token = client, doc, token
        self.registry = registry(doc)
        self.validators: dict[str, Any] = {}

    def validate(self, ref: str, value: Any) -> None:
        if ref not in self.validators:
            self.validators[ref] = validator(self.doc, ref, self.registry)
        self.validators[ref].validate(value)

    def call(
        self,
        method: str,
        url: str,
        json_body: Any = None,
        *,
        data: bytes | str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        kwargs: dict[str, Any] = {"method": method, "headers": headers}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        if content_type is not None:
            kwargs["content_type"] = content_type
        response = self.client.open(API + url, **kwargs)
        self.check(method, url, response)
        return response

    def check(self, method: str, url: str, response: Any) -> None:
        assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
        body = response.get_json()
        op = operation_for(self.doc, method, url)
        if op is None:
            assert response.status_code in {404, 405}, (method, url, response.status_code)
            self.validate("#/components/schemas/Error", body)
            return
        path, name = op
        status = str(response.status_code)
        declared = self.doc["paths"][path][name]["responses"]
        assert status in declared, f"{method} {url}: {status} undocumented: {body}"
        where = declared[status].get("$ref") or pointer("paths", path, name, "responses", status)
        self.validate(where + pointer("content", "application/json", "schema")[1:], body)
        if response.status_code >= 400:
            assert body["error"]["message"], body

    def get(self, url: str, **kw: Any) -> Any:
        return self.call("GET", url, **kw)

    def post(self, url: str, json_body: Any = None, **kw: Any) -> Any:
        return self.call("POST", url, json_body, **kw)

    def put(self, url: str, json_body: Any = None, **kw: Any) -> Any:
        return self.call("PUT", url, json_body, **kw)

    def patch(self, url: str, json_body: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", url, json_body, **kw)


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def api_as(
    client: Any, doc: dict[str, Any], session: Session, make_user: Callable[..., User]
) -> Callable[..., Api]:
    """``api_as(Role.EDITOR)`` or ``api_as(user)``: a client with a fresh token; None: no token."""

    def make(who: Role | User | None) -> Api:
        if who is None:
            return Api(client, doc, None)
        user = who if isinstance(who, User) else make_user(who)
        token = users.issue_api_token(session, None, user)
        session.commit()
        api = Api(client, doc, token)
        api.user = user  # type: ignore[attr-defined]
        return api

    return make


@pytest.fixture
def body(
    content: Callable[..., dict[str, Any]], village_loudspeaker: Any
) -> Callable[..., dict[str, Any]]:
    """Valid API input for an announcement (``channels`` instead of the form's switches),
    aimed where a loudspeaker plays it."""

    def make(**overrides: Any) -> dict[str, Any]:
        data = content()
        data.pop("to_loudspeaker")
        data.pop("to_chats")
        data["channels"] = ["loudspeaker", "chats"]
        data.update(overrides)
        return data

    return make


def counts(session: Session) -> tuple[int, ...]:
    session.commit()  # end the snapshot so the app's commits are visible
    return tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (Announcement, Revision, AuditLog, Area)
    )


def fields_of(response: Any) -> dict[str, str]:
    return response.get_json()["error"]["fields"]


# --- The whole workflow ------------------------------------------------------------------


@pytest.mark.any_hour
def test_whole_workflow_through_the_api(
    api_as: Callable[..., Api],
    body: Callable[..., dict[str, Any]],
    grid: dict[str, Area],
    session: Session,
    settings: Any,
) -> None:
    editor, reviewer, admin = api_as(Role.EDITOR), api_as(Role.REVIEWER), api_as(Role.ADMIN)

    created = editor.post("/announcements", body(title="  清理河道垃圾  "))
    assert created.status_code == 201, created.get_json()
    ann = created.get_json()
    assert created.headers["Location"].endswith(f"{API}/announcements/{ann['id']}")
    assert (ann["status"], ann["phase"], ann["latest_revision_number"]) == ("draft", "draft", 1)
    assert ann["title"] == "清理河道垃圾"
    assert ann["phase_label"] == "草稿"
    assert ann["approved_revision"] is None
    assert ann["channels"] == ["loudspeaker", "chats"]
    assert ann["areas"] == [{"id": grid["v1"].id, "name": "石桥村"}]
    assert ann["latest_revision"]["chat_post_time"] == "09:00"
    assert ann["created_by"]["username"] == editor.user.username  # type: ignore[attr-defined]
    url = f"/announcements/{ann['id']}"

    assert editor.get(url).get_json() == ann
    submitted = editor.post(f"{url}/submit")
    assert submitted.status_code == 200
    assert submitted.get_json()["status"] == "in_review"
    assert submitted.get_json()["submitted_by"]["id"] == editor.user.id  # type: ignore[attr-defined]

    approved = reviewer.post(f"{url}/approve", {"comment": "同意"}).get_json()
    assert approved["status"] == "approved"
    assert approved["phase"] in {"scheduled", "active"}
    assert approved["approved_revision"]["number"] == 1
    assert approved["review_comment"] == "同意"
    assert approved["reviewed_by"]["id"] == reviewer.user.id  # type: ignore[attr-defined]

    edited = editor.patch(url, {"body": "改：本周日上午九点集中清理。", "repeats": 3}).get_json()
    assert edited["status"] == "draft"
    assert edited["latest_revision_number"] == 2
    assert edited["latest_revision"]["body"] == "改：本周日上午九点集中清理。"
    assert edited["latest_revision"]["repeats"] == 3
    assert edited["latest_revision"]["title"] == "清理河道垃圾"  # merged from revision 1
    assert edited["approved_revision"]["number"] == 1  # still goes out meanwhile
    assert edited["approved_revision_number"] == 1

    assert editor.post(f"{url}/submit").status_code == 200
    rejected = reviewer.post(f"{url}/reject", {"comment": "请写明集合地点"}).get_json()
    assert (rejected["status"], rejected["review_comment"]) == ("draft", "请写明集合地点")

    replaced = editor.put(
        url, body(title="清理河道垃圾", body="周日九点在村委会门口集合。", channels=["chats"])
    ).get_json()
    assert replaced["latest_revision_number"] == 3
    assert replaced["channels"] == ["chats"]
    assert replaced["latest_revision"]["repeats"] == 2

    # Chats only, and no chat is bound in 石桥村: it would reach nothing, so it is refused
    # with a field error on the targets, and nothing changes.
    refused = editor.post(f"{url}/submit")
    assert refused.status_code == 400
    assert "没有可用于所选渠道的大喇叭或群聊" in fields_of(refused)["area_ids"]
    assert editor.get(url).get_json()["status"] == "draft"
    from cms.models import ChatGroup

    session.add(
        ChatGroup(platform="telegram", chat_id="-100", title="石桥村群", area_id=grid["g1"].id)
    )
    session.commit()
    assert editor.post(f"{url}/submit").status_code == 200
    final = admin.post(f"{url}/approve").get_json()
    assert final["approved_revision"]["number"] == 3
    assert final["revision_count"] == 3

    revisions = editor.get(f"{url}/revisions").get_json()["items"]
    assert [r["number"] for r in revisions] == [1, 2, 3]
    second = reviewer.get(f"{url}/revisions/2").get_json()
    assert second["repeats"] == 3 and second["author"]["id"] == editor.user.id  # type: ignore[attr-defined]

    withdrawn = reviewer.post(f"{url}/withdraw", {"reason": "活动取消"}).get_json()
    assert (withdrawn["status"], withdrawn["phase"]) == ("withdrawn", "withdrawn")
    assert withdrawn["withdrawn_at"]

    session.commit()
    actions = session.scalars(
        select(AuditLog.action)
        .where(AuditLog.object_type == "announcement", AuditLog.object_id == ann["id"])
        .order_by(AuditLog.id)
    ).all()
    assert actions == [
        "announcement.create",
        "announcement.submit",
        "announcement.approve",
        "announcement.edit",
        "announcement.submit",
        "announcement.reject",
        "announcement.edit",
        "announcement.submit",
        "announcement.approve",
        "announcement.withdraw",
    ]
    assert app_today(settings) <= date.fromisoformat(final["end_date"])


def test_saving_the_same_content_makes_no_revision(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]], session: Session
) -> None:
    editor = api_as(Role.EDITOR)
    ann = editor.post("/announcements", body()).get_json()
    before = counts(session)
    again = editor.put(f"/announcements/{ann['id']}", body())
    assert again.status_code == 200
    assert again.get_json()["latest_revision_number"] == 1
    assert editor.patch(f"/announcements/{ann['id']}", {}).get_json()["revision_count"] == 1
    assert counts(session) == before


def test_spoken_text_topic_and_priority_round_trip(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]], grid: dict[str, Area]
) -> None:
    editor = api_as(Role.EDITOR)
    ann = editor.post(
        "/announcements",
        body(
            spoken_text="各位村民请注意 🌱",
            priority="urgent",
            topic_id=None,
            area_ids=[grid["g2"].id, grid["v1"].id, grid["v1"].id],
            voice="zh-CN-YunjianNeural",
            rate=-10,
            chat_post_time=None,
            channels=["loudspeaker"],
        ),
    ).get_json()
    rev = ann["latest_revision"]
    assert rev["spoken_text"] == "各位村民请注意 🌱"
    assert (rev["priority"], rev["topic_id"], rev["topic_name"]) == ("urgent", None, None)
    assert sorted(rev["area_ids"]) == sorted({grid["g2"].id, grid["v1"].id})
    assert (rev["voice"], rev["rate"], rev["chat_post_time"]) == ("zh-CN-YunjianNeural", -10, None)
    cleared = editor.patch(f"/announcements/{ann['id']}", {"spoken_text": None}).get_json()
    assert cleared["latest_revision"]["spoken_text"] is None


# --- Roles -------------------------------------------------------------------------------

# (method, url template, request body or "content", roles allowed, success status)
ROLE_MATRIX: list[tuple[str, str, Any, set[Role] | None, int]] = [
    ("GET", "/openapi.json", None, None, 200),
    ("GET", "/announcements", None, READERS, 200),
    ("POST", "/announcements", "content", EDITORS, 201),
    ("GET", "/announcements/{draft}", None, READERS, 200),
    ("PUT", "/announcements/{draft}", "content-edit", EDITORS, 200),
    ("PATCH", "/announcements/{draft}", {"title": "新标题"}, EDITORS, 200),
    ("POST", "/announcements/{draft}/submit", None, EDITORS, 200),
    ("POST", "/announcements/{in_review}/approve", {"comment": "好"}, REVIEWERS, 200),
    ("POST", "/announcements/{in_review}/reject", {"comment": "再改改"}, REVIEWERS, 200),
    ("POST", "/announcements/{approved}/withdraw", {}, READERS, 200),
    ("GET", "/announcements/{draft}/revisions", None, READERS, 200),
    ("GET", "/announcements/{draft}/revisions/{first}", None, READERS, 200),
    ("GET", "/areas", None, set(Role), 200),
    ("GET", "/areas/{area}", None, set(Role), 200),
    (
        "POST",
        "/areas",
        {"name": "新建村", "kind": "village", "parent_id": "{town}"},
        {Role.ADMIN},
        201,
    ),
    ("GET", "/topics", None, READERS, 200),
    ("GET", "/templates", None, READERS, 200),
    (
        "POST",
        "/templates/{template}/drafts",
        {
            "fields": {"日期": "2030-01-01", "电话": "13812345678"},
            "content": {
                "area_ids": ["{area}"],
                "channels": ["loudspeaker"],
                "start_date": "2030-01-01",
                "end_date": "2030-01-02",
            },
        },
        EDITORS,
        201,
    ),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(
    ("method", "template", "payload", "allowed", "success"),
    ROLE_MATRIX,
    ids=[f"{m} {t}" for m, t, *_ in ROLE_MATRIX],
)
def test_each_role_on_each_route(
    method: str,
    template: str,
    payload: Any,
    allowed: set[Role] | None,
    success: int,
    api_as: Callable[..., Api],
    make_announcement: Callable[..., Announcement],
    body: Callable[..., dict[str, Any]],
    grid: dict[str, Area],
) -> None:
    for role in ROLES:
        ids = {
            "draft": make_announcement("draft").id,
            "in_review": make_announcement("in_review").id,
            "approved": make_announcement("approved").id,
            "area": grid["v1"].id,
            "town": grid["town"].id,
            "first": 1,
            "template": "s-five-duties",
        }
        url = template.format(**ids)
        if payload == "content":
            json_body = body()
        elif payload == "content-edit":
            json_body = body(title="换一个标题")
        else:
            json_body = _fill(payload, ids)
        response = api_as(role).call(method, url, json_body)
        expected = success if allowed is None or role in allowed else 403
        assert response.status_code == expected, (role, response.get_json())
        if expected == 403:
            assert response.get_json()["error"]["code"] == "forbidden"


def test_role_matrix_covers_every_api_route(app: Any) -> None:
    covered = {(m, re.sub(r"\{\w+\}", "<>", t)) for m, t, *_ in ROLE_MATRIX}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<[^>]+>", "<>", rule.rule.removeprefix(API))
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (method, path) in covered, f"{method} {rule.rule} has no ROLE_MATRIX row"


def test_reviewer_cannot_approve_own_submission(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]], session: Session
) -> None:
    admin = api_as(Role.ADMIN)
    ann = admin.post("/announcements", body()).get_json()
    admin.post(f"/announcements/{ann['id']}/submit")
    before = counts(session)
    refused = admin.post(f"/announcements/{ann['id']}/approve")
    assert refused.status_code == 403
    assert "自己" in refused.get_json()["error"]["message"]
    assert counts(session) == before


# --- Tokens ------------------------------------------------------------------------------


def test_token_required_and_checked(
    api_as: Callable[..., Api], client: Any, doc: dict[str, Any], session: Session
) -> None:
    good = api_as(Role.EDITOR)
    assert good.get("/areas").status_code == 200

    revoked = api_as(Role.EDITOR)
    row = session.scalar(select(ApiToken).order_by(ApiToken.id.desc()))
    assert row is not None
    row.revoked_at = utcnow()
    inactive = api_as(Role.EDITOR)
    inactive.user.active = False  # type: ignore[attr-defined]
    session.commit()

    attempts = [
        Api(client, doc, None),
        Api(client, doc, "dlb_garbage-token"),
        Api(client, doc, ""),
        Api(client, doc, "x" * 5000),
        revoked,
        inactive,
    ]
    for api in attempts:
        for method, url in [
            ("GET", "/announcements"),
            ("POST", "/announcements"),
            ("GET", "/areas"),
        ]:
            response = api.call(method, url, {})
            assert response.status_code == 401, (api.token and api.token[:20], url)
            assert response.get_json()["error"]["code"] == "unauthorized"
            assert "令牌" in response.get_json()["error"]["message"]
            assert response.headers["WWW-Authenticate"] == "Bearer"
    basic = Api(client, doc, None).get("/areas", headers={"Authorization": f"Basic {good.token}"})
    assert basic.status_code == 401


def test_openapi_document_needs_no_token(api_as: Callable[..., Api]) -> None:
    assert api_as(None).get("/openapi.json").status_code == 200


# --- Validation --------------------------------------------------------------------------

BAD_CONTENT: list[tuple[str, dict[str, Any], set[str]]] = [
    ("area_ids junk string", {"area_ids": "abc,,x"}, {"area_ids"}),
    ("area_ids empty", {"area_ids": []}, {"area_ids"}),
    ("area_ids unknown", {"area_ids": [999_999]}, {"area_ids"}),
    ("area_ids string items", {"area_ids": ["1"]}, {"area_ids"}),
    ("area_ids bool items", {"area_ids": [True]}, {"area_ids"}),
    ("area_ids float items", {"area_ids": [1.5]}, {"area_ids"}),
    ("area_ids huge", {"area_ids": [2**70]}, {"area_ids"}),
    ("area_ids negative", {"area_ids": [-1]}, {"area_ids"}),
    ("area_ids too many", {"area_ids": list(range(1, 2000))}, {"area_ids"}),
    ("repeats abc", {"repeats": "abc"}, {"repeats"}),
    ("repeats too many", {"repeats": 9}, {"repeats"}),
    # 2.0 is an integer to JSON Schema (and so to the document and the server); 2.5 is not.
    ("repeats float", {"repeats": 2.5}, {"repeats"}),
    ("repeats bool", {"repeats": True}, {"repeats"}),
    ("repeats null", {"repeats": None}, {"repeats"}),
    ("start impossible date", {"start_date": "2026-13-40"}, {"start_date"}),
    ("start slashes", {"start_date": "2026/01/01"}, {"start_date"}),
    ("start compact", {"start_date": "20260101"}, {"start_date"}),
    ("start number", {"start_date": 20260101}, {"start_date"}),
    ("end before start", {"end_date": "2000-01-01"}, {"end_date"}),
    ("end missing", {"end_date": None}, {"end_date"}),
    ("title empty", {"title": "   "}, {"title"}),
    ("title 50k", {"title": "长" * 50_000}, {"title"}),
    ("title newline", {"title": "第一行\n第二行"}, {"title"}),
    ("title control char", {"title": "响铃\x07"}, {"title"}),
    ("title number", {"title": 123}, {"title"}),
    ("title null", {"title": None}, {"title"}),
    ("title object", {"title": {"zh": "标题"}}, {"title"}),
    ("body 50k", {"body": "字" * 50_000}, {"body"}),
    ("body nul", {"body": "正文\x00"}, {"body"}),
    ("spoken 50k", {"spoken_text": "读" * 50_000}, {"spoken_text"}),
    ("topic unknown", {"topic_id": 999_999}, {"topic_id"}),
    ("topic string", {"topic_id": "绿美"}, {"topic_id"}),
    ("priority", {"priority": "high"}, {"priority"}),
    ("channels empty", {"channels": []}, {"channels"}),
    ("channels unknown", {"channels": ["fax"]}, {"channels"}),
    ("channels string", {"channels": "chats"}, {"channels"}),
    ("channels repeated", {"channels": ["chats", "chats"]}, {"channels"}),
    ("post time hour", {"chat_post_time": "25:00"}, {"chat_post_time"}),
    ("post time words", {"chat_post_time": "9am"}, {"chat_post_time"}),
    ("post time zone", {"chat_post_time": "09:00+08:00"}, {"chat_post_time"}),
    ("post time missing for chats", {"chat_post_time": None}, {"chat_post_time"}),
    ("voice markup", {"voice": "<speak>hi</speak>"}, {"voice"}),
    ("rate", {"rate": 99}, {"rate"}),
    ("unknown field", {"colour": "red"}, {"colour"}),
    ("form switch is not an API field", {"to_chats": True}, {"to_chats"}),
    (
        "several at once",
        {"title": "", "repeats": "abc", "area_ids": "x", "start_date": "2026-02-30", "x": 1},
        {"title", "repeats", "area_ids", "start_date", "x"},
    ),
]


def test_bad_content_names_each_field_and_saves_nothing(
    api_as: Callable[..., Api],
    body: Callable[..., dict[str, Any]],
    make_announcement: Callable[..., Announcement],
    session: Session,
) -> None:
    # One database for the whole table: a fresh one per case would cost a minute.
    editor = api_as(Role.EDITOR)
    ann = make_announcement("draft")
    before = counts(session)
    for case, overrides, bad in BAD_CONTENT:
        patch = overrides
        if case == "post time missing for chats":
            patch = {"chat_post_time": None, "channels": ["chats"]}
        for method, url, payload in [
            ("POST", "/announcements", body(**overrides)),
            ("PUT", f"/announcements/{ann.id}", body(**overrides)),
            ("PATCH", f"/announcements/{ann.id}", patch),
        ]:
            response = editor.call(method, url, payload)
            assert response.status_code == 400, (case, method, response.get_json())
            error = response.get_json()["error"]
            assert error["code"] == "invalid_input", case
            assert set(error["fields"]) == bad, (case, method, error)
            assert all(error["fields"].values()), case
    assert counts(session) == before


def test_unknown_fields_are_named_but_bounded(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]]
) -> None:
    payload = body(**{f"extra{i}": i for i in range(100)}, **{"k" * 1000: 1})
    fields = fields_of(api_as(Role.EDITOR).post("/announcements", payload))
    assert "extra0" in fields
    assert len(fields) <= 20
    assert all(len(name) <= 61 for name in fields)


def test_end_date_in_the_past_and_window_too_long(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]], settings: Any
) -> None:
    editor, today = api_as(Role.EDITOR), app_today(settings)
    past = body(start_date=str(today - timedelta(days=9)), end_date=str(today - timedelta(days=2)))
    assert set(fields_of(editor.post("/announcements", past))) == {"end_date"}
    long = body(start_date=str(today), end_date=str(today + timedelta(days=400)))
    assert set(fields_of(editor.post("/announcements", long))) == {"end_date"}


RAW_BODIES: list[tuple[str, bytes, str, int]] = [
    ("malformed", b'{"title": ', "application/json", 400),
    ("array", b"[1, 2]", "application/json", 400),
    ("string", b'"title"', "application/json", 400),
    ("null", b"null", "application/json", 400),
    ("empty", b"", "application/json", 400),
    ("bad utf-8", b'{"title": "\xff\xfe"}', "application/json", 400),
    ("deep nesting", b"[" * 100_000, "application/json", 400),
    ("huge integer", b'{"repeats": ' + b"9" * 5000 + b"}", "application/json", 400),
    ("plain text", b"title=hello", "text/plain", 415),
    ("form", b"title=hello", "application/x-www-form-urlencoded", 415),
    ("too large", b'{"body": "' + b"a" * 600_000 + b'"}', "application/json", 413),
]


def test_bad_request_bodies(
    api_as: Callable[..., Api],
    make_announcement: Callable[..., Announcement],
    session: Session,
) -> None:
    editor = api_as(Role.EDITOR)
    ann = make_announcement("draft")
    before = counts(session)
    for case, raw, ctype, status in RAW_BODIES:
        urls = [
            ("POST", "/announcements"),
            ("PUT", f"/announcements/{ann.id}"),
            ("PATCH", f"/announcements/{ann.id}"),
        ]
        if case != "empty":  # an action without required fields may have an empty body
            urls.append(("POST", f"/announcements/{ann.id}/submit"))
        for method, url in urls:
            response = editor.call(method, url, data=raw, content_type=ctype)
            assert response.status_code == status, (case, method, url, response.get_json())
    assert counts(session) == before


def test_nan_is_a_wrong_type_not_a_crash(
    api_as: Callable[..., Api], body: Callable[..., dict[str, Any]]
) -> None:
    raw = json.dumps(body()).replace('"repeats": 2', '"repeats": NaN')
    response = api_as(Role.EDITOR).post("/announcements", data=raw, content_type="application/json")
    assert set(fields_of(response)) == {"repeats"}


def test_writes_without_json_content_type(
    api_as: Callable[..., Api],
    make_announcement: Callable[..., Announcement],
    village_loudspeaker: Any,
) -> None:
    editor, reviewer = api_as(Role.EDITOR), api_as(Role.REVIEWER)
    assert editor.post("/announcements").status_code == 415
    draft = make_announcement("draft")
    assert (
        editor.post(
            f"/announcements/{draft.id}/submit", data="x", content_type="text/plain"
        ).status_code
        == 415
    )
    # Actions without required fields accept an empty body with no content type.
    assert editor.post(f"/announcements/{draft.id}/submit").status_code == 200
    assert reviewer.post(f"/announcements/{draft.id}/approve", {"comment": None}).status_code == 200
    charset = api_as(Role.ADMIN).post(
        "/areas",
        data=json.dumps({"name": "东坡村", "kind": "village"}),
        content_type="application/json; charset=utf-8",
    )
    assert charset.status_code == 201


def test_action_bodies_are_validated(
    api_as: Callable[..., Api], make_announcement: Callable[..., Announcement], session: Session
) -> None:
    reviewer, editor = api_as(Role.REVIEWER), api_as(Role.EDITOR)
    ann = make_announcement("in_review")
    url = f"/announcements/{ann.id}"
    before = counts(session)
    cases = [
        (reviewer, "reject", None, {"comment"}),
        (reviewer, "reject", {"comment": "   "}, {"comment"}),
        (reviewer, "reject", {"comment": 123}, {"comment"}),
        (reviewer, "reject", {"comment": "好" * 2001}, {"comment"}),
        (reviewer, "reject", {"comment": "ok", "reason": "x"}, {"reason"}),
        (reviewer, "approve", {"comment": ["同意"]}, {"comment"}),
        (reviewer, "approve", {"comment": "同意\x1b"}, {"comment"}),
        (reviewer, "approve", {"approved": True}, {"approved"}),
        (editor, "withdraw", {"reason": {"why": 1}}, {"reason"}),
        (editor, "withdraw", {"comment": "x"}, {"comment"}),
        (editor, "submit", {"comment": "x"}, {"comment"}),
    ]
    for api, action, payload, bad in cases:
        response = api.post(f"{url}/{action}", payload)
        assert response.status_code == 400, (action, payload, response.get_json())
        assert set(fields_of(response)) == bad
    assert (
        reviewer.post(f"{url}/approve", data="[]", content_type="application/json").status_code
        == 400
    )
    assert counts(session) == before
    session.refresh(ann)
    assert ann.status.value == "in_review"


# --- Not found and conflicts -------------------------------------------------------------


def test_unknown_ids_are_404(
    api_as: Callable[..., Api], make_announcement: Callable[..., Announcement]
) -> None:
    editor, admin = api_as(Role.EDITOR), api_as(Role.ADMIN)
    ann = make_announcement("draft")
    for method, url in [
        ("GET", "/announcements/999999"),
        ("GET", f"/announcements/{2**70}"),
        ("GET", "/announcements/0"),
        ("GET", "/announcements/-1"),
        ("GET", "/announcements/abc"),
        ("PATCH", "/announcements/999999"),
        ("POST", "/announcements/999999/submit"),
        ("GET", "/announcements/999999/revisions"),
        ("GET", f"/announcements/{ann.id}/revisions/99"),
        ("GET", "/areas/999999"),
        ("GET", "/nothing-here"),
    ]:
        response = editor.call(method, url, {"title": "x"} if method == "PATCH" else None)
        assert response.status_code == 404, (url, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"
    assert admin.call("DELETE", f"/announcements/{ann.id}").status_code == 405


def test_workflow_conflicts_are_409(
    api_as: Callable[..., Api],
    make_announcement: Callable[..., Announcement],
    body: Callable[..., dict[str, Any]],
    session: Session,
) -> None:
    editor, reviewer = api_as(Role.EDITOR), api_as(Role.REVIEWER)
    draft, in_review = make_announcement("draft"), make_announcement("in_review")
    approved, withdrawn = make_announcement("approved"), make_announcement("withdrawn")
    before = counts(session)
    for api, method, url, payload in [
        (reviewer, "POST", f"/announcements/{draft.id}/approve", None),
        (reviewer, "POST", f"/announcements/{draft.id}/reject", {"comment": "不行"}),
        (editor, "POST", f"/announcements/{in_review.id}/submit", None),
        (editor, "POST", f"/announcements/{approved.id}/submit", None),
        (editor, "PATCH", f"/announcements/{in_review.id}", {"title": "改"}),
        (editor, "PUT", f"/announcements/{withdrawn.id}", body()),
        (editor, "POST", f"/announcements/{withdrawn.id}/withdraw", None),
        (reviewer, "POST", f"/announcements/{approved.id}/approve", None),
    ]:
        response = api.call(method, url, payload)
        assert response.status_code == 409, (url, response.get_json())
        assert response.get_json()["error"]["code"] == "conflict"
    assert counts(session) == before


# --- Listing -----------------------------------------------------------------------------


def test_list_filters_and_pagination(
    api_as: Callable[..., Api],
    make_announcement: Callable[..., Announcement],
    grid: dict[str, Area],
    topic: Any,
    settings: Any,
) -> None:
    reviewer = api_as(Role.REVIEWER)
    drafts = [make_announcement("draft", title=f"草稿{i}") for i in range(3)]
    in_review = make_announcement("in_review", title="秸秆禁烧", area_ids=[grid["g2"].id])
    approved = make_announcement("approved", topic_id=None, area_ids=[grid["town"].id])

    page = reviewer.get("/announcements?per_page=2").get_json()
    assert (page["total"], page["pages"], page["page"], len(page["items"])) == (5, 3, 1, 2)
    last = reviewer.get("/announcements?per_page=2&page=3").get_json()
    assert len(last["items"]) == 1
    assert reviewer.get("/announcements?page=9").get_json()["items"] == []

    def ids(query: str) -> set[int]:
        return {a["id"] for a in reviewer.get(f"/announcements?{query}").get_json()["items"]}

    assert ids("status=draft") == {a.id for a in drafts}
    assert ids("status=in_review") == {in_review.id}
    phase = approved.phase(app_today(settings))
    assert ids(f"status={phase}") == ids("status=approved") == {approved.id}
    assert ids("status=withdrawn") == set()
    assert ids(f"topic_id={topic.id}") == {a.id for a in [*drafts, in_review]}
    # An area matches what targets it, what is below it, and what is above it.
    assert ids(f"area_id={grid['v2'].id}") == {in_review.id, approved.id}
    assert ids("q=秸秆") == {in_review.id}
    assert ids("q=%E8%8D%89%E7%A8%BF1") == {drafts[1].id}
    assert ids("q=") == ids("")


BAD_QUERIES = [
    ("status=published", "status"),
    ("topic_id=abc", "topic_id"),
    ("topic_id=999999", "topic_id"),
    ("area_id=999999", "area_id"),
    (f"area_id={2**70}", "area_id"),
    ("area_id=-3", "area_id"),
    ("page=0", "page"),
    ("page=abc", "page"),
    ("page=1e3", "page"),
    ("per_page=1000", "per_page"),
    ("q=" + "长" * 201, "q"),
    ("q=%07", "q"),
    ("sort=title", "sort"),
    ("status=draft&status=in_review", "status"),
]


def test_bad_query_parameters_are_named(api_as: Callable[..., Api], grid: dict[str, Area]) -> None:
    editor = api_as(Role.EDITOR)
    for query, bad in BAD_QUERIES:
        response = editor.get(f"/announcements?{query}")
        assert response.status_code == 400, query
        assert set(fields_of(response)) == {bad}, query


# --- Areas and topics --------------------------------------------------------------------


def test_areas_as_a_flat_tree(api_as: Callable[..., Api], grid: dict[str, Area]) -> None:
    operator = api_as(Role.OPERATOR)
    items = operator.get("/areas").get_json()["items"]
    assert [a["id"] for a in items] == [grid[k].id for k in ("town", "v1", "g1", "v2", "g2")]
    g2 = items[-1]
    assert g2["parent_id"] == grid["v2"].id
    assert g2["path"] == [grid["town"].id, grid["v2"].id, grid["g2"].id]
    assert (g2["depth"], g2["kind"], g2["kind_label"]) == (2, "group", "组")
    assert g2["full_name"] == "清水镇 / 柳林村 / 一组"
    assert items[0]["parent_id"] is None and items[0]["depth"] == 0

    village = operator.get(f"/areas/{grid['v1'].id}").get_json()
    assert village["full_name"] == "清水镇 / 石桥村"
    assert [c["id"] for c in village["children"]] == [grid["g1"].id]
    assert village["children"][0]["full_name"] == "清水镇 / 石桥村 / 一组"


def test_admin_creates_areas(
    api_as: Callable[..., Api], grid: dict[str, Area], session: Session
) -> None:
    admin = api_as(Role.ADMIN)
    created = admin.post("/areas", {"name": "三组", "kind": "group", "parent_id": grid["v1"].id})
    assert created.status_code == 201
    area = created.get_json()
    assert created.headers["Location"].endswith(f"{API}/areas/{area['id']}")
    assert area["path"] == [grid["town"].id, grid["v1"].id, area["id"]]
    assert area["full_name"] == "清水镇 / 石桥村 / 三组"
    root = admin.post("/areas", {"name": "白云乡", "kind": "township", "parent_id": None})
    assert root.status_code == 201 and root.get_json()["path"] == [root.get_json()["id"]]

    before = counts(session)
    for payload, bad in [
        ({"name": "三组", "kind": "group", "parent_id": grid["v1"].id}, {"name"}),
        ({"name": "", "kind": "group", "parent_id": grid["v1"].id}, {"name"}),
        ({"name": "x" * 81, "kind": "group"}, {"name"}),
        ({"name": "四组", "kind": "hamlet", "parent_id": grid["v1"].id}, {"kind"}),
        ({"name": "四组", "kind": "group", "parent_id": 999_999}, {"parent_id"}),
        ({"name": "四组", "kind": "group", "parent_id": "石桥村"}, {"parent_id"}),
        ({"name": "四组", "kind": "group", "parent_id": 2**70}, {"parent_id"}),
        ({"name": ["四组"], "kind": "group"}, {"name"}),
        ({"name": "四组", "kind": "group", "sort": 3}, {"sort"}),
        ({"kind": "group"}, {"name"}),
    ]:
        response = admin.post("/areas", payload)
        assert response.status_code == 400, (payload, response.get_json())
        assert set(fields_of(response)) == bad
    assert counts(session) == before
    assert session.scalar(select(AuditLog.action).order_by(AuditLog.id.desc())) == "area.create"


def test_topics_list(api_as: Callable[..., Api], topic: Any) -> None:
    items = api_as(Role.EDITOR).get("/topics").get_json()["items"]
    assert items == [{"id": topic.id, "name": "绿美知识", "active": True}]


# --- The OpenAPI document ----------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_is_complete(doc: dict[str, Any], app: Any) -> None:
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []

    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API):
            path = re.sub(r"<(?:[^:<>]+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(API))
            routes.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    documented = {
        path: {m.upper() for m in item if m in {"get", "post", "put", "patch", "delete"}}
        for path, item in doc["paths"].items()
    }
    assert documented == routes

    operation_ids = []
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            if method == "parameters":
                continue
            operation_ids.append(op["operationId"])
            assert op["responses"], (path, method)
            params = [
                resolve(doc, p["$ref"]) if "$ref" in p else p
                for p in [*item.get("parameters", []), *op.get("parameters", [])]
            ]
            assert {p["name"] for p in params if p["in"] == "path"} == names, (path, method)
            assert all(p["required"] for p in params if p["in"] == "path")
            if method in {"post", "put", "patch"} and path != "/openapi.json":
                assert "requestBody" in op, (path, method)
                assert "415" in op["responses"] and "400" in op["responses"]
            if op.get("security") != []:
                assert "401" in op["responses"], (path, method)
    assert len(operation_ids) == len(set(operation_ids))

    for ref in _refs(doc):
        resolve(doc, ref)  # raises when a $ref points nowhere


def test_openapi_constraints_match_the_services(doc: dict[str, Any]) -> None:
    from audio import VOICES
    from cms.services import announcements as svc

    schema = doc["components"]["schemas"]["AnnouncementInput"]
    props = schema["properties"]
    assert props["title"]["maxLength"] == svc.MAX_TITLE
    assert props["body"]["maxLength"] == svc.MAX_BODY
    assert props["spoken_text"]["maxLength"] == svc.MAX_SPOKEN
    assert (props["repeats"]["minimum"], props["repeats"]["maximum"]) == (1, svc.MAX_REPEATS)
    assert (props["rate"]["minimum"], props["rate"]["maximum"]) == svc.RATE_RANGE
    assert props["voice"]["enum"] == list(VOICES)
    assert props["voice"]["default"] == svc.DEFAULT_VOICE
    assert schema["additionalProperties"] is False
    error = doc["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "fields"}


def test_openapi_schemas_accept_valid_requests(
    doc: dict[str, Any], body: Callable[..., dict[str, Any]]
) -> None:
    schemas = "#/components/schemas/"
    validate(doc, schemas + "AnnouncementInput", body())
    validate(doc, schemas + "AnnouncementPatch", {"title": "新"})
    validate(doc, schemas + "RejectInput", {"comment": "请修改"})
    validate(doc, schemas + "AreaInput", {"name": "三组", "kind": "group", "parent_id": None})
    with pytest.raises(SchemaError):
        validate(doc, schemas + "AnnouncementInput", body(colour="red"))
    with pytest.raises(SchemaError):
        validate(doc, schemas + "AnnouncementInput", body(repeats="abc"))


def test_errors_answer_in_the_users_language(
    api_as: Callable[..., Api], session: Session, make_user: Callable[..., User]
) -> None:
    editor = api_as(Role.EDITOR)
    response = editor.get("/announcements/999999")
    assert response.get_json()["error"]["message"] == "公告 999999 不存在"
    english = make_user(Role.EDITOR)
    english.locale = "en"
    session.commit()
    response = api_as(english).get("/announcements/999999")
    assert response.get_json()["error"]["message"] == "Announcement 999999 does not exist"


def test_schema_errors_become_the_fields_localized_messages(
    api_as: Callable[..., Api],
    body: Callable[..., dict[str, Any]],
    session: Session,
    make_user: Callable[..., User],
) -> None:
    bad = body(
        repeats="abc",
        priority="high",
        start_date="2026-02-30",
        chat_post_time="9am",
        rate=99,
        area_ids=[1, 1.5],
        colour="red",
    )
    fields = fields_of(api_as(Role.EDITOR).post("/announcements", bad))
    assert fields["repeats"] == "应为整数"
    assert fields["priority"] == "应为以下之一：normal、urgent"
    assert fields["start_date"] == "应为 YYYY-MM-DD 格式的有效日期"
    assert fields["chat_post_time"] == "应为 HH:MM 格式的时间"
    assert fields["rate"] == "应在 -50 到 50 之间"
    assert fields["area_ids"] == "应为整数"
    assert fields["colour"].startswith("不支持的字段；可用字段：title、body")
    query = fields_of(api_as(Role.EDITOR).get(f"/announcements?area_id={2**70}&per_page=0"))
    assert query == {"area_id": "应在 1 到 2147483647 之间", "per_page": "应在 1 到 100 之间"}

    english = make_user(Role.EDITOR)
    english.locale = "en"
    session.commit()
    fields = fields_of(api_as(english).post("/announcements", bad))
    assert fields["repeats"] == "must be an integer"
    assert fields["priority"] == "must be one of: normal、urgent"
