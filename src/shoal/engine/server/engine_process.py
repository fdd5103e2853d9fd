"""AsyncLLM's interface with the engine's step loop in a child process.

In one process the HTTP event loop and the engine's Python (scheduling, sampling bookkeeping, detokenizing) take
turns on one GIL, so every microsecond spent streaming a token is a microsecond the engine does not step: with a
small model on a fast GPU that costs ~40% of the throughput. Here the child runs `LLMEngine` and sends one message
per step holding only what is new (token ids and text deltas); the parent rebuilds RequestOutputs, so both sides
run in parallel. Same interface as `shoal.engine.AsyncLLM` (INTERFACES.md).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal.engine.outputs import EngineStats, RequestMetrics, RequestOutput, RuntimeLimits, StepStats
from shoal.engine.sampling_params import SamplingParams

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    queue: asyncio.Queue
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""


class EngineProcess:
    def __init__(self, model_dir, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 block_size: int = 16, **engine_kwargs) -> None:
        self.model_dir = Path(model_dir)
        self.model_name = self.model_dir.name
        self.capacity = RuntimeLimits(max_num_seqs, max_num_batched_tokens)
        self._limits = self.capacity
        self._block_size = block_size
        self._kwargs = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens,
                        "block_size": block_size, **engine_kwargs}
        self._streams: dict[str, _Stream] = {}
        self._listeners: list[Callable[[StepStats], None]] = []
        self._stats: EngineStats | None = None
        self._pending_adds = 0  # sent to the child, not yet reflected in its statistics
        self._failure: str | None = None
        self._proc = None
        self.tokenizer = None
        self.max_model_len: int | None = None

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        from shoal.engine.tokenizer import Tokenizer

        ctx = multiprocessing.get_context("spawn")  # a forked child would inherit the parent's threads
        cmd_recv, self._cmd_send = ctx.Pipe(duplex=False)
        self._out_recv, out_send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_engine_main, args=(str(self.model_dir), self._kwargs, cmd_recv, out_send),
                                 name="shoal-engine", daemon=True)
        self._proc.start()
        cmd_recv.close()
        out_send.close()
        kind, *payload = await asyncio.to_thread(self._out_recv.recv)
        if kind != "ready":
            raise RuntimeError(f"the engine process failed to start:\n{payload[0]}")
        self.max_model_len, self._limits, self._stats = payload
        self.tokenizer = Tokenizer(self.model_dir)
        self._loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._read, name="shoal-engine-reader", daemon=True)
        self._reader.start()

    async def shutdown(self) -> None:
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._send(("stop",))
            await asyncio.to_thread(self._proc.join, 30)
        if self._proc.is_alive():
            self._proc.kill()
        self._proc = None

    # -- requests --------------------------------------------------------------------------
    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams
                       ) -> AsyncIterator[RequestOutput]:
        """Stream this request's outputs; stopping the iteration (or cancelling it) aborts the request."""
        if self._failure is not None:
            raise RuntimeError(f"the engine process failed: {self._failure}")
        if request_id in self._streams:
            raise ValueError(f"request_id {request_id!r} is already in use")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        stream = _Stream(asyncio.Queue(), ids)
        self._streams[request_id] = stream
        self._pending_adds += 1
        self._send(("add", request_id, ids, params, time.monotonic()))
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                while not stream.queue.empty() and isinstance(item, RequestOutput):
                    item = _merge(item, stream.queue.get_nowait())  # we fell behind: one output for the lot
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished and self._failure is None:
                self._send(("abort", request_id))

    def abort(self, request_id: str) -> None:
        if request_id in self._streams:
            self._send(("abort", request_id))

    def _send(self, command: tuple) -> None:
        self._cmd_send.send(command)

    # -- the reader thread and the event loop side ------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                message = self._out_recv.recv()
            except (EOFError, OSError):
                message = ("failed", "the engine process exited")
            self._loop.call_soon_threadsafe(self._dispatch, message)
            if message[0] in ("failed", "stopped"):
                return

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "failed":
            if self._proc is not None:  # not a shutdown we asked for
                log.error("engine process failed: %s", message[1])
                self._failure = message[1]
                for stream in self._streams.values():
                    stream.queue.put_nowait(RuntimeError(f"the engine process failed: {message[1]}"))
            return
        if kind != "step":
            return
        _, outputs, errors, step_stats, stats, num_added = message
        self._stats = stats
        self._pending_adds -= num_added
        for rid, new_ids, new_text, finished, reason, times in outputs:
            stream = self._streams.get(rid)
            if stream is None:
                continue
            stream.token_ids.extend(new_ids)
            stream.text += new_text
            stream.queue.put_nowait(RequestOutput(
                rid, stream.prompt_ids, stream.token_ids, stream.text, new_ids, new_text, finished, reason,
                RequestMetrics(*times)))
        for rid, error in errors:
            if (stream := self._streams.get(rid)) is not None:
                stream.queue.put_nowait(ValueError(error))
        if step_stats is not None:
            for fn in list(self._listeners):
                try:
                    fn(step_stats)
                except Exception:  # a broken listener must not stop the stream of outputs
                    log.exception("step listener failed")

    # -- limits, statistics, introspection --------------------------------------------------------
    @property
    def runtime_limits(self) -> RuntimeLimits:
        return self._limits

    def set_runtime_limits(self, max_num_seqs: int | None = None,
                           max_num_batched_tokens: int | None = None) -> RuntimeLimits:
        seqs = self._limits.max_num_seqs if max_num_seqs is None else max_num_seqs
        budget = self._limits.max_num_batched_tokens if max_num_batched_tokens is None else max_num_batched_tokens
        if not 1 <= seqs <= self.capacity.max_num_seqs:
            raise ValueError(f"max_num_seqs must be in [1, {self.capacity.max_num_seqs}] (startup capacity), "
                             f"got {seqs}")
        if not self._block_size <= budget <= self.capacity.max_num_batched_tokens:
            raise ValueError(f"max_num_batched_tokens must be in [{self._block_size}, "
                             f"{self.capacity.max_num_batched_tokens}] (block_size to startup capacity), got {budget}")
        self._limits = RuntimeLimits(seqs, budget)
        self._send(("limits", seqs, budget))  # the child applies it before its next step
        return self._limits

    def stats(self) -> EngineStats:
        stats = self._stats
        if self._pending_adds > 0:
            stats = EngineStats(**{**stats.__dict__, "num_waiting": stats.num_waiting + self._pending_adds})
        return stats

    def add_step_listener(self, fn: Callable[[StepStats], None]) -> None:
        self._listeners.append(fn)

    @property
    def is_idle(self) -> bool:
        return not self._streams and self._stats.num_running == 0 and self._stats.num_waiting == 0

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_alive() and self._failure is None


def _engine_main(model_dir: str, kwargs: dict, commands, outputs) -> None:
    """The child: build the engine, then apply commands and step, one message back per iteration."""
    import signal

    # the parent owns the lifetime: a SIGTERM/SIGINT sent to the whole group must not cut its drain short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from shoal.engine.config import EngineConfig
    from shoal.engine.llm_engine import LLMEngine

    try:
        engine = LLMEngine(EngineConfig(model_dir=model_dir, **kwargs))
    except BaseException:
        outputs.send(("failed", traceback.format_exc()))
        return
    outputs.send(("ready", engine.max_model_len, engine.runtime_limits, engine.stats()))
    try:
        while True:
            batch = [commands.recv()] if not engine.has_unfinished() else []  # idle: block for work
            while commands.poll():
                batch.append(commands.recv())
            results, errors, num_added = [], [], 0
            for command in batch:
                if command[0] == "add":
                    _, rid, ids, params, arrival = command
                    num_added += 1
                    try:
                        engine.add_request(rid, ids, params, arrival_time=arrival)
                    except ValueError as exc:
                        errors.append((rid, str(exc)))
                elif command[0] == "abort":
                    if (out := engine.abort(command[1])) is not None:
                        results.append(out)
                elif command[0] == "limits":
                    engine.set_runtime_limits(command[1], command[2])
                elif command[0] == "stop":
                    for rid in list(engine.requests):
                        engine.abort(rid)
                    outputs.send(("stopped",))
                    return
            step_stats = None
            if engine.has_unfinished():
                results += engine.step()
                step_stats = engine.last_step_stats
            outputs.send(("step", [_compact(o) for o in results], errors, step_stats, engine.stats(), num_added))
    except BaseException:
        outputs.send(("failed", traceback.format_exc()))


def _merge(a: RequestOutput, b):
    """Two successive outputs of one request as one (b is newer); an error stays an error."""
    if isinstance(b, BaseException):
        return b
    return RequestOutput(b.request_id, b.prompt_token_ids, b.token_ids, b.text, a.new_token_ids + b.new_token_ids,
                         a.new_text + b.new_text, b.finished, b.finish_reason, b.metrics)


def _compact(out: RequestOutput) -> tuple:
    m = out.metrics
    return (out.request_id, out.new_token_ids, out.new_text, out.finished, out.finish_reason,
            (m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time))
