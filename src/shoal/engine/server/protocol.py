"""OpenAI request bodies -> validated generation requests (pure: no engine, no I/O).

The result carries SamplingParams keyword arguments; max_tokens is settled later by `resolve_max_tokens`,
once the prompt has been tokenized and its length is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shoal.engine.server import fields as f
from shoal.engine.server.errors import bad_request, model_not_found, unprocessable

MAX_N = 16
MAX_PROMPTS = 256  # prompts in one batched completion request: each becomes n engine requests

_SAMPLING = frozenset({
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
    "presence_penalty", "frequency_penalty", "logit_bias", "user",
    "top_k", "ignore_eos", "stop_token_ids",  # extensions, as vLLM spells them
})
# max_completion_tokens on completions: benchmark clients (guidellm) send it beside max_tokens
COMPLETION_FIELDS = _SAMPLING | {"prompt", "suffix", "echo", "logprobs", "best_of", "max_completion_tokens"}
CHAT_FIELDS = _SAMPLING | {
    "messages", "max_completion_tokens", "logprobs", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "store", "metadata",
}
ROLES = frozenset({"system", "developer", "user", "assistant"})

Prompt = str | list[int]


@dataclass(frozen=True)
class GenerationRequest:
    kind: Literal["completion", "chat"]
    prompts: list[Prompt]  # completions may batch several prompts; chat has one
    messages: list[dict] | None  # chat only: [{"role", "content"}] for the chat template
    sampling: dict  # SamplingParams kwargs without max_tokens
    max_tokens: int | None  # None: as many as the context allows
    n: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    echo: bool
    max_tokens_param: str = "max_tokens"  # the field the output budget came from, for errors about it

    @property
    def num_choices(self) -> int:
        return len(self.prompts) * self.n


def check_model(body: dict, served: str) -> None:
    name = f.required(body, "model")
    if not isinstance(name, str):
        raise bad_request("`model` must be a string.", "model")
    if f.text(name, "model") != served:
        raise model_not_found(name, served)


def parse_completion(body: object, served: str, vocab_size: int | None = None) -> GenerationRequest:
    body = _object(body)
    f.reject_unknown(body, COMPLETION_FIELDS)
    check_model(body, served)
    f.only_default(body, "suffix", ("",), "no fill-in-the-middle")
    f.only_default(body, "logprobs", (0,), "no logprobs")
    f.only_default(body, "best_of", (1,), "no best_of")
    max_tokens = f.integer(body, "max_completion_tokens", None, lo=1)
    common = _common(body, max_tokens=max_tokens or f.integer(body, "max_tokens", 16, lo=1))
    return GenerationRequest(
        kind="completion",
        prompts=_prompts(f.required(body, "prompt"), vocab_size),
        messages=None,
        echo=f.boolean(body, "echo", False),
        max_tokens_param=_budget_field(body),
        **common,
    )


def parse_chat(body: object, served: str) -> GenerationRequest:
    body = _object(body)
    f.reject_unknown(body, CHAT_FIELDS)
    check_model(body, served)
    f.only_default(body, "logprobs", (False,), "no logprobs")
    f.only_default(body, "top_logprobs", (0,), "no logprobs")
    f.only_default(body, "response_format", ({"type": "text"},), "no structured output")
    f.only_default(body, "tools", ([],), "no tool calling")
    f.only_default(body, "tool_choice", ("none",), "no tool calling")
    f.boolean(body, "parallel_tool_calls", True)
    f.boolean(body, "store", False)
    max_tokens = f.integer(body, "max_completion_tokens", None, lo=1)
    if max_tokens is None:
        max_tokens = f.integer(body, "max_tokens", None, lo=1)
    messages = _messages(f.required(body, "messages"))
    return GenerationRequest(
        kind="chat", prompts=[""], messages=messages, echo=False, max_tokens_param=_budget_field(body),
        **_common(body, max_tokens=max_tokens),
    )


def resolve_max_tokens(requested: int | None, prompt_len: int, max_model_len: int) -> int:
    """The output budget: what was asked, or all the room left; 422 when prompt and output do not fit."""
    room = max_model_len - prompt_len
    if room <= 0:
        raise unprocessable(
            f"The prompt is {prompt_len} tokens; this model's context is {max_model_len} tokens. Shorten the prompt.",
            "messages" if requested is None else "prompt",
        )
    if requested is None:
        return room
    if requested > room:
        raise unprocessable(
            f"max_tokens={requested} plus the {prompt_len}-token prompt exceeds the {max_model_len}-token context; "
            f"ask for at most {room}.",
            "max_tokens",
        )
    return requested


def check_prompt_chars(req: GenerationRequest, limit: int | None, max_model_len: int) -> None:
    """422 for a prompt longer in characters than any `max_model_len`-token text can be (see app.prompt_char_limit)."""
    if limit is None:
        return
    if req.kind == "chat":
        field, sizes = "messages", [sum(len(m["content"]) for m in req.messages or [])]
    else:
        field, sizes = "prompt", [len(p) for p in req.prompts if isinstance(p, str)]
    longest = max(sizes, default=0)
    if longest > limit:
        raise unprocessable(f"The {field} holds {longest} characters: more than any {max_model_len}-token "
                            "context can hold. Shorten it.", field)


def _budget_field(body: dict) -> str:
    return "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"


def _object(body: object) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _common(body: dict, max_tokens: int | None) -> dict:
    stream = f.boolean(body, "stream", False)
    include_usage = continuous_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise bad_request("`stream_options` is only allowed when `stream` is true.", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage", "continuous_usage_stats"}:
            raise bad_request("`stream_options` takes only `include_usage` and `continuous_usage_stats` (bools).",
                              "stream_options")
        include_usage = f.boolean(options, "include_usage", False, "stream_options.include_usage")
        # vLLM's: usage on every chunk
        continuous_usage = f.boolean(options, "continuous_usage_stats", False, "stream_options.continuous_usage_stats")
    f.only_default(body, "presence_penalty", (0, 0.0), "no penalties")
    f.only_default(body, "frequency_penalty", (0, 0.0), "no penalties")
    f.only_default(body, "logit_bias", ({},), "no logit bias")
    f.string(body, "user")
    stop_ids = body.get("stop_token_ids")
    sampling = {
        "temperature": f.number(body, "temperature", 1.0, lo=0.0, hi=2.0),
        "top_p": f.number(body, "top_p", 1.0, lo=0.0, hi=1.0, lo_open=True),
        "top_k": _top_k(body),
        "stop": f.stop_strings(body),
        "stop_token_ids": [] if stop_ids is None else f.token_ids(stop_ids, "stop_token_ids", None),
        "ignore_eos": f.boolean(body, "ignore_eos", False),
        "seed": f.integer(body, "seed", None, lo=f.SEED_MIN, hi=f.SEED_MAX),
    }
    return {
        "sampling": sampling,
        "max_tokens": max_tokens,
        "n": f.integer(body, "n", 1, lo=1, hi=MAX_N),
        "stream": stream,
        "include_usage": include_usage,
        "continuous_usage": continuous_usage,
    }


def _top_k(body: dict) -> int:
    top_k = f.integer(body, "top_k", -1)
    if top_k == 0 or top_k < -1:
        raise unprocessable(f"`top_k` must be -1 (off) or >= 1, got {top_k}.", "top_k")
    return top_k


def _prompts(prompt: object, vocab_size: int | None) -> list[Prompt]:
    if isinstance(prompt, str):
        return [_nonempty_text(prompt)]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return [_nonempty_text(p) for p in _few(prompt)]
        if all(isinstance(p, list) for p in prompt):
            return [_nonempty_ids(p, vocab_size) for p in _few(prompt)]
        return [_nonempty_ids(prompt, vocab_size)]
    raise bad_request("`prompt` must be a string, a list of strings, token ids, or a list of token id lists.",
                      "prompt")


def _few(prompts: list) -> list:
    if len(prompts) > MAX_PROMPTS:
        raise unprocessable(f"`prompt` holds {len(prompts)} prompts; send at most {MAX_PROMPTS} per request.",
                            "prompt")
    return prompts


def _nonempty_text(prompt: str) -> str:
    if not prompt:
        raise unprocessable("`prompt` must not be empty (the model needs at least one token).", "prompt")
    return f.text(prompt, "prompt")


def _nonempty_ids(ids: object, vocab_size: int | None) -> list[int]:
    ids = f.token_ids(ids, "prompt", vocab_size)
    if not ids:
        raise unprocessable("`prompt` token id lists must not be empty.", "prompt")
    return ids


def _messages(messages: object) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list of message objects.", "messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"`{where}` must be an object.", where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(f"`{where}.role` must be one of {sorted(ROLES)}, got {role!r}.", f"{where}.role")
        unknown = set(message) - {"role", "content", "name"}
        if unknown:
            raise bad_request(f"`{where}` has unsupported keys {sorted(unknown)}.", where)
        # templates know "system"; OpenAI's newer "developer" role means the same thing
        out.append({"role": "system" if role == "developer" else role, "content": _content(message, where)})
    return out


def _content(message: dict, where: str) -> str:
    content = message.get("content")
    if content is None and message["role"] == "assistant":
        return ""
    if isinstance(content, str):
        return f.text(content, f"{where}.content")
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request(f"`{where}.content[{j}]` must be {{\"type\": \"text\", \"text\": str}}; "
                                  "only text content is supported.", f"{where}.content")
            texts.append(f.text(part["text"], f"{where}.content"))
        return "".join(texts)
    raise bad_request(f"`{where}.content` must be a string or a list of text parts.", f"{where}.content")
