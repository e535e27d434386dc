"""The English interface: every msgid translated, no Chinese left on English pages, zh_CN default."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from sqlalchemy import JSON, String, Text, select
from sqlalchemy.orm import Session

from cms.models import Announcement, Area, Base, Outlet, Role, User
from cms.services import operators
from cms.web import today
from cms.web.i18n import LANGUAGES, plugin_catalogues
from tests.conftest import login

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "cms" / "translations" / "en" / "LC_MESSAGES" / "messages.po"
# The plugin packages of this repository; each has its own catalogue (and babel.cfg).
PLUGIN_PACKAGES = ("bot", "robots", "wechat")
# The same keywords as the extraction command in the catalogue's header.
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None, "lazy_gettext": None, "Voice": (2,)}

# CJK ideographs and CJK/full-width punctuation; U+3000 (ideographic space) indents tree menus.
CJK = re.compile(r"[\u3001-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uffef]")
# Each language button names its language in that language.
LANGUAGE_NAMES = set(LANGUAGES.values())
BINARY_SUFFIXES = (
    ".mp3",
    ".ogg",
    ".m3u",
    ".m3u8",
    ".zip",
    ".xml",
    ".rss",
    ".json",
    ".xlsx",
    ".csv",
)


def extract_msgids(base: Path = ROOT) -> dict[tuple[str | None, str], list[str]]:
    """Every (context, msgid) the code under ``base`` uses, with where it occurs, via the
    ``babel.cfg`` there (the repository's: cms/ and the voice labels; a plugin package's)."""
    with (base / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f, str(base / "babel.cfg"))
    found: dict[tuple[str | None, str], list[str]] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(base), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            where = (base / filename).relative_to(ROOT)
            found.setdefault((context, msgid), []).append(f"{where}:{lineno}")
    return found


def load_catalogue(po: Path = PO) -> Catalog:
    with po.open("rb") as f:
        return read_po(f, locale="en")


@dataclass(frozen=True)
class Catalogue:
    """One English catalogue and the msgids of the code that owns it."""

    po: Path
    msgids: dict[tuple[str | None, str], list[str]]


def english_po(package: Path) -> Path:
    """A plugin package's own English catalogue (``translations/`` beside its ``babel.cfg``)."""
    return package / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def plugin_catalogue(package: Path) -> Catalogue:
    return Catalogue(english_po(package), extract_msgids(package))


def placeholders(text: str) -> set[str]:
    """The ``{name:spec}`` fields of a str.format template, spec included ({total:.0f})."""
    return {
        f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
        for _literal, name, spec, conv in string.Formatter().parse(text)
        if name is not None
    }


@pytest.fixture(scope="module")
def msgids() -> dict[tuple[str | None, str], list[str]]:
    found = extract_msgids()
    assert len(found) > 100, "extraction found suspiciously few msgids; is babel.cfg right?"
    return found


@pytest.fixture(scope="module")
def catalogues(msgids: dict[tuple[str | None, str], list[str]]) -> list[Catalogue]:
    """cms's catalogue, then each plugin package's."""
    found = [Catalogue(PO, msgids)]
    for package in PLUGIN_PACKAGES:
        catalogue = plugin_catalogue(ROOT / package)
        assert catalogue.msgids, f"extraction found no msgid in {package}/: is its babel.cfg right?"
        found.append(catalogue)
    return found


def missing_translations(catalogue: Catalogue) -> list[str]:
    """The msgids of ``catalogue``'s code that have no English entry in it."""
    loaded = load_catalogue(catalogue.po)
    assert not loaded.fuzzy, f"{catalogue.po} is marked fuzzy: none of it would be used"
    missing = []
    for (context, msgid), where in sorted(catalogue.msgids.items(), key=lambda item: item[1][0]):
        message = loaded.get(msgid, context)
        if message is None or not message.string or message.fuzzy:
            shown = f"{context}|{msgid}" if context else msgid
            missing.append(f"{shown!r} ({where[0]}) in {catalogue.po.relative_to(ROOT)}")
    return missing


def test_every_msgid_has_an_english_translation(catalogues: list[Catalogue]) -> None:
    """Each package's msgids are in that package's own catalogue: cms's (and the audio
    library's) in cms's, a plugin's in the plugin's."""
    missing = [line for catalogue in catalogues for line in missing_translations(catalogue)]
    assert not missing, f"{len(missing)} msgid(s) have no English translation:\n" + "\n".join(
        missing
    )


def test_a_plugins_messages_leave_the_cms_catalogue(catalogues: list[Catalogue]) -> None:
    """A msgid only a plugin uses is in that plugin's catalogue, not also in cms's."""
    cms, *plugins = catalogues
    stray = [
        f"{message.id!r} ({catalogue.msgids[(message.context, message.id)][0]})"
        for message in load_catalogue(PO)
        for catalogue in plugins
        if message.id
        and (message.context, message.id) in catalogue.msgids
        and (message.context, message.id) not in cms.msgids
    ]
    assert not stray, f"only a plugin uses these, yet {PO.relative_to(ROOT)} has them:\n" + (
        "\n".join(stray)
    )


def test_each_plugin_registers_its_catalogue_through_its_entry_point() -> None:
    registered = set(plugin_catalogues().values())
    for package in PLUGIN_PACKAGES:
        assert (ROOT / package / "translations").resolve() in registered, package


def test_translations_keep_placeholders_and_contain_no_chinese(
    catalogues: list[Catalogue],
) -> None:
    bad = []
    for catalogue in catalogues:
        bad += bad_translations(catalogue)
    assert not bad, "\n".join(bad)


def bad_translations(catalogue: Catalogue) -> list[str]:
    """Entries of ``catalogue`` whose English loses a placeholder or keeps Chinese."""
    bad = []
    for message in load_catalogue(catalogue.po):
        if (
            not message.id
            or not message.string
            or (message.context, message.id) not in catalogue.msgids
        ):
            continue
        if placeholders(message.id) != placeholders(message.string):
            bad.append(
                f"{message.id!r} → {message.string!r}: placeholders "
                f"{sorted(placeholders(message.id))} ≠ {sorted(placeholders(message.string))}"
            )
        if "%" in message.string and "%" not in message.id:
            # Jinja's gettext always applies %-formatting: a lone % breaks the page.
            bad.append(f"{message.id!r} → {message.string!r}: a % the source does not have")
        if CJK.search(message.string):
            bad.append(f"{message.id!r} → {message.string!r}: Chinese left in the translation")
    return bad


# --- Rendered pages ------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """Collects what a user can read: text nodes and the attributes browsers display.

    Text inside an element marked ``lang="zh…"`` is content declared Chinese (the wording of
    a notice template, which villagers hear in Chinese whatever the officer's language), not
    a label, and is left out.
    """

    SHOWN_ATTRIBUTES = {"placeholder", "title", "alt", "aria-label", "data-label", "data-confirm"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._chinese: tuple[str, int] | None = None  # the tag that opened it, nesting depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        values = dict(attrs)
        if self._chinese is not None and tag == self._chinese[0]:
            self._chinese = (tag, self._chinese[1] + 1)
        elif (
            self._chinese is None and tag != "html" and (values.get("lang") or "").startswith("zh")
        ):
            self._chinese = (tag, 1)
            self._skip += 1
        for name, value in attrs:
            if value and name in self.SHOWN_ATTRIBUTES:
                self.parts.append(value)
        if tag == "input" and values.get("type") in {"submit", "button"} and values.get("value"):
            self.parts.append(values["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1
        if self._chinese is not None and tag == self._chinese[0]:
            depth = self._chinese[1] - 1
            self._chinese = (tag, depth) if depth else None
            if not depth:
                self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.parts


def _strings_in(value: Any) -> Iterator[str]:
    """User data in a stored value. A stored message (``Message.dumps``) is not user data:
    its msgid must be translated where shown; only its parameters are user data."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            yield value
            return
        if isinstance(decoded, dict) and isinstance(decoded.get("msgid"), str):
            yield from _strings_in(decoded.get("params") or {})
            return
        yield value
        if not isinstance(decoded, str):
            yield from _strings_in(decoded)
    elif isinstance(value, dict) and isinstance(value.get("msgid"), str) and "params" in value:
        yield from _strings_in(value.get("params") or {})
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings_in(v)


def user_data(session: Session) -> list[str]:
    """Every text stored in the database (names, titles, bodies, audit details), longest first."""
    found: set[str] = set()
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, String | Text | JSON):
                for value in session.execute(select(column).distinct()).scalars():
                    for text in _strings_in(value):
                        found.update(line.strip() for line in text.splitlines() if line.strip())
    return sorted(found, key=len, reverse=True)


def chinese_left(html: str, data: list[str]) -> list[str]:
    """Visible strings that still hold Chinese once user data and language names are removed."""
    left = []
    for part in visible_text(html):
        rest = part
        for text in data:
            if text in rest:
                rest = rest.replace(text, " ")
        for name in LANGUAGE_NAMES:
            rest = rest.replace(name, " ")
        if CJK.search(rest):
            left.append(part)
    return left


@pytest.fixture
def demo(session: Session, settings) -> Session:  # type: ignore[no-untyped-def]
    """The demo township: realistic data on every page."""
    from cms.demo import seed

    seed(session, settings)
    session.commit()
    return session


def demo_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def set_english(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/lang", data={"lang": "en", "next": "/login"})
    assert response.status_code == 302


def pages_to_check(app, session: Session) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(path, username) for every HTML GET page, signed in as someone the route admits."""
    announcements = list(session.scalars(select(Announcement).order_by(Announcement.id)))
    outlet = session.scalars(select(Outlet).order_by(Outlet.id)).first()
    assert outlet is not None
    token = operators.issue_outlet_token(session, None, outlet)
    session.commit()
    args = {
        "announcement_id": [a.id for a in announcements],
        "outlet_id": [outlet.id],
        "token": [token],
        "day_text": [today(app.extensions["dalaba.settings"]).isoformat()],
    }
    by_role = {Role.ADMIN: "admin", Role.EDITOR: "wangli", Role.REVIEWER: "lishuji"}
    by_role[Role.OPERATOR] = "shiqiao"
    pages: list[tuple[str, str]] = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if (
                "GET" not in (rule.methods or ())
                or rule.endpoint == "static"
                or rule.rule.startswith("/api/")
                or rule.rule.endswith(BINARY_SUFFIXES)
                or any(arg not in args for arg in rule.arguments)
            ):
                continue
            allowed = getattr(app.view_functions[rule.endpoint], "_dalaba_rule", None)
            if allowed == "public" or allowed is None:
                username = "admin"
            else:
                role = Role.ADMIN if Role.ADMIN in allowed else sorted(allowed)[0]
                username = by_role[role]
            if "announcement_id" in rule.arguments:
                # Announcements in every state: each page shows different buttons and notes.
                for ann_id in args["announcement_id"]:
                    pages.append((url_for(rule.endpoint, announcement_id=ann_id), username))
            else:
                values = {arg: args[arg][0] for arg in rule.arguments}
                pages.append((url_for(rule.endpoint, **values), username))
    return sorted(set(pages))


def test_chinese_is_the_default_language(client, demo: Session) -> None:  # type: ignore[no-untyped-def]
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert "用户名" in html and "密码" in html
    # Only the other language is offered (Babel spells zh_CN as zh_Hans_CN).
    assert 'data-testid="lang-en"' in html and 'data-testid="lang-zh_CN"' not in html

    user = demo_user(demo, "wangli")
    assert user.locale is None
    client.post("/login", data={"username": "wangli", "password": "dalaba-demo"})
    html = client.get("/").get_data(as_text=True)
    assert '<html lang="zh-CN">' in html and "今日播出" in html


def test_login_page_in_english_has_no_chinese(client, demo: Session) -> None:  # type: ignore[no-untyped-def]
    set_english(client)
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert 'data-testid="lang-zh_CN"' in html and 'data-testid="lang-en"' not in html
    assert "Username" in html and "Password" in html and "Log in" in html
    assert chinese_left(html, user_data(demo)) == []

    response = client.post("/login", data={"username": "wangli", "password": "wrong"})
    html = response.get_data(as_text=True)
    assert response.status_code == 401 and "Wrong username or password" in html
    assert chinese_left(html, user_data(demo)) == []


def test_every_page_in_english_has_no_chinese_but_user_data(app, demo: Session) -> None:  # type: ignore[no-untyped-def]
    data = user_data(demo)
    pages = pages_to_check(app, demo)
    assert any(path == "/" for path, _user in pages)
    problems: dict[str, list[str]] = {}
    clients: dict[str, Any] = {}
    for path, username in pages:
        if username not in clients:
            client = clients[username] = app.test_client()
            login(client, demo_user(demo, username), "dalaba-demo")
            set_english(client)
        response = clients[username].get(path)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        assert '<html lang="en">' in html, path
        left = chinese_left(html, data)
        if left:
            problems[f"{path} (as {username})"] = left
    assert not problems, "Chinese left on English pages:\n" + "\n".join(
        f"{page}: {left}" for page, left in problems.items()
    )


def test_form_errors_in_english(client, demo: Session) -> None:  # type: ignore[no-untyped-def]
    login(client, demo_user(demo, "wangli"), "dalaba-demo")
    set_english(client)
    response = client.post(
        "/announcements/new",
        data={
            "title": "测试标题",
            "body": "测试正文",
            "start_date": "2030-01-10",
            "end_date": "2030-01-01",
            "action": "save",
        },
    )
    html = response.get_data(as_text=True)
    assert "The end date cannot be before the start date" in html
    assert "测试标题" in html
    assert chinese_left(html, [*user_data(demo), "测试标题", "测试正文"]) == []


def test_language_choice_persists_for_the_user(app, client, demo: Session) -> None:  # type: ignore[no-untyped-def]
    user = demo_user(demo, "wangli")
    login(client, user, "dalaba-demo")
    response = client.post("/lang", data={"lang": "en", "next": "/announcements/"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/announcements/")
    demo.rollback()  # end the snapshot: the app wrote through its own session
    assert demo_user(demo, "wangli").locale == "en"

    # A fresh browser (no cookie) gets English after logging in.
    other = app.test_client()
    assert '<html lang="zh-CN">' in other.get("/login").get_data(as_text=True)
    login(other, user, "dalaba-demo")
    html = other.get("/").get_data(as_text=True)
    assert '<html lang="en">' in html and "On air today" in html

    # Switching back is remembered too.
    other.post("/lang", data={"lang": "zh_CN"})
    demo.rollback()  # end the snapshot: the app wrote through its own session
    assert demo_user(demo, "wangli").locale == "zh_CN"
    third = app.test_client()
    login(third, user, "dalaba-demo")
    assert '<html lang="zh-CN">' in third.get("/").get_data(as_text=True)


def test_unknown_language_is_ignored(client, demo: Session) -> None:  # type: ignore[no-untyped-def]
    client.post("/lang", data={"lang": "xx"})
    assert '<html lang="zh-CN">' in client.get("/login").get_data(as_text=True)


def test_language_picked_before_login_is_remembered_then_kept_by_the_account(
    app, demo: Session
) -> None:  # type: ignore[no-untyped-def]
    from cms.web.i18n import LANG_COOKIE

    browser = app.test_client()
    html = browser.get("/login").get_data(as_text=True)
    # The login page says which language is active, and offers the other one.
    assert 'data-testid="lang-current"' in html and ">中文</strong>" in html
    response = browser.post("/lang", data={"lang": "en", "next": "/login"})
    cookie = response.headers.get("Set-Cookie", "")
    assert f"{LANG_COOKIE}=en" in cookie and "HttpOnly" in cookie and "Max-Age=" in cookie
    html = browser.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in html and ">English</strong>" in html

    # The browser remembers it without the session (closed and reopened).
    reopened = app.test_client()
    reopened.set_cookie(LANG_COOKIE, "en")
    assert '<html lang="en">' in reopened.get("/login").get_data(as_text=True)

    # Picked on the login page: the account takes it, although it had chosen Chinese before.
    user = demo_user(demo, "lishuji")
    user.locale = "zh_CN"
    demo.commit()
    login(browser, user, "dalaba-demo")
    assert '<html lang="en">' in browser.get("/").get_data(as_text=True)
    demo.rollback()
    demo.expire_all()  # the app wrote through its own session
    assert demo_user(demo, "lishuji").locale == "en"

    # A remembered (not picked) language does not override an account's own choice.
    demo_user(demo, "wangli").locale = "zh_CN"
    demo.commit()
    login(reopened, demo_user(demo, "wangli"), "dalaba-demo")
    assert '<html lang="zh-CN">' in reopened.get("/").get_data(as_text=True)
    # An account that never chose takes the browser's remembered language.
    fresh = app.test_client()
    fresh.set_cookie(LANG_COOKIE, "en")
    assert demo_user(demo, "admin").locale is None
    login(fresh, demo_user(demo, "admin"), "dalaba-demo")
    assert '<html lang="en">' in fresh.get("/").get_data(as_text=True)
    demo.rollback()
    demo.expire_all()  # the app wrote through its own session
    assert demo_user(demo, "admin").locale == "en"


@pytest.mark.parametrize("po", [PO, *(english_po(ROOT / p) for p in PLUGIN_PACKAGES)])
def test_the_catalogue_has_no_duplicate_entries(po: Path) -> None:
    """Two entries for one msgid: babel silently keeps one, so the other translation is lost."""
    entries: list[tuple[str | None, str]] = []
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        context = next((line for line in lines if line.startswith("msgctxt ")), None)
        msgid = next((line for line in lines if line.startswith("msgid ")), None)
        if msgid is not None and msgid != 'msgid ""':
            entries.append((context, msgid))
    duplicates = sorted({entry for entry in entries if entries.count(entry) > 1}, key=str)
    assert not duplicates, duplicates


@pytest.mark.parametrize(
    ("platform", "label", "hint"),
    [
        ("wecom", "WeCom", "WeCom: in the group chat"),
        ("dingtalk", "DingTalk", "DingTalk: in the group settings"),
    ],
)
def test_a_robots_refusal_and_the_telegram_bind_hint_read_in_english(  # type: ignore[no-untyped-def]
    client, session: Session, make_user, grid: dict[str, Area], platform: str, label: str, hint: str
) -> None:
    """The robots' words come from their own catalogue, the bind hint from cms's: one English
    page shows both."""
    login(client, make_user(Role.ADMIN))
    set_english(client)
    response = client.post(
        "/chats/robots",
        data={
            "platform": platform,
            "webhook": "https://example.com/hook",
            "area_id": grid["v1"].id,
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"This is not a {label} robot address" in html and hint in html
    assert "Webhook address" in html  # the robots' own field label
    assert chinese_left(html, user_data(session)) == []

    html = client.post("/chats/codes", data={"area_id": grid["v1"].id}).get_data(as_text=True)
    assert "Ask a group admin to send this in the group: " in html and "/bind " in html
    assert chinese_left(html, user_data(session)) == []


def test_every_catalogue_is_merged_into_the_english_interface(app) -> None:  # type: ignore[no-untyped-def]
    """One msgid of each plugin package, and one of cms, translated in an English request."""
    from flask_babel import force_locale, gettext

    with app.test_request_context(), force_locale("en"):
        assert gettext("Telegram 群") == "Telegram group"  # bot/
        assert gettext("Webhook 地址") == "Webhook address"  # robots/
        assert gettext("公众号系统繁忙，稍后重试") == (
            "The Official Account platform is busy; will try again later"
        )
        assert gettext("请群管理员在群里发送：") == "Ask a group admin to send this in the group: "
    with app.test_request_context(), force_locale("zh_CN"):
        assert gettext("Telegram 群") == "Telegram 群"
