"""Shared by the engine-input, overload and drain reliability tests and by bench/reliability_engine.py.

A real `shoal serve` of SmolLM2-135M-Instruct (CPU) as a child process, raw HTTP exchanges (any method, body and
content type), metric scrapes through prometheus-client's parser, the server's RSS, and streaming clients that
finish, or hang up at a chosen point.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

MODEL = "smollm2-135m-instruct"
CRASH_MARKERS = ("Traceback", "Error handling request", "Task exception was never retrieved", "Unhandled")


def model_dir() -> Path:
    from shoal.engine.model_prepare import prepare

    return Path(prepare("smollm2"))


def start_server(*flags: str, admin_token_file: Path | None = None):
    from shoal.engine.server.launcher import ServerProcess

    extra = ("--admin-token-file", str(admin_token_file)) if admin_token_file else ()
    return ServerProcess(["--model", str(model_dir()), "--host", "127.0.0.1", "--port", "0", *extra,
                          *flags]).start()


@contextlib.contextmanager
def engine_server(*flags: str, admin_token_file: Path | None = None):
    """A server for the block; afterwards SIGTERM must drain it to exit 0 with no crash logged."""
    proc = start_server(*flags, admin_token_file=admin_token_file)
    try:
        yield proc
    finally:
        proc.terminate()
        code = proc.wait(120)
    assert code == 0, proc.log()[-3000:]
    assert crash_lines(proc.log()) == [], proc.log()[-6000:]


def crash_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(m in line for m in CRASH_MARKERS)]


def rss_bytes(pid: int) -> int:
    """Resident memory of the server and its children (the engine may run in a child process)."""
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


# -- raw HTTP -----------------------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int  # 0: the server closed the connection with no answer
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def exchange(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             timeout_s: float = 120.0) -> Reply:
    """One HTTP exchange on a fresh connection, with exactly the method, body and headers given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413, or 400 for an oversized header) and closed before the body was sent
        try:
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        except (ConnectionError, http.client.HTTPException):
            return Reply(0, {}, b"")  # closed with no answer
    finally:
        conn.close()


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` -> value (model_name dropped), parsed by prometheus-client (so the text must parse)."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = exchange(url, "GET", "/metrics")
    assert reply.status == 200, reply.body[:300]
    out = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "model_name")
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def engine_idle(url: str) -> bool:
    m = scrape(url)
    return m["shoal:kv_cache_usage_perc"] == 0 and m["shoal:num_requests_running"] == 0 \
        and m["shoal:num_requests_waiting"] == 0


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def aborted_count(metrics: dict[str, float]) -> float:
    return metrics.get("shoal:request_success_total{finished_reason=abort}", 0.0)


# -- streaming clients --------------------------------------------------------------------------------------------
@dataclass
class StreamResult:
    status: int = 0
    chunks: int = 0  # SSE events carrying text
    finish_reason: str | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    retry_after: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.finish_reason is not None


def completion_body(prompt: str, max_tokens: int, stream: bool = True) -> dict:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.0,
            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def stream_completion(http: aiohttp.ClientSession, url: str, body: dict, hang_up_after: int | None = None,
                            started: asyncio.Event | None = None) -> StreamResult:
    """Stream one completion to its end, or close the connection after `hang_up_after` text chunks (0: as soon as
    the headers arrive). Any SSE event that is an error, or a stream without [DONE], is recorded as an error."""
    result, t0, done = StreamResult(), time.monotonic(), False
    async with http.post(url + "/v1/completions", json=body) as response:
        result.status = response.status
        result.retry_after = response.headers.get("Retry-After")
        if response.status != 200:
            result.error = (await response.read()).decode(errors="replace")[:300]
            return result
        if hang_up_after == 0:
            response.close()
            return result
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                break
            data = json.loads(line[6:])
            if "error" in data:
                result.error = line[:300]
                continue
            if data.get("usage"):
                result.completion_tokens = data["usage"]["completion_tokens"]
            for choice in data["choices"]:
                if choice.get("text"):
                    result.chunks += 1
                    if result.ttft_s is None:
                        result.ttft_s = time.monotonic() - t0
                        if started is not None:
                            started.set()
                result.finish_reason = choice.get("finish_reason") or result.finish_reason
            if hang_up_after is not None and result.chunks >= hang_up_after:
                response.close()  # the client goes away mid-stream: the server must abort and free the KV
                return result
    if not done and result.error is None:
        result.error = "stream ended without [DONE]"
    result.e2e_s = time.monotonic() - t0
    return result


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
