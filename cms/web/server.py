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


def make_server(app: Flask, host: str, port: int, **adjustments: Any) -> Server:
    """Waitress on ``host:port`` with the settings above (``adjustments`` override them)."""
    server = create_server(app, host=host, port=port, ident="dalaba", **(WAITRESS | adjustments))
    listeners = (
        [d for d in server.map.values() if isinstance(d, BaseWSGIServer)]
        if isinstance(server, MultiSocketServer)
        else [server]
    )
    for listener in listeners:
        listener.handle_accept = _accepting_all_waiting(listener, listener.handle_accept)
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
            before = len(listener.active_channels)
            accept_one()
            if len(listener.active_channels) == before or not listener.readable():
                return

    return handle_accept
