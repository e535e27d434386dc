"""A robot's webhook address, checked the way all three platforms need it.

Each platform module says which hosts are its own, what its path and key look like, what
its signing secret looks like, and how it words each mistake (:class:`Shape`); this module
does the rest: https only, no address on this machine or a private network unless allowed
(``DALABA_ALLOW_LOCAL_WEBHOOKS``: tests, a self-hosted relay), and the canonical address
(only the key kept: a pasted ``&timestamp=&sign=`` is dropped) with an id derived from the
key, never the key itself, that names the robot in lists. What the robot keeps is the
chat's credentials, under the form's field names (:mod:`robots.keys`): cms stores them
without reading them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from cms.channels import Binding, ChannelFactory, ChannelPlugin, FormField
from cms.services.errors import N_, Errors
from robots.keys import SECRET, WEBHOOK

__all__ = ["FIELDS", "Shape", "check_address", "robot_plugin"]

# The bind form's fields for every robot (rendered by cms's Chats page; ``dalaba chats bind``
# takes them as --webhook and --secret).
FIELDS = (
    FormField(
        WEBHOOK,
        N_("Webhook 地址"),
        type="url",
        required=True,
        placeholder="https://",
        help="群机器人的 webhook 地址（企业微信、钉钉、飞书）",
    ),
    FormField(
        SECRET,
        N_("签名密钥（可选）"),
        type="password",
        secret=True,
        help="机器人的签名密钥（钉钉“加签”、飞书“签名校验”；也可用环境变量 DALABA_ROBOT_SECRET）",
        envvar="DALABA_ROBOT_SECRET",
    ),
)


@dataclass(frozen=True)
class Shape:
    """What one platform's robot address and secret look like, in its own words."""

    label: str  # the platform's name, a message id (企业微信 / 钉钉 / 飞书)
    hosts: frozenset[str]
    # ``key(parts, netloc)``: (the key, the canonical address) when the path and query have
    # the platform's shape, else None (then ``shape_error`` is shown).
    key: Callable[[SplitResult, str], tuple[str, str] | None]
    shape_error: str
    # ``secret_error(secret)``: why a non-empty secret is refused, or None.
    secret_error: Callable[[str], str | None]


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local(host: str) -> bool:
    """Whether ``host`` names this machine or a private network (not the platform)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


def check_address(shape: Shape, values: Mapping[str, str], allow_local: bool) -> Binding:
    """Check ``values["webhook"]`` (and ``values["secret"]``) against ``shape``; the robot
    keeps the canonical address and the secret, if any.

    The host must be the platform's, over ``https://``: otherwise an admin could make dalaba
    post to, and show the answer of, any service on the server's own network.

    Raises:
        ValidationError: on ``webhook`` or ``secret``, in the platform's words.
    """
    errors = Errors()
    url = values.get(WEBHOOK, "").strip()
    secret = values.get(SECRET, "").strip()
    hosts = "、".join(sorted(shape.hosts))
    token = canonical = ""
    try:
        parts: SplitResult | None = urlsplit(url)
        assert parts is not None
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        parts, host, port = None, "", None
    if not url:
        errors.add(WEBHOOK, N_("请填写机器人的 webhook 地址"))
    elif parts is None or parts.scheme not in ("https", "http") or not host:
        errors.add(WEBHOOK, N_("webhook 地址应以 https:// 开头"))
    elif _local(host) and not allow_local:
        errors.add(
            WEBHOOK,
            N_("不能使用本机或内网地址，请填写{label}机器人的 https:// 地址（{hosts}）"),
            label=shape.label,
            hosts=hosts,
        )
    elif parts.scheme == "http" and not _loopback(host):
        errors.add(WEBHOOK, N_("只有本机（127.0.0.1）上的地址可以用 http://，请用 https:// 地址"))
    elif host not in shape.hosts and not _local(host):
        errors.add(
            WEBHOOK,
            N_("这不是{label}机器人的地址：应为 {hosts} 上的地址"),
            label=shape.label,
            hosts=hosts,
        )
    else:
        bracketed = f"[{host}]" if ":" in host else host
        netloc = bracketed if port is None else f"{bracketed}:{port}"
        found = shape.key(parts, netloc)
        if found is None:
            errors.add(WEBHOOK, shape.shape_error)
        else:
            token, canonical = found
    if secret:
        refused = shape.secret_error(secret)
        if refused is not None:
            errors.add(SECRET, refused)
    errors.raise_if_any()
    credentials = {WEBHOOK: canonical, **({SECRET: secret} if secret else {})}
    return Binding(hashlib.sha256(token.encode()).hexdigest()[:16], credentials)


# The robots' own English catalogue, registered with each robot platform.
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Above the Chats page's bind form (one line for every robot platform).
INTRO = N_(
    "在群设置里添加机器人，复制它的 webhook 地址（钉钉“加签”、飞书“签名校验”的密钥也一起复制）。"
    "密钥保存后不再显示。"
)


def robot_plugin(
    platform: str, shape: Shape, channel: ChannelFactory, *, hint: str, order: int
) -> ChannelPlugin:
    """A robot platform's ``dalaba.channels`` entry: bound by its webhook address (checked
    against ``shape``), with the robots' form fields and the platform's ``hint``."""
    return ChannelPlugin(
        platform=platform,
        label=shape.label,
        channel=channel,
        validate=partial(check_address, shape),
        fields=FIELDS,
        hint=hint,
        order=order,
        translations=TRANSLATIONS,
        intro=INTRO,
    )
