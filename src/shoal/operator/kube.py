"""The operator's one Kubernetes client: JSON over aiohttp, credentials from kopf's login helpers.

It never imports the `kubernetes` package (whose config is fixed at import time) and never blocks the loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import aiohttp

MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.api_version}" if "/" in self.api_version else f"/api/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


DEPLOYMENT = Kind("apps/v1", "deployments", "Deployment")
SERVICE = Kind("v1", "services", "Service")
CONFIGMAP = Kind("v1", "configmaps", "ConfigMap")
SECRET = Kind("v1", "secrets", "Secret")
PDB = Kind("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget")
SERVICEMONITOR = Kind("monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor")
EVENT = Kind("v1", "events", "Event")
INFERENCESERVICE = Kind("shoal.dev/v1alpha1", "inferenceservices", "InferenceService")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after  # seconds the server asked us to wait (429 Retry-After)


class ConnectionLost(ApiError):
    """No answer came (connection dropped or timed out): the call may or may not have been applied."""

    def __init__(self, message: str):
        super().__init__(0, "ConnectionLost", message)


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _ssl_context(info: Any) -> ssl.SSLContext | bool:
    if info.server.startswith("http://"):
        return False
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=str(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context.load_verify_locations(cadata=data if "BEGIN" in data else base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:  # ssl wants files: spill them once
        cert_file = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
        key_file = tempfile.NamedTemporaryFile("wb", suffix=".key", delete=False)
        for handle, value in ((cert_file, info.certificate_data), (key_file, info.private_key_data)):
            handle.write(value if isinstance(value, bytes) else value.encode())
            handle.close()
        cert, key = cert_file.name, key_file.name
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


class KubeClient:
    def __init__(self, info: Any, connections: int = 32):
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "shoal-operator"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        connector = aiohttp.TCPConnector(limit=connections, ssl=_ssl_context(info))
        self._session = aiohttp.ClientSession(headers=headers, auth=auth, connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=30))
        self.default_namespace = getattr(info, "default_namespace", None)

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                    params: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else None
        try:
            async with self._session.request(method, self.server + path, data=data, headers=headers,
                                             params=params) as resp:
                text = await resp.text()
                payload = json.loads(text) if text and resp.content_type == "application/json" else text
                retry_after = _retry_after(resp.headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # one error type for every failed call
            raise ConnectionLost(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if resp.status >= 400:
            if isinstance(payload, dict):
                raise ApiError(resp.status, payload.get("reason", ""), payload.get("message", text), retry_after)
            raise ApiError(resp.status, resp.reason or "", text[:500], retry_after)
        return payload

    async def get(self, kind: Kind, namespace: str | None, name: str, subresource: str | None = None) -> dict | None:
        try:
            return await self._call("GET", kind.path(namespace, name, subresource))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        return (await self._call("GET", kind.path(namespace), params=params))["items"]

    async def create(self, kind: Kind, namespace: str | None, body: dict) -> dict:
        return await self._call("POST", kind.path(namespace), body)

    async def patch(self, kind: Kind, namespace: str | None, name: str, body: Any,
                    subresource: str | None = None, content_type: str = MERGE) -> dict:
        return await self._call("PATCH", kind.path(namespace, name, subresource), body, content_type)

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", kind.path(namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event about `involved`, as `kubectl describe` shows them."""
        meta = involved["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "shoal-operator"}, "reportingComponent": "shoal.dev/operator",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        await self.create(EVENT, meta["namespace"], body)

    async def serves(self, kind: Kind) -> bool:
        """Whether the API server serves this kind (e.g. ServiceMonitor only with the Prometheus operator).
        Only a 404 means no; any other failure is raised, so a transient error never switches a kind off."""
        try:
            doc = await self._call("GET", kind.path(None).rsplit("/", 1)[0])
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == kind.plural for r in doc.get("resources", []))
