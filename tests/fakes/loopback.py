"""An aiohttp app on a free loopback port, in a thread of its own: the fakes' common lifecycle.

A fake subclasses :class:`LoopbackServer`, adds its routes in :meth:`routes` (and anything
that must be created on the server's event loop in :meth:`on_loop`), and is used as a
context manager: ``with FakeX() as fake: … fake.port …``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class LoopbackServer:
    """Serves :meth:`routes` on 127.0.0.1 from ``__enter__`` until ``__exit__``."""

    THREAD_NAME = "fake-server"
    MAX_BODY = 30 * 1024 * 1024

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create what must live on the server's loop (conditions, queues); nothing by default."""

    def __enter__(self) -> Any:
        self._thread = threading.Thread(target=self._serve, name=self.THREAD_NAME, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self.on_loop(loop)
        app = web.Application(client_max_size=self.MAX_BODY)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        loop.run_forever()
        self._finish(loop)

    @staticmethod
    def _finish(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel and await what is still running (a held long poll), as ``asyncio.run`` does.

        A task left pending on a closed loop is destroyed later by the garbage collector, at
        whatever point another test happens to be: its finaliser logs a traceback there, and on
        CPython 3.11.7 formatting that traceback inside a running ``ast.parse`` (werkzeug
        compiles each route with it) raises "AST constructor recursion depth mismatch".
        """
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
