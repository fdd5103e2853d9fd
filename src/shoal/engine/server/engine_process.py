"""AsyncLLM's interface with the engine's step loop in a child process.

In one process the HTTP event loop and the engine's Python (scheduling, sampling bookkeeping, detokenizing) take
turns on one GIL, so every microsecond spent streaming a token is a microsecond the engine does not step: with a
small model on a fast GPU that costs ~40% of the throughput. Here the child runs `LLMEngine` and sends one message
per step holding only what is new (token ids and text deltas); the parent's event loop reads them (engine_pipe.py)
and hands each request the outputs that arrived since it last looked, as one output, so both sides run in parallel
and a stream that fell behind catches up in one chunk. Same interface as `shoal.engine.AsyncLLM` (INTERFACES.md).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal.engine.outputs import EngineStats, RequestMetrics, RequestOutput, RuntimeLimits, StepStats
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.server.engine_pipe import MessageReader, enlarge, write_message
from shoal.engine.server.step_trace import StepTrace

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    pending: list[tuple] = field(default_factory=list)  # compact outputs not yet taken by the request
    error: BaseException | None = None  # ends the request; outputs still pending are dropped
    waiter: asyncio.Future | None = None  # set while the request waits for something to arrive

    def deliver(self, item: tuple | BaseException) -> None:
        if isinstance(item, BaseException):
            self.error = item
        else:
            self.pending.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


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
        self._stopped = False  # the child said it stopped: its pipe closing is no failure
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
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future = self._loop.create_future()
        self._transport, _ = await self._loop.connect_read_pipe(
            lambda: MessageReader(self._on_messages, self._on_closed), self._out_recv)
        kind, *payload = await self._ready
        if kind != "ready":
            raise RuntimeError(f"the engine process failed to start:\n{payload[0]}")
        self.max_model_len, self._limits, self._stats = payload
        self.tokenizer = Tokenizer(self.model_dir)

    async def shutdown(self) -> None:
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._send(("stop",))
            await asyncio.to_thread(self._proc.join, 30)
        if self._proc.is_alive():
            self._proc.kill()
        self._proc = None
        self._transport.close()

    # -- requests --------------------------------------------------------------------------
    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams
                       ) -> AsyncIterator[RequestOutput]:
        """Stream this request's outputs; stopping the iteration (or cancelling it) aborts the request."""
        if self._failure is not None:
            raise RuntimeError(f"the engine process failed: {self._failure}")
        if request_id in self._streams:
            raise ValueError(f"request_id {request_id!r} is already in use")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        stream = _Stream(ids)
        self._streams[request_id] = stream
        self._pending_adds += 1
        self._send(("add", request_id, ids, params, time.monotonic()))
        finished = False
        try:
            while True:
                if not stream.pending and stream.error is None:
                    stream.waiter = self._loop.create_future()
                    try:
                        await stream.waiter
                    finally:
                        stream.waiter = None
                if stream.error is not None:
                    finished = True
                    raise stream.error
                items, stream.pending = stream.pending, []
                out = _take(request_id, stream, items)  # fell behind: one output for all that came
                finished = out.finished
                yield out
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

    # -- messages from the child, handled in the event loop ------------------------------------------
    def _on_messages(self, messages: list) -> None:
        for message in messages:
            if not self._ready.done():
                self._ready.set_result(message)
            elif message[0] == "step":
                self._on_step(*message[1:])
            elif message[0] == "stopped":
                self._stopped = True
            elif message[0] == "failed":
                self._fail(message[1])

    def _on_closed(self) -> None:
        if not self._ready.done():
            self._ready.set_result(("failed", "the engine process exited before it was ready"))
        elif not self._stopped and self._proc is not None:  # not a shutdown we asked for
            self._fail("the engine process exited")

    def _fail(self, reason: str) -> None:
        if self._failure is not None:
            return
        log.error("engine process failed: %s", reason)
        self._failure = reason
        for stream in self._streams.values():
            stream.deliver(RuntimeError(f"the engine process failed: {reason}"))

    def _on_step(self, outputs: list, errors: list, step_stats: tuple | None, stats: tuple,
                 num_added: int) -> None:
        self._stats = EngineStats(*stats)
        step_stats = step_stats and StepStats(*step_stats)
        self._pending_adds -= num_added
        streams = self._streams
        for compact in outputs:
            if (stream := streams.get(compact[0])) is not None:
                stream.deliver(compact)
        for rid, error in errors:
            if (stream := streams.get(rid)) is not None:
                stream.deliver(ValueError(error))
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
    import threading

    # the parent owns the lifetime: a SIGTERM/SIGINT sent to the whole group must not cut its drain short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # off the main thread, as AsyncLLM runs it: CPU steps measured 1.2-4x faster there (bench/RESULTS.md)
    loop = threading.Thread(target=_step_loop, args=(model_dir, kwargs, commands, outputs.fileno()),
                            name="shoal-engine-steps")
    loop.start()
    loop.join()


def _step_loop(model_dir: str, kwargs: dict, commands, out_fd: int) -> None:
    from shoal.engine.config import EngineConfig
    from shoal.engine.llm_engine import LLMEngine

    enlarge(out_fd)

    try:
        engine = LLMEngine(EngineConfig(model_dir=model_dir, **kwargs))
    except BaseException:
        write_message(out_fd, ("failed", traceback.format_exc()))
        return
    if str(kwargs.get("device", "cpu")).startswith("cuda"):
        import torch

        # a GPU step's host side is one launching thread: torch's CPU thread pool would only contend with the HTTP
        # process and its clients for cores (on 2 CPU cores that contention cost 3-10x, bench/RESULTS.md);
        # set after loading, which may use the pool
        torch.set_num_threads(1)
    write_message(out_fd, ("ready", engine.max_model_len, engine.runtime_limits, engine.stats()))
    trace = StepTrace.from_env()
    try:
        while True:
            wall, t0 = time.time(), time.perf_counter()  # clock reads cost ~0.1 us: taken traced or not
            batch = [commands.recv()] if not engine.has_unfinished() else []  # idle: block for work
            t_work = time.perf_counter()
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
                        results.append(_compact(out))
                elif command[0] == "limits":
                    engine.set_runtime_limits(command[1], command[2])
                elif command[0] == "stop":
                    for rid in list(engine.requests):
                        engine.abort(rid)
                    if trace is not None:
                        trace.save()
                    write_message(out_fd, ("stopped",))
                    return
            t1 = time.perf_counter()
            step_stats = None
            if engine.has_unfinished():
                results += engine.step_deltas()  # already the compact tuples _take reads
                step_stats = engine.last_step_stats
            t2 = time.perf_counter()
            # statistics as plain tuples: pickling two dataclasses cost more than the step's 64 outputs together
            write_message(out_fd, ("step", results, errors, step_stats and _fields(step_stats),
                                   _fields(engine.stats()), num_added))
            if trace is not None and step_stats is not None:
                trace.record(wall, (t0, t_work, t1, t2, time.perf_counter()), step_stats.device_wait_seconds,
                             step_stats.num_running, step_stats.num_prompt_tokens + step_stats.num_generation_tokens)
    except BaseException:
        write_message(out_fd, ("failed", traceback.format_exc()))


def _fields(stats: EngineStats | StepStats) -> tuple:
    return tuple(vars(stats).values())  # in field order; the parent rebuilds the dataclass from them


def _take(request_id: str, stream: _Stream, items: list[tuple]) -> RequestOutput:
    """The compact outputs that came since the request last looked, as one RequestOutput (the newest's state)."""
    if len(items) == 1:  # kept up: the common case
        new_ids, new_text = items[0][1], items[0][2]
    else:
        new_ids = [token for item in items for token in item[1]]
        new_text = "".join(item[2] for item in items)
    stream.token_ids.extend(new_ids)
    stream.text += new_text
    _, _, _, finished, reason, times = items[-1]
    return RequestOutput(request_id, stream.prompt_ids, stream.token_ids, stream.text, new_ids, new_text, finished,
                         reason, RequestMetrics(*times))


def _compact(out: RequestOutput) -> tuple:
    """A RequestOutput as the tuple LLMEngine.step_deltas gives."""
    m = out.metrics
    return (out.request_id, out.new_token_ids, out.new_text, out.finished, out.finish_reason,
            (m.arrival_time, m.first_scheduled_time, m.first_token_time, m.finished_time))
