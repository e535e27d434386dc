"""Headless Chromium against the real app served by waitress, with CSRF on as in production.

Debian's ``chromium`` is driven by Playwright for Python; no browser is ever downloaded.
Without Chromium (or Playwright) these tests skip with a reason, except under CI (``CI`` set),
where a missing browser is a failure: CI must not go green by running nothing.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


def chromium_path() -> str | None:
    configured = os.environ.get("DALABA_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole run."""
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium not found (install Debian's chromium or set DALABA_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
        except Exception as exc:
            unavailable(f"Chromium at {executable} did not start: {exc}")
        yield browser
        browser.close()


@dataclass
class LiveServer:
    url: str
    settings: Any
    engine: Any

    def session(self) -> Any:
        from cms.db import make_session_factory

        return make_session_factory(self.engine)()


@contextmanager
def serve(data_dir: Path) -> Iterator[LiveServer]:
    """The demo township served by waitress on a free loopback port, production config."""
    import waitress

    from cms.db import make_engine, make_session_factory
    from cms.demo import seed
    from cms.migrate import upgrade
    from cms.settings import Settings
    from cms.web import create_app

    settings = Settings.from_env(
        {},
        data_dir=data_dir,
        secret_key="browser-test-secret",
        tts_engine="offline",
        scheduler_enabled=False,
    )
    engine = make_engine(settings.database_url, data_dir=settings.data_dir)
    upgrade(engine)
    with make_session_factory(engine)() as session:
        seed(session, settings)
        session.commit()
    app = create_app(settings, engine=engine)
    assert app.config.get("WTF_CSRF_ENABLED", True), "the browser suite runs with CSRF on"
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.effective_port}", settings, engine)
    finally:
        server.close()
        thread.join(timeout=5)
        engine.dispose()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh demo township for one test."""
    with serve(tmp_path / "data") as server:
        yield server


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One demo township shared by a module's tests that only look (and set a language)."""
    with serve(tmp_path_factory.mktemp("site") / "data") as server:
        yield server


@dataclass
class Problems:
    """What the browser complained about: script errors, CSP violations, failed requests."""

    items: list[str] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)

    def expect(self, status: int) -> None:
        """The next response with ``status`` is what the test wants (e.g. a 400 form)."""
        self.expected.append(status)

    def console(self, message: Any) -> None:
        # A failed load is reported with its address by response() instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.items.append(f"console error: {message.text}")

    def response(self, response: Any) -> None:
        if response.status in self.expected:
            self.expected.remove(response.status)
        elif response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.items.append(f"HTTP {response.status}: {response.url}")


@pytest.fixture(params=["phone", "desktop"])
def viewport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_page(
    browser: Any, live_server: LiveServer
) -> Iterator[Callable[..., tuple[Any, Problems]]]:
    """Open a fresh browser context (its own cookies) sized as a phone or a desktop."""
    contexts: list[Any] = []
    problems_seen: list[Problems] = []

    def open_page(size: str = "desktop") -> tuple[Any, Problems]:
        context = browser.new_context(
            base_url=live_server.url,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            **(PHONE if size == "phone" else DESKTOP),
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        problems = Problems()
        problems_seen.append(problems)
        page.on("console", problems.console)
        page.on("pageerror", lambda exc: problems.items.append(f"page error: {exc}"))
        page.on("response", problems.response)
        return page, problems

    yield open_page
    for context in contexts:
        context.close()
    found = [item for problems in problems_seen for item in problems.items]
    assert not found, "the browser reported problems:\n" + "\n".join(found)


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """Save a screenshot (the whole page unless asked) under test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        # Before the page has loaded, a phone lays it out 980 px wide and the shot is zoomed out.
        page.wait_for_load_state()
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
