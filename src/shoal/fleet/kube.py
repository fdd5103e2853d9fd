"""The fleet's one HTTP client for the Kubernetes API (the emulator, or any server a kubeconfig points at).

The kubelet needs a handful of calls (list, get, create, merge-patch, delete); a thin aiohttp adapter keeps them
async and visible, where the official client would add threads and its own model classes.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml


class KubeError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:300]}")
        self.status = status


@dataclass(frozen=True)
class KubeTarget:
    server: str
    token: str | None = None
    insecure: bool = True


def load_kubeconfig(path: Path) -> KubeTarget:
    """The current context's server and bearer token (the emulator needs nothing more)."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    current = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    context = contexts.get(current) or (next(iter(contexts.values()), {}) if contexts else {})
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in config.get("users") or []}
    cluster = clusters.get(context.get("cluster")) or next(iter(clusters.values()), None)
    if not cluster or not cluster.get("server"):
        raise ValueError(f"kubeconfig {path}: no cluster server for context {current!r}")
    user = users.get(context.get("user"), {})
    return KubeTarget(server=cluster["server"].rstrip("/"), token=user.get("token"))


def core_path(namespace: str | None, plural: str, name: str | None = None, sub: str | None = None) -> str:
    return _path("/api/v1", namespace, plural, name, sub)


def apps_path(namespace: str | None, plural: str, name: str | None = None, sub: str | None = None) -> str:
    return _path("/apis/apps/v1", namespace, plural, name, sub)


def group_path(group_version: str, namespace: str | None, plural: str, name: str | None = None, sub: str | None = None) -> str:
    return _path(f"/apis/{group_version}", namespace, plural, name, sub)


def _path(prefix: str, namespace: str | None, plural: str, name: str | None, sub: str | None) -> str:
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class KubeClient:
    def __init__(self, target: KubeTarget) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "KubeClient":
        headers = {"Authorization": f"Bearer {self.target.token}"} if self.target.token else {}
        ctx = ssl.create_default_context()
        if self.target.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=10),
            connector=aiohttp.TCPConnector(ssl=ctx),
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session:
            await self._session.close()

    async def _call(self, method: str, path: str, body: dict | None = None, params=None, content_type=None):
        assert self._session is not None, "use KubeClient as an async context manager"
        headers = {"Content-Type": content_type} if content_type else None
        async with self._session.request(method, self.target.server + path, json=body, params=params, headers=headers) as r:
            text = await r.text()
            if r.status >= 400:
                raise KubeError(method, path, r.status, text)
            return await r.json(content_type=None) if text else {}

    async def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        return (await self._call("GET", path, params=params)).get("items") or []

    async def get(self, path: str) -> dict | None:
        try:
            return await self._call("GET", path)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    async def create(self, path: str, body: dict) -> dict:
        return await self._call("POST", path, body)

    async def merge_patch(self, path: str, body: dict) -> dict:
        return await self._call("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str) -> None:
        try:
            await self._call("DELETE", path)
        except KubeError as e:
            if e.status != 404:
                raise
