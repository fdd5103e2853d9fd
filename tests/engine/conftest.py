"""Tiny random Llama and Qwen3 folders saved by transformers, shared by the engine tests."""

from __future__ import annotations

import pytest
import torch

TINY_COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    initializer_range=0.2,  # peaked logits: greedy choices are not near-ties
    bos_token_id=1,
    eos_token_id=2,
)


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """One torch thread: the CI box is small and shared, and two threads fighting for it are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_tiny(path, family: str, **overrides):
    """Write a random tiny model folder (config.json + model.safetensors) and return (path, hf_model)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    kwargs = {**TINY_COMMON, **overrides}
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**kwargs))
    else:
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=32, **kwargs))
    model.eval()
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return save_tiny(
        tmp_path_factory.mktemp("tiny-llama"),
        "llama",
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-qwen3"), "qwen3", tie_word_embeddings=True)


def _hf_greedy(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Hugging Face greedy decoding that runs past EOS (like ignore_eos=True; min_new_tokens would ban EOS)."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None  # else generate() fills the None above back in from the model
    try:
        with torch.no_grad():
            out = model.generate(
                torch.tensor([prompt_ids]),
                attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                generation_config=config,
            )
    finally:
        model.generation_config.eos_token_id = saved
    ids = out[0, len(prompt_ids) :].tolist()
    assert len(ids) == max_new_tokens, "transformers stopped early"
    return ids


@pytest.fixture(scope="session")
def hf_greedy():
    """transformers' greedy generate as a function: (hf_model, prompt_ids, n) -> n token ids."""
    return _hf_greedy


@pytest.fixture(scope="session")
def smol_llm_dir():
    """The real SmolLM2-135M-Instruct folder (converted once into the cache)."""
    from shoal.engine.model_prepare import prepare

    return prepare("smollm2")


@pytest.fixture(scope="session")
def smol_llm(smol_llm_dir):
    from shoal.engine import LLM

    return LLM(smol_llm_dir, max_model_len=1024, kv_cache_tokens=4096)
