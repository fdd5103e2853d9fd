"""Plain helpers for the operator tests (fixtures live in conftest.py)."""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # http_json: the JSON HTTP helper tests/autoscale shares
from http_json import Http, wait_for  # noqa: E402,F401  (re-exported: the operator tests import them from here)
from k8s_objects import SERVICEMONITOR_CRD  # noqa: E402,F401  (re-exported for the operator tests)

CRD = REPO / "crds" / "inferenceservice.yaml"
names = itertools.count()  # unique namespace names


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
