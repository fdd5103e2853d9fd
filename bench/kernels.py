"""Kernel benchmark, DESIGN.md's protocol: checks bf16 results against the references first, then
times Shoal's Triton kernels beside torch SDPA on contiguous KV, FlashInfer's paged decode (when
importable) and the measured device copy bandwidth, all in one run on one card.

    PYTHONPATH=src python3 bench/kernels.py [--sweep] [--json bench/results/kernels.json]

Decode protocol: bf16, 32 query / 8 KV heads, head_dim 128, block 16, random block order,
batch x context in {64x4096, 256x1024, 8x16384, 1x32768}. Times are do_bench medians (events,
L2 flushed between calls). --sweep also times a grid of launch configs and reports the best.
"""

import argparse
import itertools
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.testing import do_bench

import shoal.kernels as K
from kernel_checks import check_all

SHAPES = [(64, 4096), (256, 1024), (8, 16384), (1, 32768)]
HQ, HK, D, PAGE = 32, 8, 128, 16
DT = torch.bfloat16


def median_ms(fn, rep=200):
    return do_bench(fn, warmup=50, rep=rep, return_mode="median")


def copy_tbps():
    """Device-to-device copy of 1 GiB, counting bytes read plus bytes written."""
    src = torch.randn(1 << 29, device="cuda", dtype=DT)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e12


def decode_case(batch, ctx, gen):
    pages = ctx // PAGE
    pool = batch * pages
    k_cache = torch.randn(pool, PAGE, HK, D, device="cuda", dtype=DT, generator=gen)
    v_cache = torch.randn(pool, PAGE, HK, D, device="cuda", dtype=DT, generator=gen)
    tables = torch.randperm(pool, device="cuda", generator=gen).int().view(batch, pages)
    lens = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
    q = torch.randn(batch, HQ, D, device="cuda", dtype=DT, generator=gen)
    return q, k_cache, v_cache, tables, lens


def kv_bytes(batch, ctx):
    return 2 * batch * ctx * HK * D * 2


def sdpa_runner(q, k_cache, v_cache, tables, ctx):
    """torch SDPA over the same values gathered into one contiguous [B, Hk, L, D] tensor per K and V."""
    k = k_cache[tables.long()].reshape(q.shape[0], ctx, HK, D).transpose(1, 2).contiguous()
    v = v_cache[tables.long()].reshape(q.shape[0], ctx, HK, D).transpose(1, 2).contiguous()
    qq = q.unsqueeze(2)
    return lambda: F.scaled_dot_product_attention(qq, k, v, enable_gqa=True).squeeze(2)


def bench_sdpa(q, k_cache, v_cache, tables, ctx):
    fn = sdpa_runner(q, k_cache, v_cache, tables, ctx)
    return median_ms(fn), fn()


_FI_FAILED = []  # after one failed build, later shapes report it instead of rebuilding


def flashinfer_runner(q, k_cache, v_cache, tables, ctx):
    """(fn, note): FlashInfer's paged decode over the same cache; fn None when FlashInfer cannot run here."""
    if _FI_FAILED:
        return None, _FI_FAILED[0]
    try:
        import flashinfer
    except Exception as e:  # reported, not hidden: the table says why the column is empty
        return None, f"import failed: {e!r}"[:200]
    batch, pages = tables.shape
    indptr = torch.arange(batch + 1, device="cuda", dtype=torch.int32) * pages
    last = torch.full((batch,), ctx - (pages - 1) * PAGE, device="cuda", dtype=torch.int32)
    notes = []
    for backend in ("auto", "fa2"):
        try:
            ws = torch.zeros(256 << 20, dtype=torch.uint8, device="cuda")
            w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD", backend=backend)
            w.plan(indptr, tables.reshape(-1), last, HQ, HK, D, PAGE, q_data_type=DT, kv_data_type=DT)
            w.run(q, (k_cache, v_cache))
            return (lambda: w.run(q, (k_cache, v_cache))), f"{flashinfer.__version__} backend={backend}"
        except Exception as e:
            print(f"flashinfer backend={backend} failed:\n{e}", flush=True)  # the whole build log
            notes.append(f"{backend}: {type(e).__name__}: {str(e)[-300:]}")
    _FI_FAILED.append(" | ".join(notes))
    return None, _FI_FAILED[0]


def bench_flashinfer(q, k_cache, v_cache, tables, ctx):
    """Returns (ms, out, note); ms None when FlashInfer cannot run here."""
    fn, note = flashinfer_runner(q, k_cache, v_cache, tables, ctx)
    if fn is None:
        return None, None, note
    return median_ms(fn), fn(), note


@triton.jit
def _read_kernel(X, Out, n, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """Each program streams CHUNK elements and writes one sum: a pure read at full bandwidth."""
    start = tl.program_id(0).to(tl.int64) * CHUNK
    acc = tl.zeros([BLOCK], tl.float32)
    for i in tl.range(0, CHUNK, BLOCK, num_stages=4):
        offs = start + i + tl.arange(0, BLOCK)
        acc += tl.load(X + offs, mask=offs < n, other=0.0).to(tl.float32)
    tl.store(Out + tl.program_id(0), tl.sum(acc, 0))


def read_runner(k_cache, v_cache):
    """A plain streaming read of both caches (the same bytes paged decode must read): the floor for any kernel."""
    chunk = 1 << 16
    outs = [torch.empty(triton.cdiv(c.numel(), chunk), device="cuda", dtype=torch.float32) for c in (k_cache, v_cache)]

    def run():
        for c, o in zip((k_cache, v_cache), outs):
            _read_kernel[(o.numel(),)](c, o, c.numel(), CHUNK=chunk, BLOCK=2048, num_warps=8)
    return run


def decode_configs(batch, ctx):
    """Tile shapes and pipelining depths, with split counts around 1..8 programs per SM."""
    base = batch * HK
    splits = sorted({max(1, min(ctx // 128, round(t * sms() / base))) for t in (1, 2, 3, 4, 5, 6, 8)})
    grid = itertools.product([32, 64], [4], [2, 3, 4], splits)
    extra = [dict(block_n=16, num_warps=2, num_stages=s, num_splits=n) for s in (3, 5) for n in splits]
    return [dict(block_n=b, num_warps=w, num_stages=s, num_splits=n) for b, w, s, n in grid] + extra


def copy_ms(nbytes):
    """A device copy moving nbytes of traffic in total (nbytes/2 read, nbytes/2 written)."""
    src = torch.empty(nbytes // 4, device="cuda", dtype=DT).normal_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    del src, dst
    return ms


def bench_decode_shape(batch, ctx, sweep, copy, gen):
    q, k_cache, v_cache, tables, lens = decode_case(batch, ctx, gen)
    scale = D**-0.5
    ref = K.paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, scale)
    row = {"kv_GB": kv_bytes(batch, ctx) / 1e9, "copy_TBps": copy,
           "copy_same_bytes_ms": copy_ms(kv_bytes(batch, ctx))}
    default = lambda: K.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale)  # noqa: E731
    row.update(shoal_rel_err=rel_err(default(), ref), shoal_ms=median_ms(default),
               shoal_splits=K.choose_num_splits(batch, HK, tables.shape[1] * PAGE, sms()))
    if sweep:
        results = []
        for cfg in decode_configs(batch, ctx):
            fn = lambda: K.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale, **cfg)  # noqa: E731
            err = rel_err(fn(), ref)
            if err > 1e-2:
                print(f"  config {cfg} WRONG (rel err {err:.2e}); skipped", flush=True)
                continue
            results.append((median_ms(fn, rep=40), cfg))
        results.sort(key=lambda r: r[0])
        best_cfg = results[0][1]
        row["shoal_best_ms"] = median_ms(
            lambda: K.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale, **best_cfg))
        row["shoal_best_config"] = best_cfg
        row["sweep_top8"] = [[round(ms, 4), cfg] for ms, cfg in results[:8]]
    fi_ms, fi_out, note = bench_flashinfer(q, k_cache, v_cache, tables, ctx)
    row.update(flashinfer_ms=fi_ms, flashinfer_note=note,
               flashinfer_rel_err=rel_err(fi_out, ref) if fi_out is not None else None)
    sdpa_ms, sdpa_out = bench_sdpa(q, k_cache, v_cache, tables, ctx)
    row.update(sdpa_ms=sdpa_ms, sdpa_rel_err=rel_err(sdpa_out, ref))
    # the same three replayed from CUDA graphs behind the same zero-write flush: device time without launch cost
    fi_fn, _ = flashinfer_runner(q, k_cache, v_cache, tables, ctx)
    sdpa_fn = sdpa_runner(q, k_cache, v_cache, tables, ctx)
    for name, fn in (("shoal", default), ("flashinfer", fi_fn), ("sdpa", sdpa_fn)):
        replay = graphed(fn) if fn is not None else None
        row[f"{name}_graph_ms"] = median_ms_after(replay, zero_write_flush) if replay is not None else None
    for name in ("shoal", "flashinfer", "sdpa", "shoal_graph", "flashinfer_graph", "sdpa_graph"):
        ms = row.get(f"{name}_ms")
        row[f"{name}_frac_of_copy"] = None if ms is None else kv_bytes(batch, ctx) / (ms * 1e-3) / 1e12 / copy
    del q, k_cache, v_cache, tables
    torch.cuda.empty_cache()
    return row


def graphed(fn):
    """fn captured in a CUDA graph, as the engine runs decode; None where it cannot be captured. A replay costs the
    host a few microseconds, so a replay timed behind a flush measures the device alone: an eager call whose Python
    and launches take longer than the flush leaves the device idle inside the timed interval."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()  # compiles and allocates outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        torch.cuda.synchronize()
        return graph.replay
    except Exception as e:  # reported: the column stays empty
        print(f"  capture failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
        torch.cuda.synchronize()
        return None


ZERO_WRITE_FLUSH = []  # do_bench's flush: 256 MB of zeros written, L2 left full of dirty lines


def zero_write_flush():
    if not ZERO_WRITE_FLUSH:
        ZERO_WRITE_FLUSH.append(torch.empty(256 << 20, dtype=torch.int8, device="cuda"))
    ZERO_WRITE_FLUSH[0].zero_()


def median_ms_after(fn, flush, reps=100):
    """Median event time of fn, each call right after `flush()` (what do_bench does with its own flush)."""
    fn()
    times = []
    for _ in range(reps):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def bench_flush_kinds(copy, gen, shapes=((1, 32768), (8, 16384), (64, 4096))):
    """Every decode kernel, a plain read of the same bytes and a same-size copy, timed after two kinds of L2
    flush: do_bench's (it writes 256 MB of zeros, so L2 is full of dirty lines that must reach DRAM while
    the timed kernel runs) and a read-only one (a 256 MB sum: L2 holds clean lines, as in a model's layer,
    where the kernels before attention write a few MB). The gap between them is the write-back."""
    clean = torch.ones(64 << 20, dtype=torch.float32, device="cuda")
    flushes = {"zero_write": zero_write_flush, "read_only": lambda: clean.sum()}
    rows = {}
    for batch, ctx in shapes:
        q, k_cache, v_cache, tables, lens = decode_case(batch, ctx, gen)
        scale = D**-0.5
        ref = K.paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, scale)
        fi, fi_note = flashinfer_runner(q, k_cache, v_cache, tables, ctx)
        kernels = {
            "shoal": lambda: K.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale),
            "flashinfer": fi, "sdpa": sdpa_runner(q, k_cache, v_cache, tables, ctx),
        }
        kernels = {name: fn for name, fn in kernels.items() if fn is not None}
        row = {"flashinfer_note": fi_note, "rel_err": {name: rel_err(fn(), ref) for name, fn in kernels.items()}}
        src = torch.empty(kv_bytes(batch, ctx) // 4, device="cuda", dtype=DT).normal_()
        dst = torch.empty_like(src)
        kernels["read_floor"] = read_runner(k_cache, v_cache)
        kernels["copy_same_bytes"] = lambda: dst.copy_(src)
        replays = {name: graphed(fn) for name, fn in kernels.items()}
        for kind, flush in flushes.items():
            for mode, fns in (("eager", kernels), ("graph", replays)):
                cell = row[f"{kind}_{mode}"] = {}
                for name, fn in fns.items():
                    if fn is None:
                        continue
                    ms = median_ms_after(fn, flush)
                    cell[name] = {"ms": ms, "frac_of_copy": kv_bytes(batch, ctx) / (ms * 1e-3) / 1e12 / copy}
                print(f"  {batch}x{ctx} flush={kind:<10} {mode:<5} " + "  ".join(
                    f"{name} {v['ms']:.4f} ms ({v['frac_of_copy']:.3f})" for name, v in cell.items()), flush=True)
        rows[f"{batch}x{ctx}"] = row
        del q, k_cache, v_cache, tables, src, dst, kernels
        torch.cuda.empty_cache()
    return rows


def sweep_small_batch(copy, gen, batch=1, ctx=32768):
    """Launch configs of the split decode at the smallest protocol shape, replayed from CUDA graphs after the
    read-only flush."""
    clean = torch.ones(64 << 20, dtype=torch.float32, device="cuda")
    q, k_cache, v_cache, tables, lens = decode_case(batch, ctx, gen)
    scale = D**-0.5
    ref = K.paged_decode_attention_ref(q, k_cache, v_cache, tables, lens, scale)
    results = []
    for block_n, warps, stages, splits in itertools.product([32, 64], [4, 8], [3, 4], [33, 66, 132]):
        cfg = dict(block_n=block_n, num_warps=warps, num_stages=stages, num_splits=splits)
        fn = lambda: K.paged_decode_attention(q, k_cache, v_cache, tables, lens, scale, **cfg)  # noqa: E731
        try:
            err = rel_err(fn(), ref)
        except Exception as e:  # e.g. out of shared memory at deep pipelines of long tiles
            print(f"  config {cfg} failed: {type(e).__name__}", flush=True)
            continue
        if err > 1e-2:
            print(f"  config {cfg} WRONG (rel err {err:.2e}); skipped", flush=True)
            continue
        replay = graphed(fn)
        if replay is None:
            continue
        ms = median_ms_after(replay, lambda: clean.sum(), reps=60)
        results.append({"ms": ms, "frac_of_copy": kv_bytes(batch, ctx) / (ms * 1e-3) / 1e12 / copy, **cfg})
    results.sort(key=lambda r: r["ms"])
    for r in results[:6]:
        print(f"  {r}", flush=True)
    return results


def rel_err(out, ref):
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def sms():
    return torch.cuda.get_device_properties(0).multi_processor_count


def bench_pointwise(copy, gen):
    tokens, hidden = 8192, 4096
    x = torch.randn(tokens, hidden, device="cuda", dtype=DT, generator=gen)
    res = torch.randn_like(x)
    w = torch.randn(hidden, device="cuda", dtype=DT, generator=gen)
    q = torch.randn(tokens, HQ, D, device="cuda", dtype=DT, generator=gen)
    k = torch.randn(tokens, HK, D, device="cuda", dtype=DT, generator=gen)
    cache = K.build_cos_sin_cache(D, 131072, 500000.0).cuda()
    pos = torch.randint(0, 131072, (tokens,), device="cuda", generator=gen)
    gate_up = torch.randn(tokens, 2 * hidden, device="cuda", dtype=DT, generator=gen)
    b = 2  # bytes per bf16 element
    cases = {
        "rms_norm_residual": (lambda: K.rms_norm(x, w, 1e-6, res), lambda: K.rms_norm_ref(x, w, 1e-6, res),
                              4 * tokens * hidden * b),
        "rotary_embedding": (lambda: K.rotary_embedding(pos, q, k, cache),
                             lambda: K.rotary_embedding_ref(pos, q, k, cache),
                             2 * (q.numel() + k.numel()) * b + tokens * D * 4),
        "silu_and_mul": (lambda: K.silu_and_mul(gate_up), lambda: K.silu_and_mul_ref(gate_up),
                         3 * tokens * hidden * b),
    }
    rows = {}
    for name, (fn, ref_fn, nbytes) in cases.items():
        ms, torch_ms = median_ms(fn), median_ms(ref_fn)
        rows[name] = {"shape": f"{tokens}x{hidden}", "shoal_ms": ms, "torch_eager_ms": torch_ms, "bytes": nbytes,
                      "frac_of_copy": nbytes / (ms * 1e-3) / 1e12 / copy}
    return rows


def bench_prefill(gen, sweep):
    """Fresh prompts (4 x 2048, causal) against SDPA causal on contiguous KV, and an extend
    (16 x 256 new tokens over 2048 cached)."""
    rows = {}
    for name, batch, new, prefix in (("prefill_4x2048", 4, 2048, 0), ("extend_16x256_over_2048", 16, 256, 2048)):
        ctx = new + prefix
        q_, k_cache, v_cache, tables, lens = decode_case(batch, ctx, gen)
        q = torch.randn(batch * new, HQ, D, device="cuda", dtype=DT, generator=gen)
        cu = torch.arange(batch + 1, device="cuda", dtype=torch.int32) * new
        fn = lambda **c: K.paged_prefill_attention(q, k_cache, v_cache, tables, cu, lens, D**-0.5, **c)  # noqa: E731
        ms = median_ms(fn)
        if sweep:
            grid = [dict(block_m=m, block_n=n, num_warps=w, num_stages=st)
                    for m, n, w, st in itertools.product([64, 128], [32, 64, 128], [4, 8], [2, 3])]
            timed = sorted(((median_ms(lambda: fn(**c), rep=40), c) for c in grid if rel_err(fn(**c), fn()) < 1e-2),
                           key=lambda r: r[0])
        flops = 4 * batch * HQ * D * (new * prefix + new * (new + 1) / 2)
        row = {"shoal_ms": ms, "shoal_TFLOPs": flops / (ms * 1e-3) / 1e12}
        if sweep:
            row["best_ms"], row["best_config"] = timed[0]
        if prefix == 0:
            kk = k_cache[tables.long()].reshape(batch, ctx, HK, D).transpose(1, 2).contiguous()
            vv = v_cache[tables.long()].reshape(batch, ctx, HK, D).transpose(1, 2).contiguous()
            qq = q.view(batch, new, HQ, D).transpose(1, 2)
            sd = lambda: F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)  # noqa: E731
            row["sdpa_ms"] = median_ms(sd)
            row["rel_err_vs_sdpa"] = rel_err(fn(), sd().transpose(1, 2).reshape(q.shape))
        rows[name] = row
        del k_cache, v_cache
        torch.cuda.empty_cache()
    return rows


def versions():
    out = {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda}
    try:
        import flashinfer
        out["flashinfer"] = flashinfer.__version__
    except Exception:
        out["flashinfer"] = None
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--json", default="bench/results/kernels.json")
    ap.add_argument("--skip-checks", action="store_true")
    ap.add_argument("--flush-kinds", action="store_true",
                    help="only decode and copy after a writing vs a read-only L2 flush -> kernels_flush.json")
    args = ap.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    card = torch.cuda.get_device_name(0)
    print(f"card: {card}  versions: {versions()}", flush=True)
    if not args.skip_checks:
        check_all()
    copy = copy_tbps()
    print(f"copy bandwidth: {copy:.3f} TB/s", flush=True)
    if args.flush_kinds:
        out = {"card": card, "versions": versions(), "copy_TBps": copy, "shapes": bench_flush_kinds(copy, gen),
               "sweep_1x32768_read_only_flush": sweep_small_batch(copy, gen),
               "command": "PYTHONPATH=src python3 bench/kernels.py --flush-kinds"}
        Path(args.json).with_name("kernels_flush.json").write_text(json.dumps(out, indent=2) + "\n")
        print_flush_table(out)
        return
    shapes = {}
    for batch, ctx in SHAPES:
        shapes[f"{batch}x{ctx}"] = bench_decode_shape(batch, ctx, args.sweep, copy, gen)
        print(f"{batch}x{ctx}: {json.dumps(shapes[f'{batch}x{ctx}'], default=str)}", flush=True)
    pointwise = bench_pointwise(copy, gen)
    prefill = bench_prefill(gen, args.sweep)
    result = {"card": card, "versions": versions(), "copy_TBps": copy, "shapes": shapes,
              "pointwise_8192x4096": pointwise, "prefill": prefill,
              "command": "PYTHONPATH=src python3 bench/kernels.py" + (" --sweep" if args.sweep else "")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)


def print_flush_table(r):
    print(f"\n== paged decode after each L2 flush, ms (fraction of the {r['copy_TBps']:.3f} TB/s copy) on {r['card']}")
    for shape, row in r["shapes"].items():
        for kind in ("zero_write", "read_only"):
            for mode in ("eager", "graph"):
                print(f"{shape:>9} {kind:<10} {mode:<5} " + "  ".join(
                    f"{name} {v['ms']:.4f} ({v['frac_of_copy']:.2f})" for name, v in row[f"{kind}_{mode}"].items()))
    best = r["sweep_1x32768_read_only_flush"][:1]
    print(f"best 1x32768 config after the read-only flush: {best}")


def print_table(r):
    print(f"\n== paged decode, bf16, {HQ}q/{HK}kv heads, d={D}, page {PAGE}, copy {r['copy_TBps']:.3f} TB/s"
          f" on {r['card']}")
    print(f"{'shape':>9} {'shoal ms':>9} {'frac':>5} {'best ms':>8} {'FI ms':>8} {'frac':>5} {'SDPA ms':>8} {'frac':>5}"
          f" {'copy@size':>9}   graph replays: shoal / FI / SDPA ms (frac)")
    for name, s in r["shapes"].items():
        f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(f"{name:>9} {f(s['shoal_ms'], '9.4f')} {f(s['shoal_frac_of_copy'], '5.2f')}"
              f" {f(s.get('shoal_best_ms'), '8.4f')} {f(s['flashinfer_ms'], '8.4f')}"
              f" {f(s['flashinfer_frac_of_copy'], '5.2f')} {f(s['sdpa_ms'], '8.4f')} {f(s['sdpa_frac_of_copy'], '5.2f')}"
              f" {f(s['copy_same_bytes_ms'], '9.4f')}   " + " / ".join(
                  f"{f(s[f'{k}_graph_ms'], '.4f')} ({f(s[f'{k}_graph_frac_of_copy'], '.2f')})"
                  for k in ("shoal", "flashinfer", "sdpa")))
    print("== pointwise at 8192 x 4096 bf16")
    for name, p in r["pointwise_8192x4096"].items():
        print(f"{name:>20} {p['shoal_ms']:.4f} ms  {p['frac_of_copy']:.2f} of copy  (torch eager {p['torch_eager_ms']:.4f} ms)")
    print("== prefill")
    for name, p in r["prefill"].items():
        print(f"{name:>24} {json.dumps(p, default=str)}")


if __name__ == "__main__":
    main()
