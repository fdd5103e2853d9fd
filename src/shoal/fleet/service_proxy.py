"""A Service's endpoint on this machine: a small HTTP proxy in front of its ready pods (kube-proxy's job).

Requests go to the ready pod with the fewest requests in flight. A pod that refuses a request before answering
(503 while it drains, connection refused as it exits) is skipped and the request retried on another, as a
gateway would, so scaling down never fails a client.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import aiohttp
from aiohttp import web

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class ServiceProxy:
    def __init__(self, name: str, backends: Callable[[], list[str]], host: str = "127.0.0.1", port: int = 0,
                 wait_for_backend_s: float = 30.0) -> None:
        self.name = name
        self.backends = backends  # current ready pod addresses (host:port)
        self.host = host
        self.port = port
        self.wait_for_backend_s = wait_for_backend_s
        self.in_flight: dict[str, int] = {}
        self.retries = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                                              connector=aiohttp.TCPConnector(limit=0))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port picked when 0 was asked

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def _pick(self, tried: set[str]) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_for_backend_s
        while True:
            candidates = [b for b in self.backends() if b not in tried]
            if candidates:
                return min(candidates, key=lambda b: self.in_flight.get(b, 0))
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.1)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        tried: set[str] = set()
        for _ in range(5):
            backend = await self._pick(tried)
            if backend is None:
                break
            tried.add(backend)
            self.in_flight[backend] = self.in_flight.get(backend, 0) + 1
            relaying = False
            try:
                url = f"http://{backend}{request.rel_url}"
                async with self._session.request(request.method, url, data=body, headers=headers) as upstream:
                    if upstream.status == 503 and len(tried) < 5:
                        self.retries += 1
                        continue  # draining pod: nothing was processed, try another
                    relaying = True
                    return await self._relay(request, upstream)
            except (aiohttp.ClientConnectionError, ConnectionResetError):
                if relaying:
                    raise  # the answer had started: retrying would send the client two
                self.retries += 1
                continue
            finally:
                self.in_flight[backend] -= 1
        return web.json_response(
            {"error": {"message": f"service {self.name} has no ready pod", "type": "service_unavailable",
                       "param": None, "code": 503}},
            status=503,
        )

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_HEADERS:
                response.headers[key] = value
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away: leaving the upstream context closes that request too (the engine aborts it)
        return response
