import pytest
import torch
from conftest import TOL, poisoned
from paged import random_paged_cache

from shoal.kernels import choose_num_splits, paged_decode_attention, paged_decode_attention_ref


def run_decode(gen, lengths, hq, hk, d, dtype, page=16, high=False, **kw):
    k_cache, v_cache, tables = random_paged_cache(gen, lengths, hk, d, page, dtype, high=high)
    q = torch.randn(len(lengths), hq, d, generator=gen).to(dtype)
    lens = torch.tensor(lengths, dtype=torch.int32)
    ref = paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, d**-0.5)
    out = poisoned(q.shape, dtype)
    paged_decode_attention(q, k_cache, v_cache, tables, lens, d**-0.5, out=out, **kw)
    return out, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hq,hk", [(4, 4), (8, 2), (8, 1)])
@pytest.mark.parametrize("d", [64, 128])
def test_decode_matches_reference(rng, dtype, hq, hk, d):
    lengths = [1, 17, int(torch.randint(20, 90, (1,), generator=rng))]
    for splits in (1, 3):
        out, ref = run_decode(rng, lengths, hq, hk, d, dtype, num_splits=splits, block_n=16)
        assert (out.float() - ref.float()).abs().max() < TOL[dtype], f"splits={splits}"


def test_decode_zero_length_rows_give_zero_and_empty_splits_merge(rng):
    # Padded rows of a captured graph have length 0; short rows leave most splits empty.
    out, ref = run_decode(rng, [0, 5, 33], 4, 2, 64, torch.float32, num_splits=8, block_n=16)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert (out - ref).abs().max() < TOL[torch.float32]


def test_decode_default_launch_matches_reference(rng):
    out, ref = run_decode(rng, [40, 3], 8, 2, 64, torch.float16)
    assert (out.float() - ref.float()).abs().max() < TOL[torch.float16]


def test_decode_block_ids_past_32_bit_offsets(rng):
    out, ref = run_decode(rng, [20, 35], 2, 1, 64, torch.float16, high=True, num_splits=2, block_n=16)
    assert (out.float() - ref.float()).abs().max() < TOL[torch.float16]


def test_split_choice_fills_the_gpu_but_keeps_splits_long():
    assert choose_num_splits(64, 8, 4096, 132) == 1
    assert choose_num_splits(8, 8, 16384, 132) == 9
    assert choose_num_splits(1, 8, 32768, 132) == 66
    assert choose_num_splits(1, 8, 300, 132) == 2
    assert choose_num_splits(256, 8, 1024, 132) == 1


def test_decode_rejects_a_head_dim_it_cannot_tile():
    q = torch.zeros(1, 2, 96)
    cache = torch.zeros(2, 16, 1, 96)
    with pytest.raises(ValueError, match="head_dim 96"):
        paged_decode_attention(q, cache, cache, torch.zeros(1, 1, dtype=torch.int32), torch.ones(1, dtype=torch.int32), 1.0)
