"""Operator-link downloads keep their own caching, even for someone who is signed in."""

from __future__ import annotations

from cms.models import Role
from tests.conftest import login


def test_link_downloads_keep_revalidation_when_signed_in(
    client, make_user, make_outlet, make_program, link, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    make_program(outlet, day)
    base = link(outlet)
    url = f"{base}/{day}/0730.mp3"
    anonymous = client.get(url)
    assert anonymous.status_code == 200
    assert anonymous.headers["Cache-Control"] == "private, no-cache"
    assert "no-store" not in client.get(f"{base}/").headers.get("Cache-Control", "")
    login(client, make_user(Role.ADMIN))
    signed_in = client.get(url)
    assert signed_in.headers["Cache-Control"] == "private, no-cache"
    again = client.get(url, headers={"If-None-Match": signed_in.headers["ETag"]})
    assert again.status_code == 304
    assert again.headers["Cache-Control"] == "private, no-cache"
    # A page rendered while signed in (it may show the visitor's name) is not stored.
    assert client.get(f"{base}/").headers["Cache-Control"] == "no-store"
