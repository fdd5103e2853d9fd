"""The real `openai` client against a real `shoal serve` of the tiny model: concurrency with outputs equal to
LLM.generate, n and batched prompts, OpenAI errors, metrics that count every request served, aborted streams
that free their KV."""

from __future__ import annotations

import asyncio

import openai
import pytest
from serverkit import MAX_NUM_SEQS, TINY, call, crash_lines, histogram_count, scrape, successes, wait_for

CHAT = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name three colours."}]


def reference(llm, prompts, params):
    return [o.text for o in llm.generate(prompts, params)]


def test_models_health_ready(server, client):
    assert [m.id for m in client.models.list().data] == [TINY]
    assert call("GET", server.url + "/health").status == 200
    assert call("GET", server.url + "/ready").json() == {"status": "ready"}


async def test_many_concurrent_requests_match_llm_generate(aclient, tiny_llm):
    from shoal.engine import SamplingParams

    n = 48  # more than the engine's 32 slots: some wait, all must still match
    prompts = [f"Write a short line about the number {i}." for i in range(n)]
    expected = reference(tiny_llm, prompts, [SamplingParams(temperature=0.8, seed=100 + i, max_tokens=12)
                                             for i in range(n)])

    async def one(i: int) -> str:
        kw = dict(model=TINY, prompt=prompts[i], max_tokens=12, temperature=0.8, seed=100 + i)
        if i % 2:
            return "".join([c.choices[0].text async for c in await aclient.completions.create(stream=True, **kw)])
        return (await aclient.completions.create(**kw)).choices[0].text

    assert await asyncio.gather(*(one(i) for i in range(n))) == expected


async def test_concurrent_chat_streams_match(aclient, tiny_llm):
    from shoal.engine import SamplingParams

    convs = [[{"role": "user", "content": f"Question {i}?"}] for i in range(8)]
    prompts = [tiny_llm.tokenizer.apply_chat_template(c) for c in convs]
    expected = reference(tiny_llm, prompts, SamplingParams(temperature=0.0, max_tokens=10))

    async def one(conv) -> str:
        stream = await aclient.chat.completions.create(model=TINY, messages=conv, max_tokens=10, temperature=0.0,
                                                       stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert await asyncio.gather(*(one(c) for c in convs)) == expected


def test_n_and_batched_prompts(client, tiny_llm):
    from shoal.engine import SamplingParams

    done = client.completions.create(model=TINY, prompt=["One", "Two"], n=2, max_tokens=5, temperature=0.0)
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    one, two = reference(tiny_llm, ["One", "Two"], SamplingParams(temperature=0.0, max_tokens=5))
    assert [c.text for c in done.choices] == [one, one, two, two]
    assert done.usage.prompt_tokens == len(tiny_llm.tokenizer.encode("One")) + len(tiny_llm.tokenizer.encode("Two"))
    echoed = client.completions.create(model=TINY, prompt="One", max_tokens=5, temperature=0.0, echo=True)
    assert echoed.choices[0].text == "One" + one


def test_openai_errors(server, client):
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="gpt-4o", prompt="x")
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=CHAT)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=TINY, prompt="x", extra_body={"bogus": 1})
    assert info.value.body["param"] == "bogus"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=TINY, messages=CHAT, logprobs=True)
    assert info.value.body["param"] == "logprobs"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model=TINY, messages=CHAT, temperature=3.0)
    assert info.value.body["param"] == "temperature"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.completions.create(model=TINY, prompt="x", max_tokens=10**6)
    assert info.value.body["param"] == "max_tokens"
    bad = call("POST", server.url + "/v1/completions", raw=b"{not json")
    assert bad.status == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_metrics_parse_and_histograms_count_requests_served(server, client):
    assert wait_for(lambda: scrape(server.url)["shoal:num_requests_running"] == 0, 30)
    before = scrape(server.url)
    for i in range(3):
        client.completions.create(model=TINY, prompt=f"Count {i}", max_tokens=4, extra_body={"ignore_eos": True})
    list(client.chat.completions.create(model=TINY, messages=CHAT, max_tokens=4, stream=True,
                                        extra_body={"ignore_eos": True}))
    after = scrape(server.url)
    for name in ("e2e_request_latency_seconds", "time_to_first_token_seconds", "request_queue_time_seconds"):
        assert histogram_count(after, name) - histogram_count(before, name) == 4, name
    assert successes(after) - successes(before) == 4
    assert after["shoal:request_success_total{finished_reason=length}"] - \
        before["shoal:request_success_total{finished_reason=length}"] == 4
    assert after["shoal:generation_tokens_total"] - before["shoal:generation_tokens_total"] == 16
    assert histogram_count(after, "inter_token_latency_seconds") - \
        histogram_count(before, "inter_token_latency_seconds") == 12
    assert after["shoal:runtime_max_num_seqs"] == MAX_NUM_SEQS and after["shoal:kv_cache_usage_perc"] == 0
    assert histogram_count(after, "iteration_tokens_total") > histogram_count(before, "iteration_tokens_total")


async def test_200_streams_aborted_midway_free_kv(server, aclient):
    async def abort_midway(i: int) -> int:
        stream = await aclient.completions.create(model=TINY, prompt=f"Story {i}:", max_tokens=500, stream=True,
                                                  extra_body={"ignore_eos": True})
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
        await stream.close()
        return seen

    before = scrape(server.url)
    for batch in range(4):
        assert await asyncio.gather(*(abort_midway(50 * batch + i) for i in range(50))) == [3] * 50
    assert wait_for(lambda: scrape(server.url)["shoal:kv_cache_usage_perc"] == 0, 30)
    after = scrape(server.url)
    assert after["shoal:num_requests_running"] == 0 and after["shoal:num_requests_waiting"] == 0
    aborted = "shoal:request_success_total{finished_reason=abort}"
    assert after[aborted] - before[aborted] == 200
    assert call("GET", server.url + "/health").status == 200
    assert crash_lines(server.log()) == []
