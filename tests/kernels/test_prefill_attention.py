import pytest
import torch
from conftest import TOL, poisoned
from paged import random_paged_cache

from shoal.kernels import paged_prefill_attention, paged_prefill_attention_ref, prefill_tile_starts


def run_prefill(gen, q_lens, kv_lens, hq, hk, d, dtype, high=False, **kw):
    k_cache, v_cache, tables = random_paged_cache(gen, kv_lens, hk, d, 16, dtype, high=high)
    cu = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(q_lens), 0)
    q = torch.randn(int(cu[-1]), hq, d, generator=gen).to(dtype)
    lens = torch.tensor(kv_lens, dtype=torch.int32)
    ref = paged_prefill_attention_ref(q, k_cache, v_cache, tables, cu, lens, d**-0.5)
    out = poisoned(q.shape, dtype)
    paged_prefill_attention(q, k_cache, v_cache, tables, cu, lens, d**-0.5, out=out, **kw)
    return out, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hq,hk", [(2, 2), (4, 1), (8, 1)])
@pytest.mark.parametrize("d", [64, 128])
def test_prefill_over_cached_prefix_matches_reference(rng, dtype, hq, hk, d):
    # Fresh prompts (prefix 0), an extend over a cached prefix, a single-token extend.
    new = int(torch.randint(1, 40, (1,), generator=rng))
    q_lens = [new, 19, 1]
    kv_lens = [new, 19 + int(torch.randint(1, 30, (1,), generator=rng)), 26]
    out, ref = run_prefill(rng, q_lens, kv_lens, hq, hk, d, dtype, block_m=16, block_n=16)
    assert (out.float() - ref.float()).abs().max() < TOL[dtype]


def test_prefill_skips_empty_sequences_and_spans_several_tiles(rng):
    out, ref = run_prefill(rng, [0, 37, 0, 5], [3, 50, 0, 5], 4, 2, 64, torch.float32,
                           block_m=16, block_n=16)
    assert (out - ref).abs().max() < TOL[torch.float32]


def test_prefill_default_tiles_match_reference(rng):
    out, ref = run_prefill(rng, [70, 9], [100, 9], 4, 2, 64, torch.float16)
    assert (out.float() - ref.float()).abs().max() < TOL[torch.float16]


def test_prefill_block_ids_past_32_bit_offsets(rng):
    out, ref = run_prefill(rng, [10, 4], [30, 20], 2, 1, 64, torch.float16, high=True,
                           block_m=16, block_n=16)
    assert (out.float() - ref.float()).abs().max() < TOL[torch.float16]


def test_prefill_with_tile_starts_computed_once_equals_computed_inside(rng):
    k_cache, v_cache, tables = random_paged_cache(rng, [40, 3, 77], 2, 64, 16, torch.float32)
    cu = torch.tensor([0, 21, 22, 51], dtype=torch.int32)
    q = torch.randn(51, 4, 64, generator=rng)
    lens = torch.tensor([40, 3, 77], dtype=torch.int32)
    inside = paged_prefill_attention(q, k_cache, v_cache, tables, cu, lens, 0.125, block_m=16, block_n=16)
    starts = prefill_tile_starts(cu, 16)
    assert starts.tolist() == [0, 2, 3, 5]  # ceil(21/16), ceil(1/16), ceil(29/16) tiles
    given = paged_prefill_attention(q, k_cache, v_cache, tables, cu, lens, 0.125, block_m=16, block_n=16,
                                    tile_starts=starts)
    assert torch.equal(inside, given)
