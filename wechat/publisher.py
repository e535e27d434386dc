"""The Official Account publisher: access token, cover image, drafts, publishing.

The access token is cached on the account row with its expiry and refreshed a few minutes
before it expires (the platform allows few fetches a day). Fetching is guarded by a lease on
the same row, taken in a write transaction (``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR
UPDATE`` elsewhere), so two processes never fetch at once: the second waits for the first's
token. A token the platform refuses (40001/40014/42001) is refreshed once per request.

The token comes from ``cgi-bin/stable_token`` in normal mode, which hands out the same token
until five minutes before it expires and then a new one by itself
(https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/getStableAccessToken.html).
``force_refresh`` is used only when the platform refused a token that normal mode then hands
out again, at most :data:`FORCED_PER_DAY` times a (township) day per account: each forced
refresh invalidates the token every other system on the same AppID holds.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from cms.channels import FormField
from cms.db import unit_of_work
from cms.models import PublisherAccount
from cms.publishers import (
    Article,
    Limits,
    PublisherPlugin,
    PublishRefused,
    PublishRetry,
    PublishStatus,
    short_title,
)
from cms.services.errors import N_, Errors, Message
from cms.settings import ConfigError, Settings
from wechat.api import GARBLED, TOKEN_REFUSED, Api, MediaUnknown, TokenRejected, multipart

log = logging.getLogger(__name__)

PLATFORM = "wechat"
API_URL = "DALABA_WECHAT_API_URL"
DEFAULT_API_URL = "https://api.weixin.qq.com"
TOKEN_MARGIN = timedelta(minutes=5)
"""A cached token this close to its expiry is replaced before use."""
LEASE = timedelta(seconds=60)
WAIT_S = 20.0
FORCED_PER_DAY = 20
# ``draft/add`` refuses longer fields (https://developers.weixin.qq.com/doc/offiaccount/Draft_Box/Add_draft.html).
LIMITS = Limits(title=32, author=16, digest=128)
"""The platform's daily limit on ``force_refresh`` (shared with every other system on the AppID)."""

NO_ACCOUNT = N_("公众号账号不存在或已停用")
TOKEN_BUSY = N_("另一个进程正在获取公众号访问令牌，稍后重试")
FORCED_LIMIT = N_(
    "公众号不接受刚取得的访问令牌，而今天强制刷新令牌的 {limit} 次已用完（会影响同一公众号的其他系统），明天自动重试"
)
PUBLISH_FAILED = N_("公众号发表失败（状态 {status}：{label}{idx}），草稿仍在公众号后台")
PUBLISH_REASONS = {
    2: N_("原创声明失败"),
    3: N_("常规失败"),
    4: N_("平台审核不通过"),
}
# Published, then gone: the draft left the draft box when it was published.
PUBLISHED_THEN_DELETED = N_("文章已发布，之后在公众号后台被删除（状态 5）")
PUBLISHED_THEN_BLOCKED = N_("文章已发布，之后被平台封禁（状态 6）")


@dataclass(frozen=True)
class _Credentials:
    app_id: str
    app_secret: str
    token: str | None


def article_html(text: str) -> str:
    """The article body: the notice's text escaped, one ``<p>`` per line."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)


def _cover() -> bytes:
    return files("wechat").joinpath("data/cover.png").read_bytes()


class WechatPublisher:
    """Publishes to the Official Accounts stored as ``publisher_account`` rows of platform
    ``wechat``: AppID and AppSecret in their ``credentials``, the access token, its lease
    and the day's forced refreshes in the generic token columns, the cover's permanent media
    id in ``cover_ref``."""

    platform = PLATFORM

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], api: Api | None = None):
        self.sessions = sessions
        self.tz = settings.tz
        self.api = api or Api(api_url(settings))
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    # -- the access token ----------------------------------------------------------------

    def token(self, account_id: int, now: datetime, stale: str | None = None) -> str:
        """A valid access token (``stale``: one the platform just refused; never returned)."""
        me = f"{self.holder}:{secrets.token_hex(4)}"
        deadline = time.monotonic() + WAIT_S
        while True:
            decision, value = unit_of_work(
                self.sessions, lambda s: self._token_or_lease(s, account_id, now, stale, me)
            )
            if decision == "token":
                return value
            if decision == "fetch":
                return self._fetch(account_id, now, value, stale, me)
            if time.monotonic() >= deadline:
                raise PublishRetry(Message(TOKEN_BUSY), retry_after=30)
            time.sleep(0.05)

    def _account(self, session: Session, account_id: int, lock: bool = False) -> PublisherAccount:
        account = session.get(PublisherAccount, account_id, with_for_update=lock)
        if account is None or not account.active or account.platform != PLATFORM:
            raise PublishRefused(Message(NO_ACCOUNT))
        return account

    def _token_or_lease(
        self, session: Session, account_id: int, now: datetime, stale: str | None, me: str
    ) -> tuple[str, Any]:
        account = self._account(session, account_id, lock=True)
        if (
            account.access_token
            and account.access_token != stale
            and account.token_expires_at is not None
            and account.token_expires_at > now + TOKEN_MARGIN
        ):
            return "token", account.access_token
        if account.token_lease_until is not None and account.token_lease_until > now:
            return "wait", None
        account.token_lease_by, account.token_lease_until = me, now + LEASE
        held = account.credentials or {}
        return "fetch", _Credentials(
            str(held.get("app_id", "")), str(held.get("app_secret", "")), account.access_token
        )

    def _fetch(
        self, account_id: int, now: datetime, creds: _Credentials, stale: str | None, me: str
    ) -> str:
        try:
            data = self._stable_token(creds, force=False)
            if stale is not None and data.get("access_token") == stale:
                # The platform refused the token it still hands out: only a forced refresh
                # gets another (counted: the platform allows few, and they hurt others).
                self._count_forced(account_id, now)
                data = self._stable_token(creds, force=True)
            token = str(data.get("access_token") or "")
            expires_in = int(data.get("expires_in") or 0)
            if not token or expires_in <= 0:
                raise PublishRetry(Message(GARBLED))
        except BaseException:
            self._release(account_id, me, None, None)
            raise
        self._release(account_id, me, token, now + timedelta(seconds=expires_in))
        log.info("Official Account %s: new access token, valid %d s", account_id, expires_in)
        return token

    def _count_forced(self, account_id: int, now: datetime) -> None:
        """Count one forced refresh for today, or refuse when today's are used up."""
        today = now.astimezone(self.tz).date()

        def count(session: Session) -> bool:
            account = self._account(session, account_id, lock=True)
            used = account.token_refreshes if account.token_refresh_day == today else 0
            if used >= FORCED_PER_DAY:
                return False
            account.token_refresh_day, account.token_refreshes = today, used + 1
            return True

        if not unit_of_work(self.sessions, count):
            raise PublishRetry(
                Message(FORCED_LIMIT, {"limit": FORCED_PER_DAY}),
                retry_after=_seconds_to_tomorrow(now, today, self),
            )

    def _stable_token(self, creds: _Credentials, force: bool) -> dict[str, Any]:
        # The stable-token endpoint takes the secret in the body, out of URLs and proxy logs.
        body = json.dumps(
            {
                "grant_type": "client_credential",
                "appid": creds.app_id,
                "secret": creds.app_secret,
                "force_refresh": force,
            }
        ).encode()
        try:
            return self.api.request(
                "POST",
                "/cgi-bin/stable_token",
                body=body,
                repeatable=True,
                hide=(creds.app_secret,),
            )
        except TokenRejected as exc:
            raise PublishRetry(Message(TOKEN_REFUSED, {"errcode": exc.errcode})) from None

    def _release(
        self, account_id: int, me: str, token: str | None, expires_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {"token_lease_by": None, "token_lease_until": None}
        if token is not None:
            values.update(access_token=token, token_expires_at=expires_at)
        unit_of_work(
            self.sessions,
            lambda s: s.execute(
                update(PublisherAccount)
                .where(PublisherAccount.id == account_id, PublisherAccount.token_lease_by == me)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )

    def call(
        self,
        account_id: int,
        now: datetime,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        repeatable: bool,
        upload: tuple[bytes, str] | None = None,
        query: dict[str, str] | None = None,
        sending: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """One authenticated POST; a refused token is replaced and the call tried once more."""
        token = self.token(account_id, now)
        for attempt in (1, 2):
            if upload is not None:
                body, content_type = upload
            else:
                # Raw UTF-8: the platform shows ``\\uXXXX`` escapes literally in articles.
                body = json.dumps(payload or {}, ensure_ascii=False).encode("utf-8")
                content_type = "application/json; charset=utf-8"
            if sending is not None:
                sending()
            try:
                return self.api.request(
                    "POST",
                    path,
                    query={"access_token": token, **(query or {})},
                    body=body,
                    content_type=content_type,
                    repeatable=repeatable,
                    hide=(token,),
                )
            except TokenRejected as exc:
                if attempt == 2:
                    raise PublishRetry(Message(TOKEN_REFUSED, {"errcode": exc.errcode})) from None
                token = self.token(account_id, now, stale=token)
        raise AssertionError("unreachable")

    # -- the publisher interface ---------------------------------------------------------

    def thumb_media_id(self, account_id: int, now: datetime, forget: str | None = None) -> str:
        """The cover's permanent media id, uploaded the first time and remembered.

        ``forget``: a remembered id the platform no longer knows (40007): upload again.
        """
        if forget is not None:
            unit_of_work(
                self.sessions,
                lambda s: s.execute(
                    update(PublisherAccount)
                    .where(PublisherAccount.id == account_id, PublisherAccount.cover_ref == forget)
                    .values(cover_ref=None)
                    .execution_options(synchronize_session=False)
                ),
            )
        known = unit_of_work(
            self.sessions, lambda s: self._account(s, account_id).cover_ref, write=False
        )
        if known:
            return known
        data = self.call(
            account_id,
            now,
            "/cgi-bin/material/add_material",
            query={"type": "image"},
            upload=multipart("media", "dalaba-cover.png", "image/png", _cover()),
            repeatable=True,
        )
        media_id = str(data.get("media_id") or "")
        if not media_id:
            raise PublishRetry(Message(GARBLED))
        unit_of_work(
            self.sessions,
            lambda s: s.execute(
                update(PublisherAccount)
                .where(PublisherAccount.id == account_id)
                .values(cover_ref=media_id)
                .execution_options(synchronize_session=False)
            ),
        )
        return media_id

    def create_draft(self, article: Article, now: datetime, sending: Callable[[], None]) -> str:
        thumb = self.thumb_media_id(article.account_id, now)
        try:
            data = self._draft(article, thumb, now, sending)
        except MediaUnknown:
            # The remembered cover was deleted in the back office: upload it again, once.
            # 40007 created nothing, so sending the draft again makes one draft.
            fresh = self.thumb_media_id(article.account_id, now, forget=thumb)
            if fresh == thumb:
                raise
            data = self._draft(article, fresh, now, sending)
        media_id = str(data.get("media_id") or "")
        if not media_id:
            raise PublishRetry(Message(GARBLED))
        return media_id

    def _draft(
        self, article: Article, thumb: str, now: datetime, sending: Callable[[], None]
    ) -> dict[str, Any]:
        """``draft/add`` with every field within the platform's limits."""
        payload = {
            "articles": [
                {
                    "title": short_title(article.title, LIMITS.title),
                    "author": article.author[: LIMITS.author],
                    "digest": _digest(article.text),
                    "content": article_html(article.text),
                    "content_source_url": article.source_url or "",
                    "thumb_media_id": thumb,
                    "need_open_comment": 0,
                    "only_fans_can_comment": 0,
                }
            ]
        }
        return self.call(
            article.account_id,
            now,
            "/cgi-bin/draft/add",
            payload,
            repeatable=False,
            sending=sending,
        )

    def submit(
        self, account_id: int, draft_ref: str, now: datetime, sending: Callable[[], None]
    ) -> str:
        data = self.call(
            account_id,
            now,
            "/cgi-bin/freepublish/submit",
            {"media_id": draft_ref},
            repeatable=False,
            sending=sending,
        )
        return str(data.get("publish_id") or "")

    def poll(self, account_id: int, publish_ref: str, now: datetime) -> PublishStatus:
        data = self.call(
            account_id,
            now,
            "/cgi-bin/freepublish/get",
            {"publish_id": publish_ref},
            repeatable=True,
        )
        status = int(data.get("publish_status", 1))
        if status == 1:
            return PublishStatus(done=False)
        if status == 0:
            items = (data.get("article_detail") or {}).get("item") or [{}]
            return PublishStatus(done=True, article_url=str(items[0].get("article_url") or ""))
        if status in (5, 6):
            items = (data.get("article_detail") or {}).get("item") or [{}]
            return PublishStatus(
                done=True,
                article_url=str(items[0].get("article_url") or "") or None,
                removed=Message(PUBLISHED_THEN_DELETED if status == 5 else PUBLISHED_THEN_BLOCKED),
            )
        reason = PUBLISH_REASONS.get(status, N_("未知原因"))
        fail_idx = data.get("fail_idx") or []
        return PublishStatus(
            done=True,
            failure=Message(
                PUBLISH_FAILED,
                {"status": status, "label": reason, "idx": f" {fail_idx}" if fail_idx else ""},
            ),
        )


def _digest(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LIMITS.digest else flat[: LIMITS.digest - 1] + "…"


def _seconds_to_tomorrow(now: datetime, today: date, publisher: WechatPublisher) -> float:
    from datetime import time as clock_time

    midnight = datetime.combine(today + timedelta(days=1), clock_time(0, 5), tzinfo=publisher.tz)
    return max((midnight - now).total_seconds(), 60.0)


def from_settings(settings: Settings, sessions: sessionmaker[Session]) -> WechatPublisher:
    """The publisher factory: always available (accounts live in the database)."""
    return WechatPublisher(settings, sessions)


def api_url(settings: Settings) -> str:
    """``DALABA_WECHAT_API_URL``: the Official Account API (a proxy's address, or a loopback
    fake in tests); the platform's own by default.

    Raises:
        ConfigError: not an http(s) address.
    """
    url = settings.plugin_env(API_URL, DEFAULT_API_URL).rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{API_URL} 应以 https:// 或 http:// 开头（当前为 {url!r}）")
    return url


APP_ID = re.compile(r"wx[0-9a-f]{16}")
APP_SECRET = re.compile(r"[0-9A-Za-z]{32}")
CREDENTIALS = (
    FormField("app_id", N_("AppID"), required=True, placeholder="wx…", max_len=32),
    FormField("app_secret", N_("AppSecret"), type="password", required=True, secret=True),
)


def validate_credentials(values: Mapping[str, str], new: bool) -> None:
    """An account's AppID and AppSecret (the secret's value is never echoed back).

    Raises:
        ValidationError: on ``app_id`` or ``app_secret``.
    """
    errors = Errors()
    app_id, secret = values.get("app_id", ""), values.get("app_secret", "")
    if app_id and not APP_ID.fullmatch(app_id):
        errors.add(
            "app_id", N_("AppID 应为 wx 开头的 18 位字符，见公众号后台 设置与开发 → 基本配置")
        )
    if secret and not APP_SECRET.fullmatch(secret):
        errors.add("app_secret", N_("AppSecret 应为 32 位字母和数字"))
    elif not secret and new:
        errors.add("app_secret", N_("请填写 AppSecret"))
    errors.raise_if_any()


LABEL = N_("微信公众号")
# How running text names it ("{area}公众号", "公众号文章").
NOUN = N_("公众号")
# What cms stored (cms.jobs.articles) before its messages named the platform: rows of older
# versions, all this platform's articles, still carry them; kept so they read in English.
STORED_BEFORE = (
    N_(
        "请求已发出但没有收到回答，可能已经生效：请到公众号后台查看草稿箱和发表记录，再决定是否重试"
    ),
    N_("公众号接口出现意外错误，稍后重试"),
    N_(
        "发布结果未知：提交发布 {hours} 小时后公众号仍未给出结果。请到公众号后台 发表记录 查看；点 重试 继续查询"
    ),
)
INTRO = N_(
    "审核通过、发往群聊的公告会自动在公众号草稿箱里生成一篇文章；审核员在公告的“音频与发送”页按“发布”即可发表。AppSecret 保存后不再显示。"
)

plugin = PublisherPlugin(
    platform=PLATFORM,
    publisher=from_settings,
    limits=LIMITS,
    label=LABEL,
    intro=INTRO,
    noun=NOUN,
    check=api_url,
    credentials=CREDENTIALS,
    validate_credentials=validate_credentials,
    # The package's own English catalogue.
    translations=Path(__file__).resolve().parent / "translations",
)
"""The ``dalaba.publishers`` entry point."""
