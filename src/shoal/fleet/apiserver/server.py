"""The HTTP face of the emulator: a kmock handler whose Kubernetes routes are served from indexed storage.

kmock provides the HTTP server and its reaction DSL (tests can still inject faults such as
`api['get /api/v1/namespaces/x/configmaps'] << 500`); storage, routing, watches and discovery are
replaced here because kmock 0.8 scans every object and every past request on each call.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from shoal.fleet.apiserver import debug, discovery, errors, protobuf, selectors, tables
from shoal.fleet.apiserver.api import ObjectApi
from shoal.fleet.apiserver.faults import Fault, FaultInjector, fault_error
from shoal.fleet.apiserver.resources import Registry, ResourceType
from shoal.fleet.apiserver.store import Store, Watcher
from shoal.fleet.apiserver.tripwire import Tripwire

JSON = "application/json"


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _respond(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=_dumps(payload), status=status, content_type=JSON, headers=headers)


def _drop(request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
    """Lose the connection without an answer (a crashed peer, a dead load balancer, a cut watch)."""
    if request.transport is not None:
        request.transport.abort()
    return aiohttp.web.Response(status=499)  # written nowhere: the transport is gone


@attrs.define(kw_only=True)
class KubernetesApi(kmock.RawHandler):
    """A Kubernetes API server good enough for kopf and kubectl, fast at thousands of objects."""

    store: Store = attrs.field(factory=Store)
    registry: Registry = attrs.field(factory=Registry)
    api: ObjectApi = attrs.field(init=False)
    faults: FaultInjector = attrs.field(factory=FaultInjector)
    tripwire: Tripwire = attrs.field(factory=Tripwire)
    requests_served: int = attrs.field(default=0, init=False)
    busy_seconds: float = attrs.field(default=0.0, init=False)  # handler time, excluding open watches

    def __attrs_post_init__(self) -> None:
        self.api = ObjectApi(self.store, self.registry)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith("/debug/"):
            return await self._serve_debug(raw_request)
        if self.tripwire.is_dead(raw_request.headers.get("Authorization", "")):
            self.tripwire.dropped += 1  # sent by a process that is dead by now: it never reached the server
            return _drop(raw_request)
        if self._payloads:  # reactions a test added through kmock's DSL take precedence
            response = await self._react(raw_request)
            if response is not None:
                return response
        watch = raw_request.method == "GET" and raw_request.query.get("watch") in ("true", "1")
        fault = self.faults.decide(raw_request.method, raw_request.headers.get("User-Agent", ""), watch)
        if fault is not None and fault.kind != "watch_drop":
            return await self._inject(raw_request, fault)
        return await self._serve_counted(raw_request, fault)

    async def _serve_counted(self, raw_request: aiohttp.web.BaseRequest,
                             fault: Fault | None = None) -> aiohttp.web.StreamResponse:
        started = time.perf_counter()
        self.requests_served += 1
        try:
            response = await self._serve(raw_request, fault)
        except errors.ApiError as exc:
            response = _respond(exc.status(), exc.code)
        finally:
            self.busy_seconds += time.perf_counter() - started
        if self.tripwire.observe(raw_request.headers.get("Authorization", ""), raw_request.method,
                                 raw_request.path, response.status):
            return _drop(raw_request)  # the client died right after this write: its answer goes nowhere
        return response

    async def _inject(self, raw_request: aiohttp.web.BaseRequest, fault: Fault) -> aiohttp.web.StreamResponse:
        """Answer as a sick API server would (faults.py says which kinds and why)."""
        await raw_request.read()
        if fault.kind == "timeout":  # the call hangs, then the connection drops; a write may have been applied
            if fault.apply_first:
                await self._serve_counted(raw_request)
            await asyncio.sleep(fault.after_s)
            return _drop(raw_request)
        exc = fault_error(fault.kind, self.faults.config.retry_after_s)
        retry_after = exc.details.get("retryAfterSeconds")
        return _respond(exc.status(), exc.code, None if retry_after is None else {"Retry-After": str(retry_after)})

    async def _serve_debug(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.Response:
        payload, status = await debug.answer(request, self.faults, self.tripwire)
        return _respond(payload, status)

    async def _react(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        await raw_request.read()
        try:
            request = await rendering.Request._parse(raw_request, id=len(self._requests))
        except ValueError:  # kmock 0.8 cannot parse some paths (e.g. /api/v1/namespaces): no reaction can match
            return None
        self._requests.append(request)
        try:
            return await super()._handle(request)
        except NotImplementedError:
            return None  # no reaction matched: serve it as the API server

    async def __aexit__(self, *exc_info: Any) -> None:
        self.store.close_watchers()
        await super().__aexit__(*exc_info)

    # -- routing ------------------------------------------------------------------------------------------
    async def _serve(self, request: aiohttp.web.BaseRequest, fault: Fault | None = None) -> aiohttp.web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if method == "GET":
            static = self._static(request, parts)
            if static is not None:
                return static
        route = self._route(parts)
        if route is None:
            raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        query = request.query
        if route.subresource == "scale":
            return await self._serve_scale(request, route)
        if route.subresource not in (None, "status") or (route.subresource == "status" and not route.rt.status):
            raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({request.path})")
        if query.get("dryRun") not in (None, "All"):
            raise errors.ApiError(400, "BadRequest", f"dryRun must be All, not {query.get('dryRun')!r}")
        dry_run = query.get("dryRun") == "All"
        strict = query.get("fieldValidation") == "Strict"
        rt, ns, name = route.rt, route.namespace, route.name
        if method == "GET" and query.get("watch") in ("true", "1"):
            return await self._serve_watch(request, route, fault.after_s if fault is not None else None)
        if method == "GET" and name is None:
            items = self.api.list(rt, ns, query.get("labelSelector"), query.get("fieldSelector"))
            return self._render_list(request, rt, items)
        if method == "GET":
            obj = self.api.get(rt, ns, name)
            if "as=Table" in request.headers.get("Accept", "") and tables.has_table(rt):
                return _respond(tables.render_table(rt, [obj], obj["metadata"]["resourceVersion"]))
            return _respond(obj)
        body = await self._body(request)
        if method == "POST" and name is None:
            return _respond(self.api.create(rt, ns, body, strict=strict, dry_run=dry_run), 201)
        if method == "PUT" and name is not None:
            return _respond(self.api.replace(rt, ns, name, body, route.subresource, strict=strict, dry_run=dry_run))
        if method == "PATCH" and name is not None:
            content_type = request.headers.get("Content-Type", JSON)
            return _respond(self.api.patch(rt, ns, name, content_type, body, route.subresource, strict=strict,
                                           dry_run=dry_run))
        if method == "DELETE" and name is not None:
            propagation = (body or {}).get("propagationPolicy") or query.get("propagationPolicy")
            return _respond(self.api.delete(rt, ns, name, propagation, dry_run=dry_run))
        if method == "DELETE":
            for obj in self.api.list(rt, ns, query.get("labelSelector"), query.get("fieldSelector")):
                self.api.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            return _respond({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
        raise errors.ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {request.path}")

    def _static(self, request: aiohttp.web.BaseRequest, parts: list[str]) -> aiohttp.web.Response | None:
        host = request.host or "127.0.0.1"
        if not parts:
            return _respond(discovery.root_paths(self.registry))
        if parts == ["version"]:
            return _respond(discovery.VERSION_INFO)
        if parts[0] in ("healthz", "livez", "readyz"):
            return aiohttp.web.Response(text="ok")
        if parts == ["api"]:
            return _respond(discovery.api_versions(host))
        if parts == ["api", "v1"]:
            return _respond(discovery.resource_list(self.registry, "", "v1"))
        if parts == ["apis"]:
            return _respond(discovery.group_list(self.registry))
        if parts[0] == "openapi":
            raise errors.ApiError(404, "NotFound", "OpenAPI documents are not served; use --validate=false")
        if parts[0] == "apis" and len(parts) in (2, 3):
            doc = (discovery.group(self.registry, parts[1]) if len(parts) == 2
                   else discovery.resource_list(self.registry, parts[1], parts[2]))
            if doc is None:
                raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource")
            return _respond(doc)
        return None

    def _route(self, parts: list[str]) -> Route | None:
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        rt = self.registry.get(group, version, rest[0])
        if rt is None or len(rest) > 3:
            return None
        if namespace is not None and not rt.namespaced:
            return None
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        return Route(rt, namespace, name, subresource)

    async def _body(self, request: aiohttp.web.BaseRequest) -> Any:
        content_type = request.headers.get("Content-Type", "")
        raw = await request.read()
        if "protobuf" in content_type:
            return protobuf.decode(raw)
        if "cbor" in content_type:
            raise errors.ApiError(415, "UnsupportedMediaType", "CBOR bodies are not served by the emulator")
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise errors.ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc

    def _render_list(self, request: aiohttp.web.BaseRequest, rt: ResourceType,
                     items: list[dict[str, Any]]) -> aiohttp.web.Response:
        rv = str(self.store.resource_version)
        if "as=Table" in request.headers.get("Accept", "") and tables.has_table(rt):
            return _respond(tables.render_table(rt, items, rv))
        return _respond({"kind": f"{rt.kind}List", "apiVersion": rt.group_version,
                         "metadata": {"resourceVersion": rv}, "items": items})

    # -- scale --------------------------------------------------------------------------------------------
    async def _serve_scale(self, request: aiohttp.web.BaseRequest, route: Route) -> aiohttp.web.Response:
        if route.name is None:
            raise errors.ApiError(404, "NotFound", "the scale subresource needs an object name")
        if request.method == "GET":
            return _respond(self.api.get_scale(route.rt, route.namespace, route.name))
        body = await self._body(request)
        content_type = request.headers.get("Content-Type", JSON) if request.method == "PATCH" else None
        if request.method not in ("PATCH", "PUT"):
            raise errors.ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on scale")
        return _respond(self.api.write_scale(route.rt, route.namespace, route.name, content_type, body))

    # -- watch --------------------------------------------------------------------------------------------
    async def _serve_watch(self, request: aiohttp.web.BaseRequest, route: Route,
                           cut_after_s: float | None = None) -> aiohttp.web.StreamResponse:
        query = request.query
        fields = selectors.parse_field_selector(query.get("fieldSelector"))
        if route.name is not None:
            fields += (("metadata.name", "=", route.name),)
        watcher = Watcher(route.namespace if route.rt.namespaced else None,
                          selectors.parse_label_selector(query.get("labelSelector")), fields)
        since_text = query.get("resourceVersion") or ""
        since = int(since_text) if since_text.isdigit() and since_text != "0" else None
        initial = [] if since is not None else self.store.list(route.rt.key, watcher.namespace,
                                                               watcher.labels, watcher.fields)
        backlog = self.store.subscribe(route.rt.key, watcher, since)
        as_table = "as=Table" in request.headers.get("Accept", "") and tables.has_table(route.rt)

        def encode(kind: str, obj: dict[str, Any], event: Any) -> bytes:
            if as_table:  # `kubectl get -w`: every event carries a one-row table
                table = tables.render_table(route.rt, [obj], obj["metadata"].get("resourceVersion", ""))
                return _dumps({"type": kind, "object": table}) + b"\n"
            return event.line() if event is not None else _dumps({"type": kind, "object": obj}) + b"\n"

        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": JSON,
                                                                   "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else None
        now = asyncio.get_running_loop().time()
        deadline = None if timeout is None else now + timeout
        cut = None if cut_after_s is None else now + cut_after_s  # an injected drop: no closing chunk
        if cut is not None and (deadline is None or cut < deadline):
            deadline = cut
        try:
            if backlog is None:
                gone = errors.ApiError(410, "Expired", f"too old resource version: {since}")
                await response.write(_dumps({"type": "ERROR", "object": gone.status()}) + b"\n")
                return response
            for obj in initial:
                await response.write(encode("ADDED", obj, None))
            for event in backlog:
                await response.write(encode(event.type, event.obj, event))
            while True:
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if remaining is not None and remaining <= 0:
                    return _drop(request) if deadline == cut else response
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except asyncio.TimeoutError:
                    return _drop(request) if deadline == cut else response
                if event is None:
                    break
                chunk = [encode(event.type, event.obj, event)]
                while not watcher.queue.empty():  # drain bursts into one write
                    more = watcher.queue.get_nowait()
                    if more is None:
                        break
                    chunk.append(encode(more.type, more.obj, more))
                await response.write(b"".join(chunk))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(route.rt.key, watcher)
        return response
