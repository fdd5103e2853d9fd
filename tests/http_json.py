"""Plain JSON calls over HTTP, as a kubelet or controller would make them (never the kubernetes package).

Shared by tests/operator (operator_harness), tests/autoscale and tests/reliability (and the bench scripts that reuse
their harnesses); each adds this folder to sys.path to import it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable


class Http:
    def __init__(self, url: str, user_agent: str | None = None, timeout: float = 10.0):
        self.url = url
        self.timeout = timeout
        self.headers = {"Accept": "application/json"} | ({"User-Agent": user_agent} if user_agent else {})

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        return body if status == 200 else None

    def create(self, path: str, body: dict) -> dict:
        status, answer = self.call("POST", path, body, "application/json")
        if status != 201:
            raise AssertionError(f"POST {path} -> {status}: {answer}")
        return answer

    def items(self, path: str) -> list[dict]:
        return (self.get(path) or {}).get("items", [])


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", poll_s: float = 0.05,
             interval: float | None = None) -> Any:
    """Poll `check` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll_s if interval is None else interval)
