"""The aiohttp application: DESIGN's routes over one engine (see docs/serving.md)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from shoal.engine.server import admin, protocol, responses
from shoal.engine.server.admission import Admission
from shoal.engine.server.errors import APIError, bad_request
from shoal.engine.server.generation import Generation, start_sse
from shoal.engine.server.lifecycle import Lifecycle
from shoal.engine.server.metrics import EngineMetrics
from shoal.engine.server.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    settings: ServeSettings
    engine: object  # AsyncLLM
    metrics: EngineMetrics
    lifecycle: Lifecycle
    admission: Admission
    generation: Generation
    started: int  # unix time, for /v1/models


@web.middleware
async def openai_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except APIError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(APIError(exc.status, exc.reason or "error", type="invalid_request_error"))
    except ConnectionResetError:  # the client hung up (e.g. before a stream's headers): no one to answer
        log.debug("%s %s: client went away", request.method, request.path)
        return web.Response(status=400)  # aiohttp's write of it fails quietly; raising would log a traceback
    except Exception as exc:  # a bug or a failed engine: logged with its traceback, answered as OpenAI JSON
        log.exception("%s %s failed", request.method, request.path)
        return _error_response(APIError(500, f"Internal error: {exc}", type="server_error"))


def _error_response(exc: APIError) -> web.Response:
    return web.Response(status=exc.status, body=exc.json_bytes(), content_type="application/json",
                        headers=exc.headers)


async def _json(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the parser recurses per nesting level: "[[[[...", "{"a":{"a":..."
        raise bad_request("The request body nests JSON arrays or objects too deeply; no field of this API nests "
                          "more than a few levels.") from exc


def prompt_char_limit(tokenizer, max_model_len: int) -> int | None:
    """Characters beyond which a prompt cannot fit the context whatever it says: no token spells more characters
    than the vocabulary's longest entry. Checked before tokenizing, so a multi-MB prompt costs no tokenizer time."""
    get_vocab = getattr(getattr(tokenizer, "_tok", None), "get_vocab", None)
    if get_vocab is None:
        return None
    return max_model_len * max(map(len, get_vocab()), default=1)


class QuietMalformedHTTP(logging.Filter):
    """aiohttp logs a request its parser rejects (a header over 8 KiB, a bad request line) as an ERROR with a
    traceback, and answers it 400 itself: one warning line is enough for a client's mistake (a traceback per
    request would let any client flood the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            from shoal.engine.server.admin import redact

            detail = redact(str(exc).replace("\n", " "))[:200]  # the parser quotes the offending line
            record.msg, record.args = f"malformed HTTP request refused with {exc.code}: {detail}", None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def build_app(state: ServerState) -> web.Application:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietMalformedHTTP) for f in server_log.filters):
        server_log.addFilter(QuietMalformedHTTP())
    app = web.Application(middlewares=[openai_errors], client_max_size=16 * 1024 * 1024)
    app["state"] = state
    app["prompt_char_limit"] = prompt_char_limit(state.engine.tokenizer, state.generation.max_model_len)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/runtime-config", get_runtime_config)
    app.router.add_patch("/admin/runtime-config", patch_runtime_config)
    return app


async def completions(request: web.Request) -> web.StreamResponse:
    state: ServerState = request.app["state"]
    return await _generate(request, protocol.parse_completion(
        await _json(request), state.settings.model_name, getattr(state.engine.tokenizer, "vocab_size", None)))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state: ServerState = request.app["state"]
    return await _generate(request, protocol.parse_chat(await _json(request), state.settings.model_name))


async def _generate(request: web.Request, req: protocol.GenerationRequest) -> web.StreamResponse:
    state: ServerState = request.app["state"]
    arrival = time.monotonic()
    protocol.check_prompt_chars(req, request.app["prompt_char_limit"], state.generation.max_model_len)
    try:
        prepared = state.generation.prepare(req)
    except APIError as exc:  # resolve_max_tokens names the completions spelling; say what this request sent
        if req.kind == "chat" and exc.param == "prompt":  # a chat's prompt is its messages
            exc.param = "messages"
        if exc.param == "max_tokens" and req.max_tokens_param != "max_tokens":
            exc.param = req.max_tokens_param
            exc.message = exc.message.replace("max_tokens=", f"{req.max_tokens_param}=", 1)
        raise
    state.lifecycle.admit()
    try:
        state.admission.admit(len(prepared.choices), state.engine.runtime_limits.max_num_seqs)
    except APIError:
        state.lifecycle.release()
        raise
    try:
        if not req.stream:
            try:
                await state.generation.collect(prepared, arrival)
            except ValueError as exc:  # the engine refused the prompt or parameters
                raise APIError(422, str(exc)) from exc
            return web.json_response(state.generation.body(req, prepared))
        response = await start_sse(request)
        try:
            await state.generation.stream(req, prepared, arrival, response.write, response.write_eof)
        except ConnectionResetError:
            log.debug("client of %s went away; request aborted", prepared.response_id)
        except Exception as exc:  # headers are sent: report in the stream, then end it
            log.exception("stream %s failed", prepared.response_id)
            status = 422 if isinstance(exc, ValueError) else 500
            await response.write(b"data: " + APIError(status, str(exc), type="server_error").json_bytes() + b"\n\n")
        return response
    finally:
        for _ in prepared.choices:
            state.admission.finished()
        state.lifecycle.release()


async def models(request: web.Request) -> web.Response:
    state: ServerState = request.app["state"]
    return web.json_response(responses.models_body(
        state.settings.model_name, state.started, state.generation.max_model_len))


async def health(request: web.Request) -> web.Response:
    """Liveness: the engine loop made progress recently, or has nothing to do."""
    state: ServerState = request.app["state"]
    if not getattr(state.engine, "is_running", True):
        return web.json_response({"status": "failed", "engine": "the engine loop stopped"}, status=503)
    stats = state.engine.stats()
    if state.engine.is_idle:
        return web.json_response({"status": "ok", "engine": "idle"})
    since = None if stats.last_step_time is None else time.monotonic() - stats.last_step_time
    if since is not None and since <= state.settings.health_stall_seconds:
        return web.json_response({"status": "ok", "engine": "stepping", "last_step_s_ago": round(since, 3)})
    return web.json_response({"status": "stalled", "last_step_s_ago": since}, status=503)


async def ready(request: web.Request) -> web.Response:
    lifecycle: Lifecycle = request.app["state"].lifecycle
    return web.json_response({"status": lifecycle.state.value}, status=200 if lifecycle.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state: ServerState = request.app["state"]
    state.metrics.update_engine_state(state.engine.stats(), state.engine.runtime_limits)
    return web.Response(body=state.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def get_runtime_config(request: web.Request) -> web.Response:
    state: ServerState = request.app["state"]
    admin.check_bearer(request.headers.get("Authorization"), state.settings.admin_token_file)
    return web.json_response(admin.config_body(state.engine.runtime_limits, state.engine.capacity))


async def patch_runtime_config(request: web.Request) -> web.Response:
    state: ServerState = request.app["state"]
    admin.check_bearer(request.headers.get("Authorization"), state.settings.admin_token_file)
    capacity = state.engine.capacity
    changes = admin.parse_patch(await _json(request), capacity, state.settings.block_size)
    try:
        limits = state.engine.set_runtime_limits(**changes)
    except ValueError as exc:  # the engine has the last word on its bounds
        raise APIError(422, str(exc)) from exc
    log.info("runtime limits now max_num_seqs=%d max_num_batched_tokens=%d",
             limits.max_num_seqs, limits.max_num_batched_tokens)
    return web.json_response(admin.config_body(limits, capacity))
