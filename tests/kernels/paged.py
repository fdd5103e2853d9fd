"""Random paged-cache fixtures shared by the attention tests."""

import torch


def random_paged_cache(gen, lengths, num_kv_heads, head_dim, page, dtype, num_blocks=None, high=False):
    """Caches filled with random values and one block table whose blocks are a random subset of the
    pool in random order. high=True takes the blocks from the top of a pool whose element count
    exceeds 2**31, so any 32-bit offset arithmetic overflows (the untouched pool is never paged in)."""
    need = sum((n + page - 1) // page for n in lengths)
    per_block = page * num_kv_heads * head_dim
    if high:
        num_blocks = (2**31 // per_block) + 2 * need + 8
    num_blocks = num_blocks or 2 * need + 3
    k_cache = torch.empty(num_blocks, page, num_kv_heads, head_dim, dtype=dtype)
    v_cache = torch.empty(num_blocks, page, num_kv_heads, head_dim, dtype=dtype)
    first = num_blocks - 2 * need - 4 if high else 0
    chosen = first + torch.randperm(num_blocks - first, generator=gen)[:need]
    k_cache[chosen] = torch.randn(need, page, num_kv_heads, head_dim, generator=gen).to(dtype)
    v_cache[chosen] = torch.randn(need, page, num_kv_heads, head_dim, generator=gen).to(dtype)
    width = max(1, max((n + page - 1) // page for n in lengths)) + 2
    # Padding entries point anywhere (here: a block that was never written).
    tables = torch.full((len(lengths), width), num_blocks - 1 if not high else first, dtype=torch.int32)
    at = 0
    for b, n in enumerate(lengths):
        used = (n + page - 1) // page
        tables[b, :used] = chosen[at: at + used].int()
        at += used
    return k_cache, v_cache, tables
