"""A made-up chat platform, 扩音站 ("Megaphone"), that reaches dalaba only as a plugin.

It is installed by the tests through an entry point alone (``dalaba.channels``, from a
``*.dist-info/entry_points.txt`` on ``sys.path``): cms has no line about it. It owns what a
platform owns: its label, its bind form's field, its address format and the words that
refuse a wrong one (in its own English catalogue, ``translations/``), and its sending channel.

The platform's protocol (made up, spoken by :class:`tests.plugins.test_made_up_platform.FakeMegaphone`):
``POST https://megaphone.example/hook/KEY`` with the JSON ``{"title", "text", "link"}``;
KEY is 12 lower-case hexadecimal digits. The answer is ``{"code": 0, "id": "m1"}``, or
``{"code": 404, "msg": "no such hook"}`` (HTTP 404) for an unknown key: the hook is gone.
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
    ChannelPlugin,
    ChatUnavailable,
    FormField,
    Notice,
    OutcomeUnknown,
    ProgressCallback,
    SendResult,
    TemporaryFailure,
    Webhook,
)
from cms.services.errors import N_, Errors
from cms.settings import Settings

PLATFORM = "megaphone"
HOST = "megaphone.example"
LABEL = N_("扩音站")
BAD_ADDRESS = N_("扩音站的地址应形如 https://megaphone.example/hook/ 加 12 位十六进制数")
NO_SECRET = N_("扩音站没有密钥，请留空")
_HOOK = re.compile(r"/hook/([0-9a-f]{12})")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(values: Mapping[str, str], allow_local: bool) -> Webhook:
    """The platform's address: its own host (or loopback when allowed) and a 12-digit key."""
    errors = Errors()
    parts = urlsplit(values.get("webhook", ""))
    host = parts.hostname or ""
    match = _HOOK.fullmatch(parts.path)
    on_host = (parts.scheme == "https" and host == HOST) or (allow_local and _loopback(host))
    if not on_host or match is None or parts.query:
        errors.add("webhook", BAD_ADDRESS)
    if values.get("secret"):
        errors.add("secret", NO_SECRET)
    errors.raise_if_any()
    assert match is not None
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return Webhook(url, "mega-" + hashlib.sha256(match.group(1).encode()).hexdigest()[:10])


class MegaphoneChannel:
    """Posts a notice as one JSON message."""

    platform = PLATFORM

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=10.0)

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        if notice.sent_ids:
            return SendResult(list(notice.sent_ids))
        assert notice.webhook_url is not None
        body = {"title": notice.title, "text": notice.text, "link": notice.link}
        try:
            response = self.client.post(notice.webhook_url, json=body)
        except httpx.ConnectError as exc:
            raise TemporaryFailure("扩音站连不上") from exc
        except httpx.HTTPError as exc:
            raise OutcomeUnknown("扩音站没有应答") from exc
        answer = response.json()
        if answer.get("code") == 404:
            raise ChatUnavailable("扩音站的地址已失效")
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
    fields=(FormField("webhook", N_("扩音站地址"), type="url", required=True),),
    hint=N_("扩音站：在扩音站后台“接入”页复制地址"),
    order=50,
    translations=Path(__file__).resolve().parent / "translations",
)
