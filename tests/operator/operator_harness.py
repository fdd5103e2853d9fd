"""Plain helpers for the operator tests (fixtures live in conftest.py)."""

from __future__ import annotations

import itertools
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "inferenceservice.yaml"
names = itertools.count()  # unique namespace names


class Http:
    """Plain JSON calls to the API (what a kubelet or controller would do; never the kubernetes package)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        return body if status == 200 else None


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def find_kubectl() -> str:
    local = REPO / ".tools" / "kubectl"
    found = shutil.which("kubectl") or (str(local) if local.exists() else None)
    if found is None:
        raise RuntimeError("kubectl is needed by these tests: put it on PATH or at .tools/kubectl")
    return found


def operator_config(**overrides):
    from shoal.operator.config import OperatorConfig

    settings = dict(engine_image="registry.example/shoal-engine:test", all_namespaces=True, liveness_port=None,
                    metrics_port=None, standalone=True, resync_seconds=1.0)
    settings.update(overrides)
    return OperatorConfig(**settings)


def isvc_yaml(name: str, namespace: str, **spec: Any) -> str:
    body = {"apiVersion": "shoal.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": "smollm2", "uri": "pvc://models/smollm2"}, **spec}}
    return json.dumps(body)


class ThreadedApi:
    """The emulator in this process (a thread with its own loop), so a test can add kmock reactions to it."""

    def __init__(self, workdir: Path):
        import asyncio
        import threading

        self.workdir, self.url, self.api = workdir, None, None
        self._loop = asyncio.new_event_loop()
        self._ready, self._stop = threading.Event(), None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        import yaml

        from shoal.fleet.apiserver import serve

        async def main() -> None:
            self._stop = asyncio.Event()
            async with serve(kubeconfig=self.workdir / "kubeconfig") as running:
                for doc in yaml.safe_load_all(CRD.read_text()):
                    running.api.api.create_manifest(doc)
                self.url, self.api = running.url, running.api
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    def __enter__(self) -> "ThreadedApi":
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the in-process emulator did not start")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
