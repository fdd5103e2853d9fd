"""Build a CausalLM from a Hugging Face folder (config.json + *.safetensors), or with random weights."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import safe_open

from shoal.engine.config import ModelConfig
from shoal.engine.model import CausalLM

# HF module -> (our fused module, index of its shard inside the fused parameter)
_FUSED = {
    "self_attn.q_proj": ("self_attn.qkv_proj", 0),
    "self_attn.k_proj": ("self_attn.qkv_proj", 1),
    "self_attn.v_proj": ("self_attn.qkv_proj", 2),
    "mlp.gate_proj": ("mlp.gate_up_proj", 0),
    "mlp.up_proj": ("mlp.gate_up_proj", 1),
}
_RENAMES = {
    "self_attn.q_norm.weight": "self_attn.q_norm",
    "self_attn.k_norm.weight": "self_attn.k_norm",
    "input_layernorm.weight": "input_layernorm",
    "post_attention_layernorm.weight": "post_attention_layernorm",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_model(
    model_dir: str | Path, config: ModelConfig, dtype: str, device: str, load_format: str = "safetensors", seed: int = 0
) -> CausalLM:
    with torch.device("meta"):
        model = CausalLM(config)
    model = model.to_empty(device=device).to(torch_dtype(dtype))
    if load_format == "dummy":
        _init_random(model, seed)
    else:
        _load_safetensors(model, Path(model_dir), config)
    return model.eval().requires_grad_(False)


def _init_random(model: CausalLM, seed: int) -> None:
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)  # drawn where the model lives: an 8B GPU model in seconds
    for name, param in model.named_parameters():
        if param.dim() == 1:
            param.data.fill_(1.0)
        else:
            param.data.copy_((torch.randn(param.shape, generator=gen, device=device) * 0.02).to(param.dtype))


def _load_safetensors(model: CausalLM, model_dir: Path, config: ModelConfig) -> None:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {model_dir}")
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    fused_shards: dict[str, set[int]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for hf_name in f.keys():
                target = _map_name(hf_name)
                if target is None:
                    continue
                name, shard = target
                if name not in params:
                    if name == "lm_head.weight" and config.tie_word_embeddings:
                        continue  # some tied checkpoints still store a copy
                    raise ValueError(f"{file.name}: unexpected tensor {hf_name!r} for {config.architecture}")
                tensor = f.get_tensor(hf_name)
                _copy_into(params[name], name, shard, tensor, config, hf_name, file.name)
                if shard is None:
                    loaded.add(name)
                else:
                    fused_shards.setdefault(name, set()).add(shard)
    expected_shards = {"qkv_proj": 3, "gate_up_proj": 2}
    for name, shards in fused_shards.items():
        if len(shards) == expected_shards[name.split(".")[-2]]:
            loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        hint = " (config.json says tie_word_embeddings=false)" if "lm_head.weight" in missing else ""
        raise ValueError(f"weights missing from {model_dir}: {', '.join(missing[:5])}{hint}")


def _map_name(hf_name: str) -> tuple[str, int | None] | None:
    if hf_name in ("model.embed_tokens.weight", "lm_head.weight"):
        return hf_name.removeprefix("model."), None
    if hf_name == "model.norm.weight":
        return "norm", None
    m = _LAYER.match(hf_name)
    if not m:
        return None if hf_name.endswith("rotary_emb.inv_freq") else (hf_name, None)
    layer, rest = m.groups()
    prefix = f"layers.{layer}."
    if rest.endswith("rotary_emb.inv_freq"):
        return None
    if rest in _RENAMES:
        return prefix + _RENAMES[rest], None
    module, _, kind = rest.rpartition(".")
    if module in _FUSED:
        fused, shard = _FUSED[module]
        return f"{prefix}{fused}.{kind}", shard
    return prefix + rest, None


def _copy_into(param, name: str, shard, tensor, config: ModelConfig, hf_name: str, file_name: str) -> None:
    if shard is None:
        target = param.data
    else:
        target = param.data.narrow(0, *_shard_range(name, shard, config))
    if tuple(target.shape) != tuple(tensor.shape):
        raise ValueError(
            f"{file_name}: shape mismatch for {hf_name}: checkpoint has {tuple(tensor.shape)}, "
            f"config.json implies {tuple(target.shape)}"
        )
    target.copy_(tensor.to(target.dtype))


def _shard_range(name: str, shard: int, config: ModelConfig) -> tuple[int, int]:
    if ".gate_up_proj." in name:
        return shard * config.intermediate_size, config.intermediate_size
    q = config.num_heads * config.head_dim
    kv = config.num_kv_heads * config.head_dim
    return ((0, q), (q, kv), (q + kv, kv))[shard]
