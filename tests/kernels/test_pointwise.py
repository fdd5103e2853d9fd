import pytest
import torch
from conftest import TOL, poisoned

from shoal.kernels import (build_cos_sin_cache, rms_norm, rope_inv_freq, rms_norm_ref, rotary_embedding,
                           rotary_embedding_ref, silu_and_mul, silu_and_mul_ref)

DTYPES = [torch.float32, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 200])
def test_rms_norm_with_and_without_residual(rng, dtype, hidden):
    x = torch.randn(5, hidden, generator=rng).to(dtype)
    res = torch.randn(5, hidden, generator=rng).to(dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=rng)).to(dtype)
    out = poisoned(x.shape, dtype)
    rms_norm(x, w, 1e-6, out=out)
    assert (out.float() - rms_norm_ref(x, w, 1e-6).float()).abs().max() < TOL[dtype]
    out, new_res = poisoned(x.shape, dtype), poisoned(x.shape, dtype)
    rms_norm(x, w, 1e-6, res, out=out, residual_out=new_res)
    ref_out, ref_res = rms_norm_ref(x, w, 1e-6, res)
    assert torch.equal(new_res, ref_res)
    assert (out.float() - ref_out.float()).abs().max() < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hk,d", [(6, 2, 64), (4, 4, 128)])
def test_rotary_embedding_matches_reference(rng, dtype, hq, hk, d):
    cache = build_cos_sin_cache(d, 512, 10000.0)
    positions = torch.randint(0, 512, (7,), generator=rng)
    q = torch.randn(7, hq, d, generator=rng).to(dtype)
    k = torch.randn(7, hk, d, generator=rng).to(dtype)
    q_out, k_out = poisoned(q.shape, dtype), poisoned(k.shape, dtype)
    rotary_embedding(positions, q, k, cache, q_out=q_out, k_out=k_out)
    q_ref, k_ref = rotary_embedding_ref(positions, q, k, cache)
    assert (q_out.float() - q_ref.float()).abs().max() < TOL[dtype]
    assert (k_out.float() - k_ref.float()).abs().max() < TOL[dtype]


def test_rotary_embedding_in_place_on_fused_qkv_views(rng):
    qkv = torch.randn(5, 8, 64, generator=rng)
    q, k = qkv[:, :4], qkv[:, 4:6]
    cache = build_cos_sin_cache(64, 64, 500000.0)
    positions = torch.arange(5)
    q_ref, k_ref = rotary_embedding_ref(positions, q, k, cache)
    rotary_embedding(positions, q, k, cache, q_out=q, k_out=k)
    assert (q - q_ref).abs().max() < TOL[torch.float32]
    assert (k - k_ref).abs().max() < TOL[torch.float32]


def test_frequencies_match_transformers_default_and_llama3():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, rope_theta=500000.0, rope_scaling=scaling,
                      max_position_embeddings=131072)
    hf_scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    ours = rope_inv_freq(128, 500000.0, scaling)
    assert torch.allclose(ours.float(), hf_scaled.float(), rtol=1e-5, atol=0)
    plain = rope_inv_freq(128, 500000.0, None)
    assert not torch.allclose(plain, ours, rtol=1e-2)  # the scaling moves the long wavelengths
    cache = build_cos_sin_cache(128, 1000, 500000.0, scaling, dtype=torch.float64)
    angles = 999 * ours
    assert torch.allclose(cache[999], torch.cat([angles.cos(), angles.sin()]))


def test_unknown_rope_scaling_is_rejected():
    with pytest.raises(ValueError, match="rope_type"):
        build_cos_sin_cache(64, 16, 10000.0, {"rope_type": "yarn", "factor": 4.0})


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul_matches_reference(rng, dtype):
    x = torch.randn(3, 2 * 1500, generator=rng).to(dtype)
    out = poisoned((3, 1500), dtype)
    silu_and_mul(x, out=out)
    assert (out.float() - silu_and_mul_ref(x).float()).abs().max() < TOL[dtype]
