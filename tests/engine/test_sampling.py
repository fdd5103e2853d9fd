"""Sampler and stopping rules: seeds, top-k/top-p, stop strings, stop ids, max_tokens, ignore_eos."""

from __future__ import annotations

import pytest
import torch

from shoal.engine import LLM, SamplingParams
from shoal.engine.detokenizer import IncrementalDetokenizer
from shoal.engine.sampler import make_generator, sample


@pytest.fixture(scope="module")
def llm(tiny_qwen3):
    return LLM(tiny_qwen3[0], kv_cache_tokens=2048, max_model_len=256)


PROMPT = [11, 22, 33, 44]


def test_same_seed_same_tokens_even_in_a_different_batch(llm):
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=1234, ignore_eos=True)
    [alone] = llm.generate([PROMPT], params)
    batch = llm.generate([[5, 6], PROMPT, [7] * 9], [SamplingParams(temperature=0.8, max_tokens=16), params, params])
    assert batch[1].token_ids == alone.token_ids
    [other] = llm.generate([PROMPT], SamplingParams(temperature=1.0, max_tokens=16, seed=4321, ignore_eos=True))
    assert other.token_ids != alone.token_ids


def test_temperature_zero_is_greedy_and_top_k_one_is_too(llm):
    greedy = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True))[0]
    top1 = llm.generate([PROMPT], SamplingParams(temperature=5.0, top_k=1, max_tokens=10, ignore_eos=True))[0]
    assert top1.token_ids == greedy.token_ids


def test_top_k_and_top_p_keep_only_the_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(400, 1)
    k2 = [SamplingParams(temperature=1.0, top_k=2)] * 400
    assert set(sample(logits, k2, [None] * 400)) == {0, 1}
    # softmax of these logits: 0.64, 0.24, 0.09, ... -> top_p=0.7 keeps the first two
    p = [SamplingParams(temperature=1.0, top_p=0.7)] * 400
    assert set(sample(logits, p, [None] * 400)) == {0, 1}
    tiny_p = [SamplingParams(temperature=1.0, top_p=0.01)] * 50
    assert set(sample(logits[:50], tiny_p, [None] * 50)) == {0}


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(4000, 1)
    params = [SamplingParams(temperature=1.0)] * 4000
    gen = [make_generator(i, "cpu") for i in range(4000)]
    counts = torch.bincount(torch.tensor(sample(logits, params, gen)), minlength=3).float() / 4000
    assert torch.allclose(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


def test_max_tokens_and_stop_token_ids(llm):
    [free] = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    assert len(free.token_ids) == 8 and free.finish_reason == "length"
    stop_at = free.token_ids[3]
    first = free.token_ids.index(stop_at)
    [stopped] = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=8, stop_token_ids=[stop_at]))
    assert stopped.token_ids == free.token_ids[: first + 1] and stopped.finish_reason == "stop"


def test_eos_stops_unless_ignored(llm):
    engine = llm.engine
    eos = next(iter(engine.eos_token_ids))
    [free] = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))
    # Make the model's own greedy choice the end of sequence by declaring it an EOS id.
    engine.eos_token_ids = frozenset({eos, free.token_ids[2]})
    try:
        [stopped] = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=12))
        [ignored] = llm.generate([PROMPT], SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True))
    finally:
        engine.eos_token_ids = frozenset({eos})
    assert stopped.finish_reason == "stop" and stopped.token_ids == free.token_ids[: free.token_ids.index(free.token_ids[2]) + 1]
    assert ignored.token_ids == free.token_ids


class FakeTokenizer:
    """One character per token id (ord), enough to drive the detokenizer."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def test_stop_strings_cut_the_text_and_hold_back_partial_matches():
    detok = IncrementalDetokenizer(FakeTokenizer(), [ord("x")], stop=["END"])
    assert detok.add([ord("a")]) is None and detok.add([ord("b")]) is None
    assert detok.visible_text(finished=False) == ""  # the last len("END") - 1 characters are held back
    assert detok.add([ord("E")]) is None and detok.add([ord("N")]) is None
    assert detok.visible_text(finished=False) == "ab"
    assert detok.add([ord("D")]) == "END"
    assert detok.text == "ab"


def test_stop_string_through_the_engine(smol_llm):
    [free] = smol_llm.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True))
    text = free.text
    word = text.split()[1]
    [out] = smol_llm.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=16, stop=[word]))
    assert out.finish_reason == "stop" and word not in out.text and text.startswith(out.text)
