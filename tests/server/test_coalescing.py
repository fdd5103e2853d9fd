"""Several tokens in one streamed chunk: outputs that arrive while a request is busy come out as one output
(engine_process.py), `--stream-interval` gathers tokens per chunk; either way the chunks concatenate to exactly
LLM.generate's text and usage counts tokens, not chunks. Also the child pipe's framing and the overhead
benchmark's token count."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import openai
import pytest
from serverkit import TINY, serving

from shoal.engine.server.engine_pipe import split_messages, write_message

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_pipe_holds_many_steps_without_a_reader():
    import os
    import pickle

    from shoal.engine.server.engine_pipe import PIPE_BYTES, enlarge

    read_fd, write_fd = os.pipe()
    try:
        size = enlarge(write_fd)
        max_size = int(open("/proc/sys/fs/pipe-max-size").read())
        assert size >= min(PIPE_BYTES, max_size) > 65536
        os.set_blocking(write_fd, False)  # a write that would block raises instead of hanging the test
        # a decode step of 64 requests as the child sends it (engine_process.py): numbers, tokens, texts
        step = ("step", list(range(1000, 1064)), list(range(5000, 5064)), None, ["word"] * 64, [], [], None,
                (64, 0, 0.1, 0, 0, 0, 0, 0, None, 1), 0)
        assert len(pickle.dumps(step, protocol=pickle.HIGHEST_PROTOCOL)) < 1024
        for _ in range(size // 4096 - 1):  # a page a write at most: hundreds of steps fit, the engine need not wait
            write_message(write_fd, step)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_split_messages_keeps_a_partial_message_for_the_next_read():
    import os
    import threading

    read_fd, write_fd = os.pipe()
    messages = [("step", [("r1", [1, 2], "ab", False, None, (0.0, None, None, None))]), ("stopped",), "x" * 70000]

    def write_all() -> None:  # more than a pipe holds: written while the test reads
        for message in messages:
            write_message(write_fd, message)
        os.close(write_fd)

    writer = threading.Thread(target=write_all)
    writer.start()
    data = b"".join(iter(lambda: os.read(read_fd, 65536), b""))
    writer.join()
    os.close(read_fd)
    buffer, got = bytearray(), []
    for cut in range(0, len(data), 1000):  # arrives in arbitrary pieces
        buffer += data[cut:cut + 1000]
        got += split_messages(buffer)
    assert got == messages and buffer == bytearray()


async def test_outputs_that_arrive_together_come_out_as_one(tiny_model_dir, tiny_llm):
    from shoal.engine import SamplingParams
    from shoal.engine.server.engine_process import EngineProcess

    params = SamplingParams(temperature=0.7, seed=7, max_tokens=16, ignore_eos=True)
    expected = tiny_llm.generate(["Coalesce these tokens"], params)[0]
    engine = EngineProcess(tiny_model_dir, max_num_seqs=4)
    await engine.start()
    try:
        outputs = engine.generate("r1", "Coalesce these tokens", params)
        first = await outputs.__anext__()
        for _ in range(600):  # the engine finishes the request while we do not read
            stats = engine.stats()
            if stats.num_running == 0 and stats.num_waiting == 0:
                break
            await asyncio.sleep(0.05)
        rest = [out async for out in outputs]
    finally:
        await engine.shutdown()
    assert len(rest) == 1 and rest[0].finished and rest[0].finish_reason == "length"
    assert first.new_token_ids + rest[0].new_token_ids == expected.token_ids
    assert first.new_text + rest[0].new_text == expected.text == rest[0].text
    assert len(rest[0].new_token_ids) == len(expected.token_ids) - len(first.new_token_ids) > 1


@pytest.fixture(scope="module")
def gathering_server(tiny_model_dir):
    with serving(tiny_model_dir, "--served-model-name", TINY, "--max-num-seqs", "8", "--engine-process", "true",
                 "--stream-interval", "3") as proc:
        yield proc


async def test_multi_token_chunks_concatenate_to_llm_generate(gathering_server, tiny_llm):
    from shoal.engine import SamplingParams

    client = openai.AsyncOpenAI(base_url=gathering_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    prompts = [f"Tell me about the number {i}." for i in range(8)]
    lengths = [1 + 3 * i for i in range(8)]  # includes a one-token and non-multiple-of-3 outputs
    expected = [tiny_llm.generate([p], SamplingParams(temperature=0.8, seed=50 + i, max_tokens=n, ignore_eos=True))[0]
                for i, (p, n) in enumerate(zip(prompts, lengths))]

    async def one(i: int):
        stream = await client.completions.create(model=TINY, prompt=prompts[i], max_tokens=lengths[i],
                                                 temperature=0.8, seed=50 + i, stream=True, extra_body={
                                                     "ignore_eos": True}, stream_options={"include_usage": True})
        return [chunk async for chunk in stream]

    for chunks, want, n in zip(await asyncio.gather(*(one(i) for i in range(8))), expected, lengths):
        texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
        assert "".join(texts) == want.text
        assert len(texts) <= -(-n // 3)  # at most one chunk per 3 tokens, the last may hold fewer
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert chunks[-1].usage.completion_tokens == len(want.token_ids) == n


async def test_chat_chunks_concatenate_to_llm_generate(gathering_server, tiny_llm):
    from shoal.engine import SamplingParams

    client = openai.AsyncOpenAI(base_url=gathering_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    conversation = [{"role": "user", "content": "Count slowly."}]
    want = tiny_llm.generate([tiny_llm.tokenizer.apply_chat_template(conversation)],
                             SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True))[0]
    stream = await client.chat.completions.create(model=TINY, messages=conversation, max_tokens=10, temperature=0.0,
                                                  stream=True, extra_body={"ignore_eos": True},
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.text
    assert chunks[-1].usage.completion_tokens == 10


def test_overhead_benchmark_counts_tokens_from_usage():
    spec = importlib.util.spec_from_file_location("serve_overhead", ROOT / "bench" / "serve_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def event(payload) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    text = event({"choices": [{"index": 0, "text": "three tokens here", "finish_reason": None}]})
    finish = event({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    usage = event({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
    assert module.stream_summary(text + finish + usage + b"data: [DONE]\n\n") == (3, True, 1)  # 3 tokens, 1 chunk
    assert module.stream_summary(text + finish + usage)[:2] == (0, False)  # no [DONE]: cut short
    assert module.stream_summary(text + usage + b"data: [DONE]\n\n")[1] is False  # no finish_reason


async def test_a_dead_engine_process_ends_its_streams_with_an_error(tiny_model_dir):
    from shoal.engine import SamplingParams
    from shoal.engine.server.engine_process import EngineProcess

    engine = EngineProcess(tiny_model_dir, max_num_seqs=4)
    await engine.start()
    try:
        outputs = engine.generate("r1", "Never finishes", SamplingParams(max_tokens=1000, ignore_eos=True))
        await outputs.__anext__()
        engine._proc.kill()  # the child dies mid-request (OOM killer, a crash in a kernel)
        with pytest.raises(RuntimeError, match="engine process"):
            async for _ in outputs:
                pass
        assert not engine.is_running
        with pytest.raises(RuntimeError, match="engine process failed"):
            await engine.generate("r2", "x", SamplingParams(max_tokens=1)).__anext__()
    finally:
        await engine.shutdown()
