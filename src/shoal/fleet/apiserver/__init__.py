"""A Kubernetes API server emulator on kmock, for tests, benchmarks and the local fleet.

    async with serve(kubeconfig=path) as running:
        ...  # point kopf / kubectl / the kubernetes client at `path` (set KUBECONFIG before importing them)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import kmock

from shoal.fleet.apiserver.faults import FaultConfig, FaultInjector
from shoal.fleet.apiserver.server import KubernetesApi

__all__ = ["FaultConfig", "KubernetesApi", "RunningApi", "serve", "kubeconfig_text"]


@dataclass
class RunningApi:
    api: KubernetesApi
    url: str
    kubeconfig: Path | None


def kubeconfig_text(url: str, namespace: str = "default", token: str = "emulator") -> str:
    """`token` is not checked; it tells clients apart (the crash tripwire kills one by its token)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: shoal-emulator\n  cluster:\n    server: {url}\n"
        f"users:\n- name: shoal-emulator\n  user:\n    token: {token}\n"
        "contexts:\n- name: shoal-emulator\n  context:\n    cluster: shoal-emulator\n"
        f"    user: shoal-emulator\n    namespace: {namespace}\n"
        "current-context: shoal-emulator\n"
    )


@contextlib.asynccontextmanager
async def serve(host: str = "127.0.0.1", port: int = 0, kubeconfig: Path | None = None,
                faults: FaultConfig | None = None) -> AsyncIterator[RunningApi]:
    """Run the emulator on host:port (0 = a free port) and optionally write a kubeconfig pointing at it.
    `faults`: fail that share of calls (faults.py); `running.api.faults` counts them, as does GET /debug/faults."""
    api = KubernetesApi(faults=FaultInjector(faults))
    async with api, kmock.Server(api, host=host, port=port) as server:
        url = str(server.url).rstrip("/")
        if kubeconfig is not None:
            kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            kubeconfig.write_text(kubeconfig_text(url))
        yield RunningApi(api, url, kubeconfig)
