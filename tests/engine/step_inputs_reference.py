"""The former ModelRunner._prepare as a reference, and a wrapper that checks every step of a live runner against it.

Shared by tests/engine/test_step_inputs.py (CPU) and bench/step_inputs_gpu.py (the same check on a GPU), so it
imports nothing from pytest.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

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


def emulate_graphs(llm) -> None:
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
