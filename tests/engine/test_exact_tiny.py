"""Greedy tokens identical to transformers' generate (fp32, CPU) on tiny random Llama and Qwen3 models."""

from __future__ import annotations

import pytest
import torch

from shoal.engine import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)


def random_prompts(lengths, seed=0, vocab=512):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


@pytest.fixture(params=["tiny_llama", "tiny_qwen3"])
def tiny(request):
    return request.getfixturevalue(request.param)


def test_one_request_alone(tiny, hf_greedy):
    path, hf = tiny
    llm = LLM(path, kv_cache_tokens=2048, max_model_len=512)
    [prompt] = random_prompts([37])
    [out] = llm.generate([prompt], GREEDY)
    assert out.token_ids == hf_greedy(hf, prompt, 24)
    assert out.finish_reason == "length" and out.prompt_token_ids == prompt


def test_many_requests_of_different_lengths_together(tiny, hf_greedy):
    path, hf = tiny
    llm = LLM(path, kv_cache_tokens=4096, max_model_len=512)
    prompts = random_prompts([1, 5, 16, 17, 33, 70, 150, 9], seed=1)
    outs = llm.generate(prompts, GREEDY)
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == hf_greedy(hf, prompt, 24)
