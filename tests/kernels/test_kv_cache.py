import pytest
import torch
from conftest import poisoned

from shoal.kernels import write_kv, write_kv_ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hk,d", [(1, 64), (3, 128)])
def test_write_kv_fills_exactly_the_mapped_slots(rng, dtype, hk, d):
    num_blocks, page, total = 9, 16, 21
    # k and v as views of one fused qkv buffer: strided rows, contiguous head_dim.
    qkv = torch.randn(total, 4 * hk, d, generator=rng).to(dtype)
    k, v = qkv[:, 2 * hk: 3 * hk], qkv[:, 3 * hk:]
    slots = torch.randperm(num_blocks * page, generator=rng)[:total]
    slots[::5] = -1  # padding rows write nothing
    k_cache, v_cache = poisoned((num_blocks, page, hk, d), dtype), poisoned((num_blocks, page, hk, d), dtype)
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    write_kv(k, v, k_cache, v_cache, slots)
    write_kv_ref(k, v, k_ref, v_ref, slots)
    # NaN stays NaN where nothing should be written; equal_nan makes stray writes fail too.
    assert torch.allclose(k_cache, k_ref, equal_nan=True, atol=0, rtol=0)
    assert torch.allclose(v_cache, v_ref, equal_nan=True, atol=0, rtol=0)


def test_write_kv_slots_past_32_bit_offsets(rng):
    hk, d, page = 1, 64, 16
    num_blocks = 2**31 // (page * hk * d) + 64
    k_cache = torch.empty(num_blocks, page, hk, d, dtype=torch.float16)
    v_cache = torch.empty(num_blocks, page, hk, d, dtype=torch.float16)
    slots = (num_blocks - 4) * page + torch.randperm(4 * page, generator=rng)[:7]
    k = torch.randn(7, hk, d, generator=rng).half()
    v = torch.randn(7, hk, d, generator=rng).half()
    write_kv(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache[slots // page, slots % page], k)
    assert torch.equal(v_cache[slots // page, slots % page], v)


def test_write_kv_rejects_a_dtype_mismatch():
    cache = torch.zeros(2, 16, 1, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype"):
        write_kv(torch.zeros(1, 1, 64), torch.zeros(1, 1, 64), cache, cache, torch.zeros(1, dtype=torch.int64))
