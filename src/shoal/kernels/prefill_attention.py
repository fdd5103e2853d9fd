"""Paged prefill / extend attention: packed variable-length queries over a cached prefix, causal.

The new tokens' K/V are already in the cache (write_kv runs first), so every key is read
through the block table. Query i of sequence b sits at position context_lens[b] - q_len_b + i
and sees keys 0..that position.

The grid is one program per (query tile, query head). Tiles of all sequences are numbered
consecutively; a program finds its sequence by binary search over the tile offsets, which are
computed on the device, so the launch needs no host sync and only host-known sizes.
"""

import math

import torch
import triton
import triton.language as tl

from .decode_attention import LOG2E, dot_precision


@triton.jit
def _attend_tile(q, K, V, bt_row, n0, kvh, pos, kv_end, m_i, l_i, acc, scale_log2,
                 stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAGE: tl.constexpr,
                 BLOCK_N: tl.constexpr, MASKED: tl.constexpr, PRECISION: tl.constexpr):
    """One online-softmax step over keys n0..n0+BLOCK_N; MASKED applies causality and kv_end."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < kv_end
    kv_mask = mask_n[:, None] & (offs_d < HEAD_DIM)[None, :]
    page = tl.load(bt_row + offs_n // PAGE, mask=mask_n, other=0).to(tl.int64)
    in_page = offs_n % PAGE
    k = tl.load(K + page[:, None] * stride_kb + in_page[:, None] * stride_ks
                + kvh * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + page[:, None] * stride_vb + in_page[:, None] * stride_vs
                + kvh * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
    qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
    if MASKED:
        keep = mask_n[None, :] & (offs_n[None, :] <= pos[:, None])
        qk = tl.where(keep, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))  # finite: key 0 is visible to every row
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(qk - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


# Values that change from step to step are not specialised on (each would be a compile mid-serving).
@triton.jit(do_not_specialize=["num_seqs", "stride_bt"])
def _prefill_kernel(
    Q, K, V, BlockTables, CuSeqlensQ, Lens, TileStarts, Out,
    scale_log2, num_seqs,
    stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt,
    stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SEARCH_STEPS: tl.constexpr, PRECISION: tl.constexpr,
):
    tile = tl.program_id(0)
    h = tl.program_id(1)
    kvh = h // GROUP

    # Largest b with TileStarts[b] <= tile: empty sequences share their start with the next one.
    lo = tile * 0
    hi = lo + num_seqs - 1
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi + 1) // 2
        go = tl.load(TileStarts + mid) <= tile
        lo = tl.where(go, mid, lo)
        hi = tl.where(go, hi, mid - 1)
    b = lo
    valid = tile < tl.load(TileStarts + num_seqs)

    q_start = tl.load(CuSeqlensQ + b)
    q_len = tl.load(CuSeqlensQ + b + 1) - q_start
    q_len = tl.where(valid, q_len, 0)
    kv_len = tl.load(Lens + b)
    prefix = kv_len - q_len
    m_start = (tile - tl.load(TileStarts + b)) * BLOCK_M

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < q_len
    mask_d = offs_d < HEAD_DIM
    rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    pos = prefix + offs_m

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    bt_row = BlockTables + b.to(tl.int64) * stride_bt
    # Keys before the tile's first query position are visible to every row: no mask there.
    # (An invalid tile has kv_end 0, so both loops are empty.)
    kv_end = tl.where(valid, tl.minimum(kv_len, prefix + m_start + BLOCK_M), 0)
    full_end = tl.minimum((prefix + m_start) // BLOCK_N * BLOCK_N, kv_end)
    for n0 in range(0, full_end, BLOCK_N):
        m_i, l_i, acc = _attend_tile(q, K, V, bt_row, n0, kvh, pos, kv_end, m_i, l_i, acc, scale_log2,
                                     stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
                                     HEAD_DIM, BLOCK_D, PAGE, BLOCK_N, False, PRECISION)
    for n0 in range(full_end, kv_end, BLOCK_N):
        m_i, l_i, acc = _attend_tile(q, K, V, bt_row, n0, kvh, pos, kv_end, m_i, l_i, acc, scale_log2,
                                     stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
                                     HEAD_DIM, BLOCK_D, PAGE, BLOCK_N, True, PRECISION)

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
             out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


TILES = dict(block_m=128, block_n=128, num_warps=8, num_stages=3)  # best of the H100 sweep
SMALL_TILES = dict(block_m=64, block_n=32, num_warps=4, num_stages=2)


def search_steps(num_seqs: int) -> int:
    """Binary-search steps over the sequences, rounded up to a multiple of 4 so that few kernel variants
    get compiled (steps past convergence keep the answer)."""
    return 4 * max(1, math.ceil(math.ceil(math.log2(num_seqs + 1)) / 4))


def tile_block_m(dtype: torch.dtype) -> int:
    """The query rows per program of the default tiles for `dtype` (float32 tiles are smaller)."""
    return (SMALL_TILES if dtype.itemsize == 4 else TILES)["block_m"]


def prefill_tile_starts(cu_seqlens_q, block_m: int):
    """[B+1] int32: the first query tile of each sequence (tiles of block_m rows). The same for every layer of a
    step, so the engine computes it once a step (four small kernels fewer per layer) and passes it in."""
    q_lens = cu_seqlens_q[1:] - cu_seqlens_q[:-1]
    starts = torch.zeros(cu_seqlens_q.shape[0], dtype=torch.int32, device=cu_seqlens_q.device)
    starts[1:] = torch.cumsum((q_lens + block_m - 1) // block_m, 0)
    return starts


def paged_prefill_attention(q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, scale, *,
                            block_m=None, block_n=None, num_warps=None, num_stages=None, out=None,
                            tile_starts=None):
    """q [T,Hq,D] packed; cu_seqlens_q [B+1] int32; context_lens [B] int32 (kv length incl. the
    new tokens). Returns [T,Hq,D]. tile_starts: prefill_tile_starts(cu_seqlens_q, block_m) when already known."""
    total, num_q_heads, head_dim = q.shape
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    if num_q_heads % num_kv_heads:
        raise ValueError(f"q heads ({num_q_heads}) must be a multiple of KV heads ({num_kv_heads})")
    num_seqs = cu_seqlens_q.shape[0] - 1
    # float32 tiles are twice the bytes: smaller ones keep shared memory in bounds.
    tuned = SMALL_TILES if q.element_size() == 4 else TILES
    block_m, block_n = block_m or tuned["block_m"], block_n or tuned["block_n"]
    num_warps, num_stages = num_warps or tuned["num_warps"], num_stages or tuned["num_stages"]
    out = torch.empty_like(q) if out is None else out
    if total == 0 or num_seqs == 0:
        return out
    if tile_starts is None:
        tile_starts = prefill_tile_starts(cu_seqlens_q, block_m)
    max_tiles = triton.cdiv(total, block_m) + num_seqs  # host-known bound: no sync on the lengths
    _prefill_kernel[(max_tiles, num_q_heads)](
        q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, tile_starts, out,
        scale * LOG2E, num_seqs,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0),
        out.stride(0), out.stride(1),
        GROUP=num_q_heads // num_kv_heads, HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        PAGE=page, BLOCK_M=block_m, BLOCK_N=block_n,
        SEARCH_STEPS=search_steps(num_seqs), PRECISION=dot_precision(q.dtype),
        num_warps=num_warps, num_stages=num_stages,
    )
    return out


def paged_prefill_attention_ref(q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, scale):
    """PyTorch reference in float32, one sequence at a time."""
    num_q_heads, head_dim = q.shape[1], q.shape[2]
    page, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for b in range(cu_seqlens_q.shape[0] - 1):
        s, e = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
        n = int(context_lens[b])
        if e == s:
            continue
        pages = block_tables[b, : (n + page - 1) // page].long()
        k = k_cache[pages].reshape(-1, num_kv_heads, head_dim)[:n].float().repeat_interleave(group, 1)
        v = v_cache[pages].reshape(-1, num_kv_heads, head_dim)[:n].float().repeat_interleave(group, 1)
        scores = torch.einsum("qhd,nhd->hqn", q[s:e].float(), k) * scale
        pos = torch.arange(n - (e - s), n, device=q.device)
        causal = torch.arange(n, device=q.device)[None, :] <= pos[:, None]
        scores = scores.masked_fill(~causal, float("-inf"))
        out[s:e] = torch.einsum("hqn,nhd->qhd", scores.softmax(-1), v)
    return out.to(q.dtype)
