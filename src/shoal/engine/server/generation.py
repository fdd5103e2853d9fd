"""Runs one OpenAI request through the engine: tokenize, fan out choices, stream or collect, record metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from shoal.engine.server import responses
from shoal.engine.server.errors import unprocessable
from shoal.engine.server.metrics import EngineMetrics
from shoal.engine.server.protocol import GenerationRequest, resolve_max_tokens

Emit = Callable[[bytes], Awaitable[None]]


@dataclass
class Choice:
    index: int
    request_id: str
    prompt_ids: list[int]
    params: object  # SamplingParams
    echo_text: str = ""
    text: str = ""
    num_tokens: int = 0
    finish_reason: str | None = None


@dataclass
class Prepared:
    response_id: str
    choices: list[Choice]
    prompt_tokens: int


class Generation:
    def __init__(self, engine, sampling_params_cls, metrics: EngineMetrics, model_name: str, max_model_len: int,
                 stream_interval: int = 1):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.sampling_params_cls = sampling_params_cls
        self.metrics = metrics
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.stream_interval = stream_interval  # tokens gathered per SSE chunk: each chunk costs a socket write
        self.active: set[str] = set()  # engine request ids in flight, for aborting at the drain timeout

    def prepare(self, req: GenerationRequest) -> Prepared:
        """Tokenize and build every choice's SamplingParams; raises APIError (422) on what cannot run."""
        prefix = "cmpl-" if req.kind == "completion" else "chatcmpl-"
        response_id = prefix + uuid.uuid4().hex
        if req.kind == "chat":
            try:
                prompt_texts: list[str | list[int]] = [self.tokenizer.apply_chat_template(req.messages)]
            except ValueError as exc:  # no template, or the template rejects the conversation
                raise unprocessable(f"messages: {exc}", "messages") from exc
        else:
            prompt_texts = req.prompts
        choices, prompt_tokens = [], 0
        for p, prompt in enumerate(prompt_texts):
            ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
            prompt_tokens += len(ids)
            max_tokens = resolve_max_tokens(req.max_tokens, len(ids), self.max_model_len)
            echo = (prompt if isinstance(prompt, str) else self.tokenizer.decode(ids)) if req.echo else ""
            for j in range(req.n):
                sampling = dict(req.sampling)
                if sampling["seed"] is not None and req.n > 1:
                    sampling["seed"] += j  # distinct but reproducible samples
                try:
                    params = self.sampling_params_cls(max_tokens=max_tokens, **sampling)
                except ValueError as exc:
                    raise unprocessable(str(exc)) from exc
                index = p * req.n + j
                choices.append(Choice(index, f"{response_id}-{index}", ids, params, echo_text=echo))
        return Prepared(response_id, choices, prompt_tokens)

    async def run_choice(self, choice: Choice, arrival: float,
                         emit: Callable[[str, int, bool], Awaitable[None]] | None):
        """Drive one engine request to its end. Streaming: `emit(text, completion_tokens, last)` gets the new text
        once `stream_interval` tokens have gathered (and at the end, with last=True); else `emit` is None."""
        reason, first, last, out, refused = "abort", None, None, None, False
        pending_text, pending_tokens = "", 0
        self.active.add(choice.request_id)
        try:
            outputs = self.engine.generate(choice.request_id, choice.prompt_ids, choice.params)
            async with contextlib.aclosing(outputs):
                async for out in outputs:
                    now = time.monotonic()
                    if first is None:
                        first = now
                    elif out.new_token_ids:
                        self.metrics.inter_token_latency.observe(now - last)
                    last = now
                    if emit is not None:
                        pending_text += out.new_text
                        pending_tokens += len(out.new_token_ids)
                        if pending_text and (pending_tokens >= self.stream_interval or out.finished):
                            await emit(pending_text, len(out.token_ids), out.finished)
                            pending_text, pending_tokens = "", 0
                    if out.finished:
                        reason = out.finish_reason or "stop"
                        break
        except ValueError:
            refused = out is None  # the engine turned the request down: nothing was served
            raise
        finally:
            self.active.discard(choice.request_id)
            if out is not None:
                choice.text, choice.num_tokens = out.text, len(out.token_ids)
            choice.finish_reason = reason
            if not refused:
                self.metrics.observe_request(
                    reason,
                    ttft_s=None if first is None else first - arrival,
                    e2e_s=time.monotonic() - arrival,
                    queue_s=_queue_time(out),
                )

    async def collect(self, prepared: Prepared, arrival: float) -> None:
        await all_or_none([self.run_choice(choice, arrival, None) for choice in prepared.choices])

    async def stream(self, req: GenerationRequest, prepared: Prepared, arrival: float, write: Emit,
                     end: Emit | None = None) -> None:
        """The SSE body through `write`; its last bytes through `end` (e.g. the response's write_eof, which sends
        them with the stream's terminator). A one-choice stream ends with one write: its last text, the finish
        chunk, usage and [DONE] together (a socket write each would cost the server ~4 system calls a request)."""
        encoder = responses.ChunkEncoder(req.kind, prepared.response_id, int(time.time()), self.model_name)
        end = end or write
        lock = asyncio.Lock()

        async def write_locked(data: bytes) -> None:
            async with lock:
                await write(data)

        # one choice writes straight through; several share the response under a lock
        single = len(prepared.choices) == 1
        out = write if single else write_locked
        tail = bytearray()  # a single choice's last bytes, written at the end

        async def one(choice: Choice) -> None:
            index = choice.index
            if req.kind == "chat":
                await out(encoder.role(index))
            if choice.echo_text:
                await out(encoder.delta(index, choice.echo_text))

            prompt_len = len(choice.prompt_ids)

            async def emit(text: str, completion_tokens: int, last: bool) -> None:
                chunk = encoder.delta(index, text, (prompt_len, completion_tokens) if req.continuous_usage else None)
                if last and single:
                    tail.extend(chunk)
                else:
                    await out(chunk)

            await self.run_choice(choice, arrival, emit)
            finish = encoder.finish(index, choice.finish_reason)
            if single:
                tail.extend(finish)
            else:
                await out(finish)

        await all_or_none([one(choice) for choice in prepared.choices])
        if req.include_usage:
            tail.extend(encoder.usage(prepared.prompt_tokens, sum(c.num_tokens for c in prepared.choices)))
        await end(bytes(tail + responses.DONE))

    def body(self, req: GenerationRequest, prepared: Prepared) -> dict:
        build = responses.completion_body if req.kind == "completion" else responses.chat_body
        return build(
            prepared.response_id, int(time.time()), self.model_name,
            [(c.echo_text + c.text, c.finish_reason) for c in prepared.choices],
            prepared.prompt_tokens, sum(c.num_tokens for c in prepared.choices),
        )


async def all_or_none(coros: list) -> None:
    """Run coroutines together; the first error (or our cancellation) cancels the rest, and is raised as is."""
    if len(coros) == 1:
        await coros[0]  # the common case, without tasks
        return
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # let each abort its engine request


async def start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


def _queue_time(out) -> float | None:
    metrics = getattr(out, "metrics", None)
    if metrics is None or metrics.first_scheduled_time is None or metrics.arrival_time is None:
        return None
    return metrics.first_scheduled_time - metrics.arrival_time
