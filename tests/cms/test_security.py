"""CSRF, escaping, password storage, login throttling, redirects and headers."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from cms.models import Announcement, LoginFailure, Role, User
from cms.services import announcements as svc
from cms.services import areas, outlets, topics
from tests.conftest import PASSWORD, login

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF token"
    return match.group(1)


def test_csrf_required_on_login_and_forms(csrf_app, make_user, grid, topic, content):
    client = csrf_app.test_client()
    editor = make_user(Role.EDITOR)
    response = client.post("/login", data={"username": editor.username, "password": PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    token = _csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"username": editor.username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    data = content()
    data["to_loudspeaker"] = "on"
    data["to_chats"] = "on"
    response = client.post("/announcements/new", data=data)
    assert response.status_code == 400
    page = client.get("/announcements/new").get_data(as_text=True)
    response = client.post("/announcements/new", data={**data, "csrf_token": _csrf_token(page)})
    assert response.status_code == 302


def test_every_form_carries_a_csrf_token(app, make_user, make_announcement):
    admin = make_user(Role.ADMIN)
    make_announcement("in_review")
    client = app.test_client()
    login(client, admin)
    for url in [
        "/announcements/new",
        "/announcements/1",
        "/admin/areas",
        "/admin/users",
        "/admin/topics",
        "/admin/settings",
        "/admin/tokens",
        "/admin/outlets/new",
        "/",
    ]:
        html = client.get(url).get_data(as_text=True)
        forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, re.S)
        assert forms, url
        for form in forms:
            assert 'name="csrf_token"' in form, f"{url}: {form[:200]}"


def test_user_text_is_escaped_everywhere(app, session, make_user, grid, topic, content, today):
    admin = make_user(Role.ADMIN, display_name=XSS)
    area = areas.create_area(
        session, admin, name=XSS[:80], kind="village", parent_id=grid["town"].id
    )
    topics.save_topic(session, admin, topic, name=XSS[:40])
    outlets.save_outlet(
        session, admin, None, name=XSS[:80], kind="loudspeaker", area_id=area.id, slots="07:30"
    )
    editor = make_user(Role.EDITOR, display_name=XSS)
    ann = svc.create(
        session,
        editor,
        content(title=XSS, body=XSS + "\n第二行", spoken_text=XSS, area_ids=[area.id]),
        today=today,
    )
    svc.submit(session, editor, ann)
    svc.reject(session, admin, ann, XSS)
    session.commit()
    client = app.test_client()
    login(client, admin)
    for url in [
        "/",
        f"/announcements/{ann.id}",
        "/announcements/",
        "/admin/areas",
        "/admin/outlets",
        "/admin/users",
        "/admin/topics",
        "/admin/audit",
        f"/announcements/{ann.id}/revisions",
        f"/announcements/{ann.id}/edit",
    ]:
        html = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url


def test_passwords_are_hashed(session, make_user):
    user = make_user(Role.EDITOR)
    stored = session.get(User, user.id).password_hash
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_login_throttled_after_repeated_failures(app, session, make_user):
    user = make_user(Role.EDITOR)
    client = app.test_client()
    for _ in range(5):
        assert (
            client.post("/login", data={"username": user.username, "password": "wrong"}).status_code
            == 401
        )
    response = client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "分钟后（" in response.get_data(as_text=True)  # when to try again
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # Another account from the same address is not locked by these five.
    other = make_user(Role.EDITOR)
    assert (
        client.post("/login", data={"username": other.username, "password": PASSWORD}).status_code
        == 302
    )
    assert session.scalar(select(func.count()).select_from(LoginFailure)) == 5


def test_login_redirect_stays_on_site(app, make_user):
    user = make_user(Role.EDITOR)
    client = app.test_client()
    response = client.post(
        "/login?next=//evil.example/x", data={"username": user.username, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/"
    client.post("/logout")
    response = client.post(
        "/login?next=/announcements/", data={"username": user.username, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/announcements/"


def test_deactivated_user_is_logged_out(app, session, make_user):
    user = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, user)
    assert client.get("/announcements/").status_code == 200
    session.get(User, user.id).active = False
    session.commit()
    assert client.get("/announcements/").status_code == 302


def test_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_session_cookie_flags(app, make_user):
    client = app.test_client()
    user = make_user(Role.EDITOR)
    response = client.post("/login", data={"username": user.username, "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_nothing_saved_on_forbidden_post(app, session, make_user, content):
    reviewer = make_user(Role.REVIEWER)
    client = app.test_client()
    login(client, reviewer)
    response = client.post("/announcements/new", data=content())
    assert response.status_code == 403
    assert session.scalar(select(func.count()).select_from(Announcement)) == 0
