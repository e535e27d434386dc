"""The announcement content model is the one place a field is described.

The form, the parser, the API schemas, the API's validation and representation, and the
revision diff all derive from ``cms.services.content``. These tests check that they agree
with it today, and that a field added to the model (here: a made-up ``subtitle``) reaches
each of them with no other code edited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import Session

from cms.models import Announcement, Role, User
from cms.services import announcements
from cms.services import content as model
from cms.services.content import Content, Kind, Spec, spec
from cms.services.errors import ValidationError
from cms.web.api import openapi, validation
from cms.web.api.representations import content_json, service_input
from cms.web.forms import announcement_form_data, announcement_form_values

API = "/api/v1"


def api_names(specs: tuple[Spec, ...]) -> set[str]:
    """The model's fields as the API names them (the switches are one ``channels`` list)."""
    return {"channels" if s.kind is Kind.SWITCH else s.name for s in specs}


def _clear_caches() -> None:
    openapi._document.cache_clear()
    openapi.shared_document.cache_clear()
    validation._registry.cache_clear()
    validation.validator.cache_clear()


# --- Today: every consumer names exactly the model's fields ------------------------------


def test_the_model_lists_every_revision_field() -> None:
    assert [f.name for f in fields(Content)] == [s.name for s in model.SPECS]
    assert all(s.label for s in model.SPECS)


def test_form_reads_exactly_the_models_fields(app: Any) -> None:
    with app.test_request_context("/announcements/new", method="POST", data={}):
        data = announcement_form_data()
    assert set(data) == {s.name for s in model.SPECS}
    assert data["repeats"] == "1" and data["priority"] == "normal"
    assert data["to_chats"] is False and data["area_ids"] == []


def test_api_schemas_have_exactly_the_models_fields(client: Any) -> None:
    doc = client.get(f"{API}/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    expected = api_names(model.SPECS)
    assert set(schemas["AnnouncementInput"]["properties"]) == expected
    assert set(schemas["AnnouncementPatch"]["properties"]) == expected
    revision = set(schemas["Revision"]["properties"])
    assert expected <= revision
    assert revision - expected == {"number", "topic_name", "areas", "author", "created_at"}
    required = {s.name for s in model.SPECS if s.required and s.default is None}
    assert set(schemas["AnnouncementInput"]["required"]) == (required | {"channels"})


def test_form_and_api_round_trip_saved_content(
    make_announcement: Callable[..., Announcement], session: Session, today: date
) -> None:
    ann = make_announcement("draft", spoken_text="大家好", chat_post_time="08:30")
    saved = Content.of(ann.current)
    assert set(content_json(saved)) == api_names(model.SPECS)
    again = announcements.parse_content(session, service_input(content_json(saved)), today=today)
    assert again == saved
    form = announcement_form_values(saved)
    assert set(form) == {s.name for s in model.SPECS}
    assert announcements.parse_content(session, form, today=today) == saved


# --- Tomorrow: a new field in the model reaches the form, the parser and the API ---------


@dataclass(frozen=True)
class WithSubtitle(Content):
    subtitle: str | None = spec(Kind.LINE, "副标题", required=False, max_len=40, doc="A subtitle.")


@pytest.fixture
def subtitle(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spec]:
    """The content model with one more field, as a developer would add it."""
    specs = tuple(replace(f.metadata["spec"], name=f.name) for f in fields(WithSubtitle))
    monkeypatch.setattr(model, "Content", WithSubtitle)
    monkeypatch.setattr(model, "SPECS", specs)
    monkeypatch.setattr(model, "SPEC", {s.name: s for s in specs})
    _clear_caches()
    yield model.SPEC["subtitle"]
    monkeypatch.undo()
    _clear_caches()


def test_a_new_field_reaches_the_parser(
    subtitle: Spec, session: Session, content: Callable[..., dict[str, Any]], today: date
) -> None:
    parsed = model.parse(session, content(subtitle="  春耕时节  "), today=today)
    assert isinstance(parsed, WithSubtitle) and parsed.subtitle == "春耕时节"
    with pytest.raises(ValidationError) as bad:
        model.parse(session, content(subtitle="长" * 41), today=today)
    assert set(bad.value.errors) == {"subtitle"}
    assert "副标题" in bad.value.render()["subtitle"]


def test_a_new_field_reaches_the_form(subtitle: Spec, app: Any) -> None:
    with app.test_request_context("/announcements/new", method="POST", data={"subtitle": "x"}):
        assert announcement_form_data()["subtitle"] == "x"


def test_a_new_field_reaches_the_api_document_validation_and_representation(
    subtitle: Spec,
    client: Any,
    session: Session,
    make_user: Callable[..., User],
    content: Callable[..., dict[str, Any]],
    today: date,
) -> None:
    doc = client.get(f"{API}/openapi.json").get_json()
    for name in ("AnnouncementInput", "AnnouncementPatch", "Revision"):
        prop = doc["components"]["schemas"][name]["properties"]["subtitle"]
        assert prop["type"] == ["string", "null"] and prop["maxLength"] == 40, name

    # Requests are validated against the served document: a wrong type is named.
    from cms.services import users

    token = users.issue_api_token(session, None, make_user(Role.EDITOR))
    session.commit()
    body = content(subtitle=5)
    body["channels"] = ["loudspeaker"]
    del body["to_loudspeaker"], body["to_chats"]
    answer = client.post(
        f"{API}/announcements", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 400
    assert set(answer.get_json()["error"]["fields"]) == {"subtitle"}

    parsed = model.parse(session, content(subtitle="春耕"), today=today)
    assert content_json(parsed)["subtitle"] == "春耕"


def test_a_new_field_reaches_the_revision_diff(subtitle: Spec) -> None:
    assert ("subtitle", "副标题") in announcements.diff_fields()
