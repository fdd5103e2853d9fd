"""Paged decode attention: one query token per sequence over its paged KV cache.

Each program owns one (sequence, KV head, split): it reads that head's K/V once for all the
query heads of its GQA group, so the cache is read exactly once in total. When batch x KV heads
is too small to fill the GPU, each sequence's context is split evenly across programs (split-KV)
and a second small kernel merges the partial results by their log-sum-exp.

The split count depends only on host-known shapes (batch, block-table width), never on the
lengths, so the launch is the same for every step and can be captured in a CUDA graph.
"""

import math

import torch
import triton
import triton.language as tl

from ._device import next_pow2, num_sms

LOG2E = 1.4426950408889634


def dot_precision(dtype: torch.dtype) -> str:
    # float32 inputs stay exact (tf32 would round them to 10 bits): fp32 runs must match the CPU path.
    return "ieee" if dtype == torch.float32 else "tf32"


# Values that change from step to step are not specialised on: each new specialisation is a
# compile (about a second) in the middle of serving.
@triton.jit(do_not_specialize=["num_splits", "stride_bt"])
def _decode_kernel(
    Q, K, V, BlockTables, Lens, Out, PartOut, PartLse,
    scale_log2, num_splits,
    stride_qb, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt,
    stride_ob, stride_oh,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_N: tl.constexpr, DIRECT: tl.constexpr, PRECISION: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    num_q_heads = tl.num_programs(1) * GROUP

    seq_len = tl.load(Lens + b)
    # Splits are whole tiles so that only the last tile of a sequence is ragged.
    per_split = tl.cdiv(tl.cdiv(seq_len, num_splits), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(seq_len, start + per_split)

    offs_g = tl.arange(0, GROUP_PAD)
    offs_d = tl.arange(0, HEAD_DIM)
    heads = kvh * GROUP + offs_g
    mask_g = offs_g < GROUP
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_g[:, None], other=0.0)

    m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    l_i = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
    bt_row = BlockTables + b.to(tl.int64) * stride_bt
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        page = tl.load(bt_row + offs_n // PAGE, mask=mask_n, other=0).to(tl.int64)
        in_page = offs_n % PAGE
        k = tl.load(K + page[:, None] * stride_kb + in_page[:, None] * stride_ks
                    + kvh * stride_kh + offs_d[None, :], mask=mask_n[:, None], other=0.0)
        v = tl.load(V + page[:, None] * stride_vb + in_page[:, None] * stride_vs
                    + kvh * stride_vh + offs_d[None, :], mask=mask_n[:, None], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new

    has = l_i > 0
    out = tl.where(has[:, None], acc / tl.where(has, l_i, 1.0)[:, None], 0.0)
    if DIRECT:  # a single split writes the output itself
        tl.store(Out + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                 out.to(Out.dtype.element_ty), mask=mask_g[:, None])
    else:
        row = (b * num_q_heads + heads) * num_splits + split
        tl.store(PartOut + row[:, None] * HEAD_DIM + offs_d[None, :], out, mask=mask_g[:, None])
        lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
        tl.store(PartLse + row, lse, mask=mask_g)


@triton.jit(do_not_specialize=["num_splits"])
def _merge_kernel(
    PartOut, PartLse, Out, stride_ob, stride_oh, num_splits,
    SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    num_q_heads = tl.num_programs(1)
    offs_s = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_s = offs_s < num_splits
    rows = (b * num_q_heads + h) * num_splits + offs_s
    lse = tl.load(PartLse + rows, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)  # an empty sequence: all weights are zero
    w = tl.exp2(lse - m)
    denom = tl.sum(w, 0)
    o = tl.load(PartOut + rows[:, None] * HEAD_DIM + offs_d[None, :], mask=mask_s[:, None], other=0.0)
    out = tl.sum(o * w[:, None], 0) / tl.where(denom > 0, denom, 1.0)
    tl.store(Out + b * stride_ob + h * stride_oh + offs_d, out.to(Out.dtype.element_ty))


def choose_num_splits(batch: int, num_kv_heads: int, max_context: int, num_sms: int,
                      waves: float = 4.0, min_tokens_per_split: int = 256) -> int:
    """One split when batch x KV heads already gives two programs per SM; otherwise enough
    splits for `waves` programs per SM, never shorter than min_tokens_per_split.
    (Tuned on an H100, bench/results/kernels_sweep.json: splitting a full GPU only adds a merge.)"""
    programs = max(1, batch * num_kv_heads)
    if programs >= 2 * num_sms:
        return 1
    want = math.ceil(waves * num_sms / programs)
    most = max(1, math.ceil(max_context / min_tokens_per_split))
    return max(1, min(want, most))


# Launch configs from the H100 sweep: long tiles when each program owns a whole sequence,
# shorter ones (more programs resident per SM) when the sequence is split.
DIRECT_CONFIG = dict(block_n=64, num_warps=4, num_stages=3)
SPLIT_CONFIG = dict(block_n=32, num_warps=4, num_stages=3)


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale, *,
                           num_splits=None, block_n=None, num_warps=None, num_stages=None,
                           waves=4.0, out=None):
    """q [B,Hq,D]; k_cache/v_cache [num_blocks, page, Hk, D]; block_tables [B,M] int32;
    context_lens [B] int32 (may be 0 for padded rows: their output is 0). Returns [B,Hq,D]
    (written into `out` when given)."""
    batch, num_q_heads, head_dim = q.shape
    _, page, num_kv_heads, _ = k_cache.shape
    if num_q_heads % num_kv_heads:
        raise ValueError(f"q heads ({num_q_heads}) must be a multiple of KV heads ({num_kv_heads})")
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1 or q.stride(-1) != 1:
        raise ValueError("q, k_cache and v_cache need a contiguous last (head_dim) dimension")
    if head_dim < 16 or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim {head_dim} is not supported by the decode kernel: it needs a power of two >= 16")
    group = num_q_heads // num_kv_heads
    out = torch.empty_like(q) if out is None else out
    if batch == 0:
        return out
    if num_splits is None:
        num_splits = choose_num_splits(batch, num_kv_heads, block_tables.shape[1] * page,
                                       num_sms(q.device), waves=waves)
    tuned = DIRECT_CONFIG if num_splits == 1 else SPLIT_CONFIG
    if q.element_size() == 4:  # float32 tiles are twice the bytes: keep shared memory in bounds
        tuned = dict(block_n=32, num_warps=4, num_stages=2)
    block_n = block_n or tuned["block_n"]
    num_warps = num_warps or tuned["num_warps"]
    num_stages = num_stages or tuned["num_stages"]
    block_n = max(16, min(block_n, next_pow2(block_tables.shape[1] * page)))
    if num_splits > 1:
        part_out = torch.empty(batch * num_q_heads * num_splits, head_dim, device=q.device,
                               dtype=torch.float32)
        part_lse = torch.empty(batch * num_q_heads * num_splits, device=q.device, dtype=torch.float32)
    else:
        part_out = part_lse = out  # unused by the kernel when it writes the output directly
    _decode_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, block_tables, context_lens, out, part_out, part_lse,
        scale * LOG2E, num_splits,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0),
        out.stride(0), out.stride(1),
        GROUP=group, GROUP_PAD=max(16, next_pow2(group)), HEAD_DIM=head_dim, PAGE=page,
        BLOCK_N=block_n, DIRECT=num_splits == 1, PRECISION=dot_precision(q.dtype),
        num_warps=num_warps, num_stages=num_stages,
    )
    if num_splits > 1:
        _merge_kernel[(batch, num_q_heads)](
            part_out, part_lse, out, out.stride(0), out.stride(1), num_splits,
            SPLITS_PAD=next_pow2(num_splits), HEAD_DIM=head_dim,
            num_warps=4,
        )
    return out


def paged_decode_attention_ref(q, k_cache, v_cache, block_tables, context_lens, scale):
    """PyTorch reference in float32, one sequence at a time."""
    batch, num_q_heads, head_dim = q.shape
    page, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    out = torch.zeros(batch, num_q_heads, head_dim, dtype=torch.float32, device=q.device)
    for b in range(batch):
        n = int(context_lens[b])
        if n == 0:
            continue
        pages = block_tables[b, : (n + page - 1) // page].long()
        k = k_cache[pages].reshape(-1, num_kv_heads, head_dim)[:n].float()
        v = v_cache[pages].reshape(-1, num_kv_heads, head_dim)[:n].float()
        k = k.repeat_interleave(group, dim=1)  # [n, Hq, D]
        v = v.repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[b].float(), k) * scale
        out[b] = torch.einsum("hn,nhd->hd", scores.softmax(-1), v)
    return out.to(q.dtype)
