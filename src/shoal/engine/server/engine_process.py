"""AsyncLLM's interface with the engine's step loop in a child process.

In one process the HTTP event loop and the engine's Python (scheduling, sampling bookkeeping, detokenizing) take
turns on one GIL, so every microsecond spent streaming a token is a microsecond the engine does not step: with a
small model on a fast GPU that costs ~40% of the throughput. Here the child runs `LLMEngine` and sends one message
per step holding only what is new (`StepDeltas`: flat lists of request numbers, token ids and text deltas); the
parent's event loop reads them (engine_pipe.py) and hands each request the outputs that arrived since it last
looked, as one output, so both sides run in parallel and a stream that fell behind catches up in one chunk.
Same interface as `shoal.engine.AsyncLLM` (INTERFACES.md); an output's `metrics` are filled in when it finishes.

Each system call is host time a small model's GPU step cannot spare, so the child makes one per step (its message)
plus one per command: the parent counts the commands it sends in shared memory, and the child reads the pipe only
when that count is ahead of what it took, instead of polling it every step.

A step with prompts runs the model eagerly (decode steps replay CUDA graphs), and its kernel launches cost tens of
ms of host time on a GPU host (bench/RESULTS.md), whatever the number of prompts. So an idle child that a request
wakes keeps taking the requests that follow within `admission_window_s` of each other (`gather_burst`) before its
first step: a burst of requests, which the HTTP side hands over one by one, shares one prefill step.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import multiprocessing
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal.engine.outputs import (EngineStats, RequestMetrics, RequestOutput, RuntimeLimits, StepDeltas, StepStats,
                                  split_deltas)
from shoal.engine.sampling_params import SamplingParams
from shoal.engine.server.engine_pipe import MessageReader, enlarge, write_message
from shoal.engine.server.step_trace import StepTrace

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    request_id: str
    prompt_ids: list[int]
    metrics: RequestMetrics
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    new_ids: list[int] = field(default_factory=list)  # arrived, not yet taken by the request
    new_text: str = ""
    finish_reason: str | None = None  # arrived with the last tokens
    error: BaseException | None = None  # ends the request; outputs still pending are dropped
    waiter: asyncio.Future | None = None  # set while the request waits for something to arrive

    @property
    def has_news(self) -> bool:
        return bool(self.new_ids or self.new_text or self.finish_reason or self.error)

    def deliver(self, new_ids: list[int], new_text: str) -> None:
        self.new_ids += new_ids
        self.new_text += new_text
        self._wake()

    def deliver_one(self, token: int, text: str) -> None:
        self.new_ids.append(token)
        self.new_text += text
        self._wake()

    def finish(self, reason: str, times: tuple) -> None:
        self.finish_reason = reason
        self.metrics = RequestMetrics(*times)
        self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    def take(self) -> RequestOutput:
        """What came since the request last looked, as one RequestOutput (fell behind: one output for several)."""
        new_ids, new_text = self.new_ids, self.new_text
        self.new_ids, self.new_text = [], ""
        self.token_ids += new_ids
        self.text += new_text
        return RequestOutput(self.request_id, self.prompt_ids, self.token_ids, self.text, new_ids, new_text,
                             self.finish_reason is not None, self.finish_reason, self.metrics)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class EngineProcess:
    def __init__(self, model_dir, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 block_size: int = 16, admission_window_s: float = 0.002, **engine_kwargs) -> None:
        if not 0 <= admission_window_s <= 1:
            raise ValueError(f"admission_window_s must be in [0, 1] seconds, got {admission_window_s}")
        self._window_s = admission_window_s
        self.model_dir = Path(model_dir)
        self.model_name = self.model_dir.name
        self.capacity = RuntimeLimits(max_num_seqs, max_num_batched_tokens)
        self._limits = self.capacity
        self._block_size = block_size
        self._kwargs = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens,
                        "block_size": block_size, **engine_kwargs}
        self._streams: dict[int, _Stream] = {}  # by the number the child knows the request by
        self._numbers: dict[str, int] = {}  # request id -> that number
        self._next_number = itertools.count()
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
        self._num_sent = ctx.RawValue("Q", 0)  # commands sent so far, read by the child without a system call
        self._proc = ctx.Process(target=_engine_main,
                                 args=(str(self.model_dir), self._kwargs, cmd_recv, self._num_sent, out_send,
                                       self._window_s),
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
        if request_id in self._numbers:
            raise ValueError(f"request_id {request_id!r} is already in use")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        arrival = time.monotonic()
        number = next(self._next_number)
        stream = _Stream(request_id, ids, RequestMetrics(arrival))
        self._streams[number] = stream
        self._numbers[request_id] = number
        self._pending_adds += 1
        self._send(("add", number, ids, params, arrival))
        finished = False
        try:
            while True:
                if not stream.has_news:
                    stream.waiter = self._loop.create_future()
                    try:
                        await stream.waiter
                    finally:
                        stream.waiter = None
                if stream.error is not None:
                    finished = True
                    raise stream.error
                out = stream.take()
                finished = out.finished
                yield out
                if finished:
                    return
        finally:
            self._streams.pop(number, None)
            self._numbers.pop(request_id, None)
            if not finished and self._failure is None:
                self._send(("abort", number))

    def abort(self, request_id: str) -> None:
        if (number := self._numbers.get(request_id)) is not None:
            self._send(("abort", number))

    def _send(self, command: tuple) -> None:
        self._num_sent.value += 1  # counted first: the child then waits in recv() for a message still being written
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
            stream.fail(RuntimeError(f"the engine process failed: {reason}"))

    def _on_step(self, numbers: list[int], token_ids: list[int], counts: list[int] | None, texts: list[str],
                 finished: list[tuple], errors: list, step_stats: tuple | None, stats: tuple, num_added: int) -> None:
        self._stats = EngineStats(*stats)
        step_stats = step_stats and StepStats(*step_stats)
        self._pending_adds -= num_added
        streams = self._streams
        if counts is None:  # a token each: the common case, without slicing
            for number, token, text in zip(numbers, token_ids, texts):
                if (stream := streams.get(number)) is not None:
                    stream.deliver_one(token, text)
        else:
            for number, new_ids, text in split_deltas(numbers, token_ids, counts, texts):
                if (stream := streams.get(number)) is not None:
                    stream.deliver(new_ids, text)
        for number, reason, times in finished:
            if (stream := streams.get(number)) is not None:
                stream.finish(reason, times)
        for number, error in errors:
            if (stream := streams.get(number)) is not None:
                stream.fail(ValueError(error))
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


def _engine_main(model_dir: str, kwargs: dict, commands, num_sent, outputs, window_s: float) -> None:
    """The child: build the engine, then apply commands and step, one message back per iteration."""
    import signal
    import threading

    # the parent owns the lifetime: a SIGTERM/SIGINT sent to the whole group must not cut its drain short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # off the main thread, as AsyncLLM runs it: CPU steps measured 1.2-4x faster there (bench/RESULTS.md)
    loop = threading.Thread(target=_step_loop,
                            args=(model_dir, kwargs, commands, num_sent, outputs.fileno(), window_s),
                            name="shoal-engine-steps")
    loop.start()
    loop.join()


def _step_loop(model_dir: str, kwargs: dict, commands, num_sent, out_fd: int, window_s: float) -> None:
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
    freeze_startup_objects()  # the engine's objects: a full collection then walks only what serving allocates
    write_message(out_fd, ("ready", engine.max_model_len, engine.runtime_limits, engine.stats()))
    trace = StepTrace.from_env()
    num_taken = 0
    try:
        while True:
            wall, t0 = time.time(), time.perf_counter()  # clock reads cost ~0.1 us: taken traced or not
            batch = []
            if not engine.has_unfinished():  # idle: block for work, then for the rest of a burst
                batch.append(commands.recv())
                num_taken += 1 + gather_burst(commands, batch, window_s, engine.runtime_limits.max_num_seqs)
            t_work = time.perf_counter()
            while num_taken < num_sent.value:  # a shared-memory read per step, not a poll() system call
                batch.append(commands.recv())
                num_taken += 1
            deltas, errors, num_added = StepDeltas(), [], 0
            for command in batch:
                if command[0] == "add":
                    _, number, ids, params, arrival = command
                    num_added += 1
                    try:
                        engine.add_request(number, ids, params, arrival_time=arrival)
                    except ValueError as exc:
                        errors.append((number, str(exc)))
                elif command[0] == "abort":
                    if (out := engine.abort(command[1])) is not None:
                        deltas.add_output(out)
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
                engine.step_deltas(deltas)
                step_stats = engine.last_step_stats
            t2 = time.perf_counter()
            # statistics as plain tuples: pickling two dataclasses cost more than the step's 64 outputs together
            write_message(out_fd, ("step", *deltas.as_tuple(), errors, step_stats and _fields(step_stats),
                                   _fields(engine.stats()), num_added))
            if trace is not None and step_stats is not None:
                trace.record(wall, (t0, t_work, t1, t2, time.perf_counter()), step_stats.device_wait_seconds,
                             step_stats.num_running, step_stats.num_prompt_tokens + step_stats.num_generation_tokens)
    except BaseException:
        write_message(out_fd, ("failed", traceback.format_exc()))


def freeze_startup_objects() -> None:
    """Move everything built at start-up (model, tokenizer tables, the app) out of the garbage collector's reach.

    A full collection walks every tracked object: ~300k once SmolLM2's engine is built, 146 ms a collection on the
    development VM; the H100 host's engine child stalled 150-160 ms so while admitting a burst (bench/RESULTS.md).
    Frozen, a collection walks only what serving allocated since. Servers only: a library call must not freeze its
    caller's objects."""
    gc.collect()
    gc.freeze()


def gather_burst(commands, batch: list, window_s: float, max_adds: int, clock=time.monotonic) -> int:
    """Append to `batch` the commands that keep arriving within `window_s` of each other (at most 25 windows in all,
    and no more once it holds `max_adds` requests); returns how many were taken."""
    taken, adds, deadline = 0, sum(c[0] == "add" for c in batch), clock() + 25 * window_s
    while window_s > 0 and adds < max_adds:
        wait = min(window_s, deadline - clock())
        if wait <= 0 or not commands.poll(wait):
            break
        batch.append(commands.recv())
        taken += 1
        adds += batch[-1][0] == "add"
    return taken


def _fields(stats: EngineStats | StepStats) -> tuple:
    return tuple(vars(stats).values())  # in field order; the parent rebuilds the dataclass from them
