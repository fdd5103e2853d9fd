"""The model runner's step inputs equal those of the straightforward build they replaced, on real engine runs.

`reference_prepare` is the former `ModelRunner._prepare` (block tables rebuilt from every sequence's list each
step), kept here as the reference. Engines run random workloads (chunked prefills, preemption, prefix hits,
seeded sampling, pending tokens of asynchronous scheduling, stops) while every step's inputs are compared with it:
the eager layout, and the CUDA-graph layout (static buffers after the copies and the pending-token gather,
padding rows included), with the graphs run eagerly out of their static buffers since this machine has no GPU.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from shoal.engine import LLM, SamplingParams
from shoal.engine.cuda_graphs import DecodeGraphs, StagedDecode
from shoal.engine.model import AttentionMetadata
from shoal.engine.staging import regions


def reference_prepare(runner, batch, pending):
    """The former ModelRunner._prepare, less its pinned staging: (input_ids, positions, meta, logits_indices,
    num_samples) with input_ids after the pending-token gather."""
    bs = runner.block_size
    num = len(batch)
    q_lens = np.fromiter((e.num_new_tokens for e in batch), np.int64, num)
    starts = np.fromiter((e.seq.num_computed_tokens for e in batch), np.int64, num)
    samples = np.fromiter((e.samples for e in batch), np.bool_, num)
    widths = np.fromiter((len(e.seq.block_table) for e in batch), np.int64, num)
    cu = np.zeros(num + 1, np.int64)
    np.cumsum(q_lens, out=cu[1:])
    total = int(cu[-1])
    width = int(widths.max())
    is_decode = q_lens == 1
    nd = num if is_decode.all() else int(np.argmin(is_decode))
    has_prefill = nd < num
    num_samples = int(samples.sum())
    gather = has_prefill or num_samples != num
    fix = [] if pending is None else [
        (int(cu[i]), e.seq.pending_row) for i, e in enumerate(batch) if e.seq.pending_step == pending.step
    ]
    r64 = regions([total, total, total, num_samples if gather else 0, len(fix), len(fix)], 2)
    nw = num - nd
    r32 = regions([nd, nw, nd * width, nw * width, nw + 1 if has_prefill else 0], 4)
    a64, a32 = np.zeros(r64[-1][1], np.int64), np.zeros(r32[-1][1], np.int32)
    ids, pos, slots, lidx, fdst, fsrc = (a64[s:e] for s, e in r64)
    ctx_d, ctx_p, tab_d, tab_p, cu_p = (a32[s:e] for s, e in r32)
    tokens: list[int] = []
    for entry in batch:
        start = entry.seq.num_computed_tokens
        tokens.extend(entry.seq.token_slice(start, start + entry.num_new_tokens))
    ids[:] = tokens
    np.maximum(ids, 0, out=ids)
    tables = np.zeros((num, width), np.int32)
    mask = np.arange(width)[None, :] < widths[:, None]
    tables[mask] = np.fromiter(itertools.chain.from_iterable(e.seq.block_table for e in batch), np.int32,
                               int(widths.sum()))
    tab_d[:] = tables[:nd].reshape(-1)
    tab_p[:] = tables[nd:].reshape(-1)
    row = np.repeat(np.arange(num), q_lens) if has_prefill else np.arange(num)
    pos[:] = starts[row] + np.arange(total) - cu[:-1][row]
    slots[:] = tables[row, pos // bs].astype(np.int64) * bs + pos % bs
    ctx = starts + q_lens
    ctx_d[:], ctx_p[:] = ctx[:nd], ctx[nd:]
    if gather:
        lidx[:] = (cu[1:] - 1)[samples]
    if fix:
        fdst[:], fsrc[:] = zip(*fix)
    if has_prefill:
        cu_p[:] = cu[nd:] - cu[nd]
    d64, d32 = torch.from_numpy(a64), torch.from_numpy(a32)
    input_ids, positions, slot_mapping, d_lidx, d_fdst, d_fsrc = (d64[s:e] for s, e in r64)
    d_ctx_d, d_ctx_p, d_tab_d, d_tab_p, d_cu_p = (d32[s:e] for s, e in r32)
    if fix:
        input_ids[d_fdst] = pending.tokens.cpu()[d_fsrc]
    meta = AttentionMetadata(
        slot_mapping=slot_mapping,
        num_decodes=nd,
        decode_block_tables=d_tab_d.view(nd, width) if nd else None,
        decode_context_lens=d_ctx_d if nd else None,
        prefill_block_tables=d_tab_p.view(nw, width) if has_prefill else None,
        prefill_cu_seqlens_q=d_cu_p if has_prefill else None,
        prefill_context_lens=d_ctx_p if has_prefill else None,
    )
    return input_ids, positions, meta, d_lidx if gather else None, num_samples


def emulate_graphs(llm: LLM) -> None:
    """Give the runner DecodeGraphs that run the model eagerly out of the static buffers (no CUDA here)."""
    runner = llm.engine.runner
    with torch.inference_mode():
        runner.graphs = DecodeGraphs(runner.model, runner.kv_caches, runner.cos_sin_cache,
                                     llm.engine.config.max_num_seqs, runner.max_blocks_per_seq, runner.device,
                                     capture=False)


def same(a, b) -> bool:
    """Equal tensors (compared on the host, so that a GPU run can use this module too), or both None."""
    if a is None or b is None:
        return a is None and b is None
    return torch.equal(a.cpu(), b.cpu())


class Checker:
    """Wraps a runner's _prepare (and graphs.run) to compare every step's inputs with reference_prepare."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.seen: dict[str, int] = {k: 0 for k in ("mixed", "decode", "graph", "padded", "pending", "gather")}
        self._expected = None
        self._prepare, runner._prepare = runner._prepare, self.prepare
        if runner.graphs is not None:
            self._run, runner.graphs.run = runner.graphs.run, self.run

    def prepare(self, batch, pending):
        want = reference_prepare(self.runner, batch, pending)
        result = self._prepare(batch, pending)
        inputs, logits_indices, num_samples = result
        self.seen["pending"] += pending is not None and any(e.seq.pending_step == pending.step for e in batch)
        self.seen["gather"] += want[3] is not None and want[2].num_decodes == len(batch)
        assert num_samples == want[4]
        if isinstance(inputs, StagedDecode):
            self._expected = want  # compared once the graph's static buffers are loaded
            return result
        self.seen["decode" if want[2].num_decodes == len(batch) else "mixed"] += 1
        input_ids, positions, meta = inputs
        assert same(input_ids, want[0]) and same(positions, want[1])
        assert same(logits_indices, want[3]) or not num_samples  # nothing samples: which rows would is moot
        for field in ("slot_mapping", "decode_block_tables", "decode_context_lens", "prefill_block_tables",
                      "prefill_cu_seqlens_q", "prefill_context_lens"):
            assert same(getattr(meta, field), getattr(want[2], field)), field
        assert meta.num_decodes == want[2].num_decodes
        return result

    def run(self, staged, pending_tokens):
        want_ids, want_pos, want_meta, want_lidx, _ = self._expected
        graphs = self.runner.graphs
        logits_rows = graphs.load(staged, pending_tokens)
        n, bs, width = staged.n, staged.bs, want_meta.decode_block_tables.shape[1]
        ids, positions, slots, ctx, tables = graphs.static_inputs(bs)
        assert same(ids[:n], want_ids) and same(positions[:n], want_pos)
        assert same(slots[:n], want_meta.slot_mapping)
        assert same(ctx[:n], want_meta.decode_context_lens)
        assert same(tables[:n, :width], want_meta.decode_block_tables)
        assert same(logits_rows, want_lidx) or not self._expected[4]
        # Padding rows: any valid token at position 0, no KV slot, nothing to attend to.
        assert not ids[n:].any() and not positions[n:].any() and not ctx[n:].any() and not tables[n:, :width].any()
        assert bool((slots[n:] == -1).all())
        self.seen["graph"] += 1
        self.seen["padded"] += bs > n
        return self._run(staged, pending_tokens)


def random_workload(seed: int, vocab: int = 512):
    rng = random.Random(seed)
    shared = [rng.randrange(3, vocab) for _ in range(rng.choice([8, 17, 24]))]
    prompts, params = [], []
    for i in range(rng.randint(5, 9)):
        tail = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 30))]
        prompts.append(shared + tail if rng.random() < 0.6 else tail)
        if rng.random() < 0.5:
            params.append(SamplingParams(temperature=0.0, max_tokens=rng.randint(1, 24), ignore_eos=True))
        else:
            params.append(SamplingParams(temperature=0.8, top_k=rng.choice([-1, 20]), seed=rng.randrange(100),
                                         max_tokens=rng.randint(1, 24), ignore_eos=True))
    return prompts, params


def one_token_chunks():
    """Three short requests decode while a long one's prompt trickles in one token a step (budget 4): decode
    steps where one row does not sample."""
    prompts = [[5, 6], [7, 8], [9, 10], list(range(20, 50))]
    return prompts, [SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)] * 4


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graph-layout"])
def test_inputs_equal_the_reference_on_random_runs(tiny_llama, graphs):
    seen: dict[str, int] = {}
    preemptions = hits = 0
    budgets = [5, 12, 24, 64, 4]
    for seed, budget in enumerate(budgets):
        prompts, params = random_workload(seed) if seed < 4 else one_token_chunks()
        llm = LLM(tiny_llama[0], kv_cache_tokens=112, max_model_len=112, block_size=4, max_num_seqs=8,
                  max_num_batched_tokens=budget, async_scheduling=seed % 2 == 0)
        if graphs:
            emulate_graphs(llm)
        checker = Checker(llm.engine.runner)
        outs = llm.generate(prompts, params)
        assert [len(o.token_ids) for o in outs] == [p.max_tokens for p in params]
        assert llm.engine.block_manager.usage == 0.0
        preemptions += llm.engine.num_preemptions_total
        hits += llm.engine.prefix_cache_hits_total
        for k, v in checker.seen.items():
            seen[k] = seen.get(k, 0) + v
    assert preemptions > 0 and hits > 0
    assert seen["mixed"] > 0 and seen["pending"] > 0 and seen["gather"] > 0
    if graphs:
        assert seen["graph"] > 0 and seen["padded"] > 0
    else:
        assert seen["decode"] > 0


def test_graph_layout_greedy_tokens_equal_transformers(tiny_qwen3, hf_greedy):
    llm = LLM(tiny_qwen3[0], kv_cache_tokens=96, max_model_len=96, block_size=8, max_num_batched_tokens=24,
              max_num_seqs=6, async_scheduling=True)
    emulate_graphs(llm)
    gen = torch.Generator().manual_seed(21)
    [shared] = [torch.randint(3, 512, (24,), generator=gen).tolist()]
    prompts = [shared + torch.randint(3, 512, (n,), generator=gen).tolist() for n in (5, 9, 13, 2, 17)]
    checker = Checker(llm.engine.runner)
    greedy = SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True)
    outs = llm.generate(prompts, greedy)
    assert checker.seen["graph"] > 0 and checker.seen["padded"] > 0
    assert llm.engine.num_preemptions_total > 0
    for prompt, out in zip(prompts, outs):
        assert out.token_ids == hf_greedy(tiny_qwen3[1], prompt, 20)
