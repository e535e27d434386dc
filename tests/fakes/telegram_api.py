"""A loopback Bot API server for the real python-telegram-bot, with injectable faults.

It answers the methods dalaba uses (getMe, getUpdates with long polling, sendMessage,
sendVoice, sendAudio, sendDocument, answerCallbackQuery, editMessageReplyMarkup,
setMyCommands, getChatMember, getChatAdministrators, setWebhook, deleteWebhook …), records
every message it accepts, and can:

* answer 429 with ``retry_after``, 5xx, or drop the connection before or *after* recording
  the message (the answer is lost: the "uncertain" case), or answer too late;
* move a group to a supergroup (``migrate_to_chat_id``) and refuse a chat that kicked the bot;
* enforce Telegram-like flood limits (token buckets: overall per second, per group per
  minute) and count every request it had to refuse.

It runs its own event loop in a thread, so synchronous tests, PTB's own loop and the
channel's background loop can all use it::

    with FakeBotApi() as api:
        bot = Bot(api.token, base_url=api.base_url)
        api.fail(Fault.RETRY_AFTER, times=2, method="sendMessage")
        api.kick("-1001")
        api.push_command(chat=api.group("-1002"), user=api.user(7), text="/today")
        assert api.messages_to("-1002")[0].text == "…"
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

__all__ = ["FakeBotApi", "Fault", "Limits", "SentMessage"]

TOKEN = "123456:TEST-fake-token"
BOT_ID = 123456
BOT_USERNAME = "dalaba_test_bot"
SEND_METHODS = {"sendmessage", "sendvoice", "sendaudio", "senddocument"}
_JSON_FIELDS = {
    "reply_markup",
    "commands",
    "allowed_updates",
    "entities",
    "caption_entities",
    "link_preview_options",
    "reply_parameters",
    "show_alert",
    "drop_pending_updates",
}


class Fault(enum.Enum):
    """A failure injected into the next matching requests."""

    RETRY_AFTER = "429"
    """Answer 429 Too Many Requests with ``parameters.retry_after`` (nothing recorded)."""
    SERVER_ERROR = "500"
    """Answer 500 Internal Server Error (nothing recorded)."""
    BAD_GATEWAY = "502"
    """Answer 502 Bad Gateway (nothing recorded)."""
    BAD_REQUEST = "400"
    """Answer 400 Bad Request: can't parse entities (nothing recorded)."""
    DROP_BEFORE = "drop-before"
    """Close the connection without recording or answering."""
    DROP_AFTER = "drop-after"
    """Record the message, then close the connection: the answer is lost."""
    SLOW = "slow"
    """Record the message, then answer after :attr:`FakeBotApi.slow_seconds`."""


@dataclass
class Limits:
    """Flood limits the server enforces, as token buckets (capacity = one period's worth).

    ``overall_per_second`` applies to every send; ``group_max`` per ``group_period`` seconds
    to each group chat (negative chat ids). 0 switches a limit off. Telegram's: 30 a second,
    20 a minute per group.
    """

    overall_per_second: float = 30.0
    group_max: float = 20.0
    group_period: float = 60.0

    def bound_seconds(self, messages: int, per_group: int) -> float:
        """The least time in which ``messages`` sends (``per_group`` to each group) can pass.

        Both buckets start full, so the first bucket-full passes at once and the rest at the
        refill rate.
        """
        overall = (
            max(0.0, messages - self.overall_per_second) / self.overall_per_second
            if self.overall_per_second
            else 0.0
        )
        group = (
            max(0.0, per_group - self.group_max) / (self.group_max / self.group_period)
            if self.group_max
            else 0.0
        )
        return max(overall, group)


class _Bucket:
    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity = capacity
        self.rate = per_second
        self.tokens = capacity
        self.at = time.monotonic()

    def take(self, now: float) -> float:
        """Take a token; 0 when granted, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class SentMessage:
    """A message the server accepted."""

    chat_id: str
    message_id: int
    method: str
    text: str = ""
    caption: str = ""
    parse_mode: str | None = None
    filename: str | None = None
    file_size: int = 0
    mime_type: str | None = None
    duration: int | None = None
    reply_markup: dict[str, Any] | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Rule:
    fault: Fault
    times: int
    method: str | None
    chat_id: str | None
    retry_after: int


class FakeBotApi(LoopbackServer):
    """The server; use as a context manager."""

    THREAD_NAME = "fake-bot-api"
    MAX_BODY = 60 * 1024 * 1024

    def __init__(self, *, limits: Limits | None = None, slow_seconds: float = 3.0) -> None:
        super().__init__()
        self.token = TOKEN
        self.limits = limits
        self.slow_seconds = slow_seconds
        # Long polls end after at most this long, so a stopping bot is not held up.
        self.max_poll_seconds = 1.0
        self.messages: list[SentMessage] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.refused: int = 0  # requests refused by the flood limits
        self.faults_fired: dict[Fault, int] = {f: 0 for f in Fault}
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[str, Iterator[int]] = {}
        self._migrated: dict[str, int] = {}
        self._kicked: set[str] = set()
        self._members: dict[tuple[str, int], str] = {}
        self._titles: dict[str, str] = {}
        self._overall: _Bucket | None = None
        self._groups: dict[str, _Bucket] = {}
        self._new_update: asyncio.Condition | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def api_url(self) -> str:
        """What ``DALABA_TELEGRAM_API_URL`` should be set to."""
        return f"http://127.0.0.1:{self.port}"

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._new_update = asyncio.Condition()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)

    def set_limits(self, limits: Limits | None) -> None:
        with self._lock:
            self.limits = limits
            self._overall = None
            self._groups.clear()

    # --- faults and chat states ---------------------------------------------------------------

    def fail(
        self,
        fault: Fault,
        *,
        times: int = 1,
        method: str | None = None,
        chat_id: str | int | None = None,
        retry_after: int = 1,
    ) -> None:
        """Inject ``fault`` into the next ``times`` requests matching method and chat."""
        with self._lock:
            self._rules.append(
                _Rule(
                    fault,
                    times,
                    method.lower() if method else None,
                    str(chat_id) if chat_id is not None else None,
                    retry_after,
                )
            )

    def clear_faults(self) -> None:
        """Forget every fault not yet fired."""
        with self._lock:
            self._rules.clear()

    def migrate(self, old_chat_id: str | int, new_chat_id: int) -> None:
        """The group became a supergroup: sends to the old id answer ``migrate_to_chat_id``."""
        with self._lock:
            self._migrated[str(old_chat_id)] = new_chat_id

    def kick(self, chat_id: str | int) -> None:
        """The bot was removed from the group: sends answer 403."""
        with self._lock:
            self._kicked.add(str(chat_id))

    def set_member(self, chat_id: str | int, user_id: int, status: str) -> None:
        """A user's status in a chat for getChatMember (creator, administrator, member …)."""
        with self._lock:
            self._members[(str(chat_id), user_id)] = status

    # --- what was sent ------------------------------------------------------------------------

    def messages_to(self, chat_id: str | int) -> list[SentMessage]:
        with self._lock:
            return [m for m in self.messages if m.chat_id == str(chat_id)]

    def sent_count(self) -> int:
        with self._lock:
            return len(self.messages)

    # --- updates ------------------------------------------------------------------------------

    @staticmethod
    def user(user_id: int, first_name: str = "张三") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name}

    def group(self, chat_id: str | int, title: str = "石桥村一组群") -> dict[str, Any]:
        chat_type = "supergroup" if str(chat_id).startswith("-100") else "group"
        self._titles[str(chat_id)] = title
        return {"id": int(chat_id), "type": chat_type, "title": title}

    @staticmethod
    def private(user: dict[str, Any]) -> dict[str, Any]:
        return {"id": user["id"], "type": "private", "first_name": user["first_name"]}

    def push_update(self, payload: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._lock:
            update_id = next(self._update_ids)
            self._updates.append({"update_id": update_id, **payload})
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._notify(), self._loop)
        return update_id

    async def _notify(self) -> None:
        assert self._new_update is not None
        async with self._new_update:
            self._new_update.notify_all()

    def push_command(self, *, chat: dict[str, Any], user: dict[str, Any], text: str) -> int:
        """A user sends ``text`` (a /command) in ``chat``."""
        command = text.split()[0]
        message = {
            "message_id": next(self._ids(str(chat["id"]))),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
        }
        return self.push_update({"message": message})

    def push_callback(
        self, *, user: dict[str, Any], message: SentMessage, data: str, query_id: str = ""
    ) -> int:
        """A user presses an inline button under ``message``."""
        return self.push_update(
            {
                "callback_query": {
                    "id": query_id or f"cq{time.monotonic_ns()}",
                    "from": user,
                    "chat_instance": "ci1",
                    "data": data,
                    "message": self._message_json(message),
                }
            }
        )

    def push_migration(self, old_chat_id: int, new_chat_id: int) -> int:
        """The service message Telegram sends in the old group when it is upgraded."""
        chat = self.group(old_chat_id)
        return self.push_update(
            {
                "message": {
                    "message_id": next(self._ids(str(old_chat_id))),
                    "date": int(time.time()),
                    "chat": chat,
                    "from": self.user(1),
                    "migrate_to_chat_id": new_chat_id,
                }
            }
        )

    def push_bot_removed(self, chat_id: int, by: dict[str, Any]) -> int:
        """A ``my_chat_member`` update: the bot was kicked from the group."""
        me = {"id": BOT_ID, "is_bot": True, "first_name": "大喇叭", "username": BOT_USERNAME}
        return self.push_update(
            {
                "my_chat_member": {
                    "chat": self.group(chat_id),
                    "from": by,
                    "date": int(time.time()),
                    "old_chat_member": {"status": "member", "user": me},
                    "new_chat_member": {"status": "kicked", "user": me, "until_date": 0},
                }
            }
        )

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    # --- the HTTP side ------------------------------------------------------------------------

    def _ids(self, chat_id: str) -> Iterator[int]:
        return self._message_ids.setdefault(chat_id, itertools.count(1))

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                params.update(await request.json())
            elif ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if part.filename is not None:  # type: ignore[union-attr]
                        data = await part.read()  # type: ignore[union-attr]
                        params[part.name] = {  # type: ignore[index]
                            "filename": part.filename,  # type: ignore[union-attr]
                            "size": len(data),
                            "mime": part.headers.get("Content-Type"),  # type: ignore[union-attr]
                        }
                    else:
                        params[part.name] = await part.text()  # type: ignore[index, union-attr]
            else:
                params.update(await request.post())
        for key, value in list(params.items()):
            if key in _JSON_FIELDS and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(value)
        return params

    def _take_rule(self, method: str, chat_id: str | None) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.times <= 0:
                    continue
                if rule.method and rule.method != method:
                    continue
                if rule.chat_id and rule.chat_id != chat_id:
                    continue
                rule.times -= 1
                self.faults_fired[rule.fault] += 1
                return rule
        return None

    def _flood_wait(self, chat_id: str) -> float:
        limits = self.limits
        if limits is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            waits = []
            if limits.overall_per_second:
                if self._overall is None:
                    self._overall = _Bucket(limits.overall_per_second, limits.overall_per_second)
                waits.append(self._overall.take(now))
            if limits.group_max and chat_id.startswith("-"):
                bucket = self._groups.get(chat_id)
                if bucket is None:
                    bucket = self._groups[chat_id] = _Bucket(
                        limits.group_max, limits.group_max / limits.group_period
                    )
                waits.append(bucket.take(now))
            wait = max(waits, default=0.0)
            if wait:
                # A refused request takes no token from the other bucket.
                if self._overall is not None and waits[0] == 0:
                    self._overall.tokens += 1
                if len(waits) > 1 and waits[1] == 0:
                    self._groups[chat_id].tokens += 1
                self.refused += 1
            return wait

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"].lower()
        params = await self._params(request)
        with self._lock:
            self.requests.append((method, params))
        chat_id = str(params["chat_id"]) if "chat_id" in params else None
        rule = self._take_rule(method, chat_id) if method != "getupdates" else None
        if rule is not None:
            if rule.fault is Fault.RETRY_AFTER:
                return _error(
                    429,
                    f"Too Many Requests: retry after {rule.retry_after}",
                    {"retry_after": rule.retry_after},
                )
            if rule.fault is Fault.BAD_REQUEST:
                return _error(400, "Bad Request: can't parse entities: unsupported start tag")
            if rule.fault is Fault.SERVER_ERROR:
                return _error(500, "Internal Server Error")
            if rule.fault is Fault.BAD_GATEWAY:
                return _error(502, "Bad Gateway")
            if rule.fault is Fault.DROP_BEFORE:
                return await _drop(request)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        if method in SEND_METHODS:
            assert chat_id is not None
            refusal = self._refusal(chat_id)
            if refusal is not None:
                return refusal
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        if rule is not None and rule.fault is Fault.DROP_AFTER:
            return await _drop(request)
        if rule is not None and rule.fault is Fault.SLOW:
            await asyncio.sleep(self.slow_seconds)
        return web.json_response({"ok": True, "result": result})

    def _refusal(self, chat_id: str) -> web.Response | None:
        with self._lock:
            new_id = self._migrated.get(chat_id)
            kicked = chat_id in self._kicked
        if new_id is not None:
            return _error(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": new_id},
            )
        if kicked:
            return _error(403, "Forbidden: bot was kicked from the group chat")
        wait = self._flood_wait(chat_id)
        if wait:
            retry = max(1, math.ceil(wait))
            return _error(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        return None

    def _record(self, method: str, params: dict[str, Any], **extra: Any) -> SentMessage:
        chat_id = str(params["chat_id"])
        with self._lock:
            message = SentMessage(
                chat_id=chat_id,
                message_id=next(self._ids(chat_id)),
                method=method,
                parse_mode=params.get("parse_mode"),
                reply_markup=params.get("reply_markup"),
                **extra,
            )
            self.messages.append(message)
        return message

    def _chat_json(self, chat_id: str) -> dict[str, Any]:
        if chat_id.startswith("-"):
            return {
                "id": int(chat_id),
                "type": "supergroup" if chat_id.startswith("-100") else "group",
                "title": self._titles.get(chat_id, "群"),
            }
        return {"id": int(chat_id), "type": "private", "first_name": "用户"}

    def _message_json(self, m: SentMessage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "message_id": m.message_id,
            "date": int(time.time()),
            "chat": self._chat_json(m.chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "大喇叭"},
        }
        if m.text:
            data["text"] = m.text
        if m.caption:
            data["caption"] = m.caption
        media = {
            "file_id": f"f{m.chat_id}_{m.message_id}",
            "file_unique_id": f"u{m.chat_id}_{m.message_id}",
            "file_size": m.file_size,
        }
        if m.method == "sendvoice":
            data["voice"] = {**media, "duration": m.duration or 0, "mime_type": "audio/ogg"}
        elif m.method == "sendaudio":
            data["audio"] = {**media, "duration": m.duration or 0, "file_name": m.filename}
        elif m.method == "senddocument":
            data["document"] = {**media, "file_name": m.filename}
        if m.reply_markup:
            data["reply_markup"] = m.reply_markup
        return data

    # --- methods ------------------------------------------------------------------------------

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "大喇叭",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        assert self._new_update is not None
        with self._lock:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + min(timeout, self.max_poll_seconds)
        async with self._new_update:
            while True:
                with self._lock:
                    ready = list(self._updates)
                if ready or time.monotonic() >= deadline:
                    return ready[: int(params.get("limit") or 100)]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._new_update.wait(), max(0.01, deadline - time.monotonic())
                    )

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        text = str(params.get("text", ""))
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096 and params.get("parse_mode") is None:
            return _error(400, "Bad Request: message is too long")
        if params.get("parse_mode") == "HTML" and _visible_len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        return self._message_json(self._record("sendmessage", params, text=text))

    async def _media(self, method: str, field_name: str, params: dict[str, Any]) -> Any:
        upload = params.get(field_name)
        if not isinstance(upload, dict):
            return _error(400, f"Bad Request: there is no {field_name} in the request")
        caption = str(params.get("caption") or "")
        if caption and _visible_len(caption) > 1024:
            return _error(400, "Bad Request: message caption is too long")
        message = self._record(
            method,
            params,
            caption=caption,
            filename=upload["filename"],
            file_size=upload["size"],
            mime_type=upload["mime"],
            duration=int(params["duration"]) if params.get("duration") else None,
        )
        return self._message_json(message)

    async def _m_sendvoice(self, params: dict[str, Any]) -> Any:
        return await self._media("sendvoice", "voice", params)

    async def _m_sendaudio(self, params: dict[str, Any]) -> Any:
        return await self._media("sendaudio", "audio", params)

    async def _m_senddocument(self, params: dict[str, Any]) -> Any:
        return await self._media("senddocument", "document", params)

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self.callback_answers.append(params)
        return True

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> Any:
        chat_id, message_id = str(params.get("chat_id")), int(params.get("message_id", 0))
        with self._lock:
            for m in self.messages:
                if m.chat_id == chat_id and m.message_id == message_id:
                    m.reply_markup = params.get("reply_markup")
                    break
            else:
                return _error(400, "Bad Request: message to edit not found")
        return self._message_json(m)

    async def _m_setmycommands(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self.commands = list(params.get("commands") or [])
        return True

    async def _m_getchatmember(self, params: dict[str, Any]) -> Any:
        chat_id, user_id = str(params["chat_id"]), int(params["user_id"])
        with self._lock:
            status = self._members.get((chat_id, user_id), "member")
        member: dict[str, Any] = {"status": status, "user": self.user(user_id)}
        if status == "administrator":
            member.update(_ADMIN_RIGHTS)
        elif status == "creator":
            member["is_anonymous"] = False
        elif status == "restricted":
            member.update(_RESTRICTIONS)
        elif status == "kicked":
            member["until_date"] = 0
        return member

    async def _m_getchatadministrators(self, params: dict[str, Any]) -> Any:
        chat_id = str(params["chat_id"])
        with self._lock:
            admins = [
                (uid, status)
                for (cid, uid), status in self._members.items()
                if cid == chat_id and status in ("creator", "administrator")
            ]
        result = []
        for uid, status in admins:
            member: dict[str, Any] = {"status": status, "user": self.user(uid)}
            member.update(_ADMIN_RIGHTS if status == "administrator" else {"is_anonymous": False})
            result.append(member)
        return result

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self.webhook = params
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        with self._lock:
            self.webhook = None
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> Any:
        return {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }

    async def _m_close(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_logout(self, params: dict[str, Any]) -> Any:
        return True


_ADMIN_RIGHTS = {
    "can_be_edited": False,
    "is_anonymous": False,
    "can_manage_chat": True,
    "can_delete_messages": True,
    "can_manage_video_chats": True,
    "can_restrict_members": True,
    "can_promote_members": False,
    "can_change_info": True,
    "can_invite_users": True,
    "can_post_stories": False,
    "can_edit_stories": False,
    "can_delete_stories": False,
}
_RESTRICTIONS = {
    "is_member": True,
    "can_change_info": False,
    "can_invite_users": False,
    "can_pin_messages": False,
    "can_send_messages": False,
    "can_send_audios": False,
    "can_send_documents": False,
    "can_send_photos": False,
    "can_send_videos": False,
    "can_send_video_notes": False,
    "can_send_voice_notes": False,
    "can_send_polls": False,
    "can_send_other_messages": False,
    "can_add_web_page_previews": False,
    "can_manage_topics": False,
    "until_date": 0,
}


def _visible_len(html_text: str) -> int:
    """Length of HTML-formatted text after entity parsing, in UTF-16 units (like Telegram)."""
    import html
    import re

    plain = html.unescape(re.sub(r"<[^>]+>", "", html_text))
    return len(plain.encode("utf-16-le")) // 2


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


async def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection with no HTTP answer at all."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp needs a response object; the client never sees it.
    return web.Response(status=204)
