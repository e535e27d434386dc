"""Conversation handlers: members, group admins and operators talk to the bot in Chinese."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram import (
    Chat,
    ChatMember,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.application import PLATFORM, BotData, Context
from bot.sending import plan, send_part
from bot.text import escape
from cms.models import ChatGroup, Program, Receipt, User
from cms.services import chats, operators
from cms.services.areas import full_name
from cms.services.errors import DomainError, Message
from cms.services.text import parse_id
from cms.settings import Settings

log = logging.getLogger(__name__)

PLAYED = "已播放"
MAX_NOTICES = 5  # /today in a busy week: the rest is on the loudspeaker, not a wall of text
PLAYED_PATTERN = r"^played:([0-9]{1,10})$"  # ASCII digits: callback data comes from the client

HELP = (
    "大喇叭通知机器人\n"
    "\n"
    "/today 今天发给本群的通知（文字和语音）\n"
    "/latest 最新一条通知\n"
    "\n"
    "群管理员：\n"
    "/bind 绑定码 把本群绑定到村组（绑定码由乡镇管理员在后台生成）\n"
    "/unbind 解除本群绑定\n"
    "\n"
    "广播员（私聊机器人）：\n"
    "/link 关联码 关联您的大喇叭账号\n"
    "/program 今天的节目音频，播放后点“已播放”"
)
HOW_TO_BIND = (
    "本群还没有绑定村组，暂时收不到通知。\n"
    "请群管理员向乡镇管理员要一个绑定码，然后在群里发送：/bind 绑定码"
)


def _data(context: Context) -> BotData:
    return context.bot_data


def _is_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


async def _reply(update: Update, text: str) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(text)


async def _is_admin(update: Update, context: Context) -> bool:
    """Whether the sender administers this group (anonymous admins post as the group)."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None:
        return False
    if message.sender_chat is not None and message.sender_chat.id == chat.id:
        return True
    if user is None:
        return False
    member = await context.bot.get_chat_member(chat.id, user.id)
    return member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR)


async def _bound(update: Update, context: Context) -> tuple[int, str] | None:
    """This group's binding (chat group id, area name), or None after telling how to bind."""
    chat = update.effective_chat
    assert chat is not None

    def lookup(session: Session) -> tuple[int, str] | None:
        row = chats.bound_chat(session, PLATFORM, chat.id)
        return (row.id, full_name(session, row.area)) if row else None

    found = await _data(context).run(lookup)
    if found is None:
        await _reply(update, HOW_TO_BIND)
    return found


async def _bound_group(update: Update, context: Context, command: str) -> tuple[int, str] | None:
    """This group's binding as :func:`_bound`, or None after saying that ``/command`` is for a
    bound group (sent elsewhere)."""
    if not _is_group(update):
        await _reply(update, f"请在已绑定村组的群里发送 /{command}。")
        return None
    return await _bound(update, context)


def _chat(session: Session, chat_group_id: int) -> ChatGroup:
    chat = session.get(ChatGroup, chat_group_id)
    assert chat is not None
    return chat


async def _admin_group(
    update: Update, context: Context, outside: str, not_admin: str
) -> Chat | None:
    """This group, or None after replying ``outside`` (not sent in a group) or ``not_admin``."""
    chat = update.effective_chat
    if not _is_group(update) or chat is None:
        await _reply(update, outside)
        return None
    if not await _is_admin(update, context):
        await _reply(update, not_admin)
        return None
    return chat


async def _code(update: Update, context: Context, usage: str) -> str | None:
    """The command's one argument (a one-time code), or None after replying ``usage``."""
    args = context.args or []
    if len(args) != 1:
        await _reply(update, usage)
        return None
    return args[0]


async def _run_or_reply(
    update: Update, context: Context, work: Callable[[Session], str]
) -> str | None:
    """What ``work`` returns (see :meth:`BotData.run`), or None after replying its domain error."""
    try:
        result: str = await _data(context).run(work)
    except DomainError as exc:
        await _reply(update, str(exc))
        return None
    return result


@dataclass(frozen=True)
class Posting:
    """A notice as the handlers post it, read from the database in a worker thread."""

    title: str
    body: str
    voice_path: str | None
    voice_duration: float | None


async def _post_notices(update: Update, context: Context, notices: list[Posting]) -> None:
    chat = update.effective_chat
    assert chat is not None
    for notice in notices[:MAX_NOTICES]:
        for part in plan(notice.title, notice.body, notice.voice_path, notice.voice_duration):
            await send_part(context.bot, chat.id, part)
    if len(notices) > MAX_NOTICES:
        await context.bot.send_message(
            chat.id, f"今天还有 {len(notices) - MAX_NOTICES} 条通知，请留意村里的大喇叭。"
        )


def _voice_file(settings: Settings | None, voice_path: str | None) -> str | None:
    """The voice note on disk (relative paths are under the data folder), if it exists."""
    if not voice_path or settings is None:
        return None
    path = Path(voice_path)
    path = path if path.is_absolute() else settings.data_dir / path
    return str(path) if path.is_file() else None


def _posting(settings: Settings | None, notice: chats.ChatNotice) -> Posting:
    """What a chat needs of a notice, read inside the worker thread (files are checked there)."""
    voice = _voice_file(settings, notice.voice_path)
    rev = notice.revision
    return Posting(rev.title, rev.body, voice, notice.voice_duration if voice else None)


async def start(update: Update, context: Context) -> None:
    """Greet; in a group, say whether it is bound and how to bind it."""
    if _is_group(update):
        found = await _bound(update, context)
        if found is not None:
            await _reply(
                update, f"本群已绑定到“{found[1]}”，会收到该地的通知。发送 /today 查看今天的通知。"
            )
        return
    await _reply(update, "您好！我是大喇叭通知机器人。\n\n" + HELP)


async def help_command(update: Update, context: Context) -> None:
    """List the commands."""
    await _reply(update, HELP)


async def today(update: Update, context: Context) -> None:
    """Post today's notices for this group's area, as text and voice."""
    await _post_group_notices(
        update,
        context,
        "today",
        chats.notices_for_chat,
        lambda day, area: f"今天（{day:%m月%d日}）没有发给“{area}”的通知。",
    )


async def latest(update: Update, context: Context) -> None:
    """Post the most recent notice for this group's area."""

    def latest_of(session: Session, chat: ChatGroup, day: date) -> list[chats.ChatNotice]:
        notice = chats.latest_notice_for_chat(session, chat, day)
        return [notice] if notice else []

    await _post_group_notices(
        update, context, "latest", latest_of, lambda day, area: f"“{area}”还没有通知。"
    )


async def _post_group_notices(
    update: Update,
    context: Context,
    command: str,
    notices_of: Callable[[Session, ChatGroup, date], list[chats.ChatNotice]],
    nothing: Callable[[date, str], str],
) -> None:
    """Post the notices ``notices_of`` picks for this bound group, or say ``nothing``."""
    found = await _bound_group(update, context, command)
    if found is None:
        return
    data = _data(context)
    day = data.today()

    def load(session: Session) -> list[Posting]:
        chat = _chat(session, found[0])
        return [_posting(data.settings, n) for n in notices_of(session, chat, day)]

    notices = await data.run(load)
    if not notices:
        await _reply(update, nothing(day, found[1]))
        return
    await _post_notices(update, context, notices)


async def bind(update: Update, context: Context) -> None:
    """Bind this group to an area with a one-time code (group admins only)."""
    chat = await _admin_group(
        update, context, "请在要绑定的群里发送 /bind 绑定码。", "只有群管理员可以绑定本群。"
    )
    if chat is None:
        return
    code = await _code(update, context, "用法：/bind 绑定码（绑定码由乡镇管理员在大喇叭后台生成）")
    if code is None:
        return
    now = _data(context).now()

    def work(session: Session) -> str:
        row = chats.bind_with_code(
            session, code, platform=PLATFORM, chat_id=chat.id, title=chat.title or "", now=now
        )
        return full_name(session, row.area)

    area = await _run_or_reply(update, context, work)
    if area is None:
        return
    await _reply(update, f"绑定成功：本群会收到“{area}”的通知。")


async def unbind(update: Update, context: Context) -> None:
    """Stop posting to this group (group admins only)."""
    chat = await _admin_group(
        update, context, "请在要解除绑定的群里发送 /unbind。", "只有群管理员可以解除绑定。"
    )
    if chat is None:
        return

    def work(session: Session) -> bool:
        row = chats.bound_chat(session, PLATFORM, chat.id)
        if row is None:
            return False
        chats.unbind_chat(session, None, row)
        return True

    if await _data(context).run(work):
        await _reply(update, "已解除绑定，本群不再收到通知。需要时可再用 /bind 绑定。")
    else:
        await _reply(update, "本群没有绑定，无需解除。")


async def link(update: Update, context: Context) -> None:
    """Link this private chat to a CMS account with a one-time code."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or chat.type != ChatType.PRIVATE:
        await _reply(update, "为保护账号，请私聊机器人发送 /link 关联码。")
        return
    code = await _code(update, context, "用法：/link 关联码（关联码由管理员在大喇叭后台生成）")
    if code is None:
        return
    now = _data(context).now()

    def work(session: Session) -> str:
        linked = chats.link_account(session, code, platform=PLATFORM, external_id=user.id, now=now)
        return linked.display_name

    name = await _run_or_reply(update, context, work)
    if name is None:
        return
    await _reply(update, f"已关联大喇叭账号：{name}。发送 /program 获取今天的节目。")


async def program(update: Update, context: Context) -> None:
    """Send an operator today's program files, each with a "played" button."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None:
        return
    data = _data(context)
    day = data.today()
    settings = data.settings
    assert settings is not None

    def load(session: Session) -> tuple[bool, list[tuple[int, str, str, float | None, bool]]]:
        account: User | None = chats.account_user(session, PLATFORM, user.id)
        if account is None:
            return False, []
        rows = []
        for p in chats.programs_for_operator(session, account, day):
            path = operators.program_file(settings, p)
            rows.append(
                (p.id, _program_title(p, day), str(path or ""), p.duration, _confirmed(session, p))
            )
        return True, rows

    linked, rows = await data.run(load)
    if not linked:
        await _reply(
            update, "您还没有关联大喇叭账号。请向管理员要关联码，然后私聊我发送 /link 关联码。"
        )
        return
    if not rows:
        await _reply(update, f"今天（{day:%m月%d日}）您的广播点还没有生成好的节目。")
        return
    for program_id, title, path, duration, confirmed in rows:
        if not path or not Path(path).is_file():
            await context.bot.send_message(chat.id, f"{title}：音频文件暂不可用，请稍后再试。")
            continue
        audio = await _read(path)
        await context.bot.send_audio(
            chat.id,
            audio,
            duration=max(1, round(duration)) if duration else None,
            title=title,
            filename=f"{title}.mp3",
            caption=escape(title),
            parse_mode=ParseMode.HTML,
            reply_markup=_played_button(program_id, confirmed),
        )


def _program_title(p: Program, day: date) -> str:
    return f"{p.outlet.name} {day:%m月%d日} {p.slot.label}"


def _confirmed(session: Session, p: Program) -> bool:
    return session.scalar(select(Receipt.id).where(Receipt.program_id == p.id)) is not None


def _played_button(program_id: int, confirmed: bool) -> InlineKeyboardMarkup:
    label = f"✓ {PLAYED}" if confirmed else PLAYED
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=f"played:{program_id}")]]
    )


async def _read(path: str) -> bytes:
    return await asyncio.to_thread(Path(path).read_bytes)


async def played(update: Update, context: Context) -> None:
    """Record a playback receipt for the program behind the "已播放" button, once."""
    query = update.callback_query
    if query is None or query.from_user is None:
        return
    program_id = (parse_id(context.matches[0].group(1)) if context.matches else None) or 0
    data = _data(context)
    now = data.now()
    assert data.settings is not None
    tz = data.settings.tz

    def work(session: Session) -> tuple[str, bool]:
        account = chats.account_user(session, PLATFORM, query.from_user.id)
        if account is None:
            return "请先私聊机器人用 /link 关联账号。", False
        target = session.get(Program, program_id)
        if target is None:
            return "这个节目已不存在。", False
        receipt, created = operators.confirm_playback(
            session, target, account, "bot", now, tz=tz, settings=data.settings
        )
        when = receipt.confirmed_at.astimezone(tz).strftime("%H:%M")
        if created:
            return ("已记录播放（补报），谢谢！" if receipt.late else "已记录播放，谢谢！"), True
        return f"这个节目已在 {when} 记录过播放。", True

    try:
        text, done = await data.run(work)
    except DomainError as exc:
        text, done = str(exc), False
    await query.answer(text, show_alert=not done)
    if done:
        try:
            await query.edit_message_reply_markup(_played_button(program_id, True))
        except TelegramError as exc:
            log.debug("could not mark the button: %s", exc)


async def unknown(update: Update, context: Context) -> None:
    """Answer an unknown command with a short help (commands for other bots are ignored)."""
    message = update.effective_message
    command = (message.text or "").split()[0] if message is not None and message.text else ""
    _, _, addressee = command.partition("@")
    if addressee and addressee.lower() != (context.bot.username or "").lower():
        return
    await _reply(update, "没有这个命令。\n\n" + HELP)


async def migrated(update: Update, context: Context) -> None:
    """Follow a group that became a supergroup to its new id."""
    message = update.effective_message
    if message is None or message.migrate_to_chat_id is None:
        return
    old, new = message.chat.id, message.migrate_to_chat_id
    await _data(context).run(lambda session: chats.follow_migration(session, PLATFORM, old, new))


async def membership(update: Update, context: Context) -> None:
    """Deactivate a group's binding when the bot is removed from it."""
    change: ChatMemberUpdated | None = update.my_chat_member
    if change is None:
        return
    if change.new_chat_member.status not in (ChatMember.LEFT, ChatMember.BANNED):
        return
    chat_id = change.chat.id
    by = change.from_user.full_name if change.from_user else ""

    def work(session: Session) -> None:
        row = chats.bound_chat(session, PLATFORM, chat_id)
        if row is not None:
            chats.deactivate_chat(
                session,
                row,
                Message(chats.BOT_REMOVED_BY, {"by": by[:100]})
                if by
                else Message(chats.BOT_REMOVED),
            )

    await _data(context).run(work)


async def on_error(update: object, context: Context) -> None:
    """Log the error and tell the user something went wrong."""
    log.error("bot handler failed", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text("抱歉，出了点问题，请稍后再试。")
        except TelegramError:
            log.debug("could not report the error to the chat")


def register(application: Application) -> None:  # type: ignore[type-arg]
    """Add every handler and the error handler."""
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("today", today))
    application.add_handler(CommandHandler("latest", latest))
    application.add_handler(CommandHandler("bind", bind))
    application.add_handler(CommandHandler("unbind", unbind))
    application.add_handler(CommandHandler("link", link))
    application.add_handler(CommandHandler("program", program))
    application.add_handler(CallbackQueryHandler(played, pattern=PLAYED_PATTERN))
    application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, migrated))
    application.add_handler(ChatMemberHandler(membership, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(MessageHandler(filters.COMMAND, unknown))
    application.add_error_handler(on_error)
