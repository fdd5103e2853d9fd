"""The model's math, one function per operation (the contract in INTERFACES.md).

Each function here is the PyTorch implementation, correct on CPU and any device.
On CUDA the Triton kernels of shoal.kernels run instead, behind the same signatures
(SHOAL_KERNELS=0 keeps the PyTorch code there too, for comparisons).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

USE_KERNELS = os.environ.get("SHOAL_KERNELS", "1") != "0"


def _kernels(t: torch.Tensor):
    """shoal.kernels when `t` is on CUDA (imported only there: it needs Triton), else None."""
    if not USE_KERNELS or t.device.type != "cuda":
        return None
    import shoal.kernels

    return shoal.kernels


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm in float32 like Hugging Face; with `residual`, adds it first and returns (out, x + residual)."""
    if (kernels := _kernels(x)) is not None:
        return kernels.rms_norm(x, weight, eps, residual)
    if residual is not None:
        x = x + residual
        residual = x
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    out = weight * h.to(x.dtype)
    return out if residual is None else (out, residual)


def rotary_embedding(
    positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos_sin_cache: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neox-style rotary embedding; cos_sin_cache rows are cat(cos[:D/2], sin[:D/2])."""
    if (kernels := _kernels(q)) is not None:
        return kernels.rotary_embedding(positions, q, k, cos_sin_cache)
    half = cos_sin_cache.shape[-1] // 2
    cos_sin = cos_sin_cache[positions]
    cos = cos_sin[:, None, :half].repeat(1, 1, 2).to(q.dtype)
    sin = cos_sin[:, None, half:].repeat(1, 1, 2).to(q.dtype)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if (kernels := _kernels(x)) is not None:
        return kernels.silu_and_mul(x)
    half = x.shape[-1] // 2
    return F.silu(x[..., :half]) * x[..., half:]


def write_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """Scatter new K/V [T, Hk, D] into the paged caches [num_blocks, block_size, Hk, D] at `slot_mapping`."""
    if (kernels := _kernels(k)) is not None:  # also skips negative slots (padding rows of CUDA graphs)
        return kernels.write_kv(k.to(k_cache.dtype), v.to(v_cache.dtype), k_cache, v_cache, slot_mapping)
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slot_mapping, k.to(k_cache.dtype))
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slot_mapping, v.to(v_cache.dtype))


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One query per sequence attending to its `context_lens[b]` cached tokens: [B, Hq, D]."""
    if (kernels := _kernels(q)) is not None:
        return kernels.paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale)
    batch, num_heads, head_dim = q.shape
    max_len = int(context_lens.max())
    k, v = _gather(k_cache, v_cache, block_tables, max_len)  # [B, L, Hk, D]
    valid = torch.arange(max_len, device=q.device)[None, :] < context_lens[:, None].to(torch.long)
    mask = valid[:, None, None, :]  # [B, 1, 1, L]
    out = F.scaled_dot_product_attention(
        q[:, :, None, :],
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        scale=scale,
        enable_gqa=num_heads != k.shape[2],
    )
    return out[:, :, 0, :]


def paged_prefill_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    plan: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention for packed queries [T, Hq, D]; query i of sequence b sits at context_lens[b] - q_len_b + i.
    `plan`: prefill_plan(cu_seqlens_q, q.dtype), computed once for all layers of a step."""
    if (kernels := _kernels(q)) is not None:
        return kernels.paged_prefill_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, scale,
                                               tile_starts=plan)
    out = torch.empty_like(q)
    num_heads = q.shape[1]
    starts = cu_seqlens_q.tolist()
    lens = context_lens.tolist()
    for b in range(len(lens)):
        s, e, ctx = starts[b], starts[b + 1], lens[b]
        k, v = _gather(k_cache, v_cache, block_tables[b : b + 1], ctx)
        q_pos = torch.arange(ctx - (e - s), ctx, device=q.device)
        mask = torch.arange(ctx, device=q.device)[None, :] <= q_pos[:, None]  # [q, ctx]
        o = F.scaled_dot_product_attention(
            q[s:e].transpose(0, 1)[None],
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask[None, None],
            scale=scale,
            enable_gqa=num_heads != k.shape[2],
        )
        out[s:e] = o[0].transpose(0, 1)
    return out


def prefill_plan(cu_seqlens_q: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """What paged_prefill_attention derives from the sequences' query lengths alone (the kernel's tile starts),
    shared by every layer of a step; None where the PyTorch code runs (it needs none)."""
    if (kernels := _kernels(cu_seqlens_q)) is None:
        return None
    return kernels.prefill_tile_starts(cu_seqlens_q, kernels.tile_block_m(dtype))


def _gather(
    k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous K/V [B, length, Hk, D] read through block tables."""
    block_size = k_cache.shape[1]
    num = -(-length // block_size)
    ids = block_tables[:, :num].reshape(-1).to(torch.long)
    shape = (block_tables.shape[0], num * block_size, *k_cache.shape[2:])
    # index_select copies whole pages and is about twice as fast as advanced indexing on CPU
    k = k_cache.index_select(0, ids).view(shape)[:, :length]
    v = v_cache.index_select(0, ids).view(shape)[:, :length]
    return k, v
