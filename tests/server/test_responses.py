"""Streaming chunks and whole bodies have OpenAI's shape; chunk encoding equals plain JSON encoding."""

import json

from shoal.engine.server.responses import DONE, ChunkEncoder, chat_body, completion_body


def data(chunk: bytes) -> dict:
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
    return json.loads(chunk[6:-2])


def test_completion_delta_is_plain_json():
    enc = ChunkEncoder("completion", "cmpl-1", 123, 'm"odel')
    text = 'quote " newline \n unicode \u00e9 \U0001f600'
    assert data(enc.delta(2, text)) == {
        "id": "cmpl-1", "object": "text_completion", "created": 123, "model": 'm"odel',
        "choices": [{"index": 2, "text": text, "logprobs": None, "finish_reason": None}],
    }
    with_usage = data(enc.delta(0, "hi", (3, 2)))
    assert with_usage["choices"][0]["text"] == "hi"
    assert with_usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert data(enc.finish(0, "length"))["choices"] == [
        {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}]


def test_chat_chunks():
    enc = ChunkEncoder("chat", "chatcmpl-1", 5, "m")
    role = data(enc.role(0))
    assert role["object"] == "chat.completion.chunk"
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert data(enc.delta(0, "hi"))["choices"] == [
        {"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}]
    assert data(enc.finish(0, "stop"))["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    final = data(enc.usage(3, 4))
    assert final["choices"] == [] and final["usage"] == {"prompt_tokens": 3, "completion_tokens": 4,
                                                         "total_tokens": 7}
    assert DONE == b"data: [DONE]\n\n"


def test_bodies():
    body = completion_body("c", 1, "m", [("a", "stop"), ("b", "length")], 3, 2)
    assert [c["text"] for c in body["choices"]] == ["a", "b"] and body["usage"]["total_tokens"] == 5
    body = chat_body("c", 1, "m", [("hey", "stop")], 3, 1)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hey"}
