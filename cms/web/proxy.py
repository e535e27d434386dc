"""Believe X-Forwarded-For/-Proto only from the reverse proxies in DALABA_TRUSTED_PROXIES.

Without the setting every forwarded header is ignored, so a client cannot pick its own address
(login throttling counts failures per address). X-Forwarded-Host is never used: the README's
nginx passes ``Host`` itself, and a proxy that forwards a client's X-Forwarded-Host unchanged
would otherwise let anyone choose the host of external links.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from cms.settings import MAX_PROXY_HOPS, IPNetwork, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def wrap(app: WSGIApplication, settings: Settings) -> WSGIApplication:
    """``app`` behind the proxies ``settings`` trusts (unchanged when it trusts none)."""
    proxies = settings.proxies
    if isinstance(proxies, int):
        return ProxyFix(app, x_for=proxies, x_proto=1, x_host=0) if proxies else app
    return TrustedProxies(app, proxies)


class TrustedProxies:
    """ProxyFix applied only when the direct peer is one of the listed proxies.

    Behind a chain of listed proxies the client is the nearest X-Forwarded-For address that is
    not one of them; a request from anywhere else keeps its own address whatever it claims.
    """

    def __init__(self, app: WSGIApplication, networks: Iterable[IPNetwork]) -> None:
        self.app = app
        self.networks = tuple(networks)
        self._fixes: dict[int, ProxyFix] = {}

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.trusted(environ.get("REMOTE_ADDR", "")):
            return self.app(environ, start_response)
        forwarded = [
            part for part in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
        ]
        hops, most = 1, min(len(forwarded), MAX_PROXY_HOPS)
        while hops < most and self.trusted(forwarded[-hops]):
            hops += 1
        return self._fix(hops)(environ, start_response)

    def _fix(self, hops: int) -> ProxyFix:
        fix = self._fixes.get(hops)
        if fix is None:
            fix = self._fixes[hops] = ProxyFix(self.app, x_for=hops, x_proto=1, x_host=0)
        return fix
