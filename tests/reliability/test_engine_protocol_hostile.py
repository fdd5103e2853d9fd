"""The request parser alone (pure, no server): each hostile field the fuzz campaign found is refused with 400/422
naming that field, before any tokenizer or engine sees it."""

import pytest

from shoal.engine.server.errors import APIError
from shoal.engine.server.protocol import MAX_PROMPTS, check_prompt_chars, parse_chat, parse_completion

M = "m"
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("fields, status, param", [
    ({"prompt": "a\ud800b"}, 400, "prompt"),
    ({"prompt": ["ok", "\udfff"]}, 400, "prompt"),
    ({"prompt": ""}, 422, "prompt"),
    ({"prompt": ["x"] * (MAX_PROMPTS + 1)}, 422, "prompt"),
    ({"prompt": "x", "stop": ["\ud800"]}, 400, "stop"),
    ({"prompt": "x", "seed": 2**64}, 422, "seed"),
    ({"prompt": "x", "seed": -2**63 - 1}, 422, "seed"),
    ({"prompt": "x", "stop_token_ids": [-1]}, 422, "stop_token_ids"),
    ({"prompt": "x", "stop_token_ids": [2**80]}, 422, "stop_token_ids"),
    ({"prompt": "x", "user": "\ud800"}, 400, "user"),
    ({"prompt": "x", "stream": True, "stream_options": {"include_usage": "yes"}}, 400, "stream_options.include_usage"),
])
def test_engine_completion_hostile_fields_named(fields, status, param):
    with pytest.raises(APIError) as info:
        parse_completion({"model": M, **fields}, M, vocab_size=100)
    assert (info.value.status, info.value.param) == (status, param)


@pytest.mark.parametrize("messages, param", [
    ([{"role": {"a": 1}, "content": "x"}], "messages[0].role"),
    ([{"role": ["user"], "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": "\ud800"}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}], "messages[0].content"),
])
def test_engine_chat_hostile_messages_named(messages, param):
    with pytest.raises(APIError) as info:
        parse_chat({"model": M, "messages": messages}, M)
    assert info.value.status == 400 and info.value.param == param


def test_engine_prompt_longer_than_any_context_refused_before_tokenizing():
    req = parse_completion({"model": M, "prompt": "x" * 1001}, M)
    with pytest.raises(APIError) as info:
        check_prompt_chars(req, limit=1000, max_model_len=10)
    assert (info.value.status, info.value.param) == (422, "prompt")
    check_prompt_chars(parse_completion({"model": M, "prompt": "x" * 1000}, M), limit=1000, max_model_len=10)
    chat = parse_chat({"model": M, "messages": [{"role": "user", "content": "y" * 600}] * 2}, M)
    with pytest.raises(APIError) as info:
        check_prompt_chars(chat, limit=1000, max_model_len=10)
    assert info.value.param == "messages"
    check_prompt_chars(chat, limit=None, max_model_len=10)  # no vocabulary to bound by: no check
