"""A made-up chat platform, 扩音站 ("Megaphone"), that reaches dalaba only as a plugin.

It is installed by the tests through an entry point alone (``dalaba.channels``, from a
``*.dist-info/entry_points.txt`` on ``sys.path``): cms has no line about it. It owns what a
platform owns: its label, its bind form's fields (an address and a secret ``token`` that
cms stores without reading, as the chat's credentials), their formats and the words that
refuse a wrong one, and its sending channel, which reads the credentials back. Its words are in its own English catalogue
(``translations/``).

The platform's protocol (made up, spoken by :class:`tests.plugins.test_made_up_platform.FakeMegaphone`):
``POST https://megaphone.example/hook/KEY`` with the header ``X-Megaphone-Token: TOKEN`` and
the JSON ``{"title", "text", "link"}``; KEY is 12 lower-case hexadecimal digits, TOKEN 16
letters or digits. The answer is ``{"code": 0, "id": "m1"}``; ``{"code": 404, "msg": "no
such hook"}`` (HTTP 404) for an unknown key: the hook is gone; ``{"code": 401, "msg": "bad
token"}`` (HTTP 401) for a wrong token.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from cms.channels import (
    Binding,
    ChannelPlugin,
    ChatUnavailable,
    FormField,
    Notice,
    OutcomeUnknown,
    PermanentFailure,
    ProgressCallback,
    SendResult,
    TemporaryFailure,
)
from cms.services.errors import N_, Errors
from cms.settings import Settings

PLATFORM = "megaphone"
HOST = "megaphone.example"
LABEL = N_("扩音站")
BAD_ADDRESS = N_("扩音站的地址应形如 https://megaphone.example/hook/ 加 12 位十六进制数")
NO_TOKEN = N_("请填写扩音站口令")
BAD_TOKEN = N_("扩音站口令是 16 位字母或数字")
WRONG_TOKEN = N_("扩音站口令不对，请重新绑定")
# The platform's own names for what it keeps (its bind form's fields).
ADDRESS, TOKEN = "webhook", "token"
_HOOK = re.compile(r"/hook/([0-9a-f]{12})")
_TOKEN = re.compile(r"[0-9A-Za-z]{16}")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(values: Mapping[str, str], allow_local: bool) -> Binding:
    """The platform's address (its own host, or loopback when allowed, and a 12-digit key)
    and its token; kept as the chat's credentials."""
    errors = Errors()
    parts = urlsplit(values.get(ADDRESS, ""))
    host = parts.hostname or ""
    match = _HOOK.fullmatch(parts.path)
    on_host = (parts.scheme == "https" and host == HOST) or (allow_local and _loopback(host))
    if not on_host or match is None or parts.query:
        errors.add(ADDRESS, BAD_ADDRESS)
    token = values.get(TOKEN, "")
    if not token:
        errors.add(TOKEN, NO_TOKEN)
    elif not _TOKEN.fullmatch(token):
        errors.add(TOKEN, BAD_TOKEN)
    errors.raise_if_any()
    assert match is not None
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    chat_id = "mega-" + hashlib.sha256(match.group(1).encode()).hexdigest()[:10]
    return Binding(chat_id, {ADDRESS: url, TOKEN: token})


class MegaphoneChannel:
    """Posts a notice as one JSON message."""

    platform = PLATFORM

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=10.0)

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        if notice.sent_ids:
            return SendResult(list(notice.sent_ids))
        url, token = notice.credentials[ADDRESS], notice.credentials[TOKEN]
        body = {"title": notice.title, "text": notice.text, "link": notice.link}
        try:
            response = self.client.post(url, json=body, headers={"X-Megaphone-Token": token})
        except httpx.ConnectError as exc:
            raise TemporaryFailure("扩音站连不上") from exc
        except httpx.HTTPError as exc:
            raise OutcomeUnknown("扩音站没有应答") from exc
        answer = response.json()
        if answer.get("code") == 404:
            raise ChatUnavailable("扩音站的地址已失效")
        if answer.get("code") == 401:
            raise PermanentFailure(WRONG_TOKEN)
        ids = [str(answer["id"])]
        progress(ids)
        return SendResult(ids)


def channel(settings: Settings) -> MegaphoneChannel:
    return MegaphoneChannel()


plugin = ChannelPlugin(
    platform=PLATFORM,
    label=LABEL,
    channel=channel,
    validate=validate,
    # The token is checked by ``validate``, not the page: the bind form is shared with the
    # robots, which have no token.
    fields=(
        FormField(ADDRESS, N_("扩音站地址"), type="url", required=True),
        FormField(
            TOKEN, N_("扩音站口令"), type="password", secret=True, help=N_("扩音站后台的 16 位口令")
        ),
    ),
    hint=N_("扩音站：在扩音站后台“接入”页复制地址"),
    order=50,
    translations=Path(__file__).resolve().parent / "translations",
)
