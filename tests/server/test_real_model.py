"""SmolLM2-135M-Instruct (real weights, CPU) behind `shoal serve`, driven by the real `openai` client: completions
and chat, plain and streaming, one by one and concurrent, give exactly the text and token counts of LLM.generate
with the same seed."""

from __future__ import annotations

import asyncio

import openai
import pytest
from serverkit import serving

MODEL = "smollm2-135m-instruct"
CHAT = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name three colours."}]
TOKENS = 6  # each token costs a real-model step on 2 shared cores


@pytest.fixture(scope="module")
def real_server(model_dir):
    with serving(model_dir, "--max-num-seqs", "8") as proc:
        yield proc


@pytest.fixture(scope="module")
def real_llm(model_dir):
    from shoal.engine import LLM

    return LLM(str(model_dir), max_num_seqs=8)


@pytest.fixture(scope="module")
def real_client(real_server):
    return openai.OpenAI(base_url=real_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def generate(llm, prompt, **sampling):
    from shoal.engine import SamplingParams

    out = llm.generate([prompt], SamplingParams(max_tokens=TOKENS, **sampling))[0]
    return out.text, len(out.token_ids)


def test_completion_plain_and_stream(real_client, real_llm):
    prompt = "The capital of France is"
    sampling = {"temperature": 0.9, "top_p": 0.9, "seed": 1234}
    text, n = generate(real_llm, prompt, **sampling)
    done = real_client.completions.create(model=MODEL, prompt=prompt, max_tokens=TOKENS, **sampling)
    assert done.choices[0].text == text and done.usage.completion_tokens == n
    assert done.usage.prompt_tokens == len(real_llm.tokenizer.encode(prompt))
    chunks = list(real_client.completions.create(model=MODEL, prompt=prompt, max_tokens=TOKENS, stream=True,
                                                 stream_options={"include_usage": True}, **sampling))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == n
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == done.choices[0].finish_reason


def test_chat_plain_and_stream(real_client, real_llm):
    text, n = generate(real_llm, real_llm.tokenizer.apply_chat_template(CHAT), temperature=0.0)
    assert text.strip()  # the instruct model answers something
    done = real_client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=TOKENS, temperature=0.0)
    assert done.choices[0].message.content == text and done.usage.completion_tokens == n
    chunks = list(real_client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=TOKENS,
                                                      temperature=0.0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text


async def test_concurrent(real_server, real_llm):
    from shoal.engine import SamplingParams

    client = openai.AsyncOpenAI(base_url=real_server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    prompts = [f"My favourite number is {i} because" for i in range(4)]
    params = [SamplingParams(temperature=0.7, seed=i, max_tokens=TOKENS) for i in range(4)]
    expected = [o.text for o in real_llm.generate(prompts, params)]

    async def one(i):
        stream = await client.completions.create(model=MODEL, prompt=prompts[i], max_tokens=TOKENS, temperature=0.7,
                                                 seed=i, stream=True)
        return "".join([c.choices[0].text async for c in stream])

    assert await asyncio.gather(*(one(i) for i in range(4))) == expected
