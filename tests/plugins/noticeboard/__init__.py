"""公示栏 (``noticeboard``): a made-up publishing platform, for the test that adds a publisher
only through an entry point. Its "platform" is the in-memory :data:`BOARD`; its credentials
are a board number and a write key (secret); its titles are at most 10 characters."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from cms.channels import FormField
from cms.db import unit_of_work
from cms.models import PublisherAccount
from cms.publishers import (
    Article,
    Limits,
    PublisherPlugin,
    PublishRefused,
    PublishStatus,
    short_title,
)
from cms.services.errors import Errors, Message
from cms.settings import Settings

PLATFORM = "noticeboard"
LABEL = "公示栏"
LIMITS = Limits(title=10, author=6, digest=20)
BAD_BOARD = "公示栏编号应为 nb- 加 4 位数字"
NO_KEY = "请填写公示栏写入密钥"
NUMBER = re.compile(r"nb-[0-9]{4}")


@dataclass
class Board:
    """What the made-up platform holds: drafts and published posts, by reference."""

    drafts: dict[str, dict[str, str]] = field(default_factory=dict)
    published: dict[str, str] = field(default_factory=dict)
    keys_seen: list[str] = field(default_factory=list)


BOARD = Board()


class NoticeboardPublisher:
    platform = PLATFORM

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def _credentials(self, account_id: int) -> dict[str, str]:
        def read(session: Session) -> dict[str, str]:
            account = session.get(PublisherAccount, account_id)
            if account is None or account.platform != PLATFORM:
                raise PublishRefused(Message("公示栏账号不存在"))
            return dict(account.credentials)

        return unit_of_work(self.sessions, read, write=False)

    def create_draft(self, article: Article, now: datetime, sending: Callable[[], None]) -> str:
        held = self._credentials(article.account_id)
        BOARD.keys_seen.append(held["write_key"])
        sending()
        ref = f"{held['board']}/d{len(BOARD.drafts) + 1}"
        BOARD.drafts[ref] = {
            "title": short_title(article.title, LIMITS.title),
            "author": article.author[: LIMITS.author],
        }
        return ref

    def submit(
        self, account_id: int, draft_ref: str, now: datetime, sending: Callable[[], None]
    ) -> str:
        sending()
        return f"p-{draft_ref}"

    def poll(self, account_id: int, publish_ref: str, now: datetime) -> PublishStatus:
        url = f"https://board.example/{publish_ref}"
        BOARD.published[publish_ref] = url
        return PublishStatus(done=True, article_url=url)


def validate(values: Mapping[str, str], new: bool) -> None:
    errors = Errors()
    if values.get("board") and not NUMBER.fullmatch(values["board"]):
        errors.add("board", BAD_BOARD)
    if new and not values.get("write_key"):
        errors.add("write_key", NO_KEY)
    errors.raise_if_any()


def _factory(settings: Settings, sessions: sessionmaker[Session]) -> NoticeboardPublisher:
    return NoticeboardPublisher(sessions)


plugin = PublisherPlugin(
    platform=PLATFORM,
    publisher=_factory,
    limits=LIMITS,
    label=LABEL,
    intro="审核通过的公告会在公示栏生成草稿。",
    credentials=(
        FormField("board", "公示栏编号", required=True, placeholder="nb-0000", max_len=7),
        FormField("write_key", "写入密钥", type="password", required=True, secret=True),
    ),
    validate_credentials=validate,
)
