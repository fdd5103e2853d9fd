"""Bad input gets an error that names the field; bad model folders get an error that names the file."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from shoal.engine import LLM, SamplingParams


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"stop": 5}, "stop"),
        ({"stop": ["ok", 3]}, "stop"),
        ({"stop_token_ids": ["a"]}, "stop_token_ids"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_sampling_params_name_the_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs)


def test_stop_accepts_one_string():
    assert SamplingParams(stop="\n").stop == ["\n"]


@pytest.fixture(scope="module")
def llm(tiny_llama):
    return LLM(tiny_llama[0], kv_cache_tokens=256, max_model_len=64)


def test_prompt_longer_than_the_context(llm):
    with pytest.raises(ValueError, match="prompt.*max_model_len=64"):
        llm.generate([[5] * 64], SamplingParams())


def test_bad_prompts(llm):
    with pytest.raises(ValueError, match="prompt must not be empty"):
        llm.generate([[]], SamplingParams())
    with pytest.raises(ValueError, match="prompt: token id 9999"):
        llm.generate([[5, 9999]], SamplingParams())
    with pytest.raises(ValueError, match="prompt: this model folder has no tokenizer.json"):
        llm.generate(["text"], SamplingParams())
    with pytest.raises(ValueError, match="params"):
        llm.generate([[5], [6]], [SamplingParams()])
    # nothing was left behind by the failed calls
    assert not llm.engine.has_unfinished() and llm.engine.block_manager.usage == 0.0


def test_generation_stops_at_the_context_length(llm):
    [out] = llm.generate([[5] * 60], SamplingParams(temperature=0.0, max_tokens=50, ignore_eos=True))
    assert len(out.token_ids) == 4 and out.finish_reason == "length"


def test_engine_config_names_the_field(tiny_llama):
    with pytest.raises(ValueError, match="dtype"):
        LLM(tiny_llama[0], dtype="int8")
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        LLM(tiny_llama[0], max_num_batched_tokens=8, block_size=16)
    with pytest.raises(ValueError, match="kv_cache_tokens"):
        LLM(tiny_llama[0], kv_cache_tokens=100, max_model_len=200)
    with pytest.raises(ValueError, match="device 'tpu0'"):
        LLM(tiny_llama[0], device="tpu0")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        LLM(tiny_llama[0], kv_cache_tokens=4096, max_model_len=4096)


def test_missing_files(tmp_path, tiny_llama):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        LLM(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        LLM(tmp_path)
    shutil.copy(tiny_llama[0] / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        LLM(tmp_path, kv_cache_tokens=512, max_model_len=128)


def test_unsupported_architecture(tmp_path, tiny_llama):
    config = json.loads((tiny_llama[0] / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unsupported architecture 'GPT2LMHeadModel'.*LlamaForCausalLM"):
        LLM(tmp_path)


def test_shape_mismatch_and_missing_weights(tmp_path, tiny_llama):
    shutil.copy(tiny_llama[0] / "config.json", tmp_path / "config.json")
    tensors = load_file(tiny_llama[0] / "model.safetensors")
    bad = dict(tensors)
    bad["model.layers.1.mlp.up_proj.weight"] = bad["model.layers.1.mlp.up_proj.weight"][:, :10].contiguous()
    save_file(bad, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatch for model.layers.1.mlp.up_proj.weight.*\(128, 10\)"):
        LLM(tmp_path, kv_cache_tokens=512, max_model_len=128)
    missing = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    save_file(missing, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight.*tie_word_embeddings"):
        LLM(tmp_path, kv_cache_tokens=512, max_model_len=128)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_matches_transformers_in_the_same_dtype(tiny_llama, dtype, hf_greedy):
    import torch
    from transformers import AutoModelForCausalLM

    prompt = [7, 8, 9, 10, 11, 12]
    hf = AutoModelForCausalLM.from_pretrained(tiny_llama[0], dtype=getattr(torch, dtype)).eval()
    llm = LLM(tiny_llama[0], dtype=dtype, kv_cache_tokens=256, max_model_len=64)
    assert llm.engine.runner.kv_caches[0][0].dtype == getattr(torch, dtype)
    [out] = llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    assert out.token_ids == hf_greedy(hf, prompt, 8)
