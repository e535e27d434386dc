"""Who may call what: every route declares a rule, and every rule holds for every role."""

from __future__ import annotations

import re

import pytest
from werkzeug.routing import IntegerConverter

from cms.models import Role
from cms.web.auth import PUBLIC, route_rule
from tests.conftest import login

ADMIN, EDITOR, REVIEWER, OPERATOR = Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.OPERATOR
STAFF = {ADMIN, EDITOR, REVIEWER}
EVERYONE = set(Role)

# The rules of the core routes, written out so that a wrongly declared rule fails too.
EXPECTED: dict[str, set[Role] | str] = {
    "auth.login": PUBLIC,
    "auth.set_language": PUBLIC,
    "auth.logout": EVERYONE,
    "dashboard.index": EVERYONE,
    "announcements.index": STAFF,
    "announcements.show": STAFF,
    "announcements.revisions": STAFF,
    "announcements.create": {ADMIN, EDITOR},
    "announcements.edit": {ADMIN, EDITOR},
    "announcements.submit": {ADMIN, EDITOR},
    "announcements.approve": {ADMIN, REVIEWER},
    "announcements.reject": {ADMIN, REVIEWER},
    "announcements.review_queue": {ADMIN, REVIEWER},
    "announcements.withdraw": STAFF,
    "admin.areas": {ADMIN},
    "admin.area_update": {ADMIN},
    "admin.outlets": {ADMIN},
    "admin.outlet_edit": {ADMIN},
    "admin.users": {ADMIN},
    "admin.user_update": {ADMIN},
    "admin.topics": {ADMIN},
    "admin.settings_page": {ADMIN},
    "admin.tokens": {ADMIN},
    "admin.audit": {ADMIN},
}


def _sample_url(rule) -> str:  # type: ignore[no-untyped-def]
    """Fill a route's parameters with plausible values (ids of the seeded rows, a fake token)."""
    url = rule.rule
    for name, converter in rule._converters.items():
        number = isinstance(converter, IntegerConverter)
        value = "1" if number else "2026-11-28" if "date" in name else "x"
        url = re.sub(rf"<(?:[^:<>]+:)?{name}>", value, url)
    return url


def _endpoints(app):  # type: ignore[no-untyped-def]
    return sorted(
        {
            (r.endpoint, m, _sample_url(r))
            for r in app.url_map.iter_rules()
            for m in r.methods - {"HEAD", "OPTIONS"}
        }
    )


def test_every_route_declares_a_rule(app):
    with app.test_request_context():
        missing = [e for e, _, _ in _endpoints(app) if route_rule(e) is None]
    assert missing == [], f"routes without an access rule: {missing}"


def test_core_rules_are_as_designed(app):
    with app.test_request_context():
        for endpoint, expected in EXPECTED.items():
            declared = route_rule(endpoint)
            assert declared == (expected if expected == PUBLIC else frozenset(expected)), endpoint


@pytest.fixture
def seeded(app, session, make_user, make_announcement):  # type: ignore[no-untyped-def]
    from cms.services.outlets import save_outlet
    from cms.services.users import issue_api_token

    users = {role: make_user(role) for role in Role}
    for user in users.values():
        user.api_token = issue_api_token(session, None, user)
    ann = make_announcement("in_review")
    save_outlet(
        session,
        users[ADMIN],
        None,
        name="喇叭",
        kind="loudspeaker",
        area_id=ann.current.areas[0].id,
        slots="07:30",
    )
    session.commit()
    return users


@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r.value if r else "anonymous")
def test_rules_hold_for_every_role(app, seeded, role):
    client = app.test_client()
    if role is not None:
        login(client, seeded[role])
    with app.test_request_context():
        routes = [(e, m, u, route_rule(e)) for e, m, u in _endpoints(app)]
    problems = []
    for endpoint, method, url, allowed in routes:
        if endpoint in {"auth.logout", "static"}:
            continue
        headers = {}
        if url.startswith("/api/") and role is not None:
            headers["Authorization"] = f"Bearer {seeded[role].api_token}"
        response = client.open(url, method=method, headers=headers)
        status = response.status_code
        location = response.headers.get("Location", "")
        denied = status in {401, 403} or (status == 302 and "/login" in location)
        if status >= 500:
            problems.append(f"{method} {url}: {status}")
        elif allowed == PUBLIC:
            # (A public route may still answer 401 for wrong credentials, as /login does.)
            if status == 403 or (status == 302 and "/login" in location):
                problems.append(f"{method} {url}: public route answered {status}")
        elif role is None:
            if not denied:
                problems.append(f"{method} {url}: anonymous got {status}")
        elif (role in allowed) == denied:
            problems.append(
                f"{method} {url}: {role.value} got {status} (rule {sorted(r.value for r in allowed)})"
            )
    assert problems == []
