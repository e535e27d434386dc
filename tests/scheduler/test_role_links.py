"""Pages follow the role: for every demo account, every internal link reachable from the
dashboard opens (no 403, no 404)."""

from __future__ import annotations

import re
from collections import Counter, deque
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from sqlalchemy import select

from cms.demo import ACCOUNTS, DEMO_PASSWORD, seed
from cms.models import Outlet
from cms.services import operators

PAGE_LIMIT = 400
"""Pages fetched per role at most."""
PER_ROUTE = 4
"""Pages fetched per route (the path with its numbers and dates as N): day pages link to the
next day without end, and one route answers alike for its objects; this keeps the walk wide."""
ROUTE = re.compile(r"[0-9]+")


class Links(HTMLParser):
    """The ``href`` of every ``<a>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def internal_links(base: str, html: str) -> list[str]:
    """Same-origin links of a page, as path and query (fragments dropped)."""
    parser = Links()
    parser.feed(html)
    out = []
    for href in parser.hrefs:
        url = urlsplit(urljoin(base, href))
        if url.scheme not in ("http", "https") or url.netloc != "localhost":
            continue
        out.append(url.path + (f"?{url.query}" if url.query else ""))
    return out


def walk(client, start: str = "/") -> tuple[dict[str, int], list[tuple[str, int, str]]]:  # type: ignore[no-untyped-def]
    """Breadth-first over internal links with GET; returns every status and the broken links."""
    seen = {start: ""}
    queue = deque([start])
    status: dict[str, int] = {}
    broken = []
    per_route: Counter[str] = Counter()
    while queue and len(status) < PAGE_LIMIT:
        path = queue.popleft()
        route = ROUTE.sub("N", path.split("?", 1)[0])
        if per_route[route] >= PER_ROUTE:
            continue
        per_route[route] += 1
        response = client.get(path)
        status[path] = response.status_code
        if response.status_code in (403, 404):
            broken.append((path, response.status_code, seen[path]))
        if response.mimetype != "text/html" or response.status_code != 200:
            continue
        for link in internal_links(f"http://localhost{path}", response.get_data(as_text=True)):
            if link not in seen:
                seen[link] = path
                queue.append(link)
    return status, broken


@pytest.fixture
def demo(session, settings, scheduler, clock):  # type: ignore[no-untyped-def]
    """The demo township after one scheduler pass at the real time (the pages use it)."""
    clock.set(datetime.now(UTC))
    seed(session, settings, now=clock.now())
    for outlet in session.scalars(select(Outlet)):
        operators.issue_outlet_token(session, None, outlet)
    session.commit()
    scheduler.run_once()


@pytest.mark.parametrize("username", [username for username, _name, _role in ACCOUNTS])
def test_no_link_leads_to_a_page_the_role_cannot_open(app, demo, username) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    status, broken = walk(client)
    assert broken == [], f"{username}: (page, status, linked from) {broken}"
    assert all(code < 500 for code in status.values()), status
    # The walk went somewhere: past the dashboard into the role's own pages.
    assert len(status) > 5, status
