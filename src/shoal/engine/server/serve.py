"""The `shoal serve` process: load the engine, listen, and on SIGTERM drain then exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from aiohttp import web

from shoal.engine.server import admin
from shoal.engine.server.admission import Admission
from shoal.engine.server.app import ServerState, build_app
from shoal.engine.server.engine_process import freeze_startup_objects
from shoal.engine.server.generation import Generation
from shoal.engine.server.lifecycle import Lifecycle
from shoal.engine.server.metrics import EngineMetrics
from shoal.engine.server.settings import ServeSettings

log = logging.getLogger(__name__)

# after the drain timeout, aborted requests get this long to unwind before the listener closes
ABORT_GRACE_S = 5.0


def serve(settings: ServeSettings) -> int:
    admin.redact_tokens_in_logs()
    try:  # libuv's loop writes to sockets and switches tasks in C: per-token streaming costs less
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_serve(settings))


def _max_model_len(engine, settings: ServeSettings) -> int:
    for value in (getattr(engine, "max_model_len", None), settings.max_model_len,
                  getattr(engine.tokenizer, "model_max_length", None)):
        if isinstance(value, int) and value > 0:
            return value
    raise RuntimeError("cannot tell the model's context length; pass --max-model-len")


async def _start_engine(settings: ServeSettings):
    if settings.engine_process:
        from shoal.engine.server.engine_process import EngineProcess as Engine
    else:
        from shoal.engine import AsyncLLM as Engine

    extra = {"admission_window_s": settings.admission_window_ms / 1000} if settings.engine_process else {}
    engine = Engine(str(settings.model), **settings.engine_kwargs(), **extra)
    await engine.start()
    if settings.runtime_config_dir is not None:
        capacity = engine.capacity
        initial = admin.read_initial_limits(
            settings.runtime_config_dir,
            admin.Limits(capacity.max_num_seqs, capacity.max_num_batched_tokens),
            settings.block_size,
        )
        if initial:
            engine.set_runtime_limits(**initial)
    return engine


async def _serve(settings: ServeSettings) -> int:
    from shoal.engine import SamplingParams

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    engine = await _start_engine(settings)
    metrics = EngineMetrics(settings.model_name)
    engine.add_step_listener(lambda s: metrics.observe_step(s.num_prompt_tokens, s.num_generation_tokens))
    lifecycle = Lifecycle()
    generation = Generation(engine, SamplingParams, metrics, settings.model_name, _max_model_len(engine, settings),
                            settings.stream_interval)
    state = ServerState(settings, engine, metrics, lifecycle, Admission(settings.max_waiting), generation,
                        started=int(time.time()))
    runner = web.AppRunner(build_app(state), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    freeze_startup_objects()
    lifecycle.mark_ready()
    limits = engine.runtime_limits
    log.info("serving %s: max_num_seqs=%d max_num_batched_tokens=%d", settings.model_name,
             limits.max_num_seqs, limits.max_num_batched_tokens)
    # one machine-readable line, for whoever started us with --port 0
    print(f"shoal serve: listening on http://{host}:{port}", flush=True)

    await stop.wait()
    lifecycle.begin_drain()
    log.info("draining: %d requests in flight, timeout %.1f s", lifecycle.in_flight, settings.drain_timeout)
    if not await lifecycle.wait_idle(settings.drain_timeout):
        log.warning("drain timeout: aborting %d requests still running", len(generation.active))
        for request_id in list(generation.active):
            engine.abort(request_id)
        await lifecycle.wait_idle(ABORT_GRACE_S)
    await runner.cleanup()
    await engine.shutdown()
    lifecycle.mark_stopped()
    log.info("drained; exiting")
    sys.stdout.flush()
    return 0
