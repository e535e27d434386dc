"""Schemathesis against the served OpenAPI document: no answer contradicts the document.

A short, bounded run (a few examples per operation, derandomised): every status code, header
and body the server gives must be one the document allows, and requests the document calls
valid must not be refused (and the reverse: what it calls invalid must not be accepted).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cms.models import Role
from cms.services.users import issue_api_token

EXAMPLES = 8
# Rules the document states in words because JSON Schema cannot (existing rows, today's date,
# uniqueness): a schema-valid request may be refused with 400 naming only these fields.
SERVER_RULES = {
    "GET /announcements": {"area_id", "topic_id"},
    "POST /announcements": {"area_ids", "topic_id", "end_date", "chat_post_time"},
    "PUT /announcements/{announcement_id}": {"area_ids", "topic_id", "end_date", "chat_post_time"},
    "PATCH /announcements/{announcement_id}": {
        "area_ids",
        "topic_id",
        "end_date",
        "chat_post_time",
        "channels",
    },
    "POST /areas": {"name", "parent_id", "kind"},
}


def accepted_unless_a_stated_rule(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's positive-data check, but a 400 naming only fields whose further rules
    the document states (SERVER_RULES) is the server keeping its word."""
    if response.status_code == 400:
        fields = set(response.json()["error"]["fields"])
        if fields and fields <= SERVER_RULES.get(case.operation.label, set()):
            return None
    return positive_data_acceptance(ctx, response, case)


@pytest.fixture
def admin_token(session: Any, make_user: Any, grid: Any, topic: Any) -> str:
    token = issue_api_token(session, None, make_user(Role.ADMIN))
    session.commit()
    return token


def test_the_api_does_what_its_document_says(app: Any, admin_token: str) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {admin_token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                headers=headers,
                excluded_checks=[positive_data_acceptance],
                additional_checks=[accepted_unless_a_stated_rule],
            )

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # each operation's finding, together
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 14
    assert failures == [], "\n\n".join(failures)


@pytest.mark.parametrize(
    "path",
    [
        "/announcements/987654",
        "/announcements/0",
        "/announcements/99999999999",
        "/announcements/987654/submit",
        "/announcements/987654/revisions/1",
        "/areas/987654",
    ],
)
def test_a_missing_resource_is_404_whatever_the_method(app: Any, admin_token: str, path: str):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {admin_token}"}
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        response = client.open("/api/v1" + path, method=method, headers=headers, json={})
        assert response.status_code == 404, (method, path)
        assert response.get_json()["error"]["code"] == "not_found"


def test_an_existing_resource_still_says_405_for_a_method_it_lacks(
    app: Any, admin_token: str, grid: Any
) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {admin_token}"}
    response = client.delete(f"/api/v1/areas/{grid['v1'].id}", headers=headers)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    assert client.put("/api/v1/announcements/987654").status_code == 401  # no token: 401 first


@pytest.mark.parametrize("name", ["area_id", "topic_id", "status", "page", "per_page"])
def test_an_empty_query_parameter_is_refused(app: Any, admin_token: str, name: str) -> None:
    response = app.test_client().get(
        f"/api/v1/announcements?{name}=", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status_code == 400
    assert list(response.get_json()["error"]["fields"]) == [name]


def test_the_document_states_the_refused_characters_and_the_cross_field_rules(app: Any) -> None:
    import re

    document = app.test_client().get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    title = schemas["AnnouncementInput"]["properties"]["title"]
    for refused in ("\u0085", "\ue000", "\U000f0001", "\u202e", "\n", "\x07"):
        assert not re.search(title["pattern"], f"标{refused}题"), ascii(refused)
    assert re.search(title["pattern"], "标题 Title 😀")
    assert not re.search(title["pattern"], "   ")  # nothing left after trimming
    body = schemas["AnnouncementInput"]["properties"]["body"]
    assert re.search(body["pattern"], "第一行\n第二行\t")
    rate = schemas["AnnouncementInput"]["properties"]["rate"]
    assert (rate["minimum"], rate["maximum"]) == (-50, 50)
    rules = schemas["AnnouncementInput"]
    assert rules["then"]["required"] == ["chat_post_time"]
    assert "end_date" in rules["description"] and "past" in rules["description"]
