"""Serving: the HTTP front of the REST APIs (model server and gateway), on aiohttp.

HTTP framing is aiohttp's, a maintained server that refuses what a hand-rolled one got wrong:
a Content-Length that is not a number or is negative, a request carrying both Content-Length
and Transfer-Encoding (which behind a proxy becomes request smuggling), oversized request
lines and headers, and bodies past --max_request_bytes (413, before they are read into
memory). Connections cost a coroutine, not a thread, so slow clients hold no worker.

The event loop runs in one thread of its own and only moves bytes; each request's work
(parsing, the model call) runs in a pool of --rest_api_num_threads threads, with
--rest_api_timeout_in_ms as its deadline (504, as TF Serving answers DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiohttp import web

from tandem.serving.rest_codec import CORS_HEADERS

log = logging.getLogger("tandem.serving")


class Dispatch(Protocol):
    def dispatch(self, method: str, path: str, raw: bytes) -> tuple[Any, ...]:
        """(status, body, content type[, extra headers]); never raises."""


class RestServer:
    def __init__(self, api: Dispatch, host: str, port: int, max_body_bytes: int,
                 cors: bool = False, threads: int = 0, timeout_ms: int = 30000,
                 reuse_port: bool = False):
        self.api, self.max_body_bytes, self.cors = api, max_body_bytes, cors
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        # TF Serving's default: 4 threads per core.
        self._pool = ThreadPoolExecutor(max_workers=threads or 4 * (os.cpu_count() or 1),
                                        thread_name_prefix="rest")
        # Bound now, so the port is known (and a busy port reported) before start().
        # reuse_port: processes of one server sharing the port (the gateway's --workers).
        self._socket = socket.create_server((host, port), reuse_port=reuse_port)
        self.port = self._socket.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="rest-api")
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=30)
        if self._error is not None:
            raise OSError(f"cannot start the REST server: {self._error}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            app = web.Application(client_max_size=self.max_body_bytes)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            self._loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, self._socket)
            self._loop.run_until_complete(site.start())
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._response(413, {"error": (
                f"request body of {request.content_length} bytes exceeds the limit of "
                f"{self.max_body_bytes} (--max_request_bytes)")}, "application/json")
        work = self._loop.run_in_executor(self._pool, self.api.dispatch, request.method,
                                          request.raw_path, raw)
        try:
            status, body, ctype, *extra = await asyncio.wait_for(work, self.timeout)
        except asyncio.TimeoutError:
            return self._response(504, {"error": (
                f"Deadline exceeded: the request took longer than {self.timeout:g} s "
                "(--rest_api_timeout_in_ms)")}, "application/json")
        return self._response(status, body, ctype, *extra)

    def _response(self, status: int, body, ctype: str,
                  extra: dict[str, str] | None = None) -> web.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": ctype, **(extra or {})}
        if self.cors:
            headers.update(CORS_HEADERS)
        return web.Response(status=status, body=data, headers=headers)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            self._loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._thread.join(timeout=10)
        self._socket.close()
        self._pool.shutdown(wait=False)
