"""OpenAI response bodies: whole responses and server-sent-event chunks.

Streaming is the hot path: the constant head of every chunk of a response is encoded once, so each token
costs one JSON encoding of its text delta only.
"""

from __future__ import annotations

import json
from typing import Literal

DONE = b"data: [DONE]\n\n"

_OBJECT = {"completion": "text_completion", "chat": "chat.completion.chunk"}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class ChunkEncoder:
    """SSE chunks of one streamed response (`data: {json}\\n\\n`)."""

    def __init__(self, kind: Literal["completion", "chat"], response_id: str, created: int, model: str):
        self.kind = kind
        self._head = (
            'data: {"id":' + json.dumps(response_id) + ',"object":"' + _OBJECT[kind] + '","created":'
            + str(created) + ',"model":' + json.dumps(model) + ',"choices":'
        ).encode()
        self._text_key = b'"text":' if kind == "completion" else b'"delta":{"content":'
        self._text_tail = b',"logprobs":null,"finish_reason":null}]' if kind == "completion" else (
            b'},"logprobs":null,"finish_reason":null}]')

    def delta(self, index: int, text: str, usage_so_far: tuple[int, int] | None = None) -> bytes:
        """A text delta; with `usage_so_far` = (prompt, completion tokens) it also carries running usage
        (vLLM's `stream_options.continuous_usage_stats`)."""
        end = b"}\n\n" if usage_so_far is None else b',"usage":' + _compact(usage(*usage_so_far)) + b"}\n\n"
        return b"".join((self._head, b'[{"index":', str(index).encode(), b",", self._text_key,
                         json.dumps(text).encode(), self._text_tail, end))

    def role(self, index: int) -> bytes:
        """Chat streams open each choice with the assistant role and empty content, as OpenAI does."""
        return self._choice({"index": index, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None})

    def finish(self, index: int, reason: str | None) -> bytes:
        empty = {"text": ""} if self.kind == "completion" else {"delta": {}}
        return self._choice({"index": index, **empty, "logprobs": None, "finish_reason": reason})

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._head + b'[],"usage":' + _compact(usage(prompt_tokens, completion_tokens)) + b"}\n\n"

    def _choice(self, choice: dict) -> bytes:
        return self._head + b"[" + _compact(choice) + b"]}\n\n"


def _compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def completion_body(response_id: str, created: int, model: str, choices: list[tuple[str, str | None]],
                    prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_body(response_id: str, created: int, model: str, choices: list[tuple[str, str | None]],
              prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
             "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def models_body(model: str, created: int, max_model_len: int) -> dict:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "shoal",
                  "max_model_len": max_model_len}],
    }
