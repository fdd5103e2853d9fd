"""Llama-family and Qwen3 decoder, written against ops.py and the paged KV cache.

Weights use Hugging Face names, except q/k/v and gate/up which are stored fused
(the loader concatenates them) so each is one matmul.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from shoal.engine import ops
from shoal.engine.config import ModelConfig


@dataclass
class AttentionMetadata:
    """Batch layout: the first `num_decodes` sequences have one query token each, the rest are prefills."""

    slot_mapping: torch.Tensor  # [T] int64
    num_decodes: int
    decode_block_tables: torch.Tensor | None  # [num_decodes, M] int32
    decode_context_lens: torch.Tensor | None  # [num_decodes] int32
    prefill_block_tables: torch.Tensor | None  # [num_prefills, M] int32
    prefill_cu_seqlens_q: torch.Tensor | None  # [num_prefills + 1] int32, offsets after the decode tokens
    prefill_context_lens: torch.Tensor | None  # [num_prefills] int32
    prefill_plan: torch.Tensor | None = None  # ops.prefill_plan of the step, shared by its layers


def build_cos_sin_cache(config: ModelConfig, max_positions: int, device: torch.device | str) -> torch.Tensor:
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    inv_freq, attention_factor = _scale_inv_freq(inv_freq, config.rope_scaling)
    freqs = torch.arange(max_positions, dtype=torch.int64).float()[:, None] * inv_freq[None, :]
    cache = torch.cat([freqs.cos() * attention_factor, freqs.sin() * attention_factor], dim=-1)
    return cache.to(device)


def _scale_inv_freq(inv_freq: torch.Tensor, scaling: dict | None) -> tuple[torch.Tensor, float]:
    if not scaling:
        return inv_freq, 1.0
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / scaling["factor"], 1.0
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled), 1.0
    raise ValueError(f"unsupported rope scaling {kind!r} in config.json (supported: default, linear, llama3)")


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.eps = config.rms_norm_eps
        self.qkv_proj = nn.Linear(config.hidden_size, self.q_size + 2 * self.kv_size, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.q_size, config.hidden_size, bias=False)
        self.qk_norm = config.family == "qwen3"
        if self.qk_norm:
            self.q_norm = nn.Parameter(torch.ones(self.head_dim))
            self.k_norm = nn.Parameter(torch.ones(self.head_dim))

    def forward(self, positions, x, k_cache, v_cache, cos_sin_cache, meta: AttentionMetadata) -> torch.Tensor:
        qkv = F.linear(x, self.qkv_proj.weight, self.qkv_proj.bias)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q = ops.rms_norm(q, self.q_norm, self.eps)
            k = ops.rms_norm(k, self.k_norm, self.eps)
        q, k = ops.rotary_embedding(positions, q, k, cos_sin_cache)
        ops.write_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        nd = meta.num_decodes
        parts = []
        if nd:
            parts.append(
                ops.paged_decode_attention(
                    q[:nd], k_cache, v_cache, meta.decode_block_tables, meta.decode_context_lens, self.scale
                )
            )
        if q.shape[0] > nd:
            parts.append(
                ops.paged_prefill_attention(
                    q[nd:],
                    k_cache,
                    v_cache,
                    meta.prefill_block_tables,
                    meta.prefill_cu_seqlens_q,
                    meta.prefill_context_lens,
                    self.scale,
                    meta.prefill_plan,
                )
            )
        o = parts[0] if len(parts) == 1 else torch.cat(parts)
        return F.linear(o.reshape(-1, self.q_size), self.o_proj.weight)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(ops.silu_and_mul(F.linear(x, self.gate_up_proj.weight)), self.down_proj.weight)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = nn.Parameter(torch.ones(config.hidden_size))
        self.post_attention_layernorm = nn.Parameter(torch.ones(config.hidden_size))
        self.eps = config.rms_norm_eps

    def forward(self, positions, h, residual, k_cache, v_cache, cos_sin_cache, meta):
        if residual is None:
            residual, h = h, ops.rms_norm(h, self.input_layernorm, self.eps)
        else:
            h, residual = ops.rms_norm(h, self.input_layernorm, self.eps, residual)
        h = self.self_attn(positions, h, k_cache, v_cache, cos_sin_cache, meta)
        h, residual = ops.rms_norm(h, self.post_attention_layernorm, self.eps, residual)
        return self.mlp(h), residual


class CausalLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = nn.Parameter(torch.ones(config.hidden_size))
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )

    def forward(self, input_ids, positions, kv_caches, cos_sin_cache, meta: AttentionMetadata) -> torch.Tensor:
        """Hidden states [T, hidden] after the final norm."""
        h = self.embed_tokens(input_ids)
        if meta.prefill_cu_seqlens_q is not None and meta.prefill_plan is None:
            meta = replace(meta, prefill_plan=ops.prefill_plan(meta.prefill_cu_seqlens_q, h.dtype))
        residual = None
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches):
            h, residual = layer(positions, h, residual, k_cache, v_cache, cos_sin_cache, meta)
        h, _ = ops.rms_norm(h, self.norm, self.config.rms_norm_eps, residual)
        return h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, weight).float()
