"""AsyncLLM: the engine for an asyncio server. The step loop runs in its own thread, never on the event loop.

The event loop talks to the engine thread through a command list (add, abort) guarded by a
condition variable; the engine thread hands each step's outputs back with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from shoal.engine.config import EngineConfig
from shoal.engine.llm_engine import LLMEngine
from shoal.engine.outputs import EngineStats, RequestOutput, RuntimeLimits, StepStats
from shoal.engine.sampling_params import SamplingParams

log = logging.getLogger(__name__)


class AsyncLLM:
    def __init__(self, model_dir, **engine_args) -> None:
        """`engine_args` are EngineConfig's fields, as for LLM."""
        self.config = EngineConfig(model_dir=str(model_dir), **engine_args)
        self.model_dir = Path(model_dir)
        self.model_name = self.model_dir.name
        self.capacity = RuntimeLimits(self.config.max_num_seqs, self.config.max_num_batched_tokens)
        self._engine: LLMEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cv = threading.Condition()
        self._commands: list[tuple] = []  # ("add", id, ids, params, arrival) | ("abort", id)
        self._stopping = False
        self._failure: BaseException | None = None
        self._streams: dict[str, asyncio.Queue] = {}  # event-loop side only
        self._listeners: list[Callable[[StepStats], None]] = []

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._engine = await asyncio.to_thread(LLMEngine, self.config)  # loading weights takes seconds
        self._thread = threading.Thread(target=self._run, name="shoal-engine", daemon=True)
        self._thread.start()

    async def shutdown(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    # -- requests --------------------------------------------------------------------------
    async def generate(
        self, request_id: str, prompt: str | list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        """Stream this request's outputs; stopping the iteration (or cancelling it) aborts the request."""
        engine = self._require_running()
        if request_id in self._streams:
            raise ValueError(f"request_id {request_id!r} is already in use")
        engine.check_params(params)
        ids = engine.encode_prompt(prompt)
        queue: asyncio.Queue = asyncio.Queue()
        self._streams[request_id] = queue
        self._submit(("add", request_id, ids, params, time.monotonic()))
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._submit(("abort", request_id))

    def abort(self, request_id: str) -> None:
        """Abort a request; its stream ends with a finish_reason="abort" output and its KV blocks are freed."""
        if request_id in self._streams:
            self._submit(("abort", request_id))

    def _submit(self, command: tuple) -> None:
        with self._cv:
            self._commands.append(command)
            self._cv.notify()

    def _require_running(self) -> LLMEngine:
        if self._failure is not None:
            raise RuntimeError(f"the engine loop failed: {self._failure!r}")
        if self._engine is None or self._thread is None or self._stopping:
            raise RuntimeError("AsyncLLM is not running: await start() first")
        return self._engine

    # -- the engine thread -------------------------------------------------------------------
    def _run(self) -> None:
        engine = self._engine
        assert engine is not None
        try:
            while True:
                with self._cv:
                    while not (self._commands or self._stopping or engine.has_unfinished()):
                        self._cv.wait()
                    commands, self._commands = self._commands, []
                    stopping = self._stopping
                outputs: list[RequestOutput | tuple[str, BaseException]] = []
                for command in commands:
                    self._apply(engine, command, outputs)
                if stopping:
                    outputs += [o for rid in list(engine.requests) if (o := engine.abort(rid)) is not None]
                    self._deliver(outputs)
                    return
                if engine.has_unfinished():
                    outputs += engine.step()
                    self._notify_listeners(engine.last_step_stats)
                self._deliver(outputs)
        except BaseException as exc:  # a broken engine must fail its streams, not hang them
            log.exception("engine loop failed")
            self._failure = exc
            self._deliver([(rid, exc) for rid in list(engine.requests)] + [("*", exc)])

    def _apply(self, engine: LLMEngine, command: tuple, outputs: list) -> None:
        if command[0] == "add":
            _, rid, ids, params, arrival = command
            try:
                engine.add_request(rid, ids, params, arrival_time=arrival)
            except ValueError as exc:
                outputs.append((rid, exc))
        else:
            out = engine.abort(command[1])
            if out is not None:
                outputs.append(out)

    def _notify_listeners(self, stats: StepStats) -> None:
        for fn in list(self._listeners):
            try:
                fn(stats)
            except Exception:  # a broken listener must not stop the engine
                log.exception("step listener failed")

    def _deliver(self, outputs: list) -> None:
        if outputs and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._dispatch, outputs)

    def _dispatch(self, outputs: list) -> None:
        for item in outputs:
            if isinstance(item, tuple):
                rid, exc = item
                targets = list(self._streams.values()) if rid == "*" else [self._streams.get(rid)]
                for queue in targets:
                    if queue is not None:
                        queue.put_nowait(exc)
            elif (queue := self._streams.get(item.request_id)) is not None:
                queue.put_nowait(item)

    # -- limits, statistics, introspection --------------------------------------------------------
    @property
    def runtime_limits(self) -> RuntimeLimits:
        return self._engine.runtime_limits if self._engine is not None else self.capacity

    def set_runtime_limits(
        self, max_num_seqs: int | None = None, max_num_batched_tokens: int | None = None
    ) -> RuntimeLimits:
        if self._engine is None:
            raise RuntimeError("AsyncLLM is not started: await start() first")
        return self._engine.set_runtime_limits(max_num_seqs, max_num_batched_tokens)

    def stats(self) -> EngineStats:
        if self._engine is None:
            raise RuntimeError("AsyncLLM is not started: await start() first")
        stats = self._engine.stats()
        with self._cv:
            pending = sum(1 for c in self._commands if c[0] == "add")
        if pending:
            stats = EngineStats(**{**stats.__dict__, "num_waiting": stats.num_waiting + pending})
        return stats

    def add_step_listener(self, fn: Callable[[StepStats], None]) -> None:
        self._listeners.append(fn)

    @property
    def tokenizer(self):
        return self._engine.tokenizer if self._engine is not None else None

    @property
    def max_model_len(self) -> int | None:
        return self._engine.max_model_len if self._engine is not None else self.config.max_model_len

    @property
    def is_idle(self) -> bool:
        with self._cv:
            pending = bool(self._commands)
        return not pending and not self._streams and (self._engine is None or not self._engine.has_unfinished())

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._failure is None and not self._stopping
