"""The production WSGI server: waitress, tuned for many loudspeaker boxes downloading at once.

Downloads go out as ``wsgi.file_wrapper`` (see ``cms.web.sendfile``): waitress's I/O loop
streams them, so the worker threads only run views and a slow box holds a connection, not a
thread. What is left to tune is the I/O loop itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from cms.settings import Settings

WAITRESS: dict[str, Any] = {
    "threads": 8,
    # Loudspeaker boxes hold connections open while they download: allow many at once.
    "connection_limit": 500,
    # poll() instead of select(): no 1024-descriptor ceiling, and less work per turn of the
    # loop with hundreds of connections open.
    "asyncore_use_poll": True,
}
# Connections accepted per turn of the I/O loop (waitress accepts one).
ACCEPT_BATCH = 64

Server = BaseWSGIServer | MultiSocketServer


def proxy_adjustments(settings: Settings) -> dict[str, Any]:
    """Waitress's part of ``DALABA_TRUSTED_PROXIES``.

    Waitress (3.x) removes X-Forwarded-For/-Proto from every request whose peer is not its
    own ``trusted_proxy``, which takes a single address, not a hop count or networks. So the
    app's middleware (:mod:`cms.web.proxy`) stays the one judge of which peer to believe,
    and waitress is told to pass the headers on when the setting trusts any proxy; with no
    proxy trusted it keeps removing them.
    """
    trusts = settings.proxies != 0
    return {"clear_untrusted_proxy_headers": not trusts}


def make_server(
    app: Flask, host: str, port: int, settings: Settings | None = None, **adjustments: Any
) -> Server:
    """Waitress on ``host:port`` with the settings above (``adjustments`` override them)."""
    proxies = proxy_adjustments(settings) if settings is not None else {}
    server = create_server(
        app, host=host, port=port, ident="dalaba", **(WAITRESS | proxies | adjustments)
    )
    listeners: list[BaseWSGIServer] = []
    if isinstance(server, MultiSocketServer):
        # types-waitress calls the map's values sockets; they are the listening servers.
        dispatchers: list[object] = list((server.map or {}).values())
        listeners = [d for d in dispatchers if isinstance(d, BaseWSGIServer)]
    else:
        listeners = [server]
    for listener in listeners:
        # Replacing the bound method on this one listener is the point (see below).
        listener.handle_accept = _accepting_all_waiting(  # type: ignore[method-assign]
            listener, listener.handle_accept
        )
    return server


def _accepting_all_waiting(
    listener: BaseWSGIServer, accept_one: Callable[[], None]
) -> Callable[[], None]:
    """``handle_accept`` that takes every waiting connection (up to ACCEPT_BATCH).

    Waitress accepts one connection per turn of its loop, and a turn that sends to hundreds
    of downloads takes a while: 200 boxes connecting at once waited in the kernel's backlog
    for hundreds of milliseconds before their request was even read. Waitress's own accept
    runs each time (socket options, errors, the connection limit via ``readable``).
    """

    def handle_accept() -> None:
        for _ in range(ACCEPT_BATCH):
            before = _open_connections(listener)
            accept_one()
            if _open_connections(listener) == before or not listener.readable():
                return

    return handle_accept


def _open_connections(listener: BaseWSGIServer) -> int:
    # types-waitress declares active_channels as one channel; it is the dict of them all.
    return len(listener.active_channels)  # type: ignore[arg-type]
