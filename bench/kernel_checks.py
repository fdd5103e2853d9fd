"""bf16 checks of every Triton kernel against its PyTorch reference on the GPU, run before timing.

Relative error ||out - ref|| / ||ref|| must stay under 1e-2 (bf16 operands); KV writes must be
exact. Inputs are fresh random draws, ragged, in random block order, outputs poisoned with NaN.
Raises on the first failure so no timing is printed for a wrong kernel.
"""

import torch

import shoal.kernels as K

DT = torch.bfloat16
TOL = 1e-2


def rel_err(out, ref):
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def nan_like(t):
    return torch.full_like(t, float("nan"))


def paged(gen, lengths, hk, d, page=16, pool_extra=7, high=False):
    need = sum((n + page - 1) // page for n in lengths)
    per_block = page * hk * d
    num_blocks = (2**31 // per_block + need + 8) if high else need + pool_extra
    k_cache = torch.randn(num_blocks, page, hk, d, device="cuda", dtype=DT, generator=gen) if not high else \
        torch.empty(num_blocks, page, hk, d, device="cuda", dtype=DT).normal_(generator=gen)
    v_cache = torch.empty_like(k_cache).normal_(generator=gen)
    first = num_blocks - need - 8 if high else 0
    chosen = first + torch.randperm(num_blocks - first, device="cuda", generator=gen)[:need]
    width = max((n + page - 1) // page for n in lengths) + 1
    tables = torch.zeros(len(lengths), width, device="cuda", dtype=torch.int32)
    at = 0
    for b, n in enumerate(lengths):
        used = (n + page - 1) // page
        tables[b, :used] = chosen[at: at + used].int()
        at += used
    return k_cache, v_cache, tables


def check(name, err, tol=TOL):
    status = "ok" if err < tol else "FAIL"
    print(f"  check {name:<46} rel err {err:.2e} {status}", flush=True)
    if not err < tol:
        raise AssertionError(f"{name}: relative error {err:.3e} >= {tol}")


def check_decode(gen):
    for hq, hk, d in ((32, 8, 128), (16, 16, 128), (32, 4, 64), (16, 8, 128)):
        lengths = [1, 17, 300, 2049, 777]
        k_cache, v_cache, tables = paged(gen, lengths, hk, d)
        q = torch.randn(len(lengths), hq, d, device="cuda", dtype=DT, generator=gen)
        lens = torch.tensor(lengths, device="cuda", dtype=torch.int32)
        ref = K.paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, d**-0.5)
        for splits in (None, 1, 5, 37):
            out = nan_like(q)
            K.paged_decode_attention(q, k_cache, v_cache, tables, lens, d**-0.5, num_splits=splits, out=out)
            check(f"decode hq={hq} hk={hk} d={d} splits={splits}", rel_err(out, ref))
        # as the engine runs it: captured in a CUDA graph
        out = nan_like(q)
        K.paged_decode_attention(q, k_cache, v_cache, tables, lens, d**-0.5, num_splits=37, out=out)  # compiled
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            K.paged_decode_attention(q, k_cache, v_cache, tables, lens, d**-0.5, num_splits=37, out=out)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check(f"decode hq={hq} hk={hk} d={d} splits=37 graph", rel_err(out, ref))
    k_cache, v_cache, tables = paged(gen, [100, 40], 8, 128, high=True)
    q = torch.randn(2, 32, 128, device="cuda", dtype=DT, generator=gen)
    lens = torch.tensor([100, 40], device="cuda", dtype=torch.int32)
    ref = K.paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, 128**-0.5)
    check("decode pool > 2^31 elements", rel_err(K.paged_decode_attention(q, k_cache, v_cache, tables, lens,
                                                                          128**-0.5), ref))
    del k_cache, v_cache
    torch.cuda.empty_cache()


def check_prefill(gen):
    for hq, hk, d in ((32, 8, 128), (16, 8, 64)):
        q_lens, kv_lens = [200, 1, 63, 300], [200, 50, 500, 301]
        k_cache, v_cache, tables = paged(gen, kv_lens, hk, d)
        cu = torch.zeros(len(q_lens) + 1, device="cuda", dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(q_lens, device="cuda"), 0)
        q = torch.randn(int(cu[-1]), hq, d, device="cuda", dtype=DT, generator=gen)
        lens = torch.tensor(kv_lens, device="cuda", dtype=torch.int32)
        ref = K.paged_prefill_attention_ref(q, k_cache, v_cache, tables, cu, lens, d**-0.5)
        out = nan_like(q)
        K.paged_prefill_attention(q, k_cache, v_cache, tables, cu, lens, d**-0.5, out=out)
        check(f"prefill/extend hq={hq} hk={hk} d={d}", rel_err(out, ref))


def check_write_kv(gen):
    k_cache = torch.full((50, 16, 8, 128), float("nan"), device="cuda", dtype=DT)
    v_cache = k_cache.clone()
    qkv = torch.randn(300, 48, 128, device="cuda", dtype=DT, generator=gen)
    k, v = qkv[:, 32:40], qkv[:, 40:]
    slots = torch.randperm(800, device="cuda", generator=gen)[:300]
    slots[::7] = -1
    k_ref, v_ref = k_cache.clone(), v_cache.clone()
    K.write_kv(k, v, k_cache, v_cache, slots)
    K.write_kv_ref(k, v, k_ref, v_ref, slots)
    same = torch.equal(k_cache.nan_to_num(7.0), k_ref.nan_to_num(7.0)) and \
        torch.equal(v_cache.nan_to_num(7.0), v_ref.nan_to_num(7.0))
    check("write_kv exact, padding slots untouched", 0.0 if same else 1.0)


def check_pointwise(gen):
    x = torch.randn(333, 4096, device="cuda", dtype=DT, generator=gen)
    res = torch.randn_like(x)
    w = torch.randn(4096, device="cuda", dtype=DT, generator=gen)
    out, new_res = nan_like(x), nan_like(x)
    K.rms_norm(x, w, 1e-6, res, out=out, residual_out=new_res)
    ref_out, ref_res = K.rms_norm_ref(x, w, 1e-6, res)
    check("rms_norm + residual", rel_err(out, ref_out))
    check("rms_norm new residual", rel_err(new_res, ref_res))
    check("rms_norm (no residual)", rel_err(K.rms_norm(x, w, 1e-6), K.rms_norm_ref(x, w, 1e-6)))
    cache = K.build_cos_sin_cache(128, 131072, 500000.0, {"rope_type": "llama3", "factor": 8.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192}).cuda()
    pos = torch.randint(0, 131072, (333,), device="cuda", generator=gen)
    q = torch.randn(333, 32, 128, device="cuda", dtype=DT, generator=gen)
    k = torch.randn(333, 8, 128, device="cuda", dtype=DT, generator=gen)
    q_out, k_out = nan_like(q), nan_like(k)
    K.rotary_embedding(pos, q, k, cache, q_out=q_out, k_out=k_out)
    q_ref, k_ref = K.rotary_embedding_ref(pos, q, k, cache)
    check("rotary q (llama3 cache)", rel_err(q_out, q_ref))
    check("rotary k (llama3 cache)", rel_err(k_out, k_ref))
    gu = torch.randn(333, 2 * 3000, device="cuda", dtype=DT, generator=gen)
    out = torch.full((333, 3000), float("nan"), device="cuda", dtype=DT)
    K.silu_and_mul(gu, out=out)
    check("silu_and_mul", rel_err(out, K.silu_and_mul_ref(gu)))


def check_all():
    gen = torch.Generator(device="cuda").manual_seed(1234)
    print("== bf16 checks against the references", flush=True)
    check_decode(gen)
    check_prefill(gen)
    check_write_kv(gen)
    check_pointwise(gen)


if __name__ == "__main__":
    check_all()
