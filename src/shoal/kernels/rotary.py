"""Rotary position embedding, neox style (as Llama and Qwen3 in HF), from a cos/sin cache.

cos_sin_cache [max_pos, D] = cat(cos[:, :D/2], sin[:, :D/2]). Scaling variants (llama3) live in
how the cache is built (build_cos_sin_cache); the kernel only looks rows up by position.
"""

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(X, Out, t, stride_xt, stride_xh, stride_ot, stride_oh, cos, sin,
                  NUM_HEADS: tl.constexpr, BLOCK_H: tl.constexpr, HALF: tl.constexpr,
                  BLOCK_HALF: tl.constexpr):
    offs_h = tl.arange(0, BLOCK_H)[:, None]
    offs_d = tl.arange(0, BLOCK_HALF)[None, :]
    mask = (offs_h < NUM_HEADS) & (offs_d < HALF)
    src = X + t * stride_xt + offs_h * stride_xh + offs_d
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=mask, other=0.0).to(tl.float32)
    dst = Out + t * stride_ot + offs_h * stride_oh + offs_d
    tl.store(dst, (x1 * cos - x2 * sin).to(Out.dtype.element_ty), mask=mask)
    tl.store(dst + HALF, (x2 * cos + x1 * sin).to(Out.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    Pos, Q, K, Cache, QOut, KOut,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_c,
    stride_qot, stride_qoh, stride_kot, stride_koh,
    NUM_Q_HEADS: tl.constexpr, NUM_K_HEADS: tl.constexpr, BLOCK_HQ: tl.constexpr,
    BLOCK_HK: tl.constexpr, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(Pos + t).to(tl.int64)
    offs = tl.arange(0, BLOCK_HALF)[None, :]
    cmask = offs < HALF
    cos = tl.load(Cache + pos * stride_c + offs, mask=cmask, other=0.0).to(tl.float32)
    sin = tl.load(Cache + pos * stride_c + HALF + offs, mask=cmask, other=0.0).to(tl.float32)
    _rotate_heads(Q, QOut, t, stride_qt, stride_qh, stride_qot, stride_qoh, cos, sin,
                  NUM_Q_HEADS, BLOCK_HQ, HALF, BLOCK_HALF)
    _rotate_heads(K, KOut, t, stride_kt, stride_kh, stride_kot, stride_koh, cos, sin,
                  NUM_K_HEADS, BLOCK_HK, HALF, BLOCK_HALF)


def rotary_embedding(positions, q, k, cos_sin_cache, *, q_out=None, k_out=None):
    """positions [T] int64, q [T,Hq,D], k [T,Hk,D] -> new (q, k), written into q_out/k_out when
    given (which may be q and k themselves: each element is read before it is written)."""
    total, num_q_heads, head_dim = q.shape
    num_k_heads = k.shape[1]
    if q.stride(-1) != 1 or k.stride(-1) != 1:
        raise ValueError("q and k need a contiguous last (head_dim) dimension")
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device) if q_out is None else q_out
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device) if k_out is None else k_out
    if total == 0:
        return q_out, k_out
    half = head_dim // 2
    _rope_kernel[(total,)](
        positions, q, k, cos_sin_cache, q_out, k_out,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos_sin_cache.stride(0),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
        NUM_Q_HEADS=num_q_heads, NUM_K_HEADS=num_k_heads,
        BLOCK_HQ=triton.next_power_of_2(num_q_heads), BLOCK_HK=triton.next_power_of_2(num_k_heads),
        HALF=half, BLOCK_HALF=triton.next_power_of_2(half), num_warps=4,
    )
    return q_out, k_out


def rotary_embedding_ref(positions, q, k, cos_sin_cache):
    half = q.shape[-1] // 2
    cs = cos_sin_cache[positions.long()].float()
    cos, sin = cs[:, None, :half], cs[:, None, half:]

    def rotate(x):
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).to(x.dtype)

    return rotate(q), rotate(k)


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position):
    """Llama 3.1's frequency rescaling: long wavelengths slowed by `factor`, short ones kept,
    a smooth blend between."""
    low_wavelen = original_max_position / low_freq_factor
    high_wavelen = original_max_position / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    middle = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(middle, blended, out)


def rope_inv_freq(head_dim, base, rope_scaling=None):
    """Per-pair angular frequencies (float64); rope_scaling is the HF config dict (only rope_type
    "llama3" changes them; None or "default" does not)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    kind = (rope_scaling or {}).get("rope_type", (rope_scaling or {}).get("type", "default"))
    if kind == "llama3":
        return llama3_inv_freq(inv_freq, rope_scaling["factor"], rope_scaling["low_freq_factor"],
                               rope_scaling["high_freq_factor"],
                               rope_scaling["original_max_position_embeddings"])
    if kind != "default":
        raise ValueError(f"rope_scaling.rope_type {kind!r} is not supported; use 'default' or 'llama3'")
    return inv_freq


def build_cos_sin_cache(head_dim, max_position, base, rope_scaling=None, dtype=torch.float32):
    """[max_position, head_dim] = cat(cos, sin) of each position's angles, computed in float64."""
    inv_freq = rope_inv_freq(head_dim, base, rope_scaling)
    angles = torch.outer(torch.arange(max_position, dtype=torch.float64), inv_freq)
    return torch.cat([angles.cos(), angles.sin()], -1).to(dtype)
