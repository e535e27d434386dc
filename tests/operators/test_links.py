"""Private links: guessing, revocation, isolation between outlets, path traversal, the page."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cms.models import OutletToken, Receipt, Role
from cms.services import operators as svc
from tests.conftest import login

ROUTES = (
    "/",
    "/today.mp3",
    "/{day}/0730.mp3",
    "/today/0730.mp3",
    "/{day}.zip",
    "/{day}.m3u8",
    "/feed.xml",
    "/loop.mp3",
    "/{day}/0730/loop.mp3",
)


@pytest.fixture
def two(make_outlet, make_program, link, grid, day):  # type: ignore[no-untyped-def]
    mine = make_outlet(area=grid["g1"])
    theirs = make_outlet(area=grid["g2"])
    ours = make_program(mine, day, 0, frequency=440)
    other = make_program(theirs, day, 0, frequency=990)
    return {"base": link(mine), "mine": mine, "theirs": theirs, "ours": ours, "other": other}


@pytest.mark.any_hour
def test_every_route_works_with_the_token(client, two, day) -> None:  # type: ignore[no-untyped-def]
    for route in ROUTES:
        response = client.get(two["base"] + route.format(day=day))
        assert response.status_code == 200, route
        # The token must not travel on in a Referer or land in a search index.
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"


@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(32),
        "a",
        "x" * 43,
        "x" * 500,
        "%00",
        "令牌",
        "' OR 1=1 --",
    ],
)
def test_guessed_or_garbage_tokens_are_404(client, two, day, token: str) -> None:  # type: ignore[no-untyped-def]
    for route in ROUTES:
        response = client.get(f"/o/{token}" + route.format(day=day))
        assert response.status_code == 404, (token, route)
        assert b"\xff\xfb" not in response.data  # no MP3 frame leaks into an error page


def test_near_miss_token_is_404(client, two) -> None:  # type: ignore[no-untyped-def]
    token = two["base"].removeprefix("/o/")
    last = "A" if token[-1] != "A" else "B"
    for variant in (token[:-1] + last, token[:-1], token + "A", token.upper(), token.lower()):
        if variant == token:
            continue
        assert client.get(f"/o/{variant}/today.mp3").status_code == 404


def test_only_the_hash_is_stored(session, two) -> None:  # type: ignore[no-untyped-def]
    token = two["base"].removeprefix("/o/")
    row = session.scalar(select(OutletToken).where(OutletToken.outlet_id == two["mine"].id))
    assert row.token_hash == svc.hash_token(token) != token
    assert token not in {row.token_hash, row.prefix} and len(row.prefix) < 10


def test_revoked_and_reissued_tokens(client, session, two, link) -> None:  # type: ignore[no-untyped-def]
    old = two["base"]
    assert client.get(f"{old}/today.mp3").status_code == 200
    new = link(two["mine"])  # re-issuing revokes the earlier link
    assert client.get(f"{old}/today.mp3").status_code == 404
    assert client.get(f"{new}/today.mp3").status_code == 200
    svc.revoke_outlet_tokens(session, None, two["mine"])
    session.commit()
    assert client.get(f"{new}/today.mp3").status_code == 404
    assert client.get(f"{new}/").status_code == 404


def test_retired_outlet_link_is_404(client, session, two) -> None:  # type: ignore[no-untyped-def]
    two["mine"].active = False
    session.commit()
    assert client.get(f"{two['base']}/today.mp3").status_code == 404


def test_a_token_cannot_reach_another_outlet(client, session, two, day) -> None:  # type: ignore[no-untyped-def]
    base, other = two["base"], two["other"]
    theirs = Path(other.path).read_bytes()
    for route in ROUTES[1:]:
        response = client.get(base + route.format(day=day))
        assert theirs not in response.data, route
    # The other outlet's program id through the confirm form: not found, nothing recorded.
    assert client.post(f"{base}/confirm/{other.id}").status_code == 404
    assert session.scalar(select(Receipt).where(Receipt.program_id == other.id)) is None
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f"program-{other.id}" not in page and f"program-{two['ours'].id}" in page


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/{day}/..%2F0730.mp3",
        "/{day}/../0730.mp3",
        "/..%2F{day}/0730.mp3",
        "/2026-13-45/0730.mp3",
        "/2026-1-1/0730.mp3",
        "/{day}/2460.mp3",
        "/{day}/7:30.mp3",
        "/{day}/0730x.mp3",
        "/{day}/%2e%2e.mp3",
        "/{day}/..%2f..%2fdalaba.db.mp3",
        "/..%2f..%2fdalaba.db.zip",
        "/{day}/0730/..%2f..%2floop.mp3",
        "/etc%2fpasswd.m3u8",
        "/feed.xml/..%2f..",
    ],
)
def test_path_traversal_in_every_parameter(client, two, day, path: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(two["base"] + path.format(day=day))
    assert response.status_code == 404, path
    assert b"root:" not in response.data and b"SQLite" not in response.data


def test_traversal_through_the_token_segment(client, two) -> None:  # type: ignore[no-untyped-def]
    token = two["base"].removeprefix("/o/")
    for path in (
        f"/o/..%2f{token}/today.mp3",
        f"/o/{token}%2f../today.mp3",
        "/o/../static/app.css",
    ):
        assert client.get(path).status_code == 404, path


def test_program_path_outside_the_data_folder_is_refused(
    client, session, two, day, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "secret.mp3"
    outside.write_bytes(b"secret")
    two["ours"].path = str(outside)
    session.commit()
    assert client.get(f"{two['base']}/{day}/0730.mp3").status_code == 404
    two["ours"].path = str(Path(two["ours"].path).parent / "data" / ".." / ".." / "secret.mp3")
    session.commit()
    assert client.get(f"{two['base']}/{day}/0730.mp3").status_code == 404


def test_page_lists_programs_and_confirms_with_csrf(csrf_app, session, two, day, clock) -> None:  # type: ignore[no-untyped-def]
    client = csrf_app.test_client()
    base, program = two["base"], two["ours"]
    clock.set(day, 7, 45)  # the 07:30 slot has just played
    page = client.get(f"{base}/").get_data(as_text=True)
    assert "<audio" in page and f"{day}/0730.mp3" in page
    assert f'data-testid="confirm-{program.id}"' in page
    # Without the form's token: refused.
    assert client.post(f"{base}/confirm/{program.id}").status_code == 400
    assert session.scalar(select(Receipt)) is None
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    for _ in range(3):
        response = client.post(f"{base}/confirm/{program.id}", data={"csrf_token": csrf})
        assert response.status_code == 302
    session.rollback()
    receipts = session.scalars(select(Receipt)).all()
    assert [(r.program_id, r.via, r.user_id, r.late) for r in receipts] == [
        (program.id, "link", None, False)
    ]
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f'data-testid="receipt-{program.id}"' in page
    assert f'data-testid="confirm-{program.id}"' not in page


def test_page_shows_coming_days_but_confirms_only_started_slots(
    client, make_outlet, make_program, link, day, clock
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    evening = make_program(outlet, day, 1)
    tomorrow = make_program(outlet, day + timedelta(days=1), 0)
    base = link(outlet)
    clock.set(day, 12)
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f"program-{evening.id}" in page and f"program-{tomorrow.id}" in page
    assert f"confirm-{evening.id}" not in page and f"confirm-{tomorrow.id}" not in page
    # Instead of the button: when it will be there.
    hint = page.split(f'data-testid="confirm-from-{evening.id}">', 1)[1].split("<", 1)[0]
    assert hint == "19:00 开播后可确认"
    assert f'data-testid="confirm-from-{tomorrow.id}">07:30 开播后可确认' in page
    response = client.post(f"{base}/confirm/{evening.id}", follow_redirects=True)
    assert "播出后再确认" in response.get_data(as_text=True)
    clock.set(day, 19, 5)
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f"confirm-{evening.id}" in page and f"confirm-from-{evening.id}" not in page


def test_page_says_when_an_unbuilt_program_can_be_confirmed(
    client, make_outlet, make_program, link, day, clock
) -> None:  # type: ignore[no-untyped-def]
    from cms.models import JobState

    outlet = make_outlet()
    evening = make_program(outlet, day, 1, state=JobState.PENDING)
    base = link(outlet)
    clock.set(day, 12)
    page = client.get(f"{base}/").get_data(as_text=True)
    assert f'data-testid="confirm-from-{evening.id}">节目生成后，19:00 开播后可确认' in page


def test_logged_in_operator_sees_only_their_outlets(
    app, session, make_user, two, day, clock
) -> None:  # type: ignore[no-untyped-def]
    operator = make_user(Role.OPERATOR)
    operator.outlets.append(two["mine"])
    session.commit()
    client = app.test_client()
    login(client, operator)
    page = client.get("/operator/").get_data(as_text=True)
    assert f'data-testid="outlet-{two["mine"].id}"' in page
    assert f'data-testid="outlet-{two["theirs"].id}"' not in page
    ours, other = two["ours"], two["other"]
    assert client.get(f"/operator/programs/{ours.id}.mp3").data == Path(ours.path).read_bytes()
    assert client.get(f"/operator/programs/{other.id}.mp3").status_code == 404
    assert client.post(f"/operator/programs/{other.id}/confirm").status_code == 404
    assert client.post(f"/operator/programs/{ours.id}/confirm").status_code == 302
    session.rollback()
    receipt = session.scalar(select(Receipt))
    assert (receipt.program_id, receipt.via, receipt.user_id) == (ours.id, "web", operator.id)
    # Staff without the operator role are turned away from this page.
    editor_client = app.test_client()
    login(editor_client, make_user(Role.EDITOR))
    assert editor_client.get("/operator/").status_code == 403


def test_admin_issues_and_revokes_links(app, session, make_user, make_outlet) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    page = client.post("/operator/links", data={"outlet_id": outlet.id, "action": "issue"})
    html = page.get_data(as_text=True)
    url = html.split('data-testid="new-link-url"', 1)[0].rsplit('value="', 1)[1].split('"', 1)[0]
    path = url.split("://", 1)[1].split("/", 1)[1]
    assert client.get(f"/{path}").status_code == 200
    # Shown once: the list afterwards holds only the prefix.
    listing = client.get("/operator/links").get_data(as_text=True)
    assert url not in listing and path.split("/")[1][:6] in listing
    for bad in ("99999999999999999999", "-1", "x", ""):
        assert (
            client.post("/operator/links", data={"outlet_id": bad, "action": "issue"}).status_code
            == 404
        )
    client.post("/operator/links", data={"outlet_id": outlet.id, "action": "revoke"})
    assert client.get(f"/{path}").status_code == 404
    operator_client = app.test_client()
    login(operator_client, make_user(Role.OPERATOR))
    assert operator_client.get("/operator/links").status_code == 403


def test_traversal_and_garbage_in_program_ids(app, client, session, make_user, two) -> None:  # type: ignore[no-untyped-def]
    base, ours = two["base"], two["ours"]
    for path in (
        f"{base}/confirm/-1",
        f"{base}/confirm/0",
        f"{base}/confirm/{ours.id}%2f..",
        f"{base}/confirm/..%2f{ours.id}",
        f"{base}/confirm/99999999999999999999",
    ):
        assert client.post(path).status_code in (404, 405), path
    operator = make_user(Role.OPERATOR)
    operator.outlets.append(two["mine"])
    session.commit()
    logged_in = app.test_client()
    login(logged_in, operator)
    for path in (
        "/operator/programs/..%2f..%2fdalaba.db.mp3",
        f"/operator/programs/{ours.id}%2f...mp3",
        "/operator/programs/-1.mp3",
        "/operator/programs/1e3.mp3",
    ):
        assert logged_in.get(path).status_code == 404, path
    assert session.scalar(select(Receipt)) is None


def test_a_new_link_can_be_handed_over(app, session, make_user, make_outlet) -> None:  # type: ignore[no-untyped-def]
    """After issuing: copy, share and print buttons, the QR code of the link, a printable card."""
    from cms.services.share import qr_svg

    outlet = make_outlet()
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    html = client.post(
        "/operator/links", data={"outlet_id": outlet.id, "action": "issue"}
    ).get_data(as_text=True)
    url = html.split('data-testid="new-link-url"', 1)[0].rsplit('value="', 1)[1].split('"', 1)[0]
    assert url.startswith("http") and "/o/" in url
    assert qr_svg(url) in html  # the QR code encodes exactly this link
    assert 'data-copy="new-link-url"' in html
    assert f'data-share-url="{url}"' in html
    assert "data-print" in html and "link-card.css" in html and "share.js" in html
    card = html.split('data-testid="link-card"', 1)[1].split("</section>", 1)[0]
    assert outlet.name in card and outlet.area.name in card and url in card
    assert "已播放" in card and "扫描二维码" in card
    # The listing afterwards shows neither the link nor its QR code.
    listing = client.get("/operator/links").get_data(as_text=True)
    assert url not in listing and "<svg" not in listing


def test_the_handover_card_in_english(app, session, make_user, make_outlet) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    client = app.test_client()
    admin = make_user(Role.ADMIN)
    login(client, admin)
    client.post("/lang", data={"lang": "en", "next": "/operator/links"})
    html = client.post(
        "/operator/links", data={"outlet_id": outlet.id, "action": "issue"}
    ).get_data(as_text=True)
    card = html.split('data-testid="new-link"', 1)[1].split("</section>", 1)[0]
    for word in ("Copy link", "Share…", "Print card", "Scan the QR code", "Played"):
        assert word in card
