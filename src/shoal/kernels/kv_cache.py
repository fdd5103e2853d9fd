"""Write new tokens' K and V into their slots of the paged cache (slot = block * page + offset).

A negative slot means "no slot" (padding rows of a captured CUDA graph) and is skipped.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _write_kv_kernel(
    K, V, KCache, VCache, Slots,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    PAGE: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(Slots + t).to(tl.int64)
    blk = slot // PAGE
    off = slot % PAGE
    offs_h = tl.arange(0, BLOCK_H)[:, None]
    offs_d = tl.arange(0, BLOCK_D)[None, :]
    mask = (offs_h < NUM_HEADS) & (offs_d < HEAD_DIM) & (slot >= 0)
    k = tl.load(K + t * stride_kt + offs_h * stride_kh + offs_d, mask=mask)
    v = tl.load(V + t * stride_vt + offs_h * stride_vh + offs_d, mask=mask)
    tl.store(KCache + blk * stride_kcb + off * stride_kcs + offs_h * stride_kch + offs_d, k, mask=mask)
    tl.store(VCache + blk * stride_vcb + off * stride_vcs + offs_h * stride_vch + offs_d, v, mask=mask)


def write_kv(k, v, k_cache, v_cache, slot_mapping) -> None:
    """k, v [T,Hk,D] (any strides with a contiguous last dim); caches [num_blocks, page, Hk, D]."""
    total, num_heads, head_dim = k.shape
    if total == 0:
        return
    if k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("k and v need a contiguous last (head_dim) dimension")
    if k.dtype != k_cache.dtype:
        raise ValueError(f"k dtype {k.dtype} differs from the cache's {k_cache.dtype}: cast before writing")
    _write_kv_kernel[(total,)](
        k, v, k_cache, v_cache, slot_mapping,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, BLOCK_H=triton.next_power_of_2(num_heads),
        BLOCK_D=triton.next_power_of_2(head_dim), PAGE=k_cache.shape[1], num_warps=4,
    )


def write_kv_ref(k, v, k_cache, v_cache, slot_mapping) -> None:
    page = k_cache.shape[1]
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache[slots // page, slots % page] = k[keep]
    v_cache[slots // page, slots % page] = v[keep]
