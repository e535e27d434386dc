"""cms knows no publishing platform: outside its migrations (which must name the old tables
and columns), no file in ``cms/`` carries a platform's key, API name or identifier, nor its
name for users: 公众号 (the Official Account) is the WeChat plugin's word (its ``noun``), and
cms writes each platform's noun where it speaks of one (``cms.publishers.noun``). The
WeChat Official Account's live in ``wechat/`` (its plugin).

What stays, on purpose: "WeChat" as prose about the chat app people forward share pages into
(``cms/services/share.py``, ``cms/static/share.js``), which is no plugin's concern; and the
catalogues (``cms/translations``), whose entries are other files' words.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".html", ".js", ".css", ".txt", ".cfg", ".toml"}

# The Official Account's credential and API names, its hosts, and the plugin's identifiers.
FORBIDDEN = re.compile(
    r"app_?id|app_?secret|media_id|publish_id|freepublish|stable_token|draft/add"
    r"|weixin|qq\.com|wx[0-9a-f]{16}|access_token\?"
    r"|(?-i:Wechat|wechat|WECHAT)"
    r"|公众号",
    re.IGNORECASE,
)


def _hits(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(ROOT)
        if path.suffix not in SUFFIXES or rel.parts[:2] in {
            ("cms", "migrations"),
            ("cms", "translations"),
        }:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in FORBIDDEN.finditer(line):
                found.append(f"{rel}:{number}: {match.group(0)}")
    return found


def test_cms_names_no_publishing_platform() -> None:
    assert _hits(ROOT / "cms") == []


def test_the_check_finds_the_names_where_they_belong() -> None:
    # The plugin does carry them (so the pattern is not blind) …
    names = {hit.rsplit(": ", 1)[1].lower() for hit in _hits(ROOT / "wechat")}
    assert {
        "app_id",
        "app_secret",
        "media_id",
        "publish_id",
        "freepublish",
        "stable_token",
    } <= names
    # … and the names cms used to carry are caught.
    for old in (
        "WechatAccount",
        "thumb_media_id",
        "cms.services.wechat",
        "DALABA_WECHAT_API_URL",
        "url_for('wechat.accounts')",
        "https://api.weixin.qq.com",
        '<h3>{{ _("公众号") }}</h3>',
        'N_("{area}公众号")',
    ):
        assert FORBIDDEN.search(old), old
    assert "公众号" in names  # the plugin's noun
    assert not FORBIDDEN.search("forwarded into WeChat groups by hand")


# The chat platforms' names and configuration keys: each plugin's own words (its label,
# hint, intro, badge and notes), never cms's pages. cms's Python may still name a platform
# in comments and as the default of a ``platform`` column; its keys it never names.
CHAT_WORDS = re.compile(
    r"企业微信|钉钉|飞书|Telegram|WeCom|DingTalk|Feishu|DALABA_TELEGRAM|DALABA_ROBOT"
)
CHAT_KEYS = re.compile(r"DALABA_TELEGRAM|DALABA_ROBOT")


def _chat_hits(pattern: re.Pattern[str], folders: tuple[str, ...], suffixes: set[str]) -> list[str]:
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in suffixes or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found += [
                    f"{path.relative_to(ROOT)}:{number}: {m.group(0)}"
                    for m in pattern.finditer(line)
                ]
    return found


def test_cms_pages_name_no_chat_platform() -> None:
    assert _chat_hits(CHAT_WORDS, ("cms/templates", "cms/static"), {".html", ".js", ".css"}) == []


def test_cms_code_names_no_chat_platform_key() -> None:
    assert _chat_hits(CHAT_KEYS, ("cms",), {".py", ".html", ".js"}) == []


def test_the_chat_check_finds_the_words_where_they_belong() -> None:
    words = {hit.rsplit(": ", 1)[1] for hit in _chat_hits(CHAT_WORDS, ("bot", "robots"), {".py"})}
    assert {"企业微信", "钉钉", "飞书", "DALABA_TELEGRAM", "DALABA_ROBOT"} <= words
    assert CHAT_WORDS.search('<h2>{{ _("绑定群机器人（企业微信、钉钉、飞书）") }}</h2>')
