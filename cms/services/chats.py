"""Group chats and chat accounts: one-time codes, binding, and what a chat may ask for.

A binding code is shown once and only its SHA-256 is stored; it binds a group chat to an
area (purpose ``chat``) or links a chat account to a CMS user (purpose ``operator``). The
code is short enough to type on a phone and expires after :data:`CODE_TTL`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.channels import (
    Binding,
    ChannelError,
    ChatChannel,
    Notice,
    OutcomeUnknown,
    PlatformLabels,
    TemporaryFailure,
    plugin,
)
from cms.clock import clock_of
from cms.db import rowcount
from cms.models import (
    Announcement,
    Area,
    BindingCode,
    ChatAccount,
    ChatGroup,
    Clip,
    ClipProfile,
    JobState,
    Program,
    Revision,
    User,
    outlet_operator,
)
from cms.services import audit
from cms.services.announcements import going_out_on, live_filter, reaches
from cms.services.areas import full_name
from cms.services.errors import (
    N_,
    Conflict,
    DomainError,
    Errors,
    Message,
    NotFound,
    ValidationError,
)
from cms.services.text import parse_id
from cms.settings import local_webhooks_allowed

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone
CODE_LENGTH = 8
CODE_TTL = timedelta(hours=24)
PURPOSE_CHAT = "chat"
PURPOSE_OPERATOR = "operator"
UNBOUND_REASON = N_("已解除绑定")
BOT_REMOVED = N_("机器人已被移出群聊")
BOT_REMOVED_BY = N_("机器人已被移出群聊（{by}）")

_SEPARATORS = re.compile(r"[\s\-_]+")


class InvalidCode(DomainError):
    """The code is unknown, used or expired (one message for all, so codes cannot be probed)."""


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def normalise_code(code: str) -> str:
    """Codes are case-insensitive and may be typed with spaces or dashes."""
    return _SEPARATORS.sub("", code).upper()


def _new_code(
    session: Session,
    actor: User | None,
    purpose: str,
    *,
    area: Area | None = None,
    user: User | None = None,
    now: datetime | None = None,
    ttl: timedelta = CODE_TTL,
) -> tuple[str, BindingCode]:
    now = now or clock_of(session).now()
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    row = BindingCode(
        code_hash=_hash(code),
        purpose=purpose,
        area_id=area.id if area else None,
        user_id=user.id if user else None,
        created_by_id=actor.id if actor else None,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    return code, row


def create_binding_code(
    session: Session,
    actor: User | None,
    area: Area,
    *,
    now: datetime | None = None,
    ttl: timedelta = CODE_TTL,
) -> str:
    """A one-time code that binds the group chat where ``/bind CODE`` is sent to ``area``.

    Returns the code; it is not stored and cannot be shown again.
    """
    code, row = _new_code(session, actor, PURPOSE_CHAT, area=area, now=now, ttl=ttl)
    audit.record(session, actor, "chat.code", row, area=area.id)
    return code


def create_link_code(
    session: Session,
    actor: User | None,
    user: User,
    *,
    now: datetime | None = None,
    ttl: timedelta = CODE_TTL,
) -> str:
    """A one-time code that links the chat account sending ``/link CODE`` to ``user``."""
    if not user.active:
        raise Conflict(N_("用户“{name}”已停用"), name=user.username)
    code, row = _new_code(session, actor, PURPOSE_OPERATOR, user=user, now=now, ttl=ttl)
    audit.record(session, actor, "chat.link_code", row, user=user.id)
    return code


def consume_code(
    session: Session, code: str, purpose: str, used_by: str, *, now: datetime | None = None
) -> BindingCode:
    """Mark a code used, once: a second use, another purpose or an expired code is refused.

    Raises:
        InvalidCode: unknown, already used, expired or meant for something else.
    """
    now = now or clock_of(session).now()
    row = session.scalar(select(BindingCode).where(BindingCode.code_hash == _hash(code)))
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
        raise InvalidCode(N_("绑定码无效、已使用或已过期，请向管理员重新申请"))
    # Guarded update: of two simultaneous uses of one code only one wins.
    won = rowcount(
        session.execute(
            update(BindingCode)
            .where(BindingCode.id == row.id, BindingCode.used_at.is_(None))
            .values(used_at=now, used_by=used_by[:64])
            .execution_options(synchronize_session=False)
        )
    )
    if won != 1:
        raise InvalidCode(N_("绑定码无效、已使用或已过期，请向管理员重新申请"))
    session.refresh(row)
    return row


# --- Binding group chats ------------------------------------------------------------------------


def get_chat(session: Session, chat_group_id: int) -> ChatGroup:
    chat = session.get(ChatGroup, chat_group_id)
    if chat is None:
        raise NotFound(N_("群聊 {id} 不存在"), id=chat_group_id)
    return chat


def find_chat(session: Session, platform: str, chat_id: str | int) -> ChatGroup | None:
    """The chat row for a platform's chat id, bound or not."""
    return session.scalar(
        select(ChatGroup).where(ChatGroup.platform == platform, ChatGroup.chat_id == str(chat_id))
    )


def bound_chat(session: Session, platform: str, chat_id: str | int) -> ChatGroup | None:
    """The chat row if the chat is bound and active."""
    chat = find_chat(session, platform, chat_id)
    return chat if chat is not None and chat.active else None


def bind_chat(
    session: Session,
    actor: User | None,
    *,
    platform: str,
    chat_id: str | int,
    area: Area,
    title: str = "",
) -> ChatGroup:
    """Bind a chat to ``area``; a known chat is re-bound and re-activated."""
    chat = find_chat(session, platform, chat_id)
    if chat is None:
        chat = ChatGroup(platform=platform, chat_id=str(chat_id), area=area, title=title[:200])
        session.add(chat)
    else:
        chat.area = area
        chat.active = True
        chat.deactivated_reason = None
        if title:
            chat.title = title[:200]
    session.flush()
    audit.record(session, actor, "chat.bind", chat, area=area.id, chat_id=str(chat_id))
    return chat


def bind_with_code(
    session: Session,
    code: str,
    *,
    platform: str,
    chat_id: str | int,
    title: str = "",
    now: datetime | None = None,
) -> ChatGroup:
    """``/bind CODE``: consume a chat code and bind the chat to its area."""
    row = consume_code(session, code, PURPOSE_CHAT, f"{platform}:{chat_id}", now=now)
    if row.area_id is None:
        raise InvalidCode(N_("绑定码无效、已使用或已过期，请向管理员重新申请"))
    area = session.get(Area, row.area_id)
    if area is None:
        raise InvalidCode(N_("绑定码无效、已使用或已过期，请向管理员重新申请"))
    return bind_chat(session, None, platform=platform, chat_id=chat_id, area=area, title=title)


def unbind_chat(
    session: Session,
    actor: User | None,
    chat: ChatGroup,
    reason: Message | str = UNBOUND_REASON,
) -> ChatGroup:
    """Stop posting to a chat. The row stays, so its delivery history stays too.

    The reason is stored as a message (rendered in the reader's language); a plain string
    is a message id.
    """
    message = reason if isinstance(reason, Message) else Message(reason)
    chat.active = False
    chat.deactivated_reason = message.dumps()
    audit.record(session, actor, "chat.unbind", chat, reason=message.dumps())
    return chat


def deactivate_chat(session: Session, chat: ChatGroup, reason: Message | str) -> None:
    """The platform says the chat is gone (bot removed, chat deleted)."""
    unbind_chat(session, None, chat, reason)


def follow_migration(session: Session, platform: str, old_id: str | int, new_id: str | int) -> None:
    """A group became a supergroup with a new id: keep the binding under the new id."""
    chat = find_chat(session, platform, old_id)
    if chat is None or find_chat(session, platform, new_id) is not None:
        return
    chat.chat_id = str(new_id)
    audit.record(session, None, "chat.migrate", chat, old=str(old_id), new=str(new_id))


def find_area(session: Session, ref: str) -> Area:
    """An area by id, by full name path ("清水镇/石桥村/一组") or by a name that is unique.

    Raises:
        NotFound: nothing matches.
        Conflict: a bare name matches several areas.
    """
    ref = ref.strip()
    if re.fullmatch(r"[0-9]+", ref):
        area_id = parse_id(ref)
        area = session.get(Area, area_id) if area_id is not None else None
        if area is None:
            raise NotFound(N_("区域 {id} 不存在"), id=ref)
        return area
    names = [part.strip() for part in re.split(r"[/／>]", ref) if part.strip()]
    if not names:
        raise NotFound(N_("区域“{name}”不存在"), name=ref)
    candidates = list(session.scalars(select(Area).where(Area.name == names[-1])))
    matches = [a for a in candidates if _path_names(session, a)[-len(names) :] == names]
    if not matches:
        raise NotFound(N_("区域“{name}”不存在"), name=ref)
    if len(matches) > 1:
        raise Conflict(
            N_("“{name}”有多个同名区域，请写完整路径，例如 {example}"),
            name=ref,
            example=full_name(session, matches[0]).replace(" / ", "/"),
        )
    return matches[0]


def _path_names(session: Session, area: Area) -> list[str]:
    return [part.strip() for part in full_name(session, area).split(" / ")]


def bind_chat_cli(
    session: Session, chat_id: str | int, area: str, *, platform: str = "telegram", title: str = ""
) -> ChatGroup:
    """``dalaba chats bind --chat-id ID --area AREA`` (AREA by id or by name path)."""
    chat_id = str(chat_id).strip()
    found = plugin(platform)
    refused = found.chat_id_error(chat_id) if found is not None else None
    if refused is not None:
        raise Conflict(refused, id=chat_id)
    return bind_chat(
        session,
        None,
        platform=platform,
        chat_id=chat_id,
        area=find_area(session, area),
        title=title,
    )


# --- Group robots: chats bound by an address (WeCom, DingTalk, Feishu …) -------------------------

# The installed platforms whose chats are bound by pasting an address (their plugins say
# how it looks); read from the plugins when used.
ROBOT_PLATFORMS = PlatformLabels(by_address=True)
# How every chat platform reads wherever one is shown (the outbox stands in for a platform
# whose plugin cannot send here, e.g. Telegram without a token).
PLATFORM_LABELS = PlatformLabels(extra={"outbox": N_("本地发件箱")})
# Sent to the group as it is (villagers read Chinese), so not translated.
TEST_TITLE = "测试消息"
TEST_TEXT = "这是大喇叭发送的测试消息：机器人已接通，以后本区域的通知会发到这个群。"


def validate_binding(
    platform: str, values: Mapping[str, str], *, allow_local: bool | None = None
) -> Binding:
    """Check what was given to bind a chat of ``platform`` by its address (its plugin's
    form fields, by name: a robot's webhook address and signing secret) with the plugin.

    Only the plugin's own fields are passed on, stripped (a missing one as ""); cms reads
    none of them. Only when ``allow_local`` (None: ``DALABA_ALLOW_LOCAL_WEBHOOKS``) may an
    address be a loopback or private one. Returns the chat's id in dalaba and the
    credentials its plugin keeps.

    Raises:
        ValidationError: on ``platform``, or on a field of the plugin's form in the
            plugin's words.
    """
    if allow_local is None:
        allow_local = local_webhooks_allowed()
    found = plugin(platform)
    if found is None or found.validate is None:
        errors = Errors()
        errors.add(
            "platform", N_("请选择平台：{platforms}"), platforms="、".join(ROBOT_PLATFORMS.values())
        )
        errors.raise_if_any()
    assert found is not None and found.validate is not None
    given = {f.name: str(values.get(f.name) or "").strip() for f in found.fields}
    return found.validate(given, allow_local)


def bind_robot(
    session: Session,
    actor: User | None,
    *,
    platform: str,
    area: Area,
    title: str = "",
    allow_local: bool | None = None,
    **values: str,
) -> ChatGroup:
    """Bind a group robot to ``area`` (the same robot again is re-bound with the new values).

    ``values`` are the plugin's form fields by name (for the robots: ``webhook=``,
    ``secret=``). The credentials the plugin makes of them are stored and never shown
    again; the audit record names the robot by its id, never by its credentials.
    """
    return _bind_robot(session, actor, platform, area, values, title, allow_local)


def _bind_robot(
    session: Session,
    actor: User | None,
    platform: str,
    area: Area,
    values: Mapping[str, str],
    title: str,
    allow_local: bool | None,
) -> ChatGroup:
    binding = validate_binding(platform, values, allow_local=allow_local)
    chat = find_chat(session, platform, binding.chat_id)
    if chat is None:
        chat = ChatGroup(platform=platform, chat_id=binding.chat_id, area=area)
        session.add(chat)
    else:
        chat.area = area
        chat.active = True
        chat.deactivated_reason = None
    chat.credentials = dict(binding.credentials)
    chat.title = (title.strip() or chat.title or "")[:200]
    session.flush()
    audit.record(session, actor, "chat.bind", chat, area=area.id, chat_id=binding.chat_id)
    return chat


def bind_robot_cli(
    session: Session, platform: str, values: Mapping[str, str], area: str, *, title: str = ""
) -> ChatGroup:
    """``dalaba chats bind --platform wecom --webhook URL [--secret S] --area AREA``."""
    return _bind_robot(session, None, platform, find_area(session, area), values, title, None)


@dataclass(frozen=True)
class RobotAnswer:
    """What a platform said to a test message."""

    ok: bool
    message: Message


# How the robots begin a failure in which the platform was never reached (robots/base.py).
UNREACHED = "没能连上平台"


def test_failure(exc: ChannelError) -> Message:
    """What a failed test message means, in words (never the exception's class name); the
    channel's own reason is a message too, so it reads in the reader's language."""
    reason = exc.message if exc.message.msgid.strip() else Message("—")
    if isinstance(exc, OutcomeUnknown):
        return Message(N_("不确定平台是否收到：{reason}。请到群里看一看"), {"reason": reason})
    if isinstance(exc, TemporaryFailure):
        if reason.msgid.startswith(UNREACHED):
            # The reason already says that the platform was not reached.
            return Message(N_("{reason}（稍后可以再试）"), {"reason": reason})
        return Message(N_("平台暂时没有接收：{reason}（稍后可以再试）"), {"reason": reason})
    return Message(N_("平台拒收：{reason}"), {"reason": reason})


def send_test_message(
    session: Session,
    actor: User | None,
    chat: ChatGroup,
    channel: ChatChannel | None,
    *,
    allow_local: bool | None = None,
) -> RobotAnswer:
    """Post a short test message to a robot and return the platform's answer.

    ``channel`` comes from the channel registry (``cms.channels.load_channel``); cms never
    imports the robots. Nothing about the chat changes; the try is audited. An address
    bound before local addresses were refused is checked again, and not posted to.
    """
    try:
        validate_binding(chat.platform, chat.credentials or {}, allow_local=allow_local)
    except ValidationError as exc:
        return RobotAnswer(False, next(iter(exc.errors.values())))
    if channel is None:
        return RobotAnswer(False, Message(N_("没有安装这个平台的发送模块（dalaba.channels）")))
    notice = Notice(
        delivery_id=0,
        chat_id=chat.chat_id,
        title=TEST_TITLE,
        text=TEST_TEXT,
        credentials=chat.credentials or {},
    )
    try:
        result = channel.send(notice, lambda _ids: None)
        answer = RobotAnswer(
            True, Message(N_("平台已接收测试消息（{ids}）"), {"ids": "、".join(result.message_ids)})
        )
    except ChannelError as exc:
        answer = RobotAnswer(False, test_failure(exc))
    audit.record(session, actor, "chat.test", chat, ok=answer.ok)
    return answer


def list_chats(session: Session) -> list[ChatGroup]:
    return list(session.scalars(select(ChatGroup).order_by(ChatGroup.active.desc(), ChatGroup.id)))


# --- Chat accounts (operators) -------------------------------------------------------------------


def link_account(
    session: Session,
    code: str,
    *,
    platform: str,
    external_id: str | int,
    now: datetime | None = None,
) -> User:
    """``/link CODE`` in a private chat: this chat account acts as the code's user from now on."""
    row = consume_code(session, code, PURPOSE_OPERATOR, f"{platform}:{external_id}", now=now)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None or not user.active:
        raise InvalidCode(N_("绑定码无效、已使用或已过期，请向管理员重新申请"))
    account = session.scalar(
        select(ChatAccount).where(
            ChatAccount.platform == platform, ChatAccount.external_id == str(external_id)
        )
    )
    if account is None:
        session.add(ChatAccount(user=user, platform=platform, external_id=str(external_id)))
    else:
        account.user = user
    session.flush()
    audit.record(session, None, "chat.link", user, platform=platform, external_id=str(external_id))
    return user


def account_user(session: Session, platform: str, external_id: str | int) -> User | None:
    """The active CMS user linked to a chat account, if any."""
    user = session.scalar(
        select(User)
        .join(ChatAccount, ChatAccount.user_id == User.id)
        .where(ChatAccount.platform == platform, ChatAccount.external_id == str(external_id))
    )
    return user if user is not None and user.active else None


# --- What a chat may ask for ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChatNotice:
    """A notice as a chat shows it: the approved revision and its voice note, if rendered."""

    revision: Revision
    voice_path: str | None
    voice_duration: float | None


def _voice(session: Session, revision: Revision) -> tuple[str | None, float | None]:
    clip = session.scalar(
        select(Clip).where(
            Clip.revision_id == revision.id,
            Clip.profile == ClipProfile.VOICE,
            Clip.state == JobState.DONE,
        )
    )
    if clip is None or not clip.path:
        return None, None
    return clip.path, clip.duration


def notices_for_chat(session: Session, chat: ChatGroup, day: date) -> list[ChatNotice]:
    """The notices that reach the chat's area on ``day`` and go to chats (urgent first)."""
    notices = []
    for ann in going_out_on(session, day):
        rev = ann.approved_revision
        if rev is not None and rev.to_chats and reaches(rev, chat.area):
            notices.append(ChatNotice(rev, *_voice(session, rev)))
    return notices


def latest_notice_for_chat(session: Session, chat: ChatGroup, day: date) -> ChatNotice | None:
    """The most recently approved notice for the chat's area that has started by ``day``."""
    stmt = (
        select(Announcement)
        .join(Revision, Revision.id == Announcement.approved_revision_id)
        .where(live_filter(), Revision.to_chats, Revision.start_date <= day)
        .order_by(Announcement.reviewed_at.desc(), Announcement.id.desc())
    )
    for ann in session.scalars(stmt):
        rev = ann.approved_revision
        if rev is not None and reaches(rev, chat.area):
            return ChatNotice(rev, *_voice(session, rev))
    return None


def programs_for_operator(session: Session, user: User, day: date) -> list[Program]:
    """Built programs of ``day`` for the outlets ``user`` operates, in slot order."""
    stmt = (
        select(Program)
        .join(outlet_operator, outlet_operator.c.outlet_id == Program.outlet_id)
        .where(
            outlet_operator.c.user_id == user.id,
            Program.day == day,
            Program.state == JobState.DONE,
            Program.path.is_not(None),
        )
    )
    return sorted(session.scalars(stmt), key=lambda p: (p.slot.at, p.outlet_id))
