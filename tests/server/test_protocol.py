"""Request validation: OpenAI bodies -> generation requests, every mistake an OpenAI error naming its field."""

import pytest

from shoal.engine.server.errors import APIError
from shoal.engine.server.protocol import parse_chat, parse_completion, resolve_max_tokens

M = "smol"


def error(fn, body, **kw) -> APIError:
    with pytest.raises(APIError) as info:
        fn(body, M, **kw)
    return info.value


def test_completion_defaults_and_sampling():
    req = parse_completion({"model": M, "prompt": "hi"}, M)
    assert req.prompts == ["hi"] and req.n == 1 and not req.stream and req.max_tokens == 16
    assert req.sampling == {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "stop": [], "stop_token_ids": [],
                            "ignore_eos": False, "seed": None}


def test_completion_all_fields():
    req = parse_completion({
        "model": M, "prompt": [[1, 2], [3]], "max_tokens": 5, "temperature": 0, "top_p": 0.5, "n": 2,
        "stream": True, "stream_options": {"include_usage": True}, "stop": "x", "seed": 7, "echo": True,
        "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "user": "u", "logprobs": None,
        "best_of": 1, "suffix": None, "top_k": 4, "ignore_eos": True, "stop_token_ids": [2],
    }, M, vocab_size=10)
    assert req.prompts == [[1, 2], [3]] and req.num_choices == 4 and req.include_usage and req.echo
    assert not req.continuous_usage
    guidellm_style = parse_completion({"model": M, "prompt": "x", "max_tokens": 4, "max_completion_tokens": 4,
                                       "stop": None, "ignore_eos": True, "stream": True,
                                       "stream_options": {"include_usage": True, "continuous_usage_stats": True}}, M)
    assert guidellm_style.continuous_usage and guidellm_style.max_tokens == 4
    assert req.sampling["stop"] == ["x"] and req.sampling["top_k"] == 4 and req.sampling["seed"] == 7


@pytest.mark.parametrize("prompt, expected", [
    ("a", ["a"]), (["a", "b"], ["a", "b"]), ([5, 6], [[5, 6]]), ([[5], [6, 7]], [[5], [6, 7]]),
])
def test_prompt_shapes(prompt, expected):
    assert parse_completion({"model": M, "prompt": prompt}, M).prompts == expected


@pytest.mark.parametrize("body, status, param", [
    ({"model": M}, 400, "prompt"),
    ({"prompt": "x"}, 400, "model"),
    ({"model": "gpt-4", "prompt": "x"}, 404, "model"),
    ({"model": M, "prompt": "x", "bogus": 1}, 400, "bogus"),
    ({"model": M, "prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ({"model": M, "prompt": "x", "temperature": 2.5}, 422, "temperature"),
    ({"model": M, "prompt": "x", "top_p": 0}, 422, "top_p"),
    ({"model": M, "prompt": "x", "top_k": 0}, 422, "top_k"),
    ({"model": M, "prompt": "x", "max_tokens": 0}, 422, "max_tokens"),
    ({"model": M, "prompt": "x", "max_tokens": 1.5}, 400, "max_tokens"),
    ({"model": M, "prompt": "x", "n": 0}, 422, "n"),
    ({"model": M, "prompt": "x", "n": True}, 400, "n"),
    ({"model": M, "prompt": "x", "stream": "yes"}, 400, "stream"),
    ({"model": M, "prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": M, "prompt": "x", "stop": 3}, 400, "stop"),
    ({"model": M, "prompt": "x", "stop": [""]}, 422, "stop"),
    ({"model": M, "prompt": "x", "logprobs": 2}, 400, "logprobs"),
    ({"model": M, "prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"model": M, "prompt": "x", "logit_bias": {"1": 5}}, 400, "logit_bias"),
    ({"model": M, "prompt": "x", "best_of": 3}, 400, "best_of"),
    ({"model": M, "prompt": [1, 99]}, 422, "prompt"),
    ({"model": M, "prompt": [[]]}, 422, "prompt"),
    ({"model": M, "prompt": []}, 400, "prompt"),
    ({"model": M, "prompt": [1, "a"]}, 400, "prompt"),
])
def test_completion_errors(body, status, param):
    exc = error(parse_completion, body, vocab_size=50)
    assert (exc.status, exc.param) == (status, param)
    assert exc.body()["error"]["message"]


def test_body_must_be_object():
    assert error(parse_completion, [1, 2]).status == 400


def test_chat_messages_and_max_completion_tokens():
    req = parse_chat({"model": M, "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None},
    ], "max_completion_tokens": 9, "max_tokens": 3, "logprobs": False, "tools": [], "tool_choice": "none",
        "response_format": {"type": "text"}}, M)
    assert req.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"},
                            {"role": "assistant", "content": ""}]
    assert req.max_tokens == 9 and req.kind == "chat"
    assert parse_chat({"model": M, "messages": [{"role": "user", "content": "x"}]}, M).max_tokens is None


@pytest.mark.parametrize("body, status, param", [
    ({"model": M}, 400, "messages"),
    ({"model": M, "messages": []}, 400, "messages"),
    ({"model": M, "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    ({"model": M, "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ({"model": M, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0].content"),
    ({"model": M, "messages": [{"role": "user", "content": "x", "tool_calls": []}]}, 400, "messages[0]"),
    ({"model": M, "messages": [{"role": "user", "content": "x"}], "logprobs": True}, 400, "logprobs"),
    ({"model": M, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, 400, "tools"),
    ({"model": M, "messages": [{"role": "user", "content": "x"}], "echo": True}, 400, "echo"),
    ({"model": "other", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
])
def test_chat_errors(body, status, param):
    exc = error(parse_chat, body)
    assert (exc.status, exc.param) == (status, param)


def test_resolve_max_tokens():
    assert resolve_max_tokens(None, 10, 100) == 90
    assert resolve_max_tokens(5, 10, 100) == 5
    with pytest.raises(APIError) as info:
        resolve_max_tokens(91, 10, 100)
    assert (info.value.status, info.value.param) == (422, "max_tokens") and "at most 90" in info.value.message
    with pytest.raises(APIError) as info:
        resolve_max_tokens(None, 100, 100)
    assert info.value.status == 422
